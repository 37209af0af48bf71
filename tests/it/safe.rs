//! `apply = "safe"`: a plan that only creates and updates is applied without a human; one that
//! deletes or replaces anything (a Kubernetes prune counts) waits for approval like `manual`,
//! saying what it would delete.

use std::path::Path;

use crate::kube_safety::{layer, run, run_with, NS, ORDERS, SETTINGS};
use crate::support::Cluster;

const NULL: &str =
    "terraform {\n  required_providers {\n    null = { source = \"hashicorp/null\" }\n  }\n}\n";

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn tf(trigger: &str, extra: bool) -> String {
    let mut t = format!(
        "{NULL}resource \"null_resource\" \"g\" {{\n  triggers = {{ v = \"{trigger}\" }}\n}}\n"
    );
    if extra {
        t.push_str("resource \"null_resource\" \"more\" {}\n");
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_safe_layer_applies_additions_and_waits_on_a_replace_or_a_prune() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    write(
        &root,
        "strata.hcl",
        &format!(
            r#"stack "safe" {{}}

terraform "db" {{
  source = "tf/db"
  apply  = "safe"
}}

cluster "main" {{
  kubeconfig_path = "{}"
}}

kubernetes "apps" {{
  source  = "k8s/apps"
  cluster = cluster.main
  wait    = false
  apply   = "safe"
}}
"#,
            c.kubeconfig.display()
        ),
    );
    write(&root, "tf/db/main.tf", &tf("1", false));
    layer(
        &root,
        "apps",
        &[
            ("ns.yaml", NS),
            ("settings.yaml", SETTINGS),
            ("orders.yaml", ORDERS),
        ],
    );
    // Everything is new: created without approval.
    run(&root, "apply").await.code(0);

    // Additive: one more resource, a changed ConfigMap value: applied.
    write(&root, "tf/db/main.tf", &tf("1", true));
    layer(
        &root,
        "apps",
        &[
            ("ns.yaml", NS),
            ("settings.yaml", &SETTINGS.replace("blue", "green")),
            ("orders.yaml", ORDERS),
        ],
    );
    run(&root, "apply").await.code(0);
    let color = c
        .kubectl(&[
            "get",
            "cm",
            "settings",
            "-n",
            "shop",
            "-o",
            "jsonpath={.data.color}",
        ])
        .await;
    assert_eq!(color.stdout, "green");

    // A replacement (the trigger forces it) and a prune: both wait, nothing of either happens.
    write(&root, "tf/db/main.tf", &tf("2", true));
    layer(
        &root,
        "apps",
        &[
            ("ns.yaml", NS),
            ("settings.yaml", &SETTINGS.replace("blue", "green")),
        ],
    );
    let held = run(&root, "apply").await;
    assert_eq!(held.code, 2, "{held:?}");
    assert!(
        held.stdout
            .contains("apply = \"safe\", and the plan deletes or replaces")
            && held.stdout.contains("null_resource.g"),
        "says why it waits: {}",
        held.stdout
    );
    c.kubectl(&["get", "cm", "orders", "-n", "shop"])
        .await
        .code(0);

    // Approved for this run: both go.
    run_with(
        &root,
        "apply",
        &["--approve", "terraform.db", "--approve", "kubernetes.apps"],
    )
    .await
    .code(0);
    let orders = c.kubectl(&["get", "cm", "orders", "-n", "shop"]).await;
    assert_ne!(orders.code, 0, "pruned once approved: {orders:?}");
}
