//! How few sequential round trips a Kubernetes layer's apply takes, and that none of its
//! guarantees is lost for it: the inventory goes out beside the dry runs (no object is written
//! unless both succeeded), and the kinds nothing else needs at creation go out together.

use std::path::Path;

use devcluster::Fault;

use crate::kube_safety::{layer, run, CRD};
use crate::support::Cluster;

/// A stack `rounds` of one layer `app` in namespace `default`, pruning.
fn one_layer(root: &Path, c: &Cluster) {
    let hcl = format!(
        "stack \"rounds\" {{}}\n\ncluster \"main\" {{\n  kubeconfig_path = \"{}\"\n}}\n\nkubernetes \"app\" {{\n  source    = \"k8s/app\"\n  cluster   = cluster.main\n  wait      = false\n  namespace = \"default\"\n}}\n",
        c.kubeconfig.display()
    );
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("strata.hcl"), hcl).unwrap();
}

const SA: &str = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n";

/// The `Kind/name`s the inventory of layer `layer` holds, sorted; `None` when it has none.
pub(crate) async fn inventory(c: &Cluster, layer: &str) -> Option<Vec<String>> {
    let got = c
        .kubectl(&["get", "configmaps", "-n", "strata-system", "-o", "json"])
        .await;
    if got.code != 0 {
        return None;
    }
    let list: serde_json::Value = serde_json::from_str(&got.stdout).unwrap();
    let cm = list["items"].as_array()?.iter().find(|cm| {
        cm["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("inventory.") && n.ends_with(&format!(".{layer}")))
    })?;
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(cm["data"]["entries"].as_str().unwrap()).unwrap();
    let mut names: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["kind"].as_str().unwrap(),
                e["name"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    Some(names)
}

/// Faults cleared, an apply converges: the ServiceAccount exists and is the inventory.
async fn converges_with_its_service_account(c: &Cluster, root: &Path) {
    assert_eq!(run(root, "apply").await.code, 0);
    c.kubectl(&["get", "serviceaccount", "app", "-n", "default"])
        .await
        .code(0);
    assert_eq!(
        inventory(c, "app").await,
        Some(vec!["ServiceAccount/app".to_string()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inventory_goes_out_beside_the_dry_runs_and_no_object_without_both() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    one_layer(&root, &c);
    layer(&root, "app", &[("sa.yaml", SA)]);

    // The object's dry run is refused. The inventory was sent at the same time, not after
    // the dry runs passed: it is there, naming the object, which is not.
    c.dev
        .inject(Fault::fail("patch", "serviceaccounts", 403, 1));
    let out = run(&root, "apply").await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("dry-run failed, nothing applied"),
        "{out:?}"
    );
    c.kubectl(&["get", "serviceaccount", "app", "-n", "default"])
        .await
        .code(1);
    assert_eq!(
        inventory(&c, "app").await,
        Some(vec!["ServiceAccount/app".to_string()]),
        "written beside the dry run"
    );

    // The next apply converges, and the one after writes nothing.
    c.dev.clear_faults();
    converges_with_its_service_account(&c, &root).await;
    let rv = c.dev.resource_version();
    assert_eq!(run(&root, "apply").await.code, 0);
    assert_eq!(c.dev.resource_version(), rv, "a no-op apply writes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inventory_that_cannot_be_written_fails_the_layer_with_no_object_written() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    one_layer(&root, &c);
    layer(&root, "app", &[("sa.yaml", SA)]);

    // Every write of a ConfigMap is refused: the layer's objects are none, its inventory is one.
    c.dev.inject(Fault {
        count: None,
        ..Fault::fail("patch", "configmaps", 403, 0)
    });
    let rv = c.dev.resource_version();
    let out = run(&root, "apply").await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("inventory.") || out.stdout.contains("inventory."),
        "the inventory is named: {out:?}"
    );
    assert_eq!(
        c.dev.resource_version(),
        rv,
        "nothing was written: {:?}",
        c.dev.requests()
    );
    c.kubectl(&["get", "serviceaccount", "app", "-n", "default"])
        .await
        .code(1);

    c.dev.clear_faults();
    converges_with_its_service_account(&c, &root).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_apply_of_one_object_sends_what_it_did_before() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    one_layer(&root, &c);
    layer(&root, "app", &[("sa.yaml", SA)]);
    c.dev.reset_requests();
    assert_eq!(run(&root, "apply").await.code, 0);
    let patches = |path: &str| c.dev.count_requests(|r| r == format!("PATCH {path}"));
    // The dry run and the write of the object, the inventory (sent once more after it
    // created the records namespace) and the record of what was applied: nothing added.
    assert_eq!(
        patches("/api/v1/namespaces/default/serviceaccounts/app"),
        2,
        "{:?}",
        c.dev.requests()
    );
    assert_eq!(patches("/api/v1/namespaces/strata-system"), 1);
    let inventory_writes = c.dev.count_requests(|r| {
        r.starts_with("PATCH /api/v1/namespaces/strata-system/configmaps/inventory.")
    });
    assert_eq!(inventory_writes, 2, "{:?}", c.dev.requests());
    let record_writes = c
        .dev
        .count_requests(|r| r.starts_with("PATCH /api/v1/namespaces/strata-system/secrets/"));
    assert!(record_writes >= 1, "{:?}", c.dev.requests());
    let writes = c.dev.count_requests(|r| !r.starts_with("GET "));
    assert_eq!(writes, 2 + 1 + 2 + record_writes, "{:?}", c.dev.requests());
}

/// The Flux benchmark's four objects, a NetworkPolicy and a custom resource of a CRD the same
/// layer declares.
const APP: &str = r#"apiVersion: v1
kind: ServiceAccount
metadata:
  name: app
---
apiVersion: v1
kind: Service
metadata:
  name: app
spec:
  selector: {app: app}
  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  replicas: 0
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      serviceAccountName: app
      containers: [{name: app, image: "nginx:1.27"}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: app
spec:
  rules:
    - host: app.example.com
      http:
        paths:
          - path: /
            pathType: Prefix
            backend: {service: {name: app, port: {number: 80}}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: app
spec:
  podSelector: {matchLabels: {app: app}}
  policyTypes: [Ingress]
---
apiVersion: example.com/v1
kind: Widget
metadata:
  name: app
spec:
  size: 3
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_whose_later_kinds_go_out_in_one_round_converges_and_then_writes_nothing() {
    // No simulated readiness: it writes the Deployment's status a moment after each change,
    // which would count as a write of the second apply.
    let c = Cluster::with(devcluster::DevClusterOptions {
        simulate_ready: None,
        ..Default::default()
    })
    .await;
    let root = c.dir.path().join("stack");
    one_layer(&root, &c);
    layer(&root, "app", &[("crd.yaml", CRD), ("app.yaml", APP)]);
    let out = run(&root, "apply").await;
    assert_eq!(out.code, 0, "{out:?}");
    for (kind, name) in [
        ("serviceaccount", "app"),
        ("service", "app"),
        ("deployment", "app"),
        ("ingress", "app"),
        ("networkpolicy", "app"),
        ("widgets.example.com", "app"),
    ] {
        c.kubectl(&["get", kind, name, "-n", "default"])
            .await
            .code(0);
    }
    assert_eq!(
        inventory(&c, "app").await,
        Some(
            [
                "CustomResourceDefinition/widgets.example.com",
                "Deployment/app",
                "Ingress/app",
                "NetworkPolicy/app",
                "Service/app",
                "ServiceAccount/app",
                "Widget/app",
            ]
            .map(String::from)
            .to_vec()
        )
    );

    let rv = c.dev.resource_version();
    let out = run(&root, "apply").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        c.dev.resource_version(),
        rv,
        "a second apply makes zero writes: {out:?}"
    );
    assert_eq!(run(&root, "diff").await.code, 0);
}

const WEB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations:\n    strata.dev/recreate: allowed\nspec:\n  replicas: 0\n  selector:\n    matchLabels: {app: SELECTOR}\n  template:\n    metadata:\n      labels: {app: SELECTOR}\n    spec:\n      containers:\n        - name: web\n          image: nginx:1.27\n";

const GATE: &str = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: gate\nspec:\n  rules:\n    - host: HOST\n";

/// A Deployment recreated (its selector changed, recreation allowed) in the same round as an
/// Ingress whose write is refused: the layer fails, and the Deployment is there again, new.
/// Stopping the round at the refused write dropped the recreate between its delete and its
/// create, leaving the Deployment deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_does_not_cut_short_a_recreate_of_the_same_round() {
    use devcluster::FaultAction;
    use std::time::Duration;
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    one_layer(&root, &c);
    let files = |app: &str, host: &str| {
        layer(
            &root,
            "app",
            &[
                ("web.yaml", &WEB.replace("SELECTOR", app)),
                ("gate.yaml", &GATE.replace("HOST", host)),
            ],
        )
    };
    files("web", "a.example.com");
    run(&root, "apply").await.code(0);

    files("web2", "b.example.com");
    // The Ingress's write (not its dry run) is refused a moment after the round starts, while
    // the Deployment's recreate waits for the old one to be gone.
    let fault = |verb: &str, resource: &str, action: FaultAction, dry_run: Option<bool>| Fault {
        verb: Some(verb.into()),
        resource: Some(resource.into()),
        action,
        count: None,
        dry_run,
    };
    c.dev.inject(fault(
        "patch",
        "ingresses",
        FaultAction::Latency(Duration::from_millis(200)),
        Some(false),
    ));
    c.dev.inject(fault(
        "patch",
        "ingresses",
        FaultAction::Status(403),
        Some(false),
    ));
    c.dev.inject(fault(
        "get",
        "deployments",
        FaultAction::Latency(Duration::from_millis(600)),
        None,
    ));
    let failed = run(&root, "apply").await;
    assert_ne!(failed.code, 0, "{failed:?}");
    assert!(failed.stderr.contains("Ingress/default/gate"), "{failed:?}");
    c.dev.clear_faults();
    let selector = c
        .kubectl(&[
            "get",
            "deployment",
            "web",
            "-n",
            "default",
            "-o",
            "jsonpath={.spec.selector.matchLabels.app}",
        ])
        .await;
    assert_eq!(selector.code, 0, "the Deployment is gone: {failed:?}");
    assert_eq!(selector.stdout, "web2");
    run(&root, "apply").await.code(0);
}

/// Two writes of one round refused: the error names both, not only the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_write_of_a_round_is_named() {
    use devcluster::FaultAction;
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    one_layer(&root, &c);
    layer(
        &root,
        "app",
        &[
            (
                "a.yaml",
                &GATE
                    .replace("gate", "gate-a")
                    .replace("HOST", "a.example.com"),
            ),
            (
                "b.yaml",
                &GATE
                    .replace("gate", "gate-b")
                    .replace("HOST", "b.example.com"),
            ),
        ],
    );
    // Real writes of Ingresses refused; their dry runs pass.
    c.dev.inject(Fault {
        verb: Some("patch".into()),
        resource: Some("ingresses".into()),
        action: FaultAction::Status(403),
        count: None,
        dry_run: Some(false),
    });
    let failed = run(&root, "apply").await;
    assert_ne!(failed.code, 0, "{failed:?}");
    for name in ["Ingress/default/gate-a", "Ingress/default/gate-b"] {
        assert!(failed.stderr.contains(name), "{name}: {failed:?}");
    }
    c.dev.clear_faults();
    run(&root, "apply").await.code(0);
}
