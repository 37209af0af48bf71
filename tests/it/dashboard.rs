//! The dashboard in a real browser (headless Chromium) against an agent converging a devcluster
//! stack: every layer's name and state in words, an out-of-band change shown as drift with its
//! field, an approval given with the API token from the page, and no sensitive value anywhere in
//! what the page rendered. Screenshots are saved under `target/`.

use std::time::{Duration, Instant};

use serde_json::Value;
use strata::agent::Agent;
use strata::redact::Redacted;
use tokio_util::sync::CancellationToken;

use crate::agent::{cm, kinds, options, receiver, until, Repo, NULL};
use crate::browser::Browser;
use crate::support::Cluster;

const TOKEN: &str = "dashboard-token-0123456789abcdef";
/// A sensitive Terraform output, substituted into a Secret.
const PLANTED: &str = "planted-sensitive-7f3a9c";
/// What someone writes into that Secret by hand: as secret as what strata put there.
const BY_HAND: &str = "by-hand-secret-51e0d2";

fn stack(r: &Repo, kubeconfig: &std::path::Path) {
    r.write(
        "strata.hcl",
        &format!(
            "stack \"board\" {{\n  alert_after = \"0s\"\n}}\nterraform \"gen\" {{\n  source = \"gen\"\n}}\ncluster \"main\" {{\n  kubeconfig_path = \"{}\"\n}}\nkubernetes \"app\" {{\n  source    = \"app\"\n  cluster   = cluster.main\n  namespace = \"board\"\n  vars      = {{ token = terraform.gen.outputs.token }}\n  drift     = \"report\"\n}}\nterraform \"gate\" {{\n  source = \"gate\"\n  apply  = \"manual\"\n}}\n",
            kubeconfig.display()
        ),
    );
    r.write(
        "gen/main.tf",
        &format!("output \"token\" {{\n  value     = \"{PLANTED}\"\n  sensitive = true\n}}\n"),
    );
    r.write(
        "gate/main.tf",
        &format!("{NULL}resource \"null_resource\" \"g\" {{}}\n"),
    );
    r.write(
        "app/ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: board\n",
    );
    r.write("app/cm.yaml", &cm("app", "blue"));
    r.write(
        "app/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  token: ${token}\n",
    );
}

async fn api(addr: std::net::SocketAddr, path: &str) -> Value {
    reqwest::get(format!("http://{addr}{path}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn assert_no_secret(what: &str, text: &str) {
    for s in [PLANTED, BY_HAND, TOKEN] {
        assert!(!text.contains(s), "{what} shows a secret value ({s})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn the_dashboard_shows_states_and_drift_approves_with_the_token_and_leaks_nothing() {
    let c = Cluster::start().await;
    let repo = Repo {
        dir: c.dir.path().join("repo"),
    };
    stack(&repo, &c.kubeconfig);
    repo.git(&["init", "-q", "-b", "main"]);
    repo.commit("a board with a gate");
    let (alerts, got) = receiver().await;
    let state = c.dir.path().join("state");
    let mut o = options(&repo, &state, &alerts);
    o.api_token = Some(Redacted::new(TOKEN.as_bytes().to_vec()));
    o.drift_interval = Some(Duration::from_secs(1));
    let addr = o.listen.unwrap();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(Agent::new(o).expect("agent state").run(stop.clone()));
    until("the first sync", 120, || {
        kinds(&got).contains(&"converged".to_string())
    })
    .await;

    let b = Browser::start(1280, 900).await;
    let base = format!("http://{addr}/");
    b.goto(&base).await;
    // Every layer, in the graph and in the table, with its state in words as the API gives it.
    let expected = [
        ("terraform.gen", "in sync"),
        ("kubernetes.app", "in sync"),
        ("terraform.gate", "awaiting approval"),
    ];
    let start = Instant::now();
    loop {
        let mut missing = Vec::new();
        for (layer, words) in expected {
            let row = b.text(&format!("tr[data-layer=\"{layer}\"]")).await;
            if !(row.contains(layer) && row.contains(words)) {
                missing.push(format!("{layer} {words}: row {row:?}"));
            }
            let bx = b
                .text(&format!("svg a[data-layer=\"{layer}\"] .words"))
                .await;
            if bx != words {
                missing.push(format!("{layer} box says {bx:?}"));
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the page does not show {missing:?}; it shows: {}",
            b.text("body").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let overview = api(addr, "/api/v1/overview").await;
    assert_eq!(
        overview["graph"]["edges"][0]["labels"][0], "outputs.token",
        "{overview}"
    );
    assert!(b.dom().await.contains("outputs.token"), "the edge's label");
    assert_no_secret("the overview", &b.dom().await);

    // Out of band: a ConfigMap's field and the Secret's value change by hand.
    b.goto(&format!("{base}#/layer/kubernetes.app")).await;
    b.until("the layer page", 60, |d| d.contains("id=\"layer-state\""))
        .await;
    c.kubectl(&[
        "patch",
        "cm",
        "app",
        "-n",
        "board",
        "--type=merge",
        "-p",
        r#"{"data":{"color":"red"}}"#,
    ])
    .await
    .code(0);
    c.kubectl(&[
        "patch",
        "secret",
        "creds",
        "-n",
        "board",
        "--type=merge",
        "-p",
        &format!(r#"{{"stringData":{{"token":"{BY_HAND}"}}}}"#),
    ])
    .await
    .code(0);
    let changed = Instant::now();
    // The agent checks every second and the page polls every second: a few seconds at most,
    // waited for with a bound that a loaded machine cannot trip.
    let dom = b
        .until("the drift with its field", 60, |d| {
            // Both changes: a drift check may run between the two patches (a loaded machine).
            d.contains("data-field=\".data.color\"")
                && d.contains("data-state=\"drifted\"")
                && d.contains("*** (changed)")
        })
        .await;
    eprintln!(
        "the page showed the drift {:.1}s after the change",
        changed.elapsed().as_secs_f64()
    );
    let state_text = b.text("#layer-state").await;
    assert!(state_text.contains("drifted"), "{state_text}");
    let drift = b.text("#drift").await;
    assert!(drift.contains(".data.color"), "{drift}");
    assert!(drift.contains("\"red\""), "the live value: {drift}");
    assert!(drift.contains("\"blue\""), "the value in Git: {drift}");
    assert!(
        drift.contains("*** (changed)"),
        "the Secret's change, masked: {drift}"
    );
    assert_no_secret("the drifted layer's page", &dom);
    b.goto(&base).await;
    b.until("the drifted box", 30, |d| {
        d.contains("data-layer=\"kubernetes.app\" data-state=\"drifted\"")
    })
    .await;
    let shot = b.screenshot("dashboard.png").await;
    eprintln!("screenshot: {}", shot.display());
    for page in ["#/layer/terraform.gen", "#/history"] {
        b.goto(&format!("{base}{page}")).await;
        let dom = b
            .until(page, 60, |d| {
                d.contains("id=\"layer-name\"") || d.contains("<h2>History</h2>")
            })
            .await;
        assert_no_secret(page, &dom);
    }

    // The manual layer: an Approve button; a wrong token is refused, the right one applies it.
    b.goto(&format!("{base}#/layer/terraform.gate")).await;
    let plan = overview["awaiting_approval"][0]["plan"]
        .as_str()
        .unwrap()
        .to_string();
    b.until("the Approve button", 60, |d| {
        d.contains("id=\"approve\"") && d.contains(&plan)
    })
    .await;
    b.type_into("#token", "not-the-token").await;
    b.click("#approve").await;
    b.until("the refusal", 30, |d| d.contains("wrong bearer token"))
        .await;
    b.type_into("#token", TOKEN).await;
    b.click("#approve").await;
    b.until("the approval taken", 30, |d| {
        d.contains("Approved: the agent applies this plan now.")
    })
    .await;
    let dom = b
        .until("the gate applied", 120, |d| {
            d.contains("<dd id=\"layer-state\"><span class=\"badge s-in_sync\"")
        })
        .await;
    assert_no_secret("the approved layer's page", &dom);
    let gate = api(addr, "/api/v1/layers/terraform.gate").await;
    assert_eq!(gate["last_run"]["command"], "apply", "{gate}");
    assert!(gate["awaiting"].is_null(), "{gate}");
    b.set_phone().await;
    b.goto(&base).await;
    b.until("the phone layout", 30, |d| d.contains("terraform.gate"))
        .await;
    b.screenshot("dashboard-phone.png").await;
    for path in [
        "/api/v1/overview",
        "/api/v1/layers/kubernetes.app",
        "/api/v1/history",
    ] {
        assert_no_secret(path, &api(addr, path).await.to_string());
    }
    stop.cancel();
    agent.await.unwrap();
}
