//! Approvals are bound to a plan (issue repro: an approval given while nothing waits approved
//! the next change; the kind was dropped; a cross-site POST was accepted; junk names left files).
//! An approval names a layer with its kind and the digest of the plan it waits with, is refused
//! when nothing waits or another plan waits, and is taken only by the apply of that very plan.

use std::path::Path;

use serde_json::Value;
use strata::agent::Agent;
use strata::redact::Redacted;
use tokio_util::sync::CancellationToken;

use crate::agent::{kinds, options, receiver, until, Repo, NULL};
use crate::support::strata_cli;

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn gated(r: &Repo, trigger: &str) {
    r.write(
        "strata.hcl",
        "stack \"gated\" {}\nterraform \"gated\" {\n  source = \"x\"\n  apply  = \"manual\"\n}\n",
    );
    r.write(
        "x/main.tf",
        &format!(
            "{NULL}resource \"null_resource\" \"g\" {{\n  triggers = {{ v = \"{trigger}\" }}\n}}\n"
        ),
    );
}

/// The id of the resource terraform created last (a replacement gives a new one).
fn resource_id(state: &Path) -> Option<String> {
    let text = std::fs::read_to_string(state.join("layers/gated/terraform.tfstate")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["resources"][0]["instances"][0]["attributes"]["id"]
        .as_str()
        .map(str::to_string)
}

/// The result the newest line of `history.jsonl` records.
fn last_result(state: &Path) -> String {
    let text = std::fs::read_to_string(state.join("history.jsonl")).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    last["result"].as_str().unwrap().to_string()
}

fn approvals(state: &Path) -> Vec<String> {
    std::fs::read_dir(state.join("approvals"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn post(
    addr: std::net::SocketAddr,
    layer: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/approve/{layer}"))
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn status(addr: std::net::SocketAddr) -> Value {
    reqwest::get(format!("http://{addr}/api/v1/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

const AUTH: (&str, &str) = ("authorization", "Bearer 0123456789abcdef0123456789abcdef");
const JSON: (&str, &str) = ("content-type", "application/json");

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn approvals_over_http_cannot_be_forged_given_early_or_reused() {
    let dir = tempfile::tempdir().unwrap();
    let r = Repo {
        dir: dir.path().join("repo"),
    };
    gated(&r, "1");
    r.git(&["init", "-q", "-b", "main"]);
    r.commit("gated");
    let (alerts, got) = receiver().await;
    let state = dir.path().join("state");
    let mut o = options(&r, &state, &alerts);
    o.api_token = Some(Redacted::new(TOKEN.as_bytes().to_vec()));
    // Polls often: the agent finds the later commit by itself, and re-plans only for it.
    o.poll_interval = Some(std::time::Duration::from_secs(2));
    let addr = o.listen.unwrap();
    let stop = CancellationToken::new();
    let agent = tokio::spawn(Agent::new(o).expect("agent state").run(stop.clone()));
    until("the first sync", 90, || {
        kinds(&got).contains(&"converged".to_string())
    })
    .await;
    let s = status(addr).await;
    let p1 = s["awaiting_approval"][0]["plan"]
        .as_str()
        .unwrap()
        .to_string();

    // A page in the operator's browser: another origin, text/plain, no token.
    let evil = post(
        addr,
        "terraform.gated",
        &[
            ("origin", "https://evil.example"),
            ("content-type", "text/plain"),
        ],
        "{}",
    )
    .await;
    assert_eq!(evil.0, 403, "{evil:?}");
    let evil = post(
        addr,
        "terraform.gated",
        &[("origin", "https://evil.example"), AUTH, JSON],
        "{}",
    )
    .await;
    assert_eq!(
        evil.0, 403,
        "a foreign origin even with the token: {evil:?}"
    );
    assert_eq!(post(addr, "terraform.gated", &[JSON], "{}").await.0, 401);
    let wrong = ("authorization", "Bearer 0123456789abcdef0123456789abcdeX");
    assert_eq!(
        post(addr, "terraform.gated", &[wrong, JSON], "{}").await.0,
        401
    );
    let text = post(
        addr,
        "terraform.gated",
        &[AUTH, ("content-type", "text/plain")],
        "{}",
    )
    .await;
    assert_eq!(text.0, 415, "{text:?}");
    // The kind is part of the name: the Kubernetes layer of that name waits for nothing.
    let kube = post(addr, "kubernetes.gated", &[AUTH, JSON], "{}").await;
    assert_eq!(kube.0, 409, "{kube:?}");
    assert!(
        kube.1
            .contains("nothing waits for approval on kubernetes.gated"),
        "{kube:?}"
    );
    // Junk names and plans: refused, and no file left behind.
    for junk in ["gated", "terraform.a%2F..%2Fb", "x.y", "terraform."] {
        let (code, body) = post(addr, junk, &[AUTH, JSON], "{}").await;
        assert!(code == 400 || code == 404, "{junk}: {code} {body}");
    }
    let other = post(
        addr,
        "terraform.gated",
        &[AUTH, JSON],
        r#"{"plan": "0000000000000000"}"#,
    )
    .await;
    assert_eq!(other.0, 409, "{other:?}");
    assert!(
        other.1.contains(&p1),
        "names the plan that waits: {other:?}"
    );
    assert_eq!(approvals(&state), Vec::<String>::new());
    assert!(resource_id(&state).is_none(), "nothing applied unasked");

    // The real approval of the plan that waits: applied, and used once.
    let ok = post(
        addr,
        "terraform.gated",
        &[AUTH, JSON],
        &format!(r#"{{"plan": "{p1}"}}"#),
    )
    .await;
    assert_eq!(ok.0, 202, "{ok:?}");
    until("the approved apply", 90, || resource_id(&state).is_some()).await;
    until("the approval used", 30, || approvals(&state).is_empty()).await;
    let first = resource_id(&state).unwrap();

    // Nothing waits now: an approval is refused (HTTP and CLI) and cannot approve what comes.
    let early = post(addr, "terraform.gated", &[AUTH, JSON], "{}").await;
    assert_eq!(early.0, 409, "{early:?}");
    let cli = strata_cli(
        dir.path(),
        &[
            "approve",
            "terraform.gated",
            "--state-dir",
            state.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(cli.code, 1, "{cli:?}");
    assert!(
        cli.stderr
            .contains("nothing waits for approval on terraform.gated"),
        "{cli:?}"
    );
    assert_eq!(approvals(&state), Vec::<String>::new());

    // A later commit replaces the resource: it waits, however many syncs run.
    gated(&r, "2");
    r.commit("replace it");
    until("the new plan waits", 90, || {
        std::fs::read_to_string(state.join("status.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| {
                v["layers"]["terraform.gated"]["awaiting_plan"]
                    .as_str()
                    .map(str::to_string)
            })
            .is_some_and(|p| p != p1)
    })
    .await;
    assert_eq!(
        resource_id(&state).as_deref(),
        Some(first.as_str()),
        "the replacement was not applied unasked"
    );
    stop.cancel();
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_is_taken_only_by_the_plan_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let r = Repo {
        dir: dir.path().join("repo"),
    };
    gated(&r, "1");
    r.git(&["init", "-q", "-b", "main"]);
    r.commit("gated");
    let repo = r.dir.to_str().unwrap().to_string();
    let state = dir.path().join("state");
    let st = state.to_str().unwrap().to_string();
    let apply = || {
        let (repo, st) = (repo.clone(), st.clone());
        let cwd = dir.path().to_path_buf();
        async move {
            strata_cli(
                &cwd,
                &[
                    "apply",
                    "--repo",
                    &repo,
                    "--state-dir",
                    &st,
                    "--auto-approve",
                    "--json",
                ],
            )
            .await
        }
    };
    let held = apply().await.code(2);
    assert_eq!(
        last_result(&state),
        "pending",
        "history says what the exit code says"
    );
    let report: Value = serde_json::from_str(&held.stdout).unwrap();
    let p1 = report["layers"][0]["plan"].as_str().unwrap().to_string();
    assert_eq!(report["layers"][0]["status"], "awaiting_approval");

    // Approved with a digest that is not the waiting plan's: refused, nothing written.
    let wrong = strata_cli(
        dir.path(),
        &[
            "approve",
            "terraform.gated",
            "--state-dir",
            &st,
            "--plan",
            "ffffffffffffffff",
        ],
    )
    .await;
    assert_eq!(wrong.code, 1, "{wrong:?}");
    assert!(wrong.stderr.contains(&p1), "{wrong:?}");
    assert!(approvals(&state).is_empty());

    // Approved, then the plan changes before anything applies it: the approval approves
    // nothing, is dropped, and the new plan waits.
    strata_cli(
        dir.path(),
        &["approve", "terraform.gated", "--state-dir", &st],
    )
    .await
    .code(0);
    assert_eq!(approvals(&state), vec!["terraform.gated".to_string()]);
    gated(&r, "2");
    r.commit("another change");
    let stale = apply().await.code(2);
    let report: Value = serde_json::from_str(&stale.stdout).unwrap();
    let p2 = report["layers"][0]["plan"].as_str().unwrap().to_string();
    assert_ne!(p1, p2);
    assert_eq!(report["layers"][0]["status"], "awaiting_approval");
    let detail = report["layers"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("the approval was given for plan {p1}")),
        "{detail}"
    );
    assert!(resource_id(&state).is_none(), "nothing applied");
    assert!(approvals(&state).is_empty(), "the stale approval is gone");

    // The same plan again is the same digest (plans are compared, not their timestamps), and
    // its approval is taken by exactly that apply.
    let again = apply().await.code(2);
    let report: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(report["layers"][0]["plan"], p2.as_str());
    strata_cli(
        dir.path(),
        &[
            "approve",
            "terraform.gated",
            "--state-dir",
            &st,
            "--plan",
            &p2,
        ],
    )
    .await
    .code(0);
    apply().await.code(0);
    assert_eq!(last_result(&state), "ok");
    assert!(resource_id(&state).is_some(), "applied once approved");
    assert!(approvals(&state).is_empty(), "used once");
    let status: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("status.json")).unwrap()).unwrap();
    assert!(
        status["layers"]["terraform.gated"]["awaiting_plan"].is_null(),
        "{status}"
    );
}
