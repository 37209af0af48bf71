//! What devcluster adds for testing clients: simulated readiness, injected faults (from the
//! handle and over HTTP), and the data file that keeps a cluster across restarts.

use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::json;

use devcluster::{DevClusterOptions, Fault};

use crate::support::{ar, cm_api, Cluster};

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
        action: devcluster::FaultAction::Latency(Duration::from_millis(300)),
        count: None,
        dry_run: None,
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
async fn requests_are_counted_by_path_and_a_fault_on_no_resource_takes_discovery_down() {
    let c = Cluster::start().await;
    let client = c.client().await;
    kube::Discovery::new(client.clone()).run().await.unwrap();
    cm_api(&client, "default").get_opt("x").await.unwrap();
    assert_eq!(c.dev.count_requests(|r| r == "GET /apis"), 1);
    assert_eq!(
        c.dev.requests()["GET /api/v1/namespaces/default/configmaps/x"],
        1
    );
    c.dev.reset_requests();
    assert!(c.dev.requests().is_empty());

    // A fault on a resource leaves discovery alone; one that names none does not.
    c.dev.inject(Fault::fail("get", "configmaps", 503, 1));
    kube::Discovery::new(client.clone()).run().await.unwrap();
    c.dev.clear_faults();
    c.dev.inject(Fault {
        verb: None,
        resource: None,
        action: devcluster::FaultAction::Status(500),
        count: Some(1),
        dry_run: None,
    });
    let mut request = http::Request::get("/apis").body(Vec::new()).unwrap();
    request
        .headers_mut()
        .insert("accept", "application/json".parse().unwrap());
    let err = client.request_text(request).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("injected fault: get discovery answered 500"),
        "{err}"
    );
    assert_eq!(c.dev.count_requests(|r| r == "GET /apis"), 2);
}
