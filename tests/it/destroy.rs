//! `strata destroy`: the reverse of the apply order, Kubernetes layers first, each layer after
//! everything that depends on it; a layer that cannot be destroyed keeps what it depends on, and
//! a stack never applied is a no-op. Real terraform, devcluster and kubectl.

use std::path::Path;

use serde_json::Value;

use crate::kube_safety::{by_hand, layer, run_with, NS};
use crate::support::{Cluster, Output};

const NULL: &str =
    "terraform {\n  required_providers {\n    null = { source = \"hashicorp/null\" }\n  }\n}\n";

const SETTINGS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\ndata:\n  subnet: ${subnet}\n";

/// `terraform.net` → `kubernetes.apps` (reads its output), and `terraform.other` on its own.
fn stack(root: &Path, c: &Cluster) {
    let hcl = format!(
        r#"stack "teardown" {{}}

terraform "net" {{
  source = "tf/net"
}}

terraform "other" {{
  source = "tf/other"
}}

cluster "main" {{
  kubeconfig_path = "{}"
}}

kubernetes "apps" {{
  source  = "k8s/apps"
  cluster = cluster.main
  wait    = false
  vars    = {{ subnet = terraform.net.outputs.subnet }}
}}
"#,
        c.kubeconfig.display()
    );
    std::fs::create_dir_all(root.join("tf/net")).unwrap();
    std::fs::create_dir_all(root.join("tf/other")).unwrap();
    std::fs::write(root.join("strata.hcl"), hcl).unwrap();
    std::fs::write(
        root.join("tf/net/main.tf"),
        format!("{NULL}resource \"null_resource\" \"net\" {{}}\noutput \"subnet\" {{ value = \"subnet-1\" }}\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("tf/other/main.tf"),
        format!("{NULL}resource \"null_resource\" \"other\" {{}}\n"),
    )
    .unwrap();
    layer(
        root,
        "apps",
        &[("ns.yaml", NS), ("settings.yaml", SETTINGS)],
    );
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}:\n{}\n{}", out.stdout, out.stderr))
}

/// The resources terraform's state of `layer` holds.
fn resources(root: &Path, layer: &str) -> usize {
    let path = root
        .join("state/layers")
        .join(layer)
        .join("terraform.tfstate");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["resources"].as_array().map_or(0, Vec::len)
}

fn statuses(report: &Value) -> Vec<(String, String)> {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["layer"].as_str().unwrap().to_string(),
                l["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn exists(c: &Cluster, args: &[&str]) -> bool {
    let mut a = vec!["get"];
    a.extend(args);
    c.kubectl(&a).await.code == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_tears_down_dependents_first_and_forgets_the_stack() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    stack(&root, &c);

    // Never applied: nothing to do, and nothing touched.
    let never = run_with(&root, "destroy", &["--auto-approve"]).await;
    assert_eq!(never.code, 0, "{never:?}");
    assert!(never.stdout.contains("Nothing to destroy"), "{never:?}");

    run_with(&root, "apply", &[]).await.code(0);
    assert!(exists(&c, &["cm", "settings", "-n", "shop"]).await);
    assert_eq!(resources(&root, "net"), 1);

    let plan_text = run_with(&root, "destroy", &["--auto-approve"]).await;
    assert_eq!(plan_text.code, 0, "{plan_text:?}");
    assert!(
        plan_text.stdout.contains("Destroy plan:") && plan_text.stdout.contains("Destroy:"),
        "the plan is shown first: {}",
        plan_text.stdout
    );
    assert!(
        plan_text.stdout.contains("- ConfigMap/shop/settings"),
        "{}",
        plan_text.stdout
    );
    assert!(!exists(&c, &["cm", "settings", "-n", "shop"]).await, "gone");
    assert!(!exists(&c, &["ns", "shop"]).await, "its Namespace too");
    let inventories = c
        .kubectl(&["get", "cm", "-n", "strata-system", "-o", "name"])
        .await;
    assert_eq!(inventories.stdout.trim(), "", "{inventories:?}");
    assert_eq!(resources(&root, "net"), 0);
    assert_eq!(resources(&root, "other"), 0);
    assert!(!root.join("state/layers/net/outputs.json").exists());
    let status: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("state/status.json")).unwrap())
            .unwrap();
    assert_eq!(status["layers"], serde_json::json!({}), "{status}");
    assert!(status["converged_revision"].is_null(), "{status}");

    // Again: nothing left.
    let again = run_with(&root, "destroy", &["--auto-approve"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("Nothing to destroy"), "{again:?}");

    // Applied once more, torn down as JSON: the teardown order is dependents first.
    run_with(&root, "apply", &[]).await.code(0);
    let report = json(&run_with(&root, "destroy", &["--auto-approve", "--json"]).await);
    let order: Vec<String> = statuses(&report).into_iter().map(|(l, _)| l).collect();
    let pos = |l: &str| order.iter().position(|o| o == l).unwrap();
    assert!(pos("kubernetes.apps") < pos("terraform.net"), "{order:?}");
    assert!(
        statuses(&report).iter().all(|(_, s)| s == "destroyed"),
        "{report:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_that_cannot_be_destroyed_keeps_what_it_depends_on() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    stack(&root, &c);
    run_with(&root, "apply", &[]).await.code(0);
    // Someone else's object in the layer's Namespace: the Namespace is not the stack's to empty.
    by_hand(&c, "theirs", "shop").await;

    let out = run_with(&root, "destroy", &["--auto-approve", "--json"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    let report = json(&out);
    let s: std::collections::BTreeMap<String, String> = statuses(&report).into_iter().collect();
    assert_eq!(s["kubernetes.apps"], "failed", "{report:#}");
    assert_eq!(
        s["terraform.net"], "skipped",
        "kept for its dependent: {report:#}"
    );
    assert_eq!(s["terraform.other"], "destroyed", "independent: {report:#}");
    assert!(exists(&c, &["ns", "shop"]).await, "the Namespace is kept");
    assert!(exists(&c, &["cm", "theirs", "-n", "shop"]).await);
    assert!(
        !exists(&c, &["cm", "settings", "-n", "shop"]).await,
        "ours is gone"
    );
    assert_eq!(resources(&root, "net"), 1, "the upstream is not destroyed");
    assert_eq!(resources(&root, "other"), 0);

    // Once their object is gone, the next destroy finishes the job.
    c.kubectl(&["delete", "configmap", "theirs", "-n", "shop"])
        .await
        .code(0);
    let done = run_with(&root, "destroy", &["--auto-approve"]).await;
    assert_eq!(done.code, 0, "{done:?}");
    assert!(!exists(&c, &["ns", "shop"]).await);
    assert_eq!(resources(&root, "net"), 0);
}
