//! The dashboard while the agent works: a layer shows *applying* for as long as the agent runs
//! it (in the JSON and in a real browser), then what it is once done; and an agent converging
//! several environments shows one tab per environment, each with its own graph.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use strata::agent::{run_fleet, Agent};
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
    let envs = api(addr, "/api/v1/environments").await;
    assert_eq!(
        envs["environments"],
        serde_json::json!([]),
        "a stack without environments has none to list: {envs}"
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
    assert!(b.text("#envs").await.is_empty(), "one environment: no tabs");
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

/// The environment the page shows: its current tab's name.
async fn current_tab(b: &Browser) -> String {
    b.text("#envs a[aria-current=\"page\"] .env").await
}

/// Waits until the page shows `env`'s tab as current and the gate's box says `words`.
async fn until_tab(b: &Browser, env: &str, words: &str) {
    let start = Instant::now();
    loop {
        let (tab, gate) = (
            current_tab(b).await,
            b.text("svg a[data-layer=\"terraform.gate\"] .words").await,
        );
        if tab == env && gate == words {
            let url = b.client.current_url().await.expect("the address");
            assert_eq!(
                url.query(),
                Some(format!("env={env}").as_str()),
                "the address names the environment shown, to share or reload"
            );
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the page does not show {env}'s gate {words}: tab {tab:?}, gate {gate:?}; it shows: {}",
            b.text("body").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn several_environments_show_one_tab_each_with_its_own_graph_live() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo {
        dir: dir.path().join("repo"),
    };
    repo.write(
        "strata.hcl",
        "stack \"tabs\" {}\nenvironment \"dev\" {}\nenvironment \"prod\" {\n  apply = \"manual\"\n}\nterraform \"gate\" {\n  source = \"gate\"\n}\n",
    );
    repo.write(
        "gate/main.tf",
        &format!("{NULL}resource \"null_resource\" \"g\" {{}}\n"),
    );
    repo.git(&["init", "-q", "-b", "main"]);
    repo.commit("two environments");
    let (alerts, _got) = receiver().await;
    let mut o = options(&repo, &dir.path().join("state"), &alerts);
    o.drift_interval = Some(Duration::from_secs(1));
    let addr = o.listen.unwrap();
    let stop = CancellationToken::new();
    let fleet = tokio::spawn(run_fleet(o, stop.clone()));

    // The endpoint the tabs read: each environment by name with its layers' states in words.
    let envs = api_until(addr, "/api/v1/environments", "both settled", 120, |v| {
        v["environments"][0]["state"] == "in_sync"
            && v["environments"][1]["state"] == "awaiting_approval"
    })
    .await;
    let tabs = envs["environments"].as_array().unwrap();
    let names: Vec<&str> = tabs.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["dev", "prod"], "{envs}");
    assert_eq!(tabs[0]["words"], "1 in sync", "{envs}");
    assert_eq!(tabs[0]["ready"], true, "{envs}");
    assert_eq!(tabs[1]["words"], "1 awaiting approval", "{envs}");
    assert_eq!(
        tabs[1]["counts"][0],
        serde_json::json!({"state": "awaiting_approval", "words": "awaiting approval", "layers": 1}),
        "{envs}"
    );

    // No environment in the address: the first tab's, and a tab for each.
    let b = Browser::start(1280, 900).await;
    let base = format!("http://{addr}/");
    b.goto(&base).await;
    until_tab(&b, "dev", "in sync").await;
    let nav = b.text("nav#envs").await;
    assert!(
        nav.contains("dev") && nav.contains("1 in sync"),
        "the tabs say each environment's state in words: {nav:?}"
    );
    assert!(
        nav.contains("prod") && nav.contains("1 awaiting approval"),
        "{nav:?}"
    );
    let dom = b.dom().await;
    assert!(
        dom.contains("<nav id=\"envs\" aria-label=\"environments\">"),
        "the tabs are a labelled nav: {dom}"
    );
    b.screenshot("dashboard-envs.png").await;

    // A click shows prod's graph; the keyboard (Enter on the focused tab) brings dev back.
    b.click("#envs a[data-env=\"prod\"]").await;
    until_tab(&b, "prod", "awaiting approval").await;
    b.client
        .find(fantoccini::Locator::Css("#envs a[data-env=\"dev\"]"))
        .await
        .expect("dev's tab")
        .send_keys("\u{E007}")
        .await
        .expect("press Enter on dev's tab");
    until_tab(&b, "dev", "in sync").await;
    // The browser's Back returns to the environment shown before.
    b.client.back().await.expect("back");
    until_tab(&b, "prod", "awaiting approval").await;

    b.set_phone().await;
    b.goto(&format!("{base}?env=prod")).await;
    until_tab(&b, "prod", "awaiting approval").await;
    b.screenshot("dashboard-envs-phone.png").await;
    stop.cancel();
    fleet.await.unwrap().expect("the agent ran");
}
