//! `strata run`, the agent: polling, webhooks, drift policy, alerts, metrics, refused revisions,
//! rollback, shutdown.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use strata::agent::{Agent, AgentOptions, Ended};
use strata::notify::{AgentConfig, Sink};
use strata::redact::Redacted;
use strata::source::{SourceOptions, SourceSpec};
use tokio_util::sync::CancellationToken;

use crate::support::{free_port, repo_root, strata_cli, Cluster, Postgres};

pub(crate) const NULL: &str =
    "terraform {\n  required_providers {\n    null = { source = \"hashicorp/null\" }\n  }\n}\n";

/// A Git repository holding a stack: one Terraform layer, two Kubernetes layers (one reports
/// drift, one corrects it).
pub(crate) struct Repo {
    pub(crate) dir: PathBuf,
}

impl Repo {
    pub(crate) fn new(root: &Path, kubeconfig: &Path) -> Repo {
        let dir = root.join("repo");
        let r = Repo { dir };
        r.write("strata.hcl", &format!(
            "stack \"agent\" {{\n  alert_after = \"0s\"\n}}\nterraform \"net\" {{\n  source = \"net\"\n}}\ncluster \"main\" {{\n  kubeconfig_path = \"{}\"\n}}\nkubernetes \"watched\" {{\n  source     = \"k8s/watched\"\n  cluster    = cluster.main\n  namespace  = \"default\"\n  depends_on = [terraform.net]\n  drift      = \"report\"\n}}\nkubernetes \"guarded\" {{\n  source    = \"k8s/guarded\"\n  cluster   = cluster.main\n  namespace = \"default\"\n  drift     = \"correct\"\n}}\n",
            kubeconfig.display()
        ));
        r.write(
            "net/main.tf",
            &format!(
                "{NULL}resource \"null_resource\" \"n\" {{}}\noutput \"id\" {{ value = \"n\" }}\n"
            ),
        );
        r.write("k8s/watched/cm.yaml", &cm("watched", "blue"));
        r.write("k8s/guarded/cm.yaml", &cm("guarded", "blue"));
        r.git(&["init", "-q", "-b", "main"]);
        r.commit("first");
        r
    }

    pub(crate) fn write(&self, path: &str, text: &str) {
        let p = self.dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub(crate) fn git(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(&self.dir)
            .env("GIT_AUTHOR_NAME", "Ana")
            .env("GIT_AUTHOR_EMAIL", "ana@example.com")
            .env("GIT_COMMITTER_NAME", "Ana")
            .env("GIT_COMMITTER_EMAIL", "ana@example.com")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub(crate) fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-qm", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

pub(crate) fn cm(name: &str, color: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  color: {color}\n")
}

/// An HTTP receiver for webhook alerts.
pub(crate) async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, got)
}

pub(crate) fn options(repo: &Repo, state: &Path, alerts: &str) -> AgentOptions {
    let spec = SourceSpec {
        url: repo.dir.display().to_string(),
        reference: None,
        path: None,
    };
    let mut o = AgentOptions::new(spec, SourceOptions::new(state));
    o.terraform_env = vec![(
        "TF_CLI_CONFIG_FILE".into(),
        repo_root().join("bin/terraformrc").into(),
    )];
    o.config = AgentConfig {
        sinks: vec![Sink::Webhook {
            name: "test".into(),
            url: Redacted::new(alerts.to_string()),
        }],
        writeback_notes: false,
    };
    o.listen = Some(free_port());
    o.poll_interval = Some(Duration::from_secs(3600));
    o.drift_interval = Some(Duration::from_secs(3600));
    o
}

pub(crate) async fn until<F: Fn() -> bool>(what: &str, secs: u64, f: F) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn kinds(got: &Arc<Mutex<Vec<Value>>>) -> Vec<String> {
    got.lock()
        .unwrap()
        .iter()
        .map(|v| v["type"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn color(c: &Cluster, name: &str) -> String {
    c.kubectl(&["get", "cm", name, "-o", "jsonpath={.data.color}"])
        .await
        .stdout
}

async fn wait_color(c: &Cluster, name: &str, want: &str, secs: u64) {
    let start = Instant::now();
    loop {
        if color(c, name).await == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{name} never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn signed_webhooks_trigger_a_sync_and_unsigned_ones_are_rejected() {
    let c = Cluster::start().await;
    let repo = Repo::new(c.dir.path(), &c.kubeconfig);
    let (alerts, got) = receiver().await;
    let state = c.dir.path().join("state");
    let mut o = options(&repo, &state, &alerts);
    o.webhook_secret = Some(Redacted::new(b"s3cret-hook".to_vec()));
    let addr = o.listen.unwrap();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(Agent::new(o).expect("agent state").run(stop.clone()));
    until("the first sync converged", 90, || {
        kinds(&got).contains(&"converged".to_string())
    })
    .await;
    assert_eq!(kinds(&got), ["change_committed", "converged"]);
    let first = got.lock().unwrap()[0].clone();
    assert_eq!(
        first["summary"],
        "new revision: \"first\" by Ana <ana@example.com>"
    );
    assert_eq!(color(&c, "watched").await, "blue");
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    repo.write("k8s/watched/cm.yaml", &cm("watched", "green"));
    let second = repo.commit("green");
    let body = format!("{{\"after\": \"{second}\"}}");
    let unsigned = http
        .post(format!("http://{addr}/hooks/git"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let forged = http
        .post(format!("http://{addr}/hooks/git"))
        .header("X-Hub-Signature-256", "sha256=00")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        color(&c, "watched").await,
        "blue",
        "nothing fetched on a bad signature"
    );

    let sig = strata::hash::hex(&strata::server::hmac_sha256(
        b"s3cret-hook",
        body.as_bytes(),
    ));
    let signed = http
        .post(format!("http://{addr}/hooks/git"))
        .header("X-Hub-Signature-256", format!("sha256={sig}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 202);
    wait_color(&c, "watched", "green", 60).await;
    until("the second converged alert", 30, || {
        kinds(&got).iter().filter(|k| *k == "converged").count() == 2
    })
    .await;
    assert_eq!(
        kinds(&got),
        [
            "change_committed",
            "converged",
            "change_committed",
            "converged"
        ]
    );

    let status: Value = http
        .get(format!("http://{addr}/api/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["revision"], second);
    assert_eq!(
        status["stack"]["layers"]["kubernetes.watched"]["last_result"],
        "converged"
    );
    let metrics = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("strata_revision_info{{revision=\"{second}\"}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "strata_layer_results_total{layer=\"kubernetes.watched\",result=\"applied\"} 2"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("strata_layer_apply_duration_seconds_count{layer=\"terraform.net\"} 1"),
        "{metrics}"
    );
    assert!(metrics.trim_end().ends_with("# EOF"), "OpenMetrics text");
    stop.cancel();
    assert_eq!(agent.await.unwrap(), Ended::Clean);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn polling_picks_up_commits_and_a_broken_one_keeps_the_last_good_revision() {
    let c = Cluster::start().await;
    let repo = Repo::new(c.dir.path(), &c.kubeconfig);
    let (alerts, got) = receiver().await;
    let state = c.dir.path().join("state");
    let mut o = options(&repo, &state, &alerts);
    o.poll_interval = Some(Duration::from_secs(1));
    let addr = o.listen.unwrap();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(Agent::new(o).expect("agent state").run(stop.clone()));
    until("the first sync converged", 90, || {
        kinds(&got).contains(&"converged".to_string())
    })
    .await;

    repo.write("k8s/guarded/cm.yaml", &cm("guarded", "green"));
    let good = repo.commit("green");
    wait_color(&c, "guarded", "green", 60).await;

    repo.write("strata.hcl", "stack \"agent\" {\n  paralelism = 2\n}\n");
    let broken = repo.commit("broken");
    until("the broken revision refused", 30, || {
        kinds(&got).iter().filter(|k| *k == "failed").count() == 1
    })
    .await;
    let status: Value = reqwest::get(format!("http://{addr}/api/v1/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["refused"]["revision"], broken);
    assert!(
        status["refused"]["reason"]
            .as_str()
            .unwrap()
            .contains("unknown attribute \"paralelism\""),
        "{status}"
    );
    assert_eq!(status["revision"], good, "still on the last good revision");
    assert_eq!(color(&c, "guarded").await, "green");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        kinds(&got).iter().filter(|k| *k == "failed").count(),
        1,
        "refused once, not on every poll"
    );
    stop.cancel();
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn drift_is_reported_under_report_and_reverted_under_correct() {
    let c = Cluster::start().await;
    let repo = Repo::new(c.dir.path(), &c.kubeconfig);
    let (alerts, got) = receiver().await;
    let state = c.dir.path().join("state");
    let mut o = options(&repo, &state, &alerts);
    o.drift_interval = Some(Duration::from_secs(1));
    let addr = o.listen.unwrap();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(Agent::new(o).expect("agent state").run(stop.clone()));
    until("the first sync converged", 90, || {
        kinds(&got).contains(&"converged".to_string())
    })
    .await;

    for name in ["watched", "guarded"] {
        c.kubectl(&[
            "patch",
            "cm",
            name,
            "--type=merge",
            "-p",
            r#"{"data":{"color":"red"}}"#,
        ])
        .await
        .code(0);
    }
    wait_color(&c, "guarded", "blue", 60).await;
    until("a diff alert", 30, || {
        kinds(&got).contains(&"diff".to_string())
    })
    .await;
    let diff = got
        .lock()
        .unwrap()
        .iter()
        .find(|v| v["type"] == "diff")
        .cloned()
        .unwrap();
    assert_eq!(diff["layers"], serde_json::json!(["kubernetes.watched"]));
    assert_eq!(
        color(&c, "watched").await,
        "red",
        "report only: the edit stays"
    );

    let latest = state.join("reports/latest.json");
    until("a report naming the correction", 30, || {
        std::fs::read_to_string(&latest)
            .is_ok_and(|t| t.contains("\"corrected\"") || t.contains("kubernetes.watched"))
    })
    .await;
    let report = strata_cli(
        c.dir.path(),
        &["report", "--state-dir", state.to_str().unwrap()],
    )
    .await
    .code(0);
    assert!(
        report.stdout.contains("kubernetes.watched"),
        "{}",
        report.stdout
    );
    assert!(
        report.stdout.contains(".data.color: \"red\" → \"blue\""),
        "{}",
        report.stdout
    );
    let md = std::fs::read_to_string(state.join("reports/latest.md")).unwrap();
    assert!(md.contains("| `kubernetes.watched` | drifted |"), "{md}");
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("strata_layer_drift{layer=\"kubernetes.watched\"} 1"),
        "{metrics}"
    );

    // Put it back by hand: converged again.
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
    until("converged after the drift", 30, || {
        kinds(&got).iter().filter(|k| *k == "converged").count() >= 2
    })
    .await;
    stop.cancel();
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn rollback_pins_an_earlier_revision_and_resume_follows_main_again() {
    let c = Cluster::start().await;
    let repo = Repo::new(c.dir.path(), &c.kubeconfig);
    let first = repo.git(&["rev-parse", "HEAD"]);
    repo.write("k8s/watched/cm.yaml", &cm("watched", "green"));
    repo.commit("green");
    let state = c.dir.path().join("state");
    let work = c.dir.path().to_path_buf();
    let repo_s = repo.dir.display().to_string();
    let st = state.display().to_string();
    let out = strata_cli(
        &work,
        &[
            "apply",
            "--repo",
            &repo_s,
            "--state-dir",
            &st,
            "--auto-approve",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(color(&c, "watched").await, "green");

    let out = strata_cli(
        &work,
        &[
            "rollback",
            "--repo",
            &repo_s,
            "--state-dir",
            &st,
            "--to",
            &first,
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(&format!("pinned at {first}")),
        "{}",
        out.stdout
    );
    assert_eq!(color(&c, "watched").await, "blue");

    // The agent stays pinned while new commits arrive.
    let (alerts, got) = receiver().await;
    let mut o = options(&repo, &state, &alerts);
    o.poll_interval = Some(Duration::from_secs(1));
    let addr = o.listen.unwrap();
    repo.write("k8s/watched/cm.yaml", &cm("watched", "yellow"));
    let third = repo.commit("yellow");
    let stop = CancellationToken::new();
    let agent = tokio::spawn(Agent::new(o).expect("agent state").run(stop.clone()));
    until("a sync", 60, || !kinds(&got).is_empty()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status: Value = reqwest::get(format!("http://{addr}/api/v1/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["pinned"], first);
    assert_eq!(status["latest_seen"], third);
    assert_eq!(color(&c, "watched").await, "blue");

    let out = strata_cli(&work, &["resume", "--state-dir", &st])
        .await
        .code(0);
    assert!(out.stdout.contains("unpinned"), "{}", out.stdout);
    wait_color(&c, "watched", "yellow", 60).await;
    stop.cancel();
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_long_apply_stops_cleanly_leaving_no_terraform() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let r = Repo { dir: repo.clone() };
    r.write(
        "strata.hcl",
        "stack \"slow\" {}\nterraform \"slow\" {\n  source = \"slow\"\n}\n",
    );
    r.write("slow/main.tf", &format!("{NULL}resource \"null_resource\" \"s\" {{\n  provisioner \"local-exec\" {{\n    command = \"sleep 57.91\"\n  }}\n}}\n"));
    r.git(&["init", "-q", "-b", "main"]);
    r.commit("slow");
    let listen = free_port().to_string();
    let path = format!(
        "{}:{}",
        repo_root().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = tokio::process::Command::new(assert_cmd::cargo::cargo_bin("strata"))
        .args([
            "run",
            "--repo",
            repo.to_str().unwrap(),
            "--state-dir",
            "state",
            "--listen",
            &listen,
            "--shutdown-grace",
            "1s",
        ])
        .current_dir(dir.path())
        .env("TF_CLI_CONFIG_FILE", repo_root().join("bin/terraformrc"))
        .env("PATH", path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the provisioner's sleep runs.
    let start = Instant::now();
    while !processes().iter().any(|p| p.contains("57.91")) {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the apply never started"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("stopped in time")
        .unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "interrupted after the grace period"
    );
    let left: Vec<String> = processes()
        .into_iter()
        .filter(|p| p.contains("57.91"))
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
    assert!(
        strata::state::lock::Lock::try_acquire(&dir.path().join("state"), "the test")
            .unwrap()
            .is_some(),
        "the lock is released"
    );
}

pub(crate) fn processes() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .filter(|s| !s.trim().is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn disaster_recovery_rebuilds_a_lost_cluster_from_git_without_recreating_terraform_resources()
{
    let pg = Postgres::start();
    let work = tempfile::tempdir().unwrap();
    let addr = free_port();
    let token = "dr-token-0123456789".to_string();
    let opts = || devcluster::DevClusterOptions {
        listen: addr,
        token: Some(token.clone()),
        ..Default::default()
    };
    let c = Cluster::with(opts()).await;
    let kubeconfig = work.path().join("cluster.kubeconfig");
    c.dev.write_kubeconfig(&kubeconfig).unwrap();

    let repo = Repo {
        dir: work.path().join("repo"),
    };
    repo.write("strata.hcl", &format!(
        "stack \"dr\" {{}}\nterraform \"cluster\" {{\n  source = \"cluster\"\n  backend_config = {{ conn_str = \"{}\" }}\n  vars = {{ kubeconfig_path = \"{}\" }}\n}}\ncluster \"main\" {{\n  kubeconfig = terraform.cluster.outputs.kubeconfig\n}}\nkubernetes \"apps\" {{\n  source    = \"apps\"\n  cluster   = cluster.main\n  namespace = \"apps\"\n}}\n",
        pg.conn_str(),
        kubeconfig.display()
    ));
    repo.write("cluster/main.tf", "terraform {\n  backend \"pg\" {}\n  required_providers {\n    null = { source = \"hashicorp/null\" }\n  }\n}\nvariable \"kubeconfig_path\" { type = string }\nresource \"null_resource\" \"cluster\" {}\noutput \"kubeconfig\" {\n  value     = file(var.kubeconfig_path)\n  sensitive = true\n}\n");
    repo.write(
        "apps/all.yaml",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n---\n{}",
            cm("settings", "blue")
        ),
    );
    repo.git(&["init", "-q", "-b", "main"]);
    repo.commit("dr stack");
    let repo_s = repo.dir.display().to_string();
    let boot = [
        "bootstrap",
        "--repo",
        repo_s.as_str(),
        "--state-dir",
        "state",
    ];

    let out = strata_cli(work.path(), &boot).await;
    assert_eq!(out.code, 0, "{out:?}");
    // It says what it did: converged, at which commit, and every layer.
    assert!(
        out.stdout
            .contains("bootstrap of stack \"dr\": converged at"),
        "{out:?}"
    );
    assert!(out.stdout.contains("terraform.cluster"), "{out:?}");
    let first = strata_cli(work.path(), &["history", "--state-dir", "state", "--json"])
        .await
        .code(0);
    let runs: Vec<Value> = serde_json::from_str(&first.stdout).unwrap();
    assert_eq!(runs[0]["layers"][0]["counts"], "+1 ~0 -0");
    c.kubectl(&["get", "cm", "settings", "-n", "apps"])
        .await
        .code(0);

    // Disaster: the cluster is lost (no data file) and so is strata's state dir.
    c.dev.stop().await;
    std::fs::remove_dir_all(work.path().join("state")).unwrap();
    let c2 = Cluster::with(opts()).await;
    c2.dev.write_kubeconfig(&kubeconfig).unwrap();
    assert_ne!(
        c2.kubectl(&["get", "cm", "settings", "-n", "apps"])
            .await
            .code,
        0,
        "the new cluster is empty"
    );

    let out = strata_cli(work.path(), &boot).await;
    assert_eq!(out.code, 0, "{out:?}");
    let again = strata_cli(work.path(), &["history", "--state-dir", "state", "--json"])
        .await
        .code(0);
    let runs: Vec<Value> = serde_json::from_str(&again.stdout).unwrap();
    let tf = &runs.last().unwrap()["layers"][0];
    assert_eq!(tf["layer"], "terraform.cluster");
    assert!(
        tf["counts"].as_str().unwrap().starts_with("+0 "),
        "nothing created twice: {tf}"
    );
    let cmv = c2
        .kubectl(&[
            "get",
            "cm",
            "settings",
            "-n",
            "apps",
            "-o",
            "jsonpath={.data.color}",
        ])
        .await
        .code(0);
    assert_eq!(cmv.stdout, "blue", "the lost cluster's objects are back");
    let diff = strata_cli(
        work.path(),
        &["diff", "--repo", &repo_s, "--state-dir", "state"],
    )
    .await;
    assert_eq!(diff.code, 0, "{diff:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_manual_layer_waits_for_approval_through_the_running_agent() {
    let dir = tempfile::tempdir().unwrap();
    let r = Repo {
        dir: dir.path().join("repo"),
    };
    r.write(
        "strata.hcl",
        "stack \"gated\" {}\nterraform \"gate\" {\n  source = \"x\"\n  apply  = \"manual\"\n}\n",
    );
    r.write(
        "x/main.tf",
        &format!("{NULL}resource \"null_resource\" \"g\" {{}}\n"),
    );
    r.git(&["init", "-q", "-b", "main"]);
    r.commit("gated");
    let (alerts, got) = receiver().await;
    let state = dir.path().join("state");
    let mut o = options(&r, &state, &alerts);
    o.api_token = Some(Redacted::new(b"0123456789abcdef0123".to_vec()));
    let token = dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
    let addr = o.listen.unwrap();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(Agent::new(o).expect("agent state").run(stop.clone()));
    until("the first sync", 90, || {
        kinds(&got).contains(&"converged".to_string())
    })
    .await;
    let status: Value = reqwest::get(format!("http://{addr}/api/v1/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let waiting = &status["awaiting_approval"];
    assert_eq!(waiting.as_array().map(Vec::len), Some(1), "{status}");
    assert_eq!(waiting[0]["layer"], "terraform.gate");
    let plan = waiting[0]["plan"].as_str().unwrap().to_string();
    assert_eq!(plan.len(), 16, "{waiting}");
    assert_eq!(
        status["stack"]["layers"]["terraform.gate"]["awaiting_plan"],
        plan.as_str(),
        "status.json records the plan that waits"
    );
    let summary = got.lock().unwrap().last().unwrap()["summary"].clone();
    assert_eq!(
        summary,
        "converged, except layers awaiting approval: terraform.gate"
    );

    let out = strata_cli(
        dir.path(),
        &[
            "approve",
            "terraform.gate",
            "--agent",
            &format!("http://{addr}"),
            "--api-token-file",
            token.to_str().unwrap(),
            "--plan",
            &plan,
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    until("the approved apply", 60, || {
        kinds(&got).iter().filter(|k| *k == "converged").count() >= 2
    })
    .await;
    let status: Value = reqwest::get(format!("http://{addr}/api/v1/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["awaiting_approval"], serde_json::json!([]));
    assert_eq!(
        status["stack"]["layers"]["terraform.gate"]["last_result"],
        "converged"
    );
    assert!(
        !state.join("approvals/terraform.gate").exists(),
        "an approval is used once"
    );
    assert!(
        status["stack"]["layers"]["terraform.gate"]["awaiting_plan"].is_null(),
        "{status}"
    );
    stop.cancel();
    agent.await.unwrap();
}
