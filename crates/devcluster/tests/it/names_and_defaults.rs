//! Names, annotation sizes and defaulted list keys as a real API server has them, so that real
//! install files (metrics-server's `system:` roles, kubectl-installed Services) work here too.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;

use crate::support::{ar, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_names_may_hold_colons_other_names_may_not() {
    let c = Cluster::start().await;
    let dir = c.manifests(
        "rbac",
        &[(
            "r.yaml",
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: system:metrics-server\nrules: []\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: metrics-server:system:auth-delegator\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:auth-delegator}\nsubjects: [{kind: ServiceAccount, name: metrics-server, namespace: kube-system}]\n",
        )],
    );
    let out = c
        .kubectl(&["apply", "--server-side", "-f", dir.to_str().unwrap()])
        .await
        .code(0);
    assert!(
        out.stdout.contains(
            "clusterrole.rbac.authorization.k8s.io/system:metrics-server serverside-applied"
        ),
        "{out:?}"
    );
    let dir = c.manifests(
        "cm",
        &[(
            "c.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a:b\n  namespace: default\n",
        )],
    );
    let out = c
        .kubectl(&["apply", "--server-side", "-f", dir.to_str().unwrap()])
        .await
        .code(1);
    assert!(out.stderr.contains("RFC 1123 subdomain"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn annotations_are_capped_at_256_kib_in_all() {
    let c = Cluster::start().await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        c.client().await,
        "default",
        &ar("", "v1", "ConfigMap", "configmaps"),
    );
    let pp = PatchParams::apply("t");
    let half = "x".repeat(130 << 10);
    let err = api
        .patch(
            "big",
            &pp,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "big", "annotations": {"a": half, "b": half}}})),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("metadata.annotations: Too long: may not be more than 262144 bytes"),
        "{err}"
    );
    // One value of 200 KiB is within the total.
    api.patch(
        "big",
        &pp,
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "big", "annotations": {"a": "x".repeat(200 << 10)}}})),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_without_protocol_takes_over_the_one_kubectl_applied() {
    let c = Cluster::start().await;
    let dir = c.manifests(
        "svc",
        &[(
            "s.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: default\nspec:\n  selector: {app: web}\n  ports:\n  - name: https\n    port: 443\n    targetPort: 8443\n    protocol: TCP\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: web\n        image: nginx\n        ports: [{containerPort: 8443, protocol: TCP}]\n",
        )],
    );
    c.kubectl(&["apply", "--server-side", "-f", dir.to_str().unwrap()])
        .await
        .code(0);
    let client = c.client().await;
    let svc: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ar("", "v1", "Service", "services"),
    );
    let pp = PatchParams::apply("strata");
    let applied = svc
        .patch(
            "web",
            &pp,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "https", "port": 443, "targetPort": 8443}]}})),
        )
        .await
        .expect("no conflict on .spec.ports[port=443]");
    let ports = &applied.data["spec"]["ports"];
    assert_eq!(ports.as_array().map(Vec::len), Some(1), "{ports}");
    assert_eq!(ports[0]["protocol"], "TCP");
    let mf = serde_json::to_string(&applied.metadata.managed_fields).unwrap();
    assert!(
        mf.contains(r#"k:{\"port\":443,\"protocol\":\"TCP\"}"#),
        "{mf}"
    );

    let deploy: Api<DynamicObject> = Api::namespaced_with(
        client,
        "default",
        &ar("apps", "v1", "Deployment", "deployments"),
    );
    deploy
        .patch(
            "web",
            &pp,
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 8443}]}]}}}})),
        )
        .await
        .expect("no conflict on the container port");
}
