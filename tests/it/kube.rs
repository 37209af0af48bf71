//! Kubernetes layers against `DevCluster`, with the real kubectl as the other person editing
//! the cluster.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use devcluster::{DevClusterOptions, Fault};
use serde_json::json;
use strata::kube::{self as layer, Action, ApplyOptions, DiffState, KubeError, SyncOptions};
use strata::redact::Redacted;
use strata::value::InputValue;

use crate::support::Cluster;

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: platform\n";
const SETTINGS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  db_host: ${db_host}\n  color: blue\n";
const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27"}]
"#;
const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
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
    "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  size: 3\n";

fn opts(drift_correct: bool) -> SyncOptions {
    let mut apply = ApplyOptions::new("demo", "platform");
    apply.namespace = Some("platform".into());
    apply.force_conflicts = drift_correct;
    apply.backoff.first = Duration::from_millis(20);
    SyncOptions {
        apply,
        prune: true,
        wait: false,
        timeout: Duration::from_secs(10),
    }
}

fn vars() -> BTreeMap<String, InputValue> {
    BTreeMap::from([(
        "db_host".to_string(),
        InputValue::Known("db.internal".into()),
    )])
}

/// Writes the layer's files under `root/k8s` (replacing what was there).
fn write_layer(root: &Path, files: &[(&str, &str)]) {
    let dir = root.join("k8s");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (f, t) in files {
        std::fs::write(dir.join(f), t).unwrap();
    }
}

async fn sync(
    c: &Cluster,
    client: &kube::Client,
    o: &SyncOptions,
) -> Result<layer::ChangeSet, KubeError> {
    let (desired, resources) = layer::desired(
        &client.clone().into(),
        c.dir.path(),
        Path::new("k8s"),
        &vars(),
        &o.apply,
    )
    .await?;
    layer::sync(&client.clone().into(), &desired, &resources, o).await
}

async fn diff(c: &Cluster, client: &kube::Client, o: &SyncOptions) -> layer::KubeDiff {
    let (desired, resources) = layer::desired(
        &client.clone().into(),
        c.dir.path(),
        Path::new("k8s"),
        &vars(),
        &o.apply,
    )
    .await
    .unwrap();
    layer::diff(&client.clone().into(), &desired, &resources, o)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_everything_and_a_second_apply_writes_nothing() {
    // No simulated readiness: its status writes would bump the resourceVersion this test watches.
    let c = Cluster::with(DevClusterOptions {
        simulate_ready: None,
        ..Default::default()
    })
    .await;
    let client = c.client().await;
    write_layer(
        c.dir.path(),
        &[
            ("ns.yaml", NS),
            ("settings.yaml", SETTINGS),
            ("web.yaml", WEB),
            ("crd.yaml", CRD),
            ("widget.yaml", WIDGET),
        ],
    );
    let cs = sync(&c, &client, &opts(false)).await.unwrap();
    assert_eq!(cs.summary(), "+5 ~0 -0", "{cs:?}");
    let order: Vec<String> = cs.changes.iter().map(|c| c.object.to_string()).collect();
    assert_eq!(
        order,
        [
            "CustomResourceDefinition/widgets.example.com",
            "Namespace/platform",
            "ConfigMap/platform/settings",
            "Deployment/platform/web",
            "Widget/platform/w1",
        ]
    );
    let cm = c
        .kubectl(&[
            "get",
            "cm",
            "settings",
            "-n",
            "platform",
            "-o",
            "jsonpath={.data.db_host} {.metadata.labels}",
        ])
        .await
        .code(0);
    assert!(cm.stdout.starts_with("db.internal "), "{}", cm.stdout);
    assert!(
        cm.stdout.contains("\"strata.dev/layer\":\"platform\""),
        "{}",
        cm.stdout
    );

    let rv = c.dev.resource_version();
    let again = sync(&c, &client, &opts(false)).await.unwrap();
    assert!(!again.has_changes(), "{again:?}");
    assert_eq!(again.count(Action::Unchanged), 5);
    assert_eq!(c.dev.resource_version(), rv, "zero writes on a no-op run");
    assert!(!diff(&c, &client, &opts(false)).await.has_drift());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_band_edit_is_diffed_then_reported_or_corrected() {
    let c = Cluster::start().await;
    let client = c.client().await;
    write_layer(
        c.dir.path(),
        &[("ns.yaml", NS), ("settings.yaml", SETTINGS)],
    );
    sync(&c, &client, &opts(false)).await.unwrap();
    c.kubectl(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "platform",
        "--type=merge",
        "-p",
        r#"{"data":{"color":"red"}}"#,
    ])
    .await
    .code(0);

    let d = diff(&c, &client, &opts(false)).await;
    assert_eq!(d.objects.len(), 1);
    assert_eq!(d.objects[0].state, DiffState::Changed);
    assert_eq!(d.objects[0].fields[0].path, ".data.color");
    assert_eq!(d.objects[0].fields[0].live, Some(json!("red")));
    assert_eq!(d.objects[0].fields[0].desired, Some(json!("blue")));
    assert!(
        d.to_text(false).contains(".data.color: \"red\" → \"blue\""),
        "{}",
        d.to_text(false)
    );

    // Under drift = "report" the other manager's field is not taken back (Git did not change
    // it): the apply succeeds, leaves it to kubectl-patch, and says so.
    let cs = sync(&c, &client, &opts(false)).await.unwrap();
    assert_eq!(cs.count(Action::Unchanged), 2, "{cs:?}");
    let settings = cs
        .changes
        .iter()
        .find(|ch| ch.object.name == "settings")
        .unwrap();
    assert_eq!(settings.kept.len(), 1, "{settings:?}");
    assert_eq!(settings.kept[0].path, ".data.color");
    assert_eq!(settings.kept[0].manager, "kubectl-patch");
    assert!(settings.taken.is_empty());
    let color = c
        .kubectl(&[
            "get",
            "cm",
            "settings",
            "-n",
            "platform",
            "-o",
            "jsonpath={.data.color}",
        ])
        .await
        .code(0);
    assert_eq!(color.stdout, "red");

    // Under drift = "correct" it is.
    let cs = sync(&c, &client, &opts(true)).await.unwrap();
    assert_eq!(cs.count(Action::Configured), 1);
    let color = c
        .kubectl(&[
            "get",
            "cm",
            "settings",
            "-n",
            "platform",
            "-o",
            "jsonpath={.data.color}",
        ])
        .await
        .code(0);
    assert_eq!(color.stdout, "blue");
    assert!(!diff(&c, &client, &opts(true)).await.has_drift());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_objects_come_back_and_removed_ones_are_pruned_unless_protected() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let protected = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep-me\n  annotations:\n    strata.dev/prune: disabled\n";
    let extra = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n";
    write_layer(
        c.dir.path(),
        &[
            ("ns.yaml", NS),
            ("settings.yaml", SETTINGS),
            ("keep.yaml", protected),
            ("extra.yaml", extra),
        ],
    );
    sync(&c, &client, &opts(false)).await.unwrap();

    c.kubectl(&["delete", "cm", "settings", "-n", "platform"])
        .await
        .code(0);
    let d = diff(&c, &client, &opts(false)).await;
    assert_eq!(d.objects[0].state, DiffState::Missing);
    let cs = sync(&c, &client, &opts(false)).await.unwrap();
    assert_eq!(cs.summary(), "+1 ~0 -0");

    write_layer(
        c.dir.path(),
        &[("ns.yaml", NS), ("settings.yaml", SETTINGS)],
    );
    let d = diff(&c, &client, &opts(false)).await;
    let extras: Vec<String> = d
        .objects
        .iter()
        .filter(|o| o.state == DiffState::Extra)
        .map(|o| o.object.to_string())
        .collect();
    assert_eq!(
        extras,
        ["ConfigMap/platform/extra", "ConfigMap/platform/keep-me"]
    );
    let cs = sync(&c, &client, &opts(false)).await.unwrap();
    assert_eq!(cs.count(Action::Deleted), 1, "{cs:?}");
    let skipped = cs
        .changes
        .iter()
        .find(|c| c.action == Action::Skipped)
        .unwrap();
    assert_eq!(skipped.object.to_string(), "ConfigMap/platform/keep-me");
    assert!(
        c.kubectl(&["get", "cm", "extra", "-n", "platform"])
            .await
            .code
            != 0
    );
    c.kubectl(&["get", "cm", "keep-me", "-n", "platform"])
        .await
        .code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_invalid_manifest_blocks_the_whole_layer() {
    let c = Cluster::start().await;
    let client = c.client().await;
    write_layer(c.dir.path(), &[("ns.yaml", NS)]);
    sync(&c, &client, &opts(false)).await.unwrap();
    let bad = WEB.replace("name: web\nspec", "name: Bad_Name\nspec");
    write_layer(
        c.dir.path(),
        &[
            ("ns.yaml", NS),
            ("settings.yaml", SETTINGS),
            ("bad.yaml", &bad),
        ],
    );
    let rv = c.dev.resource_version();
    let err = sync(&c, &client, &opts(false)).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("dry-run failed, nothing applied:"),
        "{text}"
    );
    assert!(text.contains("Deployment/platform/Bad_Name: Deployment.apps \"Bad_Name\" is invalid: metadata.name: Invalid value"), "{text}");
    // The one write is the inventory, sent beside the dry runs: no object was applied.
    assert_eq!(
        c.dev.resource_version(),
        rv + 1,
        "nothing was applied but the inventory"
    );
    assert_ne!(
        c.kubectl(&["get", "cm", "settings", "-n", "platform"])
            .await
            .code,
        0,
        "settings was not applied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_500s_are_retried_and_a_failed_listing_never_prunes() {
    let c = Cluster::start().await;
    let client = c.client().await;
    write_layer(
        c.dir.path(),
        &[
            ("ns.yaml", NS),
            ("settings.yaml", SETTINGS),
            (
                "extra.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n",
            ),
        ],
    );
    c.dev.inject(Fault::fail("patch", "configmaps", 500, 2));
    let cs = sync(&c, &client, &opts(false)).await.unwrap();
    assert_eq!(cs.summary(), "+3 ~0 -0");

    write_layer(
        c.dir.path(),
        &[("ns.yaml", NS), ("settings.yaml", SETTINGS)],
    );
    // The inventory can't be read: no pruning, an error instead.
    c.dev.inject(Fault::fail("get", "configmaps", 500, 100));
    let err = sync(&c, &client, &opts(false))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("failed to read the inventory"), "{err}");
    c.dev.clear_faults();
    c.kubectl(&["get", "cm", "extra", "-n", "platform"])
        .await
        .code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_planted_in_git_never_appears_in_any_output() {
    const PLANTED: &str = "planted-k8s-secret-77e1";
    let c = Cluster::start().await;
    let client = c.client().await;
    let secret = format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: {PLANTED}\n  token: ${{token}}\n");
    write_layer(c.dir.path(), &[("ns.yaml", NS), ("secret.yaml", &secret)]);
    let mut v = vars();
    v.insert(
        "token".into(),
        InputValue::Sensitive(Redacted::new("sensitive-token-99".into())),
    );
    let o = opts(true);
    let (desired, resources) = layer::desired(
        &client.clone().into(),
        c.dir.path(),
        Path::new("k8s"),
        &v,
        &o.apply,
    )
    .await
    .unwrap();
    let cs = layer::sync(&client.clone().into(), &desired, &resources, &o)
        .await
        .unwrap();
    let mut printed = format!("{cs:?}{}", serde_json::to_string(&cs).unwrap());
    // Change it out of band, then diff.
    c.kubectl(&[
        "patch",
        "secret",
        "creds",
        "-n",
        "platform",
        "--type=merge",
        "-p",
        r#"{"stringData":{"password":"other-value"}}"#,
    ])
    .await
    .code(0);
    let d = layer::diff(&client.clone().into(), &desired, &resources, &o)
        .await
        .unwrap();
    printed += &format!(
        "{d:?}{}{}",
        serde_json::to_string(&d).unwrap(),
        d.to_text(false)
    );
    assert!(
        d.to_text(false)
            .contains(".data.password: \"***\" → \"*** (changed)\""),
        "{}",
        d.to_text(false)
    );
    let err = layer::sync(
        &client.clone().into(),
        &desired,
        &resources,
        &SyncOptions {
            apply: ApplyOptions {
                force_conflicts: false,
                ..o.apply.clone()
            },
            ..o.clone()
        },
    )
    .await;
    printed += &format!("{err:?}");
    for secret in [PLANTED, "sensitive-token-99"] {
        assert!(!printed.contains(secret), "{secret} leaked: {printed}");
    }
    assert!(
        !printed.contains("b3RoZXItdmFsdWU"),
        "base64 of the live value leaked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn substitution_errors_and_yaml_bombs_fail_the_layer_with_file_and_line() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: ${db_hots}\n  y: ${token}\n";
    write_layer(c.dir.path(), &[("cm.yaml", cm)]);
    let mut v = vars();
    v.insert(
        "token".into(),
        InputValue::Sensitive(Redacted::new("t".into())),
    );
    let err = layer::desired(
        &client.clone().into(),
        c.dir.path(),
        Path::new("k8s"),
        &v,
        &opts(false).apply,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("k8s/cm.yaml:6: undefined variable ${db_hots} (did you mean \"db_host\"?)"),
        "{err}"
    );
    assert!(err.contains("k8s/cm.yaml:7: ${token} is sensitive and may only be substituted into a Secret, not a ConfigMap"), "{err}");

    let bomb = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\na: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n";
    write_layer(c.dir.path(), &[("bomb.yaml", bomb), ("ok.yaml", NS)]);
    let err = layer::desired(
        &client.clone().into(),
        c.dir.path(),
        Path::new("k8s"),
        &vars(),
        &opts(false).apply,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("failed to load manifests:\n  k8s/bomb.yaml:1: "),
        "{err}"
    );

    write_layer(c.dir.path(), &[("a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\n"), ("b.yaml", "kind: List\napiVersion: v1\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: dup\n")]);
    let err = layer::desired(
        &client.clone().into(),
        c.dir.path(),
        Path::new("k8s"),
        &vars(),
        &opts(false).apply,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("ConfigMap/platform/dup is declared twice: k8s/a.yaml:1 and k8s/b.yaml:1"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_reports_what_is_not_ready_and_immutable_changes_need_consent() {
    let c = Cluster::with(DevClusterOptions {
        simulate_ready: None,
        ..Default::default()
    })
    .await;
    let client = c.client().await;
    write_layer(c.dir.path(), &[("ns.yaml", NS), ("web.yaml", WEB)]);
    let mut o = opts(false);
    o.wait = true;
    o.timeout = Duration::from_secs(1);
    let err = sync(&c, &client, &o).await.unwrap_err().to_string();
    assert!(err.starts_with("timed out after 1s waiting for:"), "{err}");
    assert!(
        err.contains("Deployment/platform/web: generation 1 not observed yet"),
        "{err}"
    );

    o.wait = false;
    let moved = WEB.replace("app: web}", "app: web2}");
    write_layer(c.dir.path(), &[("ns.yaml", NS), ("web.yaml", &moved)]);
    let err = sync(&c, &client, &o).await.unwrap_err().to_string();
    assert!(err.contains("Deployment/platform/web: Deployment.apps \"web\" is invalid: spec.selector: Invalid value"), "{err}");
    assert!(
        err.contains("annotate it strata.dev/recreate: allowed"),
        "{err}"
    );

    let consent = moved.replace(
        "name: web\nspec",
        "name: web\n  annotations:\n    strata.dev/recreate: allowed\nspec",
    );
    write_layer(c.dir.path(), &[("ns.yaml", NS), ("web.yaml", &consent)]);
    let cs = sync(&c, &client, &o).await.unwrap();
    assert_eq!(cs.count(Action::Recreated), 1, "{cs:?}");
    let sel = c
        .kubectl(&[
            "get",
            "deploy",
            "web",
            "-n",
            "platform",
            "-o",
            "jsonpath={.spec.selector.matchLabels.app}",
        ])
        .await
        .code(0);
    assert_eq!(sel.stdout, "web2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kustomization_is_rendered_with_kubectl_kustomize() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let kustomization = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: platform\ncommonLabels:\n  team: core\nresources:\n  - ns.yaml\n  - cm.yaml\n";
    write_layer(c.dir.path(), &[("kustomization.yaml", kustomization), ("ns.yaml", NS), ("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-kustomize\ndata:\n  host: ${db_host}\n")]);
    let cs = sync(&c, &client, &opts(false)).await.unwrap();
    assert_eq!(cs.summary(), "+2 ~0 -0", "{cs:?}");
    let out = c
        .kubectl(&[
            "get",
            "cm",
            "from-kustomize",
            "-n",
            "platform",
            "-o",
            "jsonpath={.metadata.labels.team} {.data.host}",
        ])
        .await
        .code(0);
    assert_eq!(out.stdout, "core db.internal");
}
