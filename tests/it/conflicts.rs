//! Field-manager conflicts under `drift = "report"`: a field Git changed since strata last
//! applied the object is taken, a field someone else changed and Git did not is left to them
//! (and shows as drift), and the rest of the object is applied. The other manager is the real
//! kubectl.

use std::path::Path;

use devcluster::{DevClusterOptions, Fault};
use serde_json::Value;

use crate::kube_safety::{layer, run, run_with};
use crate::support::Cluster;

fn stack(root: &Path, c: &Cluster, drift: &str) {
    let hcl = format!(
        r#"stack "demo" {{}}

cluster "main" {{
  kubeconfig_path = "{}"
}}

kubernetes "apps" {{
  source  = "k8s/apps"
  cluster = cluster.main
  wait    = false
  drift   = "{drift}"
}}
"#,
        c.kubeconfig.display()
    );
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("strata.hcl"), hcl).unwrap();
}

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n";

fn web(image: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: web, image: "{image}"}}]
"#
    )
}

fn settings(color: &str, size: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\ndata:\n  color: {color}\n  size: \"{size}\"\n  tier: gold\n"
    )
}

async fn get(c: &Cluster, kind: &str, name: &str) -> Value {
    let out = c
        .kubectl(&[
            "get",
            kind,
            name,
            "-n",
            "shop",
            "-o",
            "json",
            "--show-managed-fields",
        ])
        .await
        .code(0);
    serde_json::from_str(&out.stdout).unwrap()
}

async fn image(c: &Cluster) -> String {
    get(c, "deployment", "web").await["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The fields a manager owns, as `fieldsV1` text.
fn owned_by(obj: &Value, manager: &str) -> String {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["manager"] == manager)
        .map(|e| e["fieldsV1"].to_string())
        .collect()
}

/// The JSON of the one change of layer `apps` in a `--json` run report.
fn change(out: &crate::support::Output) -> Value {
    let report: Value = serde_json::from_str(&out.stdout).expect(&out.stdout);
    let layer = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == "kubernetes.apps")
        .unwrap_or_else(|| panic!("{report}"))
        .clone();
    let changes = layer["changes"].as_array().cloned().unwrap_or_default();
    assert_eq!(changes.len(), 1, "{layer}");
    changes[0].clone()
}

const IMAGE: &str = ".spec.template.spec.containers[name=\"web\"].image";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_set_image_is_kept_until_a_commit_changes_the_image_and_survives_other_commits() {
    let c = Cluster::with(DevClusterOptions {
        simulate_ready: None,
        ..Default::default()
    })
    .await;
    let root = c.dir.path().join("stack");
    stack(&root, &c, "report");
    layer(
        &root,
        "apps",
        &[("ns.yaml", NS), ("web.yaml", &web("nginx:1.27", 2))],
    );
    run(&root, "apply").await.code(0);

    c.kubectl(&[
        "set",
        "image",
        "deployment/web",
        "web=nginx:1.27-hotfix",
        "-n",
        "shop",
    ])
    .await
    .code(0);

    // The edit is drift: diff says so (exit 2); plan and apply leave it, say why, and succeed.
    let diff = run(&root, "diff").await.code(2);
    assert!(diff.stdout.contains("nginx:1.27-hotfix"), "{diff:?}");
    let plan = run(&root, "plan").await.code(0);
    assert!(
        plan.stdout.contains(&format!(
            "{IMAGE}: left to \"kubectl-set\" (unchanged in Git"
        )),
        "{plan:?}"
    );
    let rv = c.dev.resource_version();
    let apply = run_with(&root, "apply", &["--json"]).await.code(0);
    let ch = change(&apply);
    assert_eq!(ch["kept"][0]["path"], IMAGE, "{ch}");
    assert_eq!(ch["kept"][0]["manager"], "kubectl-set", "{ch}");
    assert_eq!(ch["kept"][0]["because"], "unchanged_in_git", "{ch}");
    assert_eq!(image(&c).await, "nginx:1.27-hotfix");
    assert_eq!(c.dev.resource_version(), rv, "nothing to write");

    // A commit that changes the image: Git wins, strata owns the field again.
    layer(
        &root,
        "apps",
        &[("ns.yaml", NS), ("web.yaml", &web("nginx:1.28", 2))],
    );
    let plan = run(&root, "plan").await.code(2);
    assert!(
        plan.stdout.contains(&format!(
            "{IMAGE}: taken from \"kubectl-set\" (changed in Git)"
        )),
        "{plan:?}"
    );
    assert_eq!(
        image(&c).await,
        "nginx:1.27-hotfix",
        "a plan writes nothing"
    );
    let apply = run_with(&root, "apply", &["--json"]).await.code(0);
    assert_eq!(change(&apply)["taken"][0]["path"], IMAGE);
    assert_eq!(image(&c).await, "nginx:1.28");
    let live = get(&c, "deployment", "web").await;
    assert!(owned_by(&live, "strata").contains("f:image"), "{live}");
    assert!(
        !owned_by(&live, "kubectl-set").contains("f:image"),
        "{live}"
    );
    run(&root, "diff").await.code(0);

    // Another hotfix, then a commit that changes something else: the hotfix stays, the
    // replicas change.
    c.kubectl(&[
        "set",
        "image",
        "deployment/web",
        "web=nginx:1.28-hotfix",
        "-n",
        "shop",
    ])
    .await
    .code(0);
    layer(
        &root,
        "apps",
        &[("ns.yaml", NS), ("web.yaml", &web("nginx:1.28", 3))],
    );
    run(&root, "apply").await.code(0);
    let live = get(&c, "deployment", "web").await;
    assert_eq!(live["spec"]["replicas"], 3);
    assert_eq!(image(&c).await, "nginx:1.28-hotfix");
    let rv = c.dev.resource_version();
    run(&root, "apply").await.code(0);
    assert_eq!(
        c.dev.resource_version(),
        rv,
        "a second apply writes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_one_object_a_field_git_changed_is_taken_and_one_it_did_not_is_kept() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    stack(&root, &c, "report");
    layer(
        &root,
        "apps",
        &[("ns.yaml", NS), ("settings.yaml", &settings("blue", "3"))],
    );
    run(&root, "apply").await.code(0);

    // Another team applies two of the fields server-side, forcing them over.
    let other = c.dir.path().join("other.yaml");
    std::fs::write(
        &other,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\ndata:\n  color: red\n  size: \"9\"\n",
    )
    .unwrap();
    let other = other.to_str().unwrap();
    c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager",
        "other",
        "-f",
        other,
    ])
    .await
    .code(1);
    c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager",
        "other",
        "--force-conflicts",
        "-f",
        other,
    ])
    .await
    .code(0);

    // Git changes the color, not the size.
    layer(
        &root,
        "apps",
        &[("ns.yaml", NS), ("settings.yaml", &settings("green", "3"))],
    );
    let apply = run_with(&root, "apply", &["--json"]).await.code(0);
    let ch = change(&apply);
    assert_eq!(ch["action"], "update", "{ch}");
    assert_eq!(ch["taken"][0]["path"], ".data.color", "{ch}");
    assert_eq!(ch["taken"][0]["manager"], "other", "{ch}");
    assert_eq!(ch["kept"][0]["path"], ".data.size", "{ch}");
    assert_eq!(ch["kept"][0]["manager"], "other", "{ch}");
    let live = get(&c, "cm", "settings").await;
    assert_eq!(live["data"]["color"], "green");
    assert_eq!(live["data"]["size"], "9");
    assert_eq!(live["data"]["tier"], "gold");
    assert!(owned_by(&live, "other").contains("f:size"), "{live}");
    assert!(!owned_by(&live, "other").contains("f:color"), "{live}");

    // The size shows as drift, and nothing else does.
    let diff = run_with(&root, "diff", &["--json"]).await.code(2);
    let d: Value = serde_json::from_str(&diff.stdout).unwrap();
    let text = d.to_string();
    assert!(text.contains(".data.size"), "{text}");
    assert!(!text.contains(".data.color"), "{text}");

    // `--force-conflicts` takes it back, this run only: plan shows it (exit 2), apply does it.
    let plan = run_with(&root, "plan", &["--force-conflicts"])
        .await
        .code(2);
    assert!(
        plan.stdout.contains(".data.size: \"9\" → \"3\""),
        "{plan:?}"
    );
    run_with(&root, "apply", &["--force-conflicts"])
        .await
        .code(0);
    assert_eq!(get(&c, "cm", "settings").await["data"]["size"], "3");
    run(&root, "diff").await.code(0);
    c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager",
        "other",
        "--force-conflicts",
        "-f",
        other,
    ])
    .await
    .code(0);
    run(&root, "apply").await.code(0);
    let live = get(&c, "cm", "settings").await;
    assert_eq!(live["data"]["size"], "9", "forced once, not for good");
    assert_eq!(live["data"]["color"], "red");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_correct_forces_every_conflict() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    stack(&root, &c, "correct");
    layer(
        &root,
        "apps",
        &[("ns.yaml", NS), ("settings.yaml", &settings("blue", "3"))],
    );
    run(&root, "apply").await.code(0);
    c.kubectl(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "shop",
        "--type=merge",
        "-p",
        r#"{"data":{"color":"red"}}"#,
    ])
    .await
    .code(0);
    run(&root, "apply").await.code(0);
    assert_eq!(get(&c, "cm", "settings").await["data"]["color"], "blue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_record_advances_only_after_a_successful_apply_so_an_interrupted_commit_still_wins() {
    let c = Cluster::with(DevClusterOptions {
        simulate_ready: None,
        ..Default::default()
    })
    .await;
    let root = c.dir.path().join("stack");
    stack(&root, &c, "report");
    layer(
        &root,
        "apps",
        &[("ns.yaml", NS), ("web.yaml", &web("nginx:1.27", 2))],
    );
    run(&root, "apply").await.code(0);

    // The commit's apply writes the Deployment, then fails to record it (as a crash there would).
    layer(
        &root,
        "apps",
        &[("ns.yaml", NS), ("web.yaml", &web("nginx:1.28", 2))],
    );
    c.dev.inject(Fault::fail("patch", "secrets", 403, 1));
    let failed = run(&root, "apply").await.code(1);
    assert!(
        failed.stderr.contains("what strata last applied")
            || failed.stdout.contains("what strata last applied"),
        "{failed:?}"
    );
    assert_eq!(image(&c).await, "nginx:1.28");

    // Someone edits the image before the next run: the commit was never converged, so its
    // change is taken again rather than mistaken for an old value.
    c.kubectl(&[
        "set",
        "image",
        "deployment/web",
        "web=nginx:1.27",
        "-n",
        "shop",
    ])
    .await
    .code(0);
    run(&root, "apply").await.code(0);
    assert_eq!(image(&c).await, "nginx:1.28");

    // Once converged, the same edit is kept.
    c.kubectl(&[
        "set",
        "image",
        "deployment/web",
        "web=nginx:1.27",
        "-n",
        "shop",
    ])
    .await
    .code(0);
    run(&root, "apply").await.code(0);
    assert_eq!(image(&c).await, "nginx:1.27");
}
