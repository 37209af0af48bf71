//! `apply = "manual"` holds a Kubernetes layer exactly as it holds a Terraform layer: compared,
//! never written (nor pruned), until approved.

use crate::kube_safety::{layer, run, run_with, NS, ORDERS, SETTINGS};
use crate::support::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_kubernetes_layer_writes_nothing_until_approved() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    let hcl = format!(
        r#"stack "demo" {{}}

cluster "main" {{
  kubeconfig_path = "{}"
}}

kubernetes "platform" {{
  source  = "k8s/platform"
  cluster = cluster.main
  wait    = false
}}

kubernetes "apps" {{
  source     = "k8s/apps"
  cluster    = cluster.main
  wait       = false
  apply      = "manual"
  depends_on = [kubernetes.platform]
}}
"#,
        c.kubeconfig.display()
    );
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("strata.hcl"), hcl).unwrap();
    layer(
        &root,
        "platform",
        &[("ns.yaml", NS), ("settings.yaml", SETTINGS)],
    );
    layer(&root, "apps", &[("orders.yaml", ORDERS)]);

    let held = run(&root, "apply").await.code(2);
    assert!(held.stdout.contains("awaiting approval"), "{held:?}");
    assert!(
        held.stdout.contains("--approve kubernetes.apps"),
        "{held:?}"
    );
    assert!(
        held.stdout.contains("plan: "),
        "the plan's digest: {held:?}"
    );
    let orders = c.kubectl(&["get", "cm", "orders", "-n", "shop"]).await;
    assert_ne!(orders.code, 0, "nothing written unapproved: {orders:?}");
    c.kubectl(&["get", "cm", "settings", "-n", "shop"])
        .await
        .code(0);

    run_with(&root, "apply", &["--approve", "apps"])
        .await
        .code(0);
    c.kubectl(&["get", "cm", "orders", "-n", "shop"])
        .await
        .code(0);

    // A change that only prunes is held too: the ConfigMap stays until approved.
    layer(&root, "apps", &[]);
    run(&root, "apply").await.code(2);
    c.kubectl(&["get", "cm", "orders", "-n", "shop"])
        .await
        .code(0);
    // Nothing to change: no approval needed.
    layer(&root, "apps", &[("orders.yaml", ORDERS)]);
    run(&root, "apply").await.code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_that_fails_fails_its_layer_and_the_apply_ends() {
    use devcluster::{Fault, FaultAction};
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    crate::kube_safety::stack(&root, &c);
    layer(
        &root,
        "platform",
        &[("ns.yaml", NS), ("settings.yaml", SETTINGS)],
    );
    layer(&root, "apps", &[("orders.yaml", ORDERS)]);
    run(&root, "apply").await.code(0);
    // The API refuses the delete (a 4xx is final, not retried).
    c.dev.inject(Fault {
        verb: Some("delete".into()),
        resource: Some("configmaps".into()),
        action: FaultAction::Status(403),
        count: None,
        dry_run: None,
    });
    layer(&root, "apps", &[]);
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), run(&root, "apply"))
        .await
        .expect("an apply whose prune failed ends");
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("kubernetes.apps"), "{out:?}");
    c.kubectl(&["get", "cm", "orders", "-n", "shop"])
        .await
        .code(0);
}
