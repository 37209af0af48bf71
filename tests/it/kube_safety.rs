//! What pruning must never destroy, and must never forget: objects Git still declares (a pruned
//! Namespace or CRD would take them along, and so would a layer pruning an object another layer
//! took over), and objects a crashed apply created. Each test is the repro of one way strata lost
//! objects, run with the real strata binary against devcluster. The helpers here drive a stack
//! `demo` of two Kubernetes layers; kube_ownership uses them too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use devcluster::{Fault, FaultAction};

use crate::support::{strata_cli, Cluster, Output};

pub(crate) const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n";
pub(crate) const SETTINGS: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\ndata:\n  color: blue\n";
pub(crate) const ORDERS: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: orders\n  namespace: shop\ndata:\n  size: \"3\"\n";
pub(crate) const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;
const WIDGET: &str =
    "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: shop\nspec:\n  size: 3\n";

/// A stack `demo` with the layers `platform` and `apps` (which depends on it), on the cluster.
pub(crate) fn stack(root: &Path, c: &Cluster) {
    stack_with(root, c, "")
}

pub(crate) fn stack_with(root: &Path, c: &Cluster, settings: &str) {
    let hcl = format!(
        r#"stack "demo" {{
{settings}}}

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
  depends_on = [kubernetes.platform]
}}
"#,
        c.kubeconfig.display()
    );
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("strata.hcl"), hcl).unwrap();
}

/// Replaces a layer's files.
pub(crate) fn layer(root: &Path, name: &str, files: &[(&str, &str)]) {
    let dir = root.join("k8s").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (f, t) in files {
        std::fs::write(dir.join(f), t).unwrap();
    }
}

pub(crate) async fn run(root: &Path, verb: &str) -> Output {
    run_with(root, verb, &[]).await
}

pub(crate) async fn run_with(root: &Path, verb: &str, extra: &[&str]) -> Output {
    let state = root.join("state");
    let mut args = vec![
        verb,
        "--stack",
        root.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    if verb == "apply" {
        args.push("--auto-approve");
    }
    args.extend(extra);
    strata_cli(root, &args).await
}

pub(crate) async fn uid(c: &Cluster, kind: &str, name: &str, ns: Option<&str>) -> String {
    let mut args = vec!["get", kind, name, "-o", "jsonpath={.metadata.uid}"];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    let out = c.kubectl(&args).await;
    assert_eq!(out.code, 0, "{kind}/{name} exists: {out:?}");
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_that_still_holds_declared_objects_is_kept_and_never_recreated() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    stack(&root, &c);
    layer(
        &root,
        "platform",
        &[("ns.yaml", NS), ("settings.yaml", SETTINGS)],
    );
    layer(&root, "apps", &[("orders.yaml", ORDERS)]);
    run(&root, "apply").await.code(0);
    let ns = uid(&c, "namespace", "shop", None).await;
    let settings = uid(&c, "cm", "settings", Some("shop")).await;
    let orders = uid(&c, "cm", "orders", Some("shop")).await;

    // The Namespace file goes; its ConfigMaps stay declared (by both layers).
    layer(&root, "platform", &[("settings.yaml", SETTINGS)]);
    let plan = run(&root, "plan").await;
    let kept = "! kept Namespace/shop: still holds ConfigMap/shop/orders (declared by kubernetes.apps) and 1 more";
    assert!(plan.stdout.contains(kept), "{plan:?}");
    assert!(!plan.stdout.contains("- Namespace/shop"), "{plan:?}");
    let apply = run(&root, "apply").await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(apply.stdout.contains(kept), "{apply:?}");
    assert_eq!(uid(&c, "namespace", "shop", None).await, ns);
    assert_eq!(uid(&c, "cm", "settings", Some("shop")).await, settings);
    assert_eq!(uid(&c, "cm", "orders", Some("shop")).await, orders);

    // Moved to the downstream layer in one commit: a hand-over, nothing deleted.
    layer(&root, "apps", &[("orders.yaml", ORDERS), ("ns.yaml", NS)]);
    let apply = run(&root, "apply").await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(!apply.stdout.contains("- Namespace/shop"), "{apply:?}");
    assert_eq!(uid(&c, "namespace", "shop", None).await, ns);
    // And back upstream.
    layer(&root, "apps", &[("orders.yaml", ORDERS)]);
    layer(
        &root,
        "platform",
        &[("ns.yaml", NS), ("settings.yaml", SETTINGS)],
    );
    let apply = run(&root, "apply").await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(!apply.stdout.contains("- Namespace/shop"), "{apply:?}");
    assert_eq!(uid(&c, "namespace", "shop", None).await, ns);
    assert_eq!(uid(&c, "cm", "settings", Some("shop")).await, settings);
    assert_eq!(uid(&c, "cm", "orders", Some("shop")).await, orders);

    // Converged: another apply writes nothing, inventories included.
    let rv = c.dev.resource_version();
    run(&root, "apply").await.code(0);
    assert_eq!(c.dev.resource_version(), rv, "a no-op apply wrote");

    // A ConfigMap moved downstream in one commit is handed over too.
    layer(&root, "platform", &[("ns.yaml", NS)]);
    layer(
        &root,
        "apps",
        &[("orders.yaml", ORDERS), ("settings.yaml", SETTINGS)],
    );
    let apply = run(&root, "apply").await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(!apply.stdout.contains("- ConfigMap"), "{apply:?}");
    assert_eq!(uid(&c, "cm", "settings", Some("shop")).await, settings);

    // Once nothing in it is declared, and everything in it is pruned with it, it goes.
    by_hand(&c, "notes", "shop").await;
    layer(&root, "apps", &[]);
    layer(&root, "platform", &[]);
    let apply = run(&root, "apply").await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(
        apply.stdout.contains(
            "! kept Namespace/shop: still holds ConfigMap/shop/notes (created outside strata)"
        ),
        "{apply:?}"
    );
    uid(&c, "cm", "notes", Some("shop")).await;
    c.kubectl(&["delete", "cm", "notes", "-n", "shop"])
        .await
        .code(0);
    let apply = run(&root, "apply").await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(apply.stdout.contains("- Namespace/shop"), "{apply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crd_whose_custom_resources_are_still_declared_is_kept() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    stack(&root, &c);
    layer(&root, "platform", &[("ns.yaml", NS), ("crd.yaml", CRD)]);
    layer(&root, "apps", &[("w1.yaml", WIDGET)]);
    run(&root, "apply").await.code(0);
    let w1 = uid(&c, "widgets.example.com", "w1", Some("shop")).await;

    layer(&root, "platform", &[("ns.yaml", NS)]);
    let kept = "! kept CustomResourceDefinition/widgets.example.com: still holds Widget/shop/w1 (declared by kubernetes.apps)";
    let plan = run(&root, "plan").await;
    assert!(plan.stdout.contains(kept), "{plan:?}");
    let apply = run(&root, "apply").await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(apply.stdout.contains(kept), "{apply:?}");
    assert_eq!(uid(&c, "widgets.example.com", "w1", Some("shop")).await, w1);
}

/// `kill -9` of strata while a layer applies 300 ConfigMaps, then the commit is reverted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_an_apply_killed_midway_are_found_diffed_and_pruned() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let root = c.dir.path().join("stack");
    stack(&root, &c);
    layer(&root, "platform", &[("ns.yaml", NS)]);
    layer(&root, "apps", &[]);
    run(&root, "apply").await.code(0);

    let many: Vec<(String, String)> = (0..300)
        .map(|i| {
            (
                format!("cm-{i:03}.yaml"),
                format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:03}\n  namespace: shop\n"),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = many.iter().map(|(f, t)| (f.as_str(), t.as_str())).collect();
    layer(&root, "apps", &files);
    // Slow writes down, so that the kill lands mid-apply.
    c.dev.inject(Fault {
        verb: Some("patch".into()),
        resource: Some("configmaps".into()),
        action: FaultAction::Latency(Duration::from_millis(150)),
        count: None,
        dry_run: None,
    });
    let mut child = spawn_apply(&root);
    let cms: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        client.clone(),
        "shop",
        &kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("", "v1", "ConfigMap"),
            "configmaps",
        ),
    );
    let count = || async {
        cms.list(&Default::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(0)
    };
    let mut polls = 0;
    while count().await < 20 {
        polls += 1;
        assert!(polls < 1200, "the apply never started writing");
        assert!(
            child.try_wait().unwrap().is_none(),
            "strata ended before it was killed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().await.unwrap();
    c.dev.clear_faults();
    let left = count().await;
    assert!(
        (20..300).contains(&left),
        "killed midway: {left} ConfigMaps"
    );

    // The commit is reverted: diff names what the killed apply left, the next apply prunes it.
    layer(&root, "apps", &[]);
    let diff = run(&root, "diff").await;
    assert!(diff.stdout.contains("- ConfigMap/shop/cm-000"), "{diff:?}");
    let apply = run(&root, "apply").await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(count().await, 0, "{apply:?}");
}

/// A ConfigMap made with kubectl, as someone outside strata would.
pub(crate) async fn by_hand(c: &Cluster, name: &str, ns: &str) {
    let file = c.dir.path().join(format!("{name}.yaml"));
    let text =
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n");
    std::fs::write(&file, text).unwrap();
    c.kubectl(&["create", "-f", file.to_str().unwrap()])
        .await
        .code(0);
}

fn spawn_apply(root: &Path) -> tokio::process::Child {
    let state: PathBuf = root.join("state");
    tokio::process::Command::new(assert_cmd::cargo::cargo_bin("strata"))
        .args(["apply", "--stack"])
        .arg(root)
        .arg("--state-dir")
        .arg(state)
        .arg("--auto-approve")
        .current_dir(root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// A layer whose manifests do not load might declare anything: while it is broken, nothing is
/// pruned on its cluster (an object moved into it would otherwise be deleted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_pruned_while_a_layer_s_desired_set_is_unknown() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    stack(&root, &c);
    layer(
        &root,
        "platform",
        &[("ns.yaml", NS), ("settings.yaml", SETTINGS)],
    );
    layer(&root, "apps", &[("orders.yaml", ORDERS)]);
    run(&root, "apply").await.code(0);
    let settings = uid(&c, "cm", "settings", Some("shop")).await;

    // settings moves to apps, in a commit where apps does not load.
    let broken = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\n  namespace: shop\ndata:\n  x: ${nope}\n";
    layer(&root, "platform", &[("ns.yaml", NS)]);
    layer(
        &root,
        "apps",
        &[
            ("orders.yaml", ORDERS),
            ("settings.yaml", SETTINGS),
            ("broken.yaml", broken),
        ],
    );
    let out = run(&root, "apply").await;
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains(
            "! kept ConfigMap/shop/settings: what other layers declare is unknown in this run (kubernetes.apps: "
        ),
        "{out:?}"
    );
    assert_eq!(uid(&c, "cm", "settings", Some("shop")).await, settings);

    // Fixed: a hand-over, still nothing deleted.
    layer(
        &root,
        "apps",
        &[("orders.yaml", ORDERS), ("settings.yaml", SETTINGS)],
    );
    let out = run(&root, "apply").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains("- ConfigMap"), "{out:?}");
    assert_eq!(uid(&c, "cm", "settings", Some("shop")).await, settings);
}
