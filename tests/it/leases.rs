//! The Lease coordinator on its own, in-process against a devcluster: the API server refuses a
//! stale write (409), a replica that joins later gets its share from one that held every
//! stack (never two replicas working one stack at once), and a replica cut off from the API
//! server closes its fence and stops its work.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devcluster::{Fault, FaultAction};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use strata::coordination::{CoordinationOptions, Coordinator, Entered, Fence, StackTask};
use tokio_util::sync::CancellationToken;

use crate::agent::until;
use crate::support::Cluster;

const NS: &str = "strata-system";

async fn namespace(c: &Cluster) -> Api<Lease> {
    let client = c.client().await;
    let mut n = Namespace::default();
    n.metadata.name = Some(NS.into());
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &n)
        .await
        .unwrap();
    Api::namespaced(client, NS)
}

fn options(c: &Cluster, replica: &str) -> CoordinationOptions {
    CoordinationOptions {
        namespace: NS.into(),
        kubeconfig: Some(c.kubeconfig.clone()),
        replica_id: replica.into(),
        lease_duration: Duration::from_secs(3),
    }
}

/// The client the agent makes for its Leases.
async fn lease_client(c: &Cluster, replica: &str) -> kube::Client {
    strata::coordination::client(&options(c, replica))
        .await
        .unwrap()
}

/// What the stacks' work does, seen from the outside: who works which stack now, and any
/// moment two replicas worked one stack at once.
#[derive(Default)]
struct Board {
    working: BTreeMap<String, Vec<String>>,
    overlaps: Vec<String>,
    fences: BTreeMap<String, Fence>,
    /// Work in progress (an apply running), by `replica/stack`: the test ends it.
    busy: BTreeMap<String, Entered>,
}

/// Work that runs until told to stop, marking itself on `board`.
fn work(replica: &str, board: Arc<Mutex<Board>>) -> StackTask<()> {
    work_busy(replica, board, false)
}

/// As [`work`]; with `busy`, each stack's work starts with an apply that runs until the test
/// ends it (removes it from `board.busy`).
fn work_busy(replica: &str, board: Arc<Mutex<Board>>, busy: bool) -> StackTask<()> {
    let replica = replica.to_string();
    Box::new(move |stack, fence, stop| {
        let (replica, board, stack) = (replica.clone(), board.clone(), stack.to_string());
        Box::pin(async move {
            {
                let mut b = board.lock().unwrap();
                let w = b.working.entry(stack.clone()).or_default();
                if !w.is_empty() {
                    let msg = format!("{replica} started {stack} while {w:?} worked it");
                    b.overlaps.push(msg);
                }
                b.working.get_mut(&stack).unwrap().push(replica.clone());
                if busy {
                    let entered = fence.enter().expect("a fresh Lease lets work start");
                    b.busy.insert(format!("{replica}/{stack}"), entered);
                }
                b.fences.insert(format!("{replica}/{stack}"), fence);
            }
            stop.cancelled().await;
            // A stack's work takes a moment to stop (an apply finishing).
            tokio::time::sleep(Duration::from_millis(300)).await;
            board
                .lock()
                .unwrap()
                .working
                .get_mut(&stack)
                .unwrap()
                .retain(|r| *r != replica);
        })
    })
}

fn held_by(board: &Arc<Mutex<Board>>, replica: &str) -> usize {
    board
        .lock()
        .unwrap()
        .working
        .values()
        .filter(|w| w.iter().any(|r| r == replica))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_lease_write_is_refused_with_409() {
    let c = Cluster::start().await;
    let api = namespace(&c).await;
    let mut l = Lease::default();
    l.metadata.name = Some("strata-x".into());
    let created = api.create(&PostParams::default(), &l).await.unwrap();
    let mut first = created.clone();
    first.spec = Some(Default::default());
    first.spec.as_mut().unwrap().holder_identity = Some("a".into());
    api.replace("strata-x", &PostParams::default(), &first)
        .await
        .unwrap();
    // A second writer with the resourceVersion it read before the first write: refused.
    let mut second = created;
    second.spec = Some(Default::default());
    second.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let e = api
        .replace("strata-x", &PostParams::default(), &second)
        .await
        .expect_err("a stale resourceVersion is refused");
    assert!(matches!(e, kube::Error::Api(ref s) if s.code == 409), "{e}");
    // And a create of a name that exists: 409 too.
    let e = api
        .create(&PostParams::default(), &l)
        .await
        .expect_err("exists");
    assert!(matches!(e, kube::Error::Api(ref s) if s.code == 409), "{e}");
    let got = api.get("strata-x").await.unwrap();
    assert_eq!(got.spec.unwrap().holder_identity.as_deref(), Some("a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_joining_later_gets_its_share_and_no_stack_is_worked_twice() {
    let c = Cluster::start().await;
    namespace(&c).await;
    let stacks: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
    let board = Arc::new(Mutex::new(Board::default()));
    let stop_a = CancellationToken::new();
    let a = Coordinator::new(
        lease_client(&c, "ra").await,
        options(&c, "ra"),
        stacks.clone(),
    )
    .await
    .unwrap();
    let ta = tokio::spawn(a.run(stop_a.clone(), work("ra", board.clone())));
    until("ra holds every stack", 60, || held_by(&board, "ra") == 4).await;

    let stop_b = CancellationToken::new();
    let b = Coordinator::new(
        lease_client(&c, "rb").await,
        options(&c, "rb"),
        stacks.clone(),
    )
    .await
    .unwrap();
    let tb = tokio::spawn(b.run(stop_b.clone(), work("rb", board.clone())));
    until("the stacks spread two and two", 120, || {
        held_by(&board, "ra") == 2 && held_by(&board, "rb") == 2
    })
    .await;

    // rb stops: its stacks go back to ra, the only replica left.
    stop_b.cancel();
    tb.await.unwrap();
    until("ra holds every stack again", 60, || {
        held_by(&board, "ra") == 4
    })
    .await;
    stop_a.cancel();
    ta.await.unwrap();
    let b = board.lock().unwrap();
    assert!(b.overlaps.is_empty(), "{:?}", b.overlaps);
    assert!(b.working.values().all(Vec::is_empty), "{:?}", b.working);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_cannot_renew_closes_its_fence_and_stops_its_work() {
    // The API server refuses, or does not answer at all.
    for fault in [
        FaultAction::Status(503),
        FaultAction::Hang(Duration::from_secs(3600)),
    ] {
        cut_off(fault).await;
    }
}

async fn cut_off(fault: FaultAction) {
    let c = Cluster::start().await;
    namespace(&c).await;
    let board = Arc::new(Mutex::new(Board::default()));
    let stop = CancellationToken::new();
    let co = Coordinator::new(
        lease_client(&c, "solo").await,
        options(&c, "solo"),
        vec!["a".into()],
    )
    .await
    .unwrap();
    let task = tokio::spawn(co.run(stop.clone(), work("solo", board.clone())));
    until("solo works a", 60, || held_by(&board, "solo") == 1).await;
    let fence = board.lock().unwrap().fences["solo/a"].clone();
    assert!(fence.may_start());

    // The API server refuses every Lease update from now on: renewals fail.
    c.dev.inject(Fault {
        verb: Some("update".into()),
        resource: Some("leases".into()),
        action: fault.clone(),
        count: None,
        dry_run: None,
    });
    until("the fence closes", 60, || !fence.may_start()).await;
    until("the work stops", 60, || held_by(&board, "solo") == 0).await;
    eprintln!("{fault:?}: fence closed and work stopped");
    assert!(
        !fence.may_start(),
        "a fence once closed for a lost Lease stays closed"
    );

    // The API server answers again: the Lease lapsed, the replica takes it anew with a new
    // fence; the old one stays closed.
    c.dev.clear_faults();
    until("solo works a again", 60, || held_by(&board, "solo") == 1).await;
    let again = board.lock().unwrap().fences["solo/a"].clone();
    assert!(again.may_start());
    assert!(!fence.may_start());
    stop.cancel();
    task.await.unwrap();
    assert!(board.lock().unwrap().overlaps.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_cannot_write_its_leases_refuses_to_start() {
    let c = Cluster::start().await;
    let mut o = options(&c, "lonely");
    o.namespace = "no-such-namespace".into();
    let client = strata::coordination::client(&o).await.unwrap();
    let e = match Coordinator::new(client, o, vec!["a".into()]).await {
        Ok(_) => panic!("a namespace that does not exist is refused at start"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("no-such-namespace"), "{e}");
    assert!(e.contains("create the namespace"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_given_back_to_spread_the_load_finishes_its_running_apply_first() {
    let c = Cluster::start().await;
    let api = namespace(&c).await;
    let stacks: Vec<String> = vec!["a".into(), "b".into()];
    let board = Arc::new(Mutex::new(Board::default()));
    let stop_a = CancellationToken::new();
    let a = Coordinator::new(
        lease_client(&c, "ra").await,
        options(&c, "ra"),
        stacks.clone(),
    )
    .await
    .unwrap();
    let ta = tokio::spawn(a.run(stop_a.clone(), work_busy("ra", board.clone(), true)));
    until("ra holds both stacks, each applying", 60, || {
        held_by(&board, "ra") == 2 && board.lock().unwrap().busy.len() == 2
    })
    .await;

    // rb joins: ra's share drops to one, and it chooses a stack to give back.
    let stop_b = CancellationToken::new();
    let b = Coordinator::new(
        lease_client(&c, "rb").await,
        options(&c, "rb"),
        stacks.clone(),
    )
    .await
    .unwrap();
    let tb = tokio::spawn(b.run(stop_b.clone(), work("rb", board.clone())));
    let closing = || {
        let b = board.lock().unwrap();
        b.fences
            .iter()
            .find(|(k, f)| k.starts_with("ra/") && !f.may_start())
            .map(|(k, _)| k.trim_start_matches("ra/").to_string())
    };
    until("ra closes one stack's fence", 60, || closing().is_some()).await;
    let chosen = closing().unwrap();
    // While its apply runs, ra keeps renewing the Lease (two renewals seen) and its work goes on.
    let rv = |l: &Lease| l.metadata.resource_version.clone().unwrap_or_default();
    let lease = format!("strata-{chosen}");
    let mut seen = vec![rv(&api.get(&lease).await.unwrap())];
    for _ in 0..600 {
        let l = api.get(&lease).await.unwrap();
        assert_eq!(
            l.spec.as_ref().unwrap().holder_identity.as_deref(),
            Some("ra"),
            "the Lease stays ra's while its apply runs"
        );
        if seen.last() != Some(&rv(&l)) {
            seen.push(rv(&l));
        }
        if seen.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.len() >= 3, "ra renews the Lease while draining");
    assert_eq!(
        board.lock().unwrap().working[&chosen],
        vec!["ra".to_string()],
        "the running apply was not stopped to spread the load"
    );

    // The apply ends: ra stops the stack, gives it back, rb takes it.
    board.lock().unwrap().busy.remove(&format!("ra/{chosen}"));
    until("rb works the stack ra gave back", 60, || {
        board.lock().unwrap().working[&chosen] == vec!["rb".to_string()]
    })
    .await;
    board.lock().unwrap().busy.clear();
    stop_b.cancel();
    stop_a.cancel();
    tb.await.unwrap();
    ta.await.unwrap();
    assert!(board.lock().unwrap().overlaps.is_empty());
}
