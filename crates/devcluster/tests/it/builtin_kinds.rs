//! Every built-in kind of Kubernetes 1.33 is served, at its preferred version, as kubectl
//! expects: none hand-picked, none forgotten.

use std::collections::BTreeSet;

use crate::support::Cluster;

/// (group, version, kind) of every listable, non-alpha type in k8s-openapi's 1.33 sources, read
/// from the source itself so that a type added to k8s-openapi shows up here.
fn k8s_openapi_types() -> BTreeSet<(String, String, String)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Only this platform's packages: the others may not be downloaded.
    let rustc = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .unwrap();
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc names its host");
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .args(["--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let manifest = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "k8s-openapi")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("k8s-openapi is a dependency");
    let root = std::path::Path::new(manifest)
        .parent()
        .unwrap()
        .join("src/v1_33");
    let mut found = BTreeSet::new();
    let mut todo = vec![root];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            if !text.contains("impl crate::ListableResource for") {
                continue;
            }
            let konst = |name: &str| {
                let at = text
                    .find(&format!("const {name}: &'static str = \""))
                    .unwrap();
                let rest = &text[at..];
                let start = rest.find('"').unwrap() + 1;
                let end = start + rest[start..].find('"').unwrap();
                rest[start..end].to_string()
            };
            let version = konst("VERSION");
            if version.contains("alpha") {
                continue;
            }
            found.insert((konst("GROUP"), version, konst("KIND")));
        }
    }
    found
}

#[test]
fn builtin_kinds_are_every_listable_k8s_openapi_type() {
    let served: BTreeSet<(String, String, String)> = devcluster::builtin::all_versions()
        .into_iter()
        .map(|t| (t.group, t.version, t.kind))
        .collect();
    let want = k8s_openapi_types();
    assert!(want.len() > 60, "{want:?}");
    let missing: Vec<_> = want.difference(&served).collect();
    assert!(missing.is_empty(), "not served: {missing:?}");
}

#[test]
fn each_kind_is_served_once_at_its_preferred_version() {
    let b = devcluster::builtin::builtins();
    let find = |group: &str, kind: &str| {
        let all: Vec<_> = b
            .iter()
            .filter(|t| t.group == group && t.kind == kind)
            .collect();
        assert_eq!(all.len(), 1, "{group}/{kind}: {all:?}");
        all[0].clone()
    };
    assert_eq!(find("autoscaling", "HorizontalPodAutoscaler").version, "v2");
    assert_eq!(find("networking.k8s.io", "ServiceCIDR").version, "v1");
    assert_eq!(find("resource.k8s.io", "ResourceClaim").version, "v1beta2");
    let pdb = find("policy", "PodDisruptionBudget");
    assert!(pdb.namespaced && pdb.status_subresource && pdb.plural == "poddisruptionbudgets");
    let sc = find("storage.k8s.io", "StorageClass");
    assert!(!sc.namespaced && !sc.status_subresource);
    assert!(!find("", "ConfigMap").status_subresource);
    assert!(find("apiregistration.k8s.io", "APIService").status_subresource);
    assert!(!find("rbac.authorization.k8s.io", "ClusterRole").namespaced);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_lists_and_applies_the_kinds_real_installs_need() {
    let c = Cluster::start().await;
    let listed = c.kubectl(&["api-resources", "-o", "name"]).await.code(0);
    for name in [
        "ingressclasses.networking.k8s.io",
        "validatingwebhookconfigurations.admissionregistration.k8s.io",
        "mutatingwebhookconfigurations.admissionregistration.k8s.io",
        "networkpolicies.networking.k8s.io",
        "apiservices.apiregistration.k8s.io",
        "poddisruptionbudgets.policy",
        "horizontalpodautoscalers.autoscaling",
        "priorityclasses.scheduling.k8s.io",
        "storageclasses.storage.k8s.io",
        "resourcequotas",
        "limitranges",
        "endpointslices.discovery.k8s.io",
        "csidrivers.storage.k8s.io",
        "runtimeclasses.node.k8s.io",
        "flowschemas.flowcontrol.apiserver.k8s.io",
    ] {
        assert!(
            listed.stdout.lines().any(|l| l == name),
            "{name} missing from:\n{}",
            listed.stdout
        );
    }
    let dir = c.manifests(
        "m",
        &[(
            "all.yaml",
            r#"apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec: {minAvailable: 1, selector: {matchLabels: {app: web}}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: default}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 3
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata: {name: high}
value: 1000
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  group: metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  insecureSkipTLSVerify: true
  service: {name: metrics-server, namespace: kube-system}
"#,
        )],
    );
    let out = c
        .kubectl(&["apply", "--server-side", "-f", dir.to_str().unwrap()])
        .await
        .code(0);
    for line in [
        "poddisruptionbudget.policy/web serverside-applied",
        "horizontalpodautoscaler.autoscaling/web serverside-applied",
        "priorityclass.scheduling.k8s.io/high serverside-applied",
        "ingressclass.networking.k8s.io/nginx serverside-applied",
        "apiservice.apiregistration.k8s.io/v1beta1.metrics.k8s.io serverside-applied",
    ] {
        assert!(out.stdout.contains(line), "{line}: {out:?}");
    }
    let scope = c
        .kubectl(&["get", "priorityclass", "high", "-o", "jsonpath={.value}"])
        .await
        .code(0);
    assert_eq!(scope.stdout, "1000");
}
