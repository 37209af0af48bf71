//! The dashboard while the agent works: a layer shows *applying* for as long as the agent runs
//! it (in the JSON and in a real browser), then what it is once done.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use strata::agent::Agent;
use tokio_util::sync::CancellationToken;

use crate::agent::{options, receiver, Repo, NULL};
use crate::browser::Browser;

async fn api(addr: std::net::SocketAddr, path: &str) -> Value {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{path}");
    r.json().await.unwrap()
}

/// Polls `path` until `f` holds of its JSON; returns it.
async fn api_until(
    addr: std::net::SocketAddr,
    path: &str,
    what: &str,
    secs: u64,
    f: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let v = api(addr, path).await;
        if f(&v) {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}; {path}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn card<'a>(overview: &'a Value, layer: &str) -> &'a Value {
    overview["layers"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["layer"] == layer))
        .unwrap_or(&Value::Null)
}

/// A Terraform layer whose apply waits until `release` exists, and a quick one beside it.
fn held_stack(r: &Repo, release: &Path) {
    r.write(
        "strata.hcl",
        "stack \"live\" {}\nterraform \"slow\" {\n  source = \"slow\"\n}\nterraform \"quick\" {\n  source = \"quick\"\n}\n",
    );
    r.write(
        "slow/main.tf",
        &format!(
            "{NULL}resource \"null_resource\" \"s\" {{\n  provisioner \"local-exec\" {{\n    command = \"while [ ! -f '{}' ]; do sleep 0.1; done\"\n  }}\n}}\n",
            release.display()
        ),
    );
    r.write(
        "quick/main.tf",
        &format!("{NULL}resource \"null_resource\" \"q\" {{}}\n"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_layer_the_agent_runs_shows_applying_live_then_in_sync() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo {
        dir: dir.path().join("repo"),
    };
    let release = dir.path().join("release");
    held_stack(&repo, &release);
    repo.git(&["init", "-q", "-b", "main"]);
    repo.commit("a layer that takes its time");
    let (alerts, _got) = receiver().await;
    let mut o = options(&repo, &dir.path().join("state"), &alerts);
    o.drift_interval = Some(Duration::from_secs(1));
    let addr = o.listen.unwrap();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(Agent::new(o).expect("agent state").run(stop.clone()));

    // While terraform applies it (its provisioner waits), the status API lists it as applying.
    let status = api_until(addr, "/api/v1/status", "slow applying", 120, |s| {
        s["applying"]["terraform.slow"]["step"] == "applying"
    })
    .await;
    assert!(
        status["applying"]["terraform.slow"]["since"].is_string(),
        "{status}"
    );
    let overview = api(addr, "/api/v1/overview").await;
    let slow = card(&overview, "terraform.slow");
    assert_eq!(slow["state"], "applying", "{overview}");
    assert_eq!(slow["words"], "applying", "{overview}");
    assert!(
        slow["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("applying since ")),
        "{overview}"
    );

    let b = Browser::start(1280, 900).await;
    let base = format!("http://{addr}/");
    b.goto(&base).await;
    b.until("the applying box", 30, |d| {
        d.contains("data-layer=\"terraform.slow\" data-state=\"applying\"")
    })
    .await;
    assert_eq!(
        b.text("svg a[data-layer=\"terraform.slow\"] .words").await,
        "applying"
    );
    let row = b.text("tr[data-layer=\"terraform.slow\"]").await;
    assert!(
        row.contains("applying since"),
        "the state in words: {row:?}"
    );
    let header = b.text("#revision").await;
    assert!(
        header.contains(" · applying ") && !header.contains("http"),
        "the header names the revision being applied, as a short link: {header:?}"
    );
    b.screenshot("dashboard-applying.png").await;

    // Once the apply ends, the layer is no longer applying: a drift check finds it in sync.
    std::fs::write(&release, "").unwrap();
    b.until("slow in sync", 120, |d| {
        d.contains("data-layer=\"terraform.slow\" data-state=\"in_sync\"")
    })
    .await;
    let status = api(addr, "/api/v1/status").await;
    assert!(
        status["applying"].get("terraform.slow").is_none(),
        "{status}"
    );
    assert_eq!(
        card(&api(addr, "/api/v1/overview").await, "terraform.slow")["state"],
        "in_sync"
    );
    stop.cancel();
    agent.await.unwrap();
}
