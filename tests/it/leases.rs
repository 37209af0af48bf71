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
use strata::coordination::{CoordinationOptions, Coordinator, Fence, StackTask};
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
}

/// Work that runs until told to stop, marking itself on `board`.
fn work(replica: &str, board: Arc<Mutex<Board>>) -> StackTask<()> {
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
