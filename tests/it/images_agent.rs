//! The agent's image loop: a tag pushed to the registry becomes a commit, and the devcluster
//! converges to it; a registry down alerts once while Git keeps converging. And registries that
//! page a huge tag list, flood a page, or never answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use strata::agent::{Agent, AgentOptions};
use strata::notify::{AgentConfig, Sink};
use strata::redact::Redacted;
use strata::source::{SourceOptions, SourceSpec};
use tokio_util::sync::CancellationToken;

use crate::agent::{kinds, receiver, until};
use crate::images::{bare_repo, git, write_all};
use crate::registry::Registry;
use crate::support::{free_port, strata_cli_env, Cluster};

fn deployment(host: &str, tag: &str) -> String {
    format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n        - name: web\n          image: {host}/shop/web:{tag} # strata:image web\n")
}

async fn live_image(c: &Cluster) -> String {
    c.kubectl(&[
        "get",
        "deployment",
        "web",
        "-n",
        "default",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ])
    .await
    .stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn the_agent_commits_a_pushed_image_and_converges_the_cluster_to_it() {
    let c = Cluster::start().await;
    let mut reg = Registry::plain().await;
    reg.push("shop/web", "1.0.0").await;
    let host = reg.host.clone();
    let (work, bare) = bare_repo(
        c.dir.path(),
        &[
            (
                "strata.hcl",
                format!("stack \"shop\" {{}}\nimage \"web\" {{\n  repository    = \"{host}/shop/web\"\n  policy        = {{ semver = \">=1.0.0\" }}\n  interval      = \"1s\"\n  insecure_http = true\n}}\ncluster \"dev\" {{\n  kubeconfig_path = \"{}\"\n}}\nkubernetes \"app\" {{\n  source    = \"app\"\n  cluster   = cluster.dev\n  namespace = \"default\"\n}}\n", c.kubeconfig.display()),
            ),
            ("app/web.yaml", deployment(&host, "1.0.0")),
            ("app/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: note\ndata:\n  text: one\n".into()),
        ],
    );
    let (alerts, got) = receiver().await;
    let state = c.dir.path().join("state");
    let spec = SourceSpec {
        url: bare.display().to_string(),
        reference: None,
        path: None,
    };
    let mut o = AgentOptions::new(spec, SourceOptions::new(&state));
    o.config = AgentConfig {
        sinks: vec![Sink::Webhook {
            name: "test".into(),
            url: Redacted::new(alerts),
        }],
        writeback_notes: false,
    };
    o.listen = Some(free_port());
    o.poll_interval = Some(Duration::from_secs(1));
    o.drift_interval = Some(Duration::from_secs(3600));
    o.unreachable_after = Duration::ZERO;
    let stop = CancellationToken::new();
    let agent = tokio::spawn(Agent::new(o).expect("agent state").run(stop.clone()));
    until("the first sync converged", 120, || {
        kinds(&got).contains(&"converged".to_string())
    })
    .await;
    assert_eq!(live_image(&c).await, format!("{host}/shop/web:1.0.0"));

    // CI pushes an image: the agent commits it and converges the cluster to that commit.
    reg.push("shop/web", "1.1.0").await;
    let want = format!("{host}/shop/web:1.1.0");
    let start = std::time::Instant::now();
    while live_image(&c).await != want {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "never converged to {want}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let head = git(&bare, &["rev-parse", "main"]);
    assert_eq!(
        git(&bare, &["log", "-1", "--format=%s|%an", "main"]),
        "images: web 1.0.0 → 1.1.0|strata"
    );
    until("converged at the image commit", 60, || {
        got.lock()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "converged" && e["revision"] == head.as_str())
    })
    .await;
    assert!(
        got.lock()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "change_committed" && e["revision"] == head.as_str()),
        "{:?}",
        kinds(&got)
    );

    // The registry goes down: one degraded alert, and Git keeps converging.
    reg.stop();
    until("the registry's degraded alert", 60, || {
        got.lock()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "degraded" && e["condition"] == "registry web")
    })
    .await;
    git(&work, &["pull", "-q", "--rebase", "origin", "main"]);
    write_all(
        &work,
        &[(
            "app/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: note\ndata:\n  text: two\n".into(),
        )],
    );
    git(&work, &["commit", "-qam", "note two"]);
    git(&work, &["push", "-q", "origin", "HEAD:main"]);
    let start = std::time::Instant::now();
    loop {
        let text = c
            .kubectl(&[
                "get",
                "cm",
                "note",
                "-n",
                "default",
                "-o",
                "jsonpath={.data.text}",
            ])
            .await
            .stdout;
        if text == "two" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "Git stopped converging"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Several more intervals pass: still one alert for the outage.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let degraded = got
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "degraded" && e["condition"] == "registry web")
        .count();
    assert_eq!(degraded, 1, "{:?}", kinds(&got));
    reg.restart().await;
    until("the registry's recovered alert", 60, || {
        got.lock()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "recovered" && e["condition"] == "registry web")
    })
    .await;
    stop.cancel();
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn with_push_branch_the_agent_proposes_and_converges_only_what_reaches_the_branch() {
    let c = Cluster::start().await;
    let reg = Registry::plain().await;
    reg.push("shop/web", "1.0.0").await;
    let host = reg.host.clone();
    let (_work, bare) = bare_repo(
        c.dir.path(),
        &[
            (
                "strata.hcl",
                format!("stack \"shop\" {{}}\nimage \"web\" {{\n  repository    = \"{host}/shop/web\"\n  policy        = {{ semver = \">=1.0.0\" }}\n  interval      = \"1s\"\n  insecure_http = true\n}}\nwriteback {{\n  push_branch = \"strata/images\"\n}}\ncluster \"dev\" {{\n  kubeconfig_path = \"{}\"\n}}\nkubernetes \"app\" {{\n  source    = \"app\"\n  cluster   = cluster.dev\n  namespace = \"default\"\n}}\n", c.kubeconfig.display()),
            ),
            ("app/web.yaml", deployment(&host, "1.0.0")),
        ],
    );
    let (alerts, got) = receiver().await;
    let spec = SourceSpec {
        url: bare.display().to_string(),
        reference: None,
        path: None,
    };
    let mut o = AgentOptions::new(spec, SourceOptions::new(c.dir.path().join("state")));
    o.config = AgentConfig {
        sinks: vec![Sink::Webhook {
            name: "test".into(),
            url: Redacted::new(alerts),
        }],
        writeback_notes: false,
    };
    o.listen = Some(free_port());
    o.poll_interval = Some(Duration::from_secs(1));
    o.drift_interval = Some(Duration::from_secs(3600));
    let stop = CancellationToken::new();
    let agent = tokio::spawn(Agent::new(o).expect("agent state").run(stop.clone()));
    until("the first sync converged", 120, || {
        kinds(&got).contains(&"converged".to_string())
    })
    .await;
    let main = git(&bare, &["rev-parse", "main"]);
    reg.push("shop/web", "1.1.0").await;
    until("the proposal alert", 120, || {
        kinds(&got).contains(&"image_update_proposed".to_string())
    })
    .await;
    let proposal: Value = got
        .lock()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "image_update_proposed")
        .cloned()
        .unwrap();
    assert!(
        proposal["summary"]
            .as_str()
            .unwrap()
            .contains("proposed on branch strata/images (for main): web 1.0.0 → 1.1.0"),
        "{proposal}"
    );
    assert_eq!(
        proposal["revision"],
        git(&bare, &["rev-parse", "strata/images"])
    );
    // Intervals go by: main, the cluster and the alerts stay as they are.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(git(&bare, &["rev-parse", "main"]), main);
    assert_eq!(live_image(&c).await, format!("{host}/shop/web:1.0.0"));
    assert_eq!(
        kinds(&got)
            .iter()
            .filter(|k| *k == "image_update_proposed")
            .count(),
        1
    );
    stop.cancel();
    agent.await.unwrap();
}

/// A fake registry: `tags` tags in pages of at most 1000 linked by `Link`, `huge` pages of more
/// than 16 MiB, or `stall` that never answers.
async fn fake_registry(tags: usize, mode: &'static str) -> (String, Arc<AtomicUsize>) {
    let pages = Arc::new(AtomicUsize::new(0));
    let p = pages.clone();
    let huge: Arc<String> = Arc::new(if mode == "huge" {
        let big: Vec<String> = (0..1_500_000).map(|i| format!("1.0.{i}")).collect();
        serde_json::json!({"name": "shop/many", "tags": big}).to_string()
    } else {
        String::new()
    });
    let app = axum::Router::new().route(
        "/v2/shop/many/tags/list",
        axum::routing::get(
            move |axum::extract::Query(q): axum::extract::Query<
                std::collections::HashMap<String, String>,
            >| {
                let p = p.clone();
                let huge = huge.clone();
                async move {
                    p.fetch_add(1, Ordering::SeqCst);
                    if mode == "stall" {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    if mode == "huge" {
                        return ([(http::header::LINK, String::new())], huge.to_string());
                    }
                    let n: usize = q
                        .get("n")
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(100)
                        .min(1000);
                    let start: usize = q
                        .get("last")
                        .and_then(|l| l.strip_prefix("t").and_then(|x| x.parse().ok()))
                        .map_or(0, |l: usize| l + 1);
                    let end = (start + n).min(tags);
                    // Every tag is `1.0.i`, and every tenth one is unparseable.
                    let page: Vec<String> = (start..end)
                        .map(|i| {
                            if i % 10 == 9 {
                                format!("build-{i}")
                            } else {
                                format!("1.0.{i}")
                            }
                        })
                        .collect();
                    let link = if end < tags {
                        format!(
                            "</v2/shop/many/tags/list?n={n}&last=t{}>; rel=\"next\"",
                            end - 1
                        )
                    } else {
                        String::new()
                    };
                    let body = serde_json::json!({"name": "shop/many", "tags": page}).to_string();
                    ([(http::header::LINK, link)], body)
                }
            },
        ),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = l.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (host, pages)
}

/// Scans the fake registry with a request `timeout`: generous unless the stall is the point.
async fn scan_fake(host: &str, timeout: &str) -> (i32, Value) {
    let d = tempfile::tempdir().unwrap();
    write_all(
        d.path(),
        &[
            (
                "strata.hcl",
                format!("stack \"many\" {{}}\nimage \"many\" {{\n  repository    = \"{host}/shop/many\"\n  policy        = {{ semver = \">=1\" }}\n  insecure_http = true\n  timeout       = \"{timeout}\"\n}}\n"),
            ),
            ("a.yaml", format!("image: {host}/shop/many:1.0.0 # strata:image many\n")),
        ],
    );
    let out = strata_cli_env(
        d.path(),
        &[
            "image",
            "scan",
            "--stack",
            ".",
            "--state-dir",
            "st",
            "--json",
        ],
        &[],
    )
    .await;
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    (out.code, v["images"][0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_tags_are_paged_and_floods_and_stalls_are_errors() {
    let (host, pages) = fake_registry(100_000, "pages").await;
    let (code, many) = scan_fake(&host, "60s").await;
    assert_eq!(code, 2, "{many}");
    assert_eq!(many["latest"], "1.0.99998", "{many}");
    assert_eq!(many["tags"]["listed"], 100_000);
    assert_eq!(many["tags"]["unparseable"], 10_000);
    assert_eq!(pages.load(Ordering::SeqCst), 100, "pages of 1000, linked");

    let (host, _) = fake_registry(0, "huge").await;
    let (code, many) = scan_fake(&host, "60s").await;
    assert_eq!(code, 1);
    assert_eq!(many["error"]["kind"], "invalid", "{many}");
    assert!(
        many["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than 16 MiB"),
        "{many}"
    );

    let (host, _) = fake_registry(0, "stall").await;
    let (code, many) = scan_fake(&host, "2s").await;
    assert_eq!(code, 1);
    assert_eq!(many["error"]["kind"], "unreachable", "{many}");
    assert!(
        many["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no answer in time"),
        "{many}"
    );
}
