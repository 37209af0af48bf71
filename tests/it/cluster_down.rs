//! An API server that answers 503 to everything, or never answers: strata gives up on the
//! cluster after one request's tries (the budget the whole cluster shares), names it with its
//! server and the last cause, and sends it nothing more in the run; SIGTERM ends the run at once.
//! Bounded by requests counted at the devcluster, never by time (the timeouts only guard
//! against a hang).

use std::path::Path;
use std::time::Duration;

use devcluster::{Fault, FaultAction};

use crate::kube_safety::run;
use crate::kube_scale::chain;
use crate::support::{repo_root, Cluster};

/// The API server down as a whole: discovery included.
fn down(action: FaultAction) -> Fault {
    Fault {
        verb: None,
        resource: None,
        action,
        count: None,
        dry_run: None,
    }
}

fn sent(c: &Cluster) -> u64 {
    c.dev.requests().values().sum()
}

/// Tries of one request (strata's backoff: 6), for each request that can be in flight at once
/// before the first gives up (discovery asks `/api` and `/apis` together), and a margin.
const BOUND: u64 = 6 * 2 + 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_answering_503_is_given_up_after_one_requests_tries_named_with_its_server() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    chain(&root, &c, 20);
    run(&root, "apply").await.code(0);

    c.dev.inject(down(FaultAction::Status(503)));
    for verb in ["diff", "apply"] {
        c.dev.reset_requests();
        let out = tokio::time::timeout(Duration::from_secs(600), run(&root, verb))
            .await
            .unwrap_or_else(|_| panic!("{verb} against a cluster answering 503 ends"));
        assert_eq!(out.code, 1, "{verb}: {out:?}");
        let text = format!("{}{}", out.stdout, out.stderr);
        let named = format!("cluster \"main\" at {}", c.dev.url());
        assert!(
            text.contains(&named),
            "{verb} names the cluster and server: {text}"
        );
        assert!(text.contains("is unreachable"), "{verb}: {text}");
        assert!(
            text.contains("answered 503"),
            "{verb}: the last cause: {text}"
        );
        let n = sent(&c);
        assert!(
            n <= BOUND,
            "{verb} of 20 layers sent {n} requests to a cluster that answers none"
        );
        if verb == "diff" {
            assert!(
                out.stdout.contains("Could not check 20 layers"),
                "every layer unknown: {}",
                out.stdout
            );
        }
    }
    c.dev.clear_faults();
    run(&root, "diff").await.code(0);
}

/// `strata diff` as a child process, with nothing on its stdin.
fn spawn_diff(root: &Path) -> tokio::process::Child {
    let path = format!(
        "{}:{}",
        repo_root().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    tokio::process::Command::new(assert_cmd::cargo::cargo_bin("strata"))
        .args(["diff", "--stack"])
        .arg(root)
        .arg("--state-dir")
        .arg(root.join("state"))
        .env("PATH", path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_the_api_hangs_or_fails_ends_the_diff_at_once_with_130() {
    for fault in [
        FaultAction::Hang(Duration::from_secs(3600)),
        FaultAction::Status(503),
    ] {
        let c = Cluster::start().await;
        let root = c.dir.path().join("stack");
        chain(&root, &c, 5);
        run(&root, "apply").await.code(0);
        c.dev.inject(down(fault.clone()));
        c.dev.reset_requests();
        let mut child = spawn_diff(&root);
        // The first request is in: a hang holds it, a 503 sends strata into its backoff.
        for _ in 0..600 {
            if sent(&c) > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(sent(&c) > 0, "{fault:?}: the diff reached the cluster");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
        let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
            .await
            .unwrap_or_else(|_| panic!("{fault:?}: the diff ends after SIGTERM"))
            .unwrap();
        assert_eq!(status.code(), Some(130), "{fault:?}: interrupted");
        assert!(sent(&c) <= BOUND, "{fault:?}: {} requests", sent(&c));
    }
}
