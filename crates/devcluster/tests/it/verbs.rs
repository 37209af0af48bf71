//! The verbs' semantics through kube-rs: authentication, server-side apply and dry runs,
//! optimistic concurrency, generation and status, namespaces, CRDs, lists and watches.

use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use devcluster::DevClusterOptions;

use crate::support::{ar, cm_api, Cluster, CRD};

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
