//! `strata devcluster` checked with the real kubectl, and with kube-rs.

use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use strata::devcluster::{DevClusterOptions, Fault};

use crate::support::Cluster;

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n";
const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wd]}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
      subresources: {status: {}}
"#;
const WIDGET: &str = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: demo\nspec:\n  size: 3\n";
const APP: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27"}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
data:
  color: blue
"#;

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn cm_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ar("", "v1", "ConfigMap", "configmaps"))
}

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
        conflict.stderr.contains(
            "Apply failed with 1 conflict: conflict with \"kubectl\" using v1: .data.color"
        ),
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

#[tokio::test]
async fn requests_without_the_token_are_unauthorized() {
    let c = Cluster::start().await;
    let kc = c.dev.kubeconfig().replace(c.dev.token(), "wrong-token");
    let kc = kube::config::Kubeconfig::from_yaml(&kc).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let err = cm_api(&client, "default")
        .list(&ListParams::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("401") || err.to_string().contains("Unauthorized"),
        "{err}"
    );
}

#[tokio::test]
async fn server_side_apply_is_idempotent_and_dry_runs_store_nothing() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let api = cm_api(&client, "default");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "1"}});
    let pp = PatchParams::apply("strata");
    let created = api.patch("a", &pp, &Patch::Apply(&cm)).await.unwrap();
    let rv = c.dev.resource_version();
    let again = api.patch("a", &pp, &Patch::Apply(&cm)).await.unwrap();
    assert_eq!(
        again.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(c.dev.resource_version(), rv, "a no-op apply writes nothing");

    let changed = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "2"}});
    let dry = api
        .patch(
            "a",
            &PatchParams::apply("strata").dry_run(),
            &Patch::Apply(&changed),
        )
        .await
        .unwrap();
    assert_eq!(dry.data["data"]["k"], "2");
    assert_eq!(c.dev.resource_version(), rv, "a dry run writes nothing");
    assert_eq!(api.get("a").await.unwrap().data["data"]["k"], "1");

    // A field this manager stops applying goes away.
    let fewer = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"x": "y"}}});
    let after = api.patch("a", &pp, &Patch::Apply(&fewer)).await.unwrap();
    assert!(
        after.data.get("data").is_none_or(|d| d.get("k").is_none()),
        "{:?}",
        after.data
    );
    assert_eq!(after.metadata.labels.unwrap()["x"], "y");

    // Create-on-apply also works in a dry run without storing.
    let ghost = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ghost"}});
    api.patch(
        "ghost",
        &PatchParams::apply("strata").dry_run(),
        &Patch::Apply(&ghost),
    )
    .await
    .unwrap();
    assert!(api.get_opt("ghost").await.unwrap().is_none());
}

#[tokio::test]
async fn optimistic_concurrency_generation_and_status_are_kept_apart() {
    let c = Cluster::with(DevClusterOptions {
        simulate_ready: None,
        ..Default::default()
    })
    .await;
    let client = c.client().await;
    let deploys: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ar("apps", "v1", "Deployment", "deployments"),
    );
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
        "status": {"readyReplicas": 99}});
    let created = deploys
        .create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.data.get("status").is_none(),
        "status is not set through the main resource"
    );

    let mut stale = created.clone();
    let labelled = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"l": "1"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(1),
        "metadata changes don't bump generation"
    );
    stale.data["spec"]["replicas"] = json!(3);
    let err = deploys
        .replace("web", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("the object has been modified"),
        "{err}"
    );

    let scaled = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.metadata.generation, Some(2));
    let status = deploys
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyReplicas": 3}, "spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(status.data["status"]["readyReplicas"], 3);
    assert_eq!(
        status.data["spec"]["replicas"], 3,
        "a status write changes no spec"
    );
    assert_eq!(status.metadata.generation, Some(2));

    let immutable = deploys
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"selector": {"matchLabels": {"app": "other"}}, "template": {"metadata": {"labels": {"app": "other"}}}}})))
        .await
        .unwrap_err();
    assert!(
        immutable
            .to_string()
            .contains("spec.selector: Invalid value"),
        "{immutable}"
    );
    assert!(
        immutable.to_string().contains("field is immutable"),
        "{immutable}"
    );
}

#[tokio::test]
async fn namespaces_must_exist_and_take_their_objects_with_them() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let missing = cm_api(&client, "nowhere")
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("namespaces \"nowhere\" not found"),
        "{missing}"
    );

    let nss: Api<DynamicObject> =
        Api::all_with(client.clone(), &ar("", "v1", "Namespace", "namespaces"));
    nss.patch(
        "team",
        &PatchParams::apply("t"),
        &Patch::Apply(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
        ),
    )
    .await
    .unwrap();
    let api = cm_api(&client, "team");
    for n in ["a", "b"] {
        api.patch(
            n,
            &PatchParams::apply("t"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}}),
            ),
        )
        .await
        .unwrap();
    }
    // One object holds a finalizer: the namespace waits for it.
    api.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
    )
    .await
    .unwrap();
    nss.delete("team", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("a").await.unwrap().is_none());
    let held = api.get("b").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    let ns = nss.get("team").await.unwrap();
    assert_eq!(ns.data["status"]["phase"], "Terminating");
    api.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(
        api.get_opt("b").await.unwrap().is_none(),
        "gone once its finalizer is"
    );
    assert!(
        nss.get_opt("team").await.unwrap().is_none(),
        "the namespace goes once empty"
    );
}

#[tokio::test]
async fn crds_serve_their_kind_until_deleted() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ar(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
        ),
    );
    let crd: serde_json::Value = serde_saphyr::from_str(CRD).unwrap();
    let created = crds
        .patch(
            "widgets.example.com",
            &PatchParams::apply("t"),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
    let established = created.data["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    assert!(established);
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    assert!(discovery.groups().any(|g| g.name() == "example.com"));

    let widgets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ar("example.com", "v1", "Widget", "widgets"),
    );
    widgets
        .patch("w", &PatchParams::apply("t"), &Patch::Apply(json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}})))
        .await
        .unwrap();
    assert_eq!(
        widgets
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let err = widgets.list(&ListParams::default()).await.unwrap_err();
    assert!(
        err.to_string().contains("404") || err.to_string().contains("not find"),
        "{err}"
    );
}

#[tokio::test]
async fn lists_page_and_select_by_labels_and_fields() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let api = cm_api(&client, "default");
    for i in 0..7 {
        let tier = if i % 2 == 0 { "front" } else { "back" };
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}"), "labels": {"tier": tier}}});
        api.patch(
            &format!("cm-{i}"),
            &PatchParams::apply("t"),
            &Patch::Apply(cm),
        )
        .await
        .unwrap();
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = api.list(&lp).await.unwrap();
        assert!(page.items.len() <= 3);
        names.extend(page.items.iter().map(|o| o.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(names.len(), 7);
    let front = api
        .list(&ListParams::default().labels("tier=front"))
        .await
        .unwrap();
    assert_eq!(front.items.len(), 4);
    let one = api
        .list(&ListParams::default().fields("metadata.name=cm-3"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    let set = api
        .list(&ListParams::default().labels("tier in (back),tier!=front"))
        .await
        .unwrap();
    assert_eq!(set.items.len(), 3);
}

#[tokio::test]
async fn workloads_become_ready_after_the_simulated_delay() {
    let c = Cluster::with(DevClusterOptions {
        simulate_ready: Some(Duration::from_millis(200)),
        ..Default::default()
    })
    .await;
    let client = c.client().await;
    let jobs: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &ar("batch", "v1", "Job", "jobs"));
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
    jobs.patch("once", &PatchParams::apply("t"), &Patch::Apply(job))
        .await
        .unwrap();
    let deploys: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ar("apps", "v1", "Deployment", "deployments"),
    );
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
    deploys
        .patch("web", &PatchParams::apply("t"), &Patch::Apply(d))
        .await
        .unwrap();
    let mut ready = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let d = deploys.get("web").await.unwrap();
        let j = jobs.get("once").await.unwrap();
        if d.data["status"]["availableReplicas"] == 2
            && d.data["status"]["observedGeneration"] == 1
            && j.data["status"]["succeeded"] == 1
        {
            ready = true;
            break;
        }
    }
    assert!(ready, "the deployment and job became ready");
}

#[tokio::test]
async fn injected_faults_fail_requests_then_clear() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let api = cm_api(&client, "default");
    c.dev.inject(Fault::fail("list", "configmaps", 500, 2));
    for _ in 0..2 {
        let err = api.list(&ListParams::default()).await.unwrap_err();
        assert!(err.to_string().contains("injected fault"), "{err}");
    }
    assert!(
        api.list(&ListParams::default()).await.is_ok(),
        "used up after two"
    );
    c.dev.inject(Fault::fail("patch", "configmaps", 409, 1));
    let err = api
        .patch(
            "x",
            &PatchParams::apply("t"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
            ),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("injected fault: patch configmaps answered 409"),
        "{err}"
    );
    c.dev.inject(Fault {
        verb: Some("get".into()),
        resource: None,
        action: strata::devcluster::FaultAction::Latency(Duration::from_millis(300)),
        count: None,
    });
    let started = std::time::Instant::now();
    api.get_opt("x").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "latency is added"
    );
    c.dev.clear_faults();
}

#[tokio::test]
async fn the_data_file_keeps_objects_across_restarts_and_without_it_they_are_lost() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cluster.json");
    let opts = || DevClusterOptions {
        data: Some(data.clone()),
        ..Default::default()
    };
    let c = Cluster::with(opts()).await;
    let client = c.client().await;
    cm_api(&client, "default")
        .patch(
            "kept",
            &PatchParams::apply("t"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}}),
            ),
        )
        .await
        .unwrap();
    c.dev.stop().await;
    let c2 = Cluster::with(opts()).await;
    let client2 = c2.client().await;
    assert!(cm_api(&client2, "default")
        .get_opt("kept")
        .await
        .unwrap()
        .is_some());
    let c3 = Cluster::start().await;
    let client3 = c3.client().await;
    assert!(cm_api(&client3, "default")
        .get_opt("kept")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn kube_rs_watches_see_changes() {
    use futures::StreamExt;
    let c = Cluster::start().await;
    let client = c.client().await;
    let api = cm_api(&client, "default");
    let stream = kube::runtime::watcher(api.clone(), kube::runtime::watcher::Config::default());
    let mut stream = std::pin::pin!(kube::runtime::WatchStreamExt::applied_objects(stream));
    api.patch(
        "seen",
        &PatchParams::apply("t"),
        &Patch::Apply(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "seen"}}),
        ),
    )
    .await
    .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("seen"));
    api.patch("seen", &PatchParams::apply("t"), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "seen"}, "data": {"v": "2"}})))
        .await
        .unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.data["data"]["v"], "2");
}

#[tokio::test]
async fn faults_can_be_injected_over_http_and_collections_deleted() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let api = cm_api(&client, "default");
    for n in ["a", "b", "keep"] {
        let tier = if n == "keep" { "x" } else { "y" };
        api.patch(n, &PatchParams::apply("t"), &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n, "labels": {"t": tier}}})))
            .await
            .unwrap();
    }
    let body = serde_json::to_vec(
        &json!({"verb": "get", "resource": "configmaps", "action": {"status": 500}, "count": 1}),
    )
    .unwrap();
    let req = http::Request::post("/_devcluster/faults")
        .body(body)
        .unwrap();
    let _: serde_json::Value = client.request(req).await.unwrap();
    let err = api.get("keep").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("injected fault: get configmaps answered 500"),
        "{err}"
    );
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("t=y"),
    )
    .await
    .unwrap();
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    assert_eq!(left, ["keep"]);
}

#[tokio::test]
async fn the_cli_serves_until_sigterm_and_keeps_its_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let data = dir.path().join("data.json");
    let start = || {
        tokio::process::Command::new(assert_cmd::cargo::cargo_bin("strata"))
            .args(["devcluster", "--kubeconfig-out"])
            .arg(&kc)
            .arg("--data")
            .arg(&data)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let client_for = |kc: &std::path::Path| {
        let text = std::fs::read_to_string(kc).unwrap();
        async move {
            let k = kube::config::Kubeconfig::from_yaml(&text).unwrap();
            kube::Client::try_from(
                kube::Config::from_custom_kubeconfig(k, &Default::default())
                    .await
                    .unwrap(),
            )
            .unwrap()
        }
    };
    let wait_ready = |child: &mut tokio::process::Child| {
        let out = child.stdout.take().unwrap();
        async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(out).lines();
            let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert!(
                first.starts_with("devcluster serving at https://127.0.0.1:"),
                "{first}"
            );
            lines
        }
    };
    let mut child = start();
    let _lines = wait_ready(&mut child).await;
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kc).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let client = client_for(&kc).await;
    cm_api(&client, "default")
        .patch(
            "durable",
            &PatchParams::apply("t"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "durable"}}),
            ),
        )
        .await
        .unwrap();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");

    let mut child = start();
    let _lines = wait_ready(&mut child).await;
    let client = client_for(&kc).await;
    assert!(cm_api(&client, "default")
        .get_opt("durable")
        .await
        .unwrap()
        .is_some());
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let _ = child.wait().await;
}
