//! One agent, several environments: each converges on its own, so one environment's broken
//! cluster or approval wait never holds another's, and the HTTP side shows and steers each.

use std::time::Duration;

use serde_json::Value;
use strata::agent::{run_fleet, Ended};
use strata::redact::Redacted;
use tokio_util::sync::CancellationToken;

use crate::agent::{kinds, options, receiver, until, Repo, NULL};
use crate::support::{strata_cli, Cluster};

/// `dev` on `a` (applies at once), `prod` on `b` (every layer waits for approval), `broken` on
/// a cluster that does not exist.
fn stack(r: &Repo, a: &Cluster, b: &Cluster, dev_color: &str) {
    r.write(
        "strata.hcl",
        &format!(
            r#"stack "shop" {{}}

environment "dev" {{
  vars = {{ color = "{dev_color}", kubeconfig = "{a}" }}
}}

environment "prod" {{
  vars  = {{ color = "red", kubeconfig = "{b}" }}
  apply = "manual"
}}

environment "broken" {{
  vars = {{ color = "black", kubeconfig = "{missing}" }}
}}

terraform "gate" {{
  source = "gate"
}}

cluster "main" {{
  kubeconfig_path = env.vars.kubeconfig
}}

kubernetes "apps" {{
  source     = "k8s/apps"
  cluster    = cluster.main
  namespace  = "default"
  wait       = false
  depends_on = [terraform.gate]
  vars       = {{ color = env.vars.color }}
}}
"#,
            a = a.kubeconfig.display(),
            b = b.kubeconfig.display(),
            missing = r.dir.join("no-such-kubeconfig").display(),
        ),
    );
    r.write(
        "gate/main.tf",
        &format!("{NULL}resource \"null_resource\" \"g\" {{}}\n"),
    );
    r.write(
        "k8s/apps/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: ${color}\n",
    );
}

async fn color(c: &Cluster) -> String {
    let out = c
        .kubectl(&["get", "cm", "settings", "-o", "jsonpath={.data.color}"])
        .await;
    if out.code == 0 {
        out.stdout
    } else {
        String::new()
    }
}

async fn wait_color(c: &Cluster, want: &str, secs: u64) {
    let start = std::time::Instant::now();
    while color(c).await != want {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "the cluster never showed {want}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn status(addr: &std::net::SocketAddr) -> Value {
    let (code, body) = get(&format!("http://{addr}/api/v1/status")).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The alerts raised about `env`, by type.
fn alerts_of(got: &std::sync::Arc<std::sync::Mutex<Vec<Value>>>, env: &str) -> Vec<String> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|v| v["env"] == env)
        .map(|v| v["type"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_agent_converges_every_environment_independently() {
    let (a, b) = (Cluster::start().await, Cluster::start().await);
    let dir = tempfile::tempdir().unwrap();
    let r = Repo {
        dir: dir.path().join("repo"),
    };
    stack(&r, &a, &b, "blue");
    r.git(&["init", "-q", "-b", "main"]);
    r.commit("three environments");
    let (alerts, got) = receiver().await;
    let state = dir.path().join("state");
    let mut o = options(&r, &state, &alerts);
    o.poll_interval = Some(Duration::from_secs(1));
    o.api_token = Some(Redacted::new(b"0123456789abcdef0123".to_vec()));
    let token = dir.path().join("token");
    std::fs::write(&token, "0123456789abcdef0123\n").unwrap();
    let addr = o.listen.unwrap();
    let stop = CancellationToken::new();
    let fleet = tokio::spawn(run_fleet(o, stop.clone()));

    // dev converges although broken fails and prod waits for approval.
    wait_color(&a, "blue", 120).await;
    until("dev's converged alert", 60, || {
        alerts_of(&got, "dev").contains(&"converged".to_string())
    })
    .await;
    until("broken's failed alert", 60, || {
        alerts_of(&got, "broken").contains(&"failed".to_string())
    })
    .await;
    until("prod waiting for approval", 60, || {
        let path = state.join("envs/prod/agent.json");
        std::fs::read_to_string(path).is_ok_and(|t| t.contains("terraform.gate"))
    })
    .await;
    assert_eq!(color(&b).await, "", "prod applies nothing unapproved");

    // The status API shows every environment; readiness waits for all of them.
    let s = status(&addr).await;
    let envs = s["environments"].as_object().expect("by environment");
    assert_eq!(
        envs.keys().collect::<Vec<_>>(),
        ["broken", "dev", "prod"],
        "{s}"
    );
    assert_eq!(s["environments"]["dev"]["ready"], true, "{s}");
    assert_eq!(s["environments"]["dev"]["failures"], 0, "{s}");
    assert_eq!(
        s["environments"]["prod"]["awaiting_approval"][0]["layer"], "terraform.gate",
        "{s}"
    );
    assert_eq!(s["environments"]["broken"]["ready"], false, "{s}");
    assert_eq!(s["ready"], false, "{s}");
    let (code, why) = get(&format!("http://{addr}/readyz")).await;
    assert_eq!(code, 503, "{why}");
    assert!(why.contains("environment broken"), "{why}");
    assert!(!why.contains("environment dev"), "{why}");
    let (code, one) = get(&format!("http://{addr}/api/v1/status?env=dev")).await;
    assert_eq!(code, 200, "{one}");
    let one: Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["ready"], true, "the shape of one environment: {one}");
    assert_eq!(
        one["stack"]["layers"]["kubernetes.apps"]["last_result"],
        "converged"
    );
    let (code, body) = get(&format!("http://{addr}/api/v1/status?env=stage")).await;
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("broken, dev, prod"), "{body}");
    let (code, body) = get(&format!("http://{addr}/api/v1/overview")).await;
    assert_eq!(
        code, 400,
        "the dashboard's JSON names its environment: {body}"
    );
    let (code, body) = get(&format!("http://{addr}/api/v1/overview?env=dev")).await;
    assert_eq!(code, 200, "{body}");
    let (_, metrics) = get(&format!("http://{addr}/metrics")).await;
    assert!(
        metrics.contains("strata_layer_results_total{env=\"dev\",layer=\"kubernetes.apps\",result=\"applied\"} 1"),
        "{metrics}"
    );

    // A new commit reaches dev while broken keeps failing and prod keeps waiting.
    stack(&r, &a, &b, "green");
    r.commit("dev goes green");
    wait_color(&a, "green", 120).await;
    assert_eq!(color(&b).await, "", "prod still waits");

    // Approving needs the environment when there are several, and then moves prod alone.
    let client = reqwest::Client::new();
    let refused = client
        .post(format!("http://{addr}/api/v1/approve/terraform.gate"))
        .bearer_auth("0123456789abcdef0123")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    let text = refused.text().await.unwrap();
    assert!(text.contains("?env=NAME"), "{text}");
    let approve = |layer: &'static str| {
        let (token, root) = (token.clone(), dir.path().to_path_buf());
        async move {
            strata_cli(
                &root,
                &[
                    "approve",
                    layer,
                    "--agent",
                    &format!("http://{addr}"),
                    "--api-token-file",
                    token.to_str().unwrap(),
                    "--env",
                    "prod",
                ],
            )
            .await
        }
    };
    approve("terraform.gate").await.code(0);
    until("prod's apps waiting for approval", 90, || {
        let path = state.join("envs/prod/agent.json");
        std::fs::read_to_string(path).is_ok_and(|t| {
            let v: Value = serde_json::from_str(&t).unwrap_or_default();
            v["awaiting_approval"]
                .as_array()
                .is_some_and(|w| w.len() == 1 && w[0]["layer"] == "kubernetes.apps")
        })
    })
    .await;
    approve("kubernetes.apps").await.code(0);
    wait_color(&b, "red", 120).await;
    assert_eq!(color(&a).await, "green", "dev untouched by prod's approval");

    // Each environment keeps its own alerts, each naming it.
    let logged = std::fs::read_to_string(state.join("envs/dev/alerts.jsonl")).unwrap();
    assert!(
        logged
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).unwrap()["env"] == "dev"),
        "{logged}"
    );
    assert!(
        kinds(&got).iter().all(|k| !k.is_empty()),
        "every alert has a type"
    );
    let s = status(&addr).await;
    assert_eq!(s["environments"]["broken"]["ready"], false, "{s}");
    assert!(
        s["environments"]["broken"]["failures"].as_u64() > Some(0)
            || !s["environments"]["broken"]["refused"].is_null(),
        "{s}"
    );

    stop.cancel();
    let ended = fleet.await.unwrap().expect("the agent ran");
    assert_eq!(ended.ended, Ended::Clean);
    assert_eq!(ended.state_dirs.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn one_env_named_converges_only_it_with_the_status_of_one_environment() {
    let (a, b) = (Cluster::start().await, Cluster::start().await);
    let dir = tempfile::tempdir().unwrap();
    let r = Repo {
        dir: dir.path().join("repo"),
    };
    stack(&r, &a, &b, "blue");
    r.git(&["init", "-q", "-b", "main"]);
    r.commit("three environments");
    let (alerts, got) = receiver().await;
    let state = dir.path().join("state");
    let mut o = options(&r, &state, &alerts);
    o.envs = vec!["dev".into()];
    let addr = o.listen.unwrap();
    let stop = CancellationToken::new();
    let fleet = tokio::spawn(run_fleet(o, stop.clone()));
    wait_color(&a, "blue", 120).await;
    until("dev's converged alert", 60, || {
        alerts_of(&got, "dev").contains(&"converged".to_string())
    })
    .await;
    let s = status(&addr).await;
    assert!(s["environments"].is_null(), "one environment's shape: {s}");
    assert_eq!(s["ready"], true, "{s}");
    let (code, body) = get(&format!("http://{addr}/readyz")).await;
    assert_eq!(
        code, 200,
        "the environments not named are not waited for: {body}"
    );
    assert!(!state.join("envs/prod").exists(), "prod is not converged");
    assert!(
        !state.join("envs/broken").exists(),
        "broken is not converged"
    );
    stop.cancel();
    let ended = fleet.await.unwrap().expect("the agent ran");
    assert_eq!(ended.state_dirs.len(), 1);
}
