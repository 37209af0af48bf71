//! The agent tells the truth under faults: what it observes (in sync, drifted, unknown, never
//! applied, pending), which alerts a receiver gets (once per condition), the status API, the
//! metrics and `/readyz`, with the cluster's API failing, the source moved away, the stack
//! locked by another process, a failed revision, and signals.

use std::path::Path;
use std::time::Duration;

use devcluster::{Fault, FaultAction};
use serde_json::Value;
use strata::agent::Agent;
use tokio_util::sync::CancellationToken;

use crate::agent::{cm, kinds, options, processes, receiver, until, Repo, NULL};
use crate::support::{repo_root, strata_cli, Cluster};

/// A repository with one Kubernetes layer (`drift = "report"`) in stack "truth".
fn kube_repo(root: &Path, kubeconfig: &Path) -> Repo {
    let r = Repo {
        dir: root.join("repo"),
    };
    r.write(
        "strata.hcl",
        &format!(
            "stack \"truth\" {{\n  alert_after = \"0s\"\n}}\ncluster \"main\" {{\n  kubeconfig_path = \"{}\"\n}}\nkubernetes \"watched\" {{\n  source    = \"k8s/watched\"\n  cluster   = cluster.main\n  namespace = \"default\"\n  drift     = \"report\"\n}}\n",
            kubeconfig.display()
        ),
    );
    r.write("k8s/watched/cm.yaml", &cm("watched", "blue"));
    r.git(&["init", "-q", "-b", "main"]);
    r.commit("first");
    r
}

/// Every request on configmaps answers 403 until cleared: strata cannot look (an auth
/// failure, which is final at once; a 5xx outage is the same to the agent, after the kube
/// client's retries).
fn api_down() -> Fault {
    Fault {
        verb: None,
        resource: Some("configmaps".into()),
        action: FaultAction::Status(403),
        count: None,
        dry_run: None,
    }
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn status(addr: std::net::SocketAddr) -> Value {
    serde_json::from_str(&get(addr, "/api/v1/status").await.1).unwrap()
}

/// Waits until the agent's status satisfies `f`.
async fn until_status(addr: std::net::SocketAddr, what: &str, f: impl Fn(&Value) -> bool) {
    let start = std::time::Instant::now();
    loop {
        if f(&status(addr).await) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}: {}",
            status(addr).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for `n` more polls than now, so that silence is asserted over several polls.
async fn polls(addr: std::net::SocketAddr, n: u64) {
    let now = status(addr).await["syncs"].as_u64().unwrap();
    until_status(addr, "more polls", |s| {
        s["syncs"].as_u64().unwrap() >= now + n
    })
    .await;
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn diff_exit_codes_say_never_applied_and_unknown_instead_of_no_drift() {
    let c = Cluster::start().await;
    let repo = kube_repo(c.dir.path(), &c.kubeconfig);
    let r = repo.dir.to_str().unwrap();
    let args = ["diff", "--repo", r, "--state-dir", "state"];
    let never = strata_cli(c.dir.path(), &args).await;
    assert_eq!(never.code, 2, "never applied is not in sync: {never:?}");
    assert!(never.stdout.contains("never applied"), "{}", never.stdout);
    assert!(!never.stdout.contains("No drift"), "{}", never.stdout);
    assert!(
        never
            .stdout
            .contains("Never applied: 1 layer: kubernetes.watched."),
        "{}",
        never.stdout
    );

    let apply = [
        "apply",
        "--repo",
        r,
        "--state-dir",
        "state",
        "--auto-approve",
    ];
    strata_cli(c.dir.path(), &apply).await.code(0);
    let clean = strata_cli(c.dir.path(), &args).await.code(0);
    assert!(
        clean
            .stdout
            .contains("No drift: every layer was observed in sync."),
        "{}",
        clean.stdout
    );

    c.dev.inject(api_down());
    let down = strata_cli(c.dir.path(), &args).await;
    c.dev.clear_faults();
    assert_eq!(down.code, 1, "could not look: {down:?}");
    assert!(
        down.stdout
            .contains("Could not check 1 layer: kubernetes.watched."),
        "{}",
        down.stdout
    );
    assert!(!down.stdout.contains("No drift"), "{}", down.stdout);
    let json = strata_cli(
        c.dir.path(),
        &["diff", "--repo", r, "--state-dir", "state", "--json"],
    )
    .await;
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["layers"][0]["observed"]["state"], "in_sync", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn an_unreachable_cluster_is_unknown_degraded_then_recovered_never_converged() {
    let c = Cluster::start().await;
    let repo = kube_repo(c.dir.path(), &c.kubeconfig);
    let (alerts, got) = receiver().await;
    let state = c.dir.path().join("state");
    let mut o = options(&repo, &state, &alerts);
    o.drift_interval = Some(Duration::from_secs(1));
    o.unreachable_after = Duration::from_secs(1);
    let addr = o.listen.unwrap();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(Agent::new(o).expect("agent state").run(stop.clone()));
    until("the first sync converged", 90, || {
        kinds(&got).contains(&"converged".to_string())
    })
    .await;
    c.kubectl(&[
        "patch",
        "cm",
        "watched",
        "--type=merge",
        "-p",
        r#"{"data":{"color":"red"}}"#,
    ])
    .await
    .code(0);
    until("a diff alert", 60, || {
        kinds(&got).contains(&"diff".to_string())
    })
    .await;

    c.dev.inject(api_down());
    until("a degraded alert", 60, || {
        kinds(&got).contains(&"degraded".to_string())
    })
    .await;
    until_status(addr, "the layer unknown", |s| {
        s["layers"]["kubernetes.watched"]["state"] == "unknown"
    })
    .await;
    let s = status(addr).await;
    assert_eq!(s["clusters"]["main"]["up"], false, "{s}");
    let (code, why) = get(addr, "/readyz").await;
    assert_eq!(code, 503, "{why}");
    assert!(why.contains("unreachable cluster: main"), "{why}");
    let metrics = get(addr, "/metrics").await.1;
    let series = "strata_layer_observed{layer=\"kubernetes.watched\",state=\"unknown\"}";
    assert_eq!(metric(&metrics, series), Some(1.0), "{metrics}");
    assert_eq!(
        metric(&metrics, "strata_cluster_up{cluster=\"main\"}"),
        Some(0.0),
        "{metrics}"
    );
    // Several more checks against the dead API: nothing new, and never `converged`.
    let checks = |s: &Value| s["last_drift_check"].as_str().unwrap_or("").to_string();
    let seen = checks(&status(addr).await);
    until_status(addr, "another drift check", |s| checks(s) != seen).await;
    assert_eq!(
        kinds(&got),
        ["change_committed", "converged", "diff", "degraded"]
    );

    c.dev.clear_faults();
    until("a recovered alert", 60, || {
        kinds(&got).contains(&"recovered".to_string())
    })
    .await;
    until_status(addr, "the layer drifted again", |s| {
        s["layers"]["kubernetes.watched"]["state"] == "drifted"
    })
    .await;
    assert_eq!(get(addr, "/readyz").await.0, 200);
    c.kubectl(&[
        "patch",
        "cm",
        "watched",
        "--type=merge",
        "-p",
        r#"{"data":{"color":"blue"}}"#,
    ])
    .await
    .code(0);
    until("converged once the drift is gone", 60, || {
        kinds(&got).len() == 6
    })
    .await;
    assert_eq!(
        kinds(&got),
        [
            "change_committed",
            "converged",
            "diff",
            "degraded",
            "recovered",
            "converged"
        ]
    );
    for a in got.lock().unwrap().iter() {
        assert_eq!(a["stack"], "truth", "{a}");
        assert!(!a["condition"].as_str().unwrap().is_empty(), "{a}");
        assert!(!a["summary"].as_str().unwrap().is_empty(), "{a}");
    }
    let metrics = get(addr, "/metrics").await.1;
    assert_eq!(
        metric(&metrics, "strata_alerts_sent_total{type=\"converged\"}"),
        Some(2.0),
        "{metrics}"
    );
    stop.cancel();
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn an_unreachable_source_alerts_once_then_recovers() {
    let c = Cluster::start().await;
    let repo = kube_repo(c.dir.path(), &c.kubeconfig);
    let (alerts, got) = receiver().await;
    let state = c.dir.path().join("state");
    let mut o = options(&repo, &state, &alerts);
    o.poll_interval = Some(Duration::from_secs(1));
    o.unreachable_after = Duration::from_secs(1);
    let addr = o.listen.unwrap();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(Agent::new(o).expect("agent state").run(stop.clone()));
    until("the first sync converged", 90, || {
        kinds(&got).contains(&"converged".to_string())
    })
    .await;
    let away = c.dir.path().join("moved-away");
    std::fs::rename(&repo.dir, &away).unwrap();
    until("a degraded alert", 60, || {
        kinds(&got).contains(&"degraded".to_string())
    })
    .await;
    polls(addr, 4).await;
    assert_eq!(kinds(&got), ["change_committed", "converged", "degraded"]);
    let degraded = got.lock().unwrap()[2].clone();
    assert_eq!(degraded["condition"], "source", "{degraded}");
    assert_eq!(degraded["stack"], "truth", "{degraded}");
    let s = status(addr).await;
    assert_eq!(s["source"]["up"], false, "{s}");
    let (code, why) = get(addr, "/readyz").await;
    assert_eq!(code, 503, "{why}");
    assert!(why.contains("source has been unreachable"), "{why}");
    let metrics = get(addr, "/metrics").await.1;
    assert_eq!(metric(&metrics, "strata_source_up"), Some(0.0), "{metrics}");

    std::fs::rename(&away, &repo.dir).unwrap();
    until("a recovered alert", 60, || {
        kinds(&got).contains(&"recovered".to_string())
    })
    .await;
    polls(addr, 2).await;
    assert_eq!(
        kinds(&got),
        ["change_committed", "converged", "degraded", "recovered"]
    );
    assert_eq!(get(addr, "/readyz").await.0, 200);
    let metrics = get(addr, "/metrics").await.1;
    assert_eq!(metric(&metrics, "strata_source_up"), Some(1.0), "{metrics}");
    assert_eq!(
        metric(&metrics, "strata_alerts_sent_total{type=\"degraded\"}"),
        Some(1.0),
        "{metrics}"
    );
    stop.cancel();
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_stack_locked_by_another_process_alerts_once_and_backs_off() {
    let c = Cluster::start().await;
    let repo = kube_repo(c.dir.path(), &c.kubeconfig);
    let (alerts, got) = receiver().await;
    let state = c.dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // Another writer: flock holds the stack's lock until its stdin closes.
    let mut holder = tokio::process::Command::new("flock")
        .args(["-o", state.join("lock").to_str().unwrap(), "cat"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    until("the other writer holds the lock", 30, || {
        strata::state::lock::Lock::try_acquire(&state, "the test")
            .unwrap()
            .is_none()
    })
    .await;
    let mut o = options(&repo, &state, &alerts);
    o.poll_interval = Some(Duration::from_secs(1));
    let addr = o.listen.unwrap();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(Agent::new(o).expect("agent state").run(stop.clone()));
    until("a failed alert", 60, || {
        kinds(&got).contains(&"failed".to_string())
    })
    .await;
    polls(addr, 5).await;
    // Raised back to back and delivered in parallel: the receiver may get them in either order.
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(sorted(kinds(&got)), ["change_committed", "failed"]);
    let failed = got
        .lock()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "failed")
        .cloned()
        .unwrap();
    assert_eq!(failed["stack"], "truth", "{failed}");
    assert!(
        failed["summary"]
            .as_str()
            .unwrap()
            .contains("the stack is locked"),
        "{failed}"
    );

    // A restarted agent remembers what it alerted on: the same revision and the same failure
    // are not news, and the `converged` that clears the failure is still owed.
    stop.cancel();
    agent.await.unwrap();
    let mut o = options(&repo, &state, &alerts);
    o.poll_interval = Some(Duration::from_secs(1));
    let addr = o.listen.unwrap();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(Agent::new(o).expect("agent state").run(stop.clone()));
    polls(addr, 5).await;
    assert_eq!(
        sorted(kinds(&got)),
        ["change_committed", "failed"],
        "nothing new after a restart"
    );
    let conditions = status(addr).await["conditions"].clone();
    assert!(
        conditions
            .as_array()
            .is_some_and(|c| c.iter().any(|a| a["key"] == "sync")),
        "{conditions}"
    );

    drop(holder.stdin.take());
    holder.kill().await.ok();
    holder.wait().await.unwrap();
    until("converged once the lock is free", 120, || {
        kinds(&got).contains(&"converged".to_string())
    })
    .await;
    assert_eq!(
        sorted(kinds(&got)),
        ["change_committed", "converged", "failed"]
    );
    assert_eq!(kinds(&got)[2], "converged");
    stop.cancel();
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn drift_is_measured_against_the_revision_applied_and_a_failed_one_is_pending() {
    let dir = tempfile::tempdir().unwrap();
    let r = Repo {
        dir: dir.path().join("repo"),
    };
    r.write(
        "strata.hcl",
        "stack \"pending\" {}\nterraform \"gate\" {\n  source = \"gate\"\n}\nterraform \"base\" {\n  source     = \"base\"\n  depends_on = [terraform.gate]\n}\n",
    );
    r.write(
        "gate/main.tf",
        &format!("{NULL}resource \"null_resource\" \"g\" {{}}\n"),
    );
    r.write(
        "base/main.tf",
        &format!("{NULL}resource \"null_resource\" \"a\" {{}}\n"),
    );
    r.git(&["init", "-q", "-b", "main"]);
    r.commit("first");
    let (alerts, got) = receiver().await;
    let state = dir.path().join("state");
    let mut o = options(&r, &state, &alerts);
    o.poll_interval = Some(Duration::from_secs(1));
    o.drift_interval = Some(Duration::from_secs(1));
    let addr = o.listen.unwrap();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(Agent::new(o).expect("agent state").run(stop.clone()));
    until("the first sync converged", 120, || {
        kinds(&got).contains(&"converged".to_string())
    })
    .await;
    // R2: base gains a resource, and gate fails to plan, so base is never applied at R2.
    r.write(
        "gate/main.tf",
        &format!("{NULL}resource \"null_resource\" \"g\" {{}}\noutput \"x\" {{ value = file(\"missing\") }}\n"),
    );
    r.write(
        "base/main.tf",
        &format!(
            "{NULL}resource \"null_resource\" \"a\" {{}}\nresource \"null_resource\" \"b\" {{}}\n"
        ),
    );
    let r2 = r.commit("second");
    until("R2 failed", 120, || {
        kinds(&got).contains(&"failed".to_string())
    })
    .await;
    until_status(addr, "base pending R2", |s| {
        s["layers"]["terraform.base"]["state"] == "pending"
    })
    .await;
    let s = status(addr).await;
    assert_eq!(
        s["layers"]["terraform.base"]["revision"],
        r2.as_str(),
        "{s}"
    );
    let checks = |s: &Value| s["last_drift_check"].as_str().unwrap_or("").to_string();
    let seen = checks(&s);
    until_status(addr, "another drift check", |s| checks(s) != seen).await;
    let mut all = kinds(&got);
    // R2's two alerts are delivered in parallel, in either order.
    all[2..].sort();
    assert_eq!(
        all,
        [
            "change_committed",
            "converged",
            "change_committed",
            "failed"
        ],
        "no diff for a resource R2 adds and never applied"
    );
    let metrics = get(addr, "/metrics").await.1;
    let series = "strata_layer_observed{layer=\"terraform.base\",state=\"pending\"}";
    assert_eq!(metric(&metrics, series), Some(1.0), "{metrics}");
    stop.cancel();
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_apply_exits_130_after_the_graceful_stop() {
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("stack");
    std::fs::create_dir_all(stack.join("slow")).unwrap();
    std::fs::write(
        stack.join("strata.hcl"),
        "stack \"slow\" {}\nterraform \"slow\" {\n  source = \"slow\"\n}\n",
    )
    .unwrap();
    std::fs::write(
        stack.join("slow/main.tf"),
        format!("{NULL}resource \"null_resource\" \"s\" {{\n  provisioner \"local-exec\" {{\n    command = \"sleep 61.37\"\n  }}\n}}\n"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        repo_root().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = tokio::process::Command::new(assert_cmd::cargo::cargo_bin("strata"))
        .args([
            "apply",
            "--stack",
            "stack",
            "--state-dir",
            "state",
            "--auto-approve",
        ])
        .current_dir(dir.path())
        .env("TF_CLI_CONFIG_FILE", repo_root().join("bin/terraformrc"))
        .env("PATH", path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    until("the apply runs", 90, || {
        processes().iter().any(|p| p.contains("61.37"))
    })
    .await;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(90), child.wait())
        .await
        .expect("stopped in time")
        .unwrap();
    assert_eq!(status.code(), Some(130), "interrupted, as documented");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_layer_removed_from_the_stack_alerts_once_and_is_destroyed_only_when_approved() {
    let c = Cluster::start().await;
    let repo = Repo::new(c.dir.path(), &c.kubeconfig);
    let (alerts, got) = receiver().await;
    let state = c.dir.path().join("state");
    let mut o = options(&repo, &state, &alerts);
    o.poll_interval = Some(Duration::from_secs(1));
    let addr = o.listen.unwrap();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(Agent::new(o).expect("agent state").run(stop.clone()));
    until("the first sync converged", 120, || {
        kinds(&got).contains(&"converged".to_string())
    })
    .await;

    // terraform.net leaves strata.hcl (and the layer that depended on it stops depending).
    let hcl = std::fs::read_to_string(repo.dir.join("strata.hcl")).unwrap();
    let hcl = hcl
        .replace("terraform \"net\" {\n  source = \"net\"\n}\n", "")
        .replace("  depends_on = [terraform.net]\n", "");
    repo.write("strata.hcl", &hcl);
    repo.commit("drop net");
    let orphaned = |got: &std::sync::Arc<std::sync::Mutex<Vec<Value>>>| {
        got.lock()
            .unwrap()
            .iter()
            .filter(|a| a["condition"] == "orphaned terraform.net")
            .cloned()
            .collect::<Vec<_>>()
    };
    until("an orphaned alert", 120, || !orphaned(&got).is_empty()).await;
    polls(addr, 3).await;
    let alert = orphaned(&got);
    assert_eq!(alert.len(), 1, "one alert: {alert:?}");
    assert_eq!(alert[0]["type"], "diff", "{alert:?}");
    let s = status(addr).await;
    assert_eq!(s["awaiting_approval"][0]["layer"], "terraform.net", "{s}");
    assert_eq!(
        s["awaiting_approval"][0]["plan"], s["stack"]["layers"]["terraform.net"]["awaiting_plan"],
        "the orphan's destroy waits with its digest: {s}"
    );
    let tfstate = state.join("layers/net/terraform.tfstate");
    let text = std::fs::read_to_string(&tfstate).unwrap();
    assert!(
        text.contains("null_resource"),
        "nothing destroyed unasked: {text}"
    );

    strata_cli(
        &repo_root(),
        &[
            "approve",
            "terraform.net",
            "--state-dir",
            state.to_str().unwrap(),
        ],
    )
    .await
    .code(0);
    until_status(addr, "the orphan destroyed", |s| {
        s["awaiting_approval"] == serde_json::json!([])
    })
    .await;
    let text = std::fs::read_to_string(&tfstate).unwrap_or_default();
    assert!(
        !text.contains("null_resource"),
        "destroyed once approved: {text}"
    );
    assert_eq!(orphaned(&got).len(), 1, "still one alert");
    stop.cancel();
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn resume_and_a_new_pin_wake_the_agent_without_waiting_for_its_poll() {
    let c = Cluster::start().await;
    let repo = kube_repo(c.dir.path(), &c.kubeconfig);
    let (alerts, got) = receiver().await;
    let state = c.dir.path().join("state");
    let o = options(&repo, &state, &alerts); // polls once an hour
    let addr = o.listen.unwrap();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(Agent::new(o).expect("agent state").run(stop.clone()));
    until("the first sync converged", 90, || {
        kinds(&got).contains(&"converged".to_string())
    })
    .await;
    let first = repo.git(&["rev-parse", "HEAD"]);
    strata::state::pin::write(&state, &first).unwrap();
    until_status(addr, "the pin taken", |s| s["pinned"] == first.as_str()).await;
    strata_cli(
        &repo_root(),
        &["resume", "--state-dir", state.to_str().unwrap()],
    )
    .await
    .code(0);
    until_status(addr, "the pin gone", |s| s["pinned"].is_null()).await;
    stop.cancel();
    agent.await.unwrap();
}
