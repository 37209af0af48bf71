//! Fidelity with the real kubectl: server-side apply, diff, field-manager conflicts, delete and
//! watch, as against a real cluster.

use std::time::Duration;

use devcluster::DevClusterOptions;

use crate::support::{Cluster, APP, CRD, NAMESPACE, WIDGET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_diffs_and_deletes_a_directory_server_side() {
    // No simulated readiness: its status writes would bump the resourceVersion this test watches.
    let c = Cluster::with(DevClusterOptions {
        simulate_ready: None,
        ..Default::default()
    })
    .await;
    let dir = c.manifests(
        "m",
        &[
            ("00-ns.yaml", NAMESPACE),
            ("01-crd.yaml", CRD),
            ("02-app.yaml", APP),
            ("03-widget.yaml", WIDGET),
        ],
    );
    let dir_s = dir.to_str().unwrap();
    // As against a real cluster: the custom resource can't be mapped until its CRD exists.
    let first = c.kubectl(&["apply", "--server-side", "-f", dir_s]).await;
    assert_eq!(first.code, 1, "{first:?}");
    assert!(
        first.stderr.contains("ensure CRDs are installed first"),
        "{first:?}"
    );
    assert!(
        first.stdout.contains(
            "customresourcedefinition.apiextensions.k8s.io/widgets.example.com serverside-applied"
        ),
        "{first:?}"
    );
    let second = c
        .kubectl(&["apply", "--server-side", "-f", dir_s])
        .await
        .code(0);
    assert!(
        second
            .stdout
            .contains("widget.example.com/w1 serverside-applied"),
        "{second:?}"
    );

    let yaml = c
        .kubectl(&["get", "configmap", "settings", "-n", "demo", "-o", "yaml"])
        .await
        .code(0);
    assert!(yaml.stdout.contains("color: blue"), "{}", yaml.stdout);
    assert!(yaml.stdout.contains("resourceVersion:"), "{}", yaml.stdout);
    let widget = c
        .kubectl(&[
            "get",
            "wd",
            "w1",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.size}",
        ])
        .await
        .code(0);
    assert_eq!(widget.stdout, "3");

    let rv = c.dev.resource_version();
    c.kubectl(&["diff", "--server-side", "-f", dir_s])
        .await
        .code(0);
    assert_eq!(c.dev.resource_version(), rv, "a diff writes nothing");

    std::fs::write(
        dir.join("02-app.yaml"),
        APP.replace("color: blue", "color: green"),
    )
    .unwrap();
    let diff = c.kubectl(&["diff", "--server-side", "-f", dir_s]).await;
    assert_eq!(
        diff.code, 1,
        "kubectl diff exits 1 when there are differences: {diff:?}"
    );
    assert!(
        diff.stdout.contains("-  color: blue") && diff.stdout.contains("+  color: green"),
        "{}",
        diff.stdout
    );

    c.kubectl(&["delete", "-f", dir.join("03-widget.yaml").to_str().unwrap()])
        .await
        .code(0);
    let gone = c.kubectl(&["get", "wd", "w1", "-n", "demo"]).await;
    assert_eq!(gone.code, 1);
    assert!(
        gone.stderr.contains("NotFound") || gone.stderr.contains("not found"),
        "{gone:?}"
    );

    let resources = c.kubectl(&["api-resources"]).await.code(0);
    for line in [
        "deployments",
        "deploy",
        "apps/v1",
        "widgets",
        "wd",
        "example.com/v1",
        "Widget",
    ] {
        assert!(
            resources.stdout.contains(line),
            "{line}: {}",
            resources.stdout
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_field_manager_conflicts_until_it_forces() {
    let c = Cluster::start().await;
    let dir = c.manifests("m", &[("00-ns.yaml", NAMESPACE), ("02-app.yaml", APP)]);
    c.kubectl(&["apply", "--server-side", "-f", dir.to_str().unwrap()])
        .await
        .code(0);
    let other = c.manifests("other", &[("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: demo\ndata:\n  color: red\n")]);
    let other_s = other.to_str().unwrap();
    let conflict = c
        .kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=ops-team",
            "-f",
            other_s,
        ])
        .await;
    assert_eq!(conflict.code, 1);
    assert!(
        conflict
            .stderr
            .contains("Apply failed with 1 conflict: conflict with \"kubectl\": .data.color"),
        "{conflict:?}"
    );
    c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=ops-team",
        "--force-conflicts",
        "-f",
        other_s,
    ])
    .await
    .code(0);
    let color = c
        .kubectl(&[
            "get",
            "cm",
            "settings",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.color}",
        ])
        .await
        .code(0);
    assert_eq!(color.stdout, "red");
    let managers = c
        .kubectl(&[
            "get",
            "cm",
            "settings",
            "-n",
            "demo",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ])
        .await
        .code(0);
    assert_eq!(
        managers.stdout, "ops-team",
        "ownership moved to the forcing manager"
    );
}

/// Conflicts are worded as the API server words them: an applier by name, an updater with the
/// API version it used; several grouped by manager; one `FieldManagerConflict` cause per field
/// (with the Status field `reason`, which clients such as kube-rs read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_name_appliers_and_updaters_as_kubernetes_does() {
    let c = Cluster::start().await;
    let cm = |data: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s\n  namespace: demo\ndata:\n{data}")
    };
    let ns = c.manifests("ns", &[("ns.yaml", NAMESPACE)]);
    c.kubectl(&["apply", "--server-side", "-f", ns.to_str().unwrap()])
        .await
        .code(0);
    let first = c.manifests(
        "first",
        &[("cm.yaml", &cm("  a: \"1\"\n  b: \"1\"\n  c: \"1\"\n"))],
    );
    c.kubectl(&["apply", "--server-side", "-f", first.to_str().unwrap()])
        .await
        .code(0);
    c.kubectl(&[
        "patch",
        "cm",
        "s",
        "-n",
        "demo",
        "--type=merge",
        "-p",
        r#"{"data":{"b":"2","c":"2"}}"#,
    ])
    .await
    .code(0);
    let third = c.manifests(
        "third",
        &[("cm.yaml", &cm("  a: \"3\"\n  b: \"3\"\n  c: \"3\"\n"))],
    );
    let out = c
        .kubectl(&[
            "apply",
            "--server-side",
            "--field-manager=third",
            "-f",
            third.to_str().unwrap(),
        ])
        .await
        .code(1);
    assert!(
        out.stderr.contains(
            "Apply failed with 3 conflicts: conflicts with \"kubectl\":\n- .data.a\nconflicts with \"kubectl-patch\" using v1:\n- .data.b\n- .data.c"
        ),
        "{out:?}"
    );

    let client = c.client().await;
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        client,
        "demo",
        &kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("", "v1", "ConfigMap"),
            "configmaps",
        ),
    );
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "s", "namespace": "demo"}, "data": {"a": "3"}});
    let err = api
        .patch(
            "s",
            &kube::api::PatchParams::apply("third"),
            &kube::api::Patch::Apply(&body),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    let causes = status.details.expect("details").causes;
    assert_eq!(causes.len(), 1, "{causes:?}");
    assert_eq!(causes[0].reason, "FieldManagerConflict");
    assert_eq!(causes[0].field, ".data.a");
    assert_eq!(causes[0].message, "conflict with \"kubectl\"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_watch_receives_events() {
    let c = Cluster::start().await;
    let kubeconfig = c.kubeconfig.clone();
    let watch = tokio::spawn(async move {
        tokio::process::Command::new("kubectl")
            .args([
                "get",
                "configmaps",
                "--watch-only",
                "-o",
                "name",
                "--request-timeout=9s",
            ])
            .env("KUBECONFIG", kubeconfig)
            .kill_on_drop(true)
            .output()
            .await
    });
    // kubectl may take a while to start its watch on a busy machine: keep making events.
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let name = format!("watched-{i}");
        let text =
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  a: b\n");
        let f = c.manifests(&name, &[("cm.yaml", text.as_str())]);
        c.kubectl(&["apply", "--server-side", "-f", f.to_str().unwrap()])
            .await
            .code(0);
    }
    let out = tokio::time::timeout(Duration::from_secs(20), watch)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("configmap/watched-"),
        "watch saw: {text:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
