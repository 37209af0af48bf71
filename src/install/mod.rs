//! `strata install --export`: the manifests that run the agent in a cluster, the way `flux
//! install --export` prints Flux's. Typed options in, Kubernetes objects out (JSON values), YAML
//! rendered by [`emit`].

pub mod emit;

use serde_json::{json, Value};

/// What the manifests say.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub namespace: String,
    pub image: String,
    /// The repository the agent follows (`--repo`), and its ref and path.
    pub repo: String,
    pub reference: Option<String>,
    pub path: Option<String>,
    /// The kinds the layers' objects may be: `(api group, resource)`; the defaults when empty.
    pub resources: Vec<(String, String)>,
    /// Grant every verb on every resource (asked for explicitly, never by default).
    pub cluster_admin: bool,
    /// Agent replicas, sharing the stacks through Leases (`--coordination kubernetes`).
    pub replicas: u32,
}

/// The kinds a layer commonly holds, by API group and resource: what the default ClusterRole
/// grants. Narrow it with `--resources`, widen it with another entry or `--cluster-admin`.
pub const DEFAULT_RESOURCES: &[(&str, &str)] = &[
    ("", "namespaces"),
    ("", "configmaps"),
    ("", "secrets"),
    ("", "services"),
    ("", "serviceaccounts"),
    ("", "persistentvolumeclaims"),
    ("", "limitranges"),
    ("", "resourcequotas"),
    ("apps", "deployments"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("networking.k8s.io", "ingresses"),
    ("networking.k8s.io", "ingressclasses"),
    ("networking.k8s.io", "networkpolicies"),
    ("policy", "poddisruptionbudgets"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
    ),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
    ),
    ("scheduling.k8s.io", "priorityclasses"),
    ("storage.k8s.io", "storageclasses"),
];

/// What server-side apply, dry runs, drift checks and prunes need on an object.
const LAYER_VERBS: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];

/// Parses `--resources group/resource,...` (`/configmaps` or `configmaps` for the core group).
///
/// # Errors
/// An empty entry or resource.
pub fn parse_resources(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (group, resource) = e.rsplit_once('/').unwrap_or(("", e));
            if resource.is_empty() || resource.contains('*') || group.contains('*') {
                return Err(format!(
                    "--resources: \"{e}\" is not GROUP/RESOURCE (use --cluster-admin for everything)"
                ));
            }
            Ok((group.to_string(), resource.to_string()))
        })
        .collect()
}

/// The layers' rules: one per API group, its resources listed (never `*` unless asked).
fn layer_rules(o: &InstallOptions) -> Vec<Value> {
    if o.cluster_admin {
        return vec![json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]})];
    }
    let chosen: Vec<(String, String)> = if o.resources.is_empty() {
        DEFAULT_RESOURCES
            .iter()
            .map(|(g, r)| (g.to_string(), r.to_string()))
            .collect()
    } else {
        o.resources.clone()
    };
    let mut by_group: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (g, r) in chosen {
        let list = by_group.entry(g).or_default();
        if !list.contains(&r) {
            list.push(r);
        }
    }
    by_group
        .into_iter()
        .map(|(g, rs)| json!({"apiGroups": [g], "resources": rs, "verbs": LAYER_VERBS}))
        .collect()
}

/// Every object, in the order `kubectl apply` needs them (the Namespace first).
pub fn manifests(o: &InstallOptions) -> Vec<Value> {
    let ns = o.namespace.as_str();
    let labels =
        json!({"app.kubernetes.io/name": "strata", "app.kubernetes.io/component": "agent"});
    let meta = |name: &str| json!({"name": name, "namespace": ns, "labels": labels});
    let mut args = vec![
        "run".to_string(),
        "--repo".into(),
        o.repo.clone(),
        "--listen".into(),
        "0.0.0.0:9090".into(),
        "--state-dir".into(),
        "/var/lib/strata".into(),
        // The replicas share the stacks through Leases in this namespace, each known by its
        // pod's name; the Leases' cluster is the one the pod runs in (its service account).
        "--coordination".into(),
        "kubernetes".into(),
        "--lease-namespace".into(),
        ns.to_string(),
        "--replica-id".into(),
        "$(POD_NAME)".into(),
    ];
    if let Some(r) = &o.reference {
        args.extend(["--ref".into(), r.clone()]);
    }
    if let Some(p) = &o.path {
        args.extend(["--path".into(), p.clone()]);
    }
    let probe =
        |path: &str| json!({"httpGet": {"path": path, "port": "http"}, "periodSeconds": 10});
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("strata")}),
        // Its own records in its namespace: inventories and what it last applied (ConfigMaps,
        // Secrets), and the Leases replicas coordinate with.
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta("strata"),
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": LAYER_VERBS},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": LAYER_VERBS},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        ]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta("strata"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "strata"},
            "subjects": [{"kind": "ServiceAccount", "name": "strata", "namespace": ns}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": format!("strata-{ns}"), "labels": labels},
            "rules": layer_rules(o)}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": format!("strata-{ns}"), "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": format!("strata-{ns}")},
            "subjects": [{"kind": "ServiceAccount", "name": "strata", "namespace": ns}]}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("strata"),
        "spec": {
            // A stack is converged only by the replica holding its Lease: a second replica takes
            // over when one dies, and a rolling update never has two pods applying one stack.
            "replicas": o.replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "serviceAccountName": "strata",
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "agent", "image": o.image, "args": args,
                    "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}],
                    "ports": [{"name": "http", "containerPort": 9090, "protocol": "TCP"}],
                    "livenessProbe": probe("/healthz"), "readinessProbe": probe("/readyz"),
                    "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                        "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "state", "mountPath": "/var/lib/strata"},
                                     {"name": "tmp", "mountPath": "/tmp"}],
                }],
                "volumes": [{"name": "state", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
            }},
        }}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("strata"),
            "spec": {"selector": labels, "ports": [{"name": "http", "port": 9090, "targetPort": "http", "protocol": "TCP"}]}}),
        // Only its HTTP port is reachable (webhooks, metrics, the dashboard); it reaches out to
        // Git, registries, cloud and cluster APIs itself.
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta("strata"),
            "spec": {"podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress"],
                     "ingress": [{"ports": [{"port": 9090, "protocol": "TCP"}]}]}}),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> InstallOptions {
        InstallOptions {
            namespace: "strata-system".into(),
            image: "ghcr.io/example/strata:1.0".into(),
            repo: "https://git.example.com/platform/shop.git".into(),
            reference: None,
            path: None,
            resources: vec![],
            cluster_admin: false,
            replicas: 2,
        }
    }

    fn stars(docs: &[Value]) -> usize {
        docs.iter()
            .flat_map(|d| d["rules"].as_array().cloned().unwrap_or_default())
            .filter(|r| r.to_string().contains("\"*\""))
            .count()
    }

    #[test]
    fn no_wildcard_unless_asked_and_resources_narrow_the_grant() {
        assert_eq!(stars(&manifests(&options())), 0);
        let mut admin = options();
        admin.cluster_admin = true;
        assert_eq!(stars(&manifests(&admin)), 1);
        let mut narrow = options();
        narrow.resources = parse_resources("configmaps,apps/deployments").unwrap();
        let docs = manifests(&narrow);
        let role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
        assert_eq!(
            role["rules"],
            json!([
                {"apiGroups": [""], "resources": ["configmaps"], "verbs": LAYER_VERBS},
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": LAYER_VERBS},
            ])
        );
        assert!(parse_resources("apps/*").is_err());
    }
}
