//! The order objects are applied in: CRDs, then Namespaces, then other cluster-scoped objects,
//! then namespaced ones; within each, kinds that others depend on first. Pruning runs in reverse.

use super::object::ObjRef;

/// Kinds applied early within their stage, as `kubectl` and Flux order them.
const KIND_ORDER: [&str; 20] = [
    "CustomResourceDefinition",
    "Namespace",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Service",
    "Ingress",
];

/// 0 CRDs, 1 Namespaces, 2 other cluster-scoped, 3 namespaced.
pub fn stage(r: &ObjRef) -> u8 {
    match (r.kind.as_str(), r.group.as_str()) {
        ("CustomResourceDefinition", "apiextensions.k8s.io") => 0,
        ("Namespace", "") => 1,
        _ if r.namespace.is_empty() => 2,
        _ => 3,
    }
}

/// The apply order's sort key: stage, well-known kinds in their order, then other kinds
/// alphabetically, then namespace and name.
pub fn key(r: &ObjRef) -> (u8, usize, String, String, String) {
    let kind = KIND_ORDER
        .iter()
        .position(|k| *k == r.kind)
        .unwrap_or(KIND_ORDER.len());
    (
        stage(r),
        kind,
        r.kind.clone(),
        r.namespace.clone(),
        r.name.clone(),
    )
}

pub fn sort(refs: &mut [ObjRef]) {
    refs.sort_by_key(key);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(group: &str, kind: &str, ns: &str, name: &str) -> ObjRef {
        ObjRef {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn crds_then_namespaces_then_cluster_scoped_then_namespaced() {
        let mut v = vec![
            r("apps", "Deployment", "a", "web"),
            r("example.com", "Widget", "a", "w"),
            r("", "ConfigMap", "a", "c"),
            r("rbac.authorization.k8s.io", "ClusterRole", "", "cr"),
            r("", "Namespace", "", "a"),
            r(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                "",
                "widgets.example.com",
            ),
        ];
        sort(&mut v);
        let kinds: Vec<&str> = v.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "CustomResourceDefinition",
                "Namespace",
                "ClusterRole",
                "ConfigMap",
                "Deployment",
                "Widget"
            ]
        );
    }
}
