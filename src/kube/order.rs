//! The order objects are applied in: CRDs, then Namespaces, then other cluster-scoped objects,
//! then namespaced ones; within each, kinds that others depend on first. Pruning runs in reverse.
//!
//! Objects are written in rounds ([`round`]): a round's writes go out together, and the next
//! round starts once they are all answered. Each kind of `KIND_ORDER` up to and including
//! Service has its own round, because later kinds depend on them when they are created: a Pod
//! is refused while its ServiceAccount is missing, one created before a LimitRange or
//! ResourceQuota escapes it, a RoleBinding to a missing Role fails the escalation check of a
//! strata that is not cluster-admin, a service-account token Secret needs its ServiceAccount,
//! and a Pod gets environment variables only for the Services that exist before it. Nothing
//! needs any later kind at creation (Ingresses, workloads, custom resources, everything else),
//! so each stage's later kinds share one round.

use super::object::ObjRef;

/// Kinds applied early within their stage, as `kubectl`, Helm and Flux order them. A
/// NetworkPolicy comes right after the Namespaces, as Helm orders it: it must exist before the
/// pods it selects start, or they run unprotected.
const KIND_ORDER: [&str; 21] = [
    "CustomResourceDefinition",
    "Namespace",
    "NetworkPolicy",
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

/// The last kind of [`KIND_ORDER`] with a round of its own.
const LAST_OWN_ROUND: &str = "Service";

/// 0 CRDs, 1 Namespaces, 2 other cluster-scoped, 3 namespaced, 4 admission (webhook
/// configurations, admission policies and their bindings) and aggregated APIs (APIService).
///
/// The last stage comes after everything else, as Helm and kustomize order it: a webhook or an
/// APIService points at a Service and pods of the same install, and while those do not answer,
/// a webhook that fails closed refuses every write it matches, the install's own objects
/// included (an install applied in one layer would never get past its first apply).
pub fn stage(r: &ObjRef) -> u8 {
    match (r.kind.as_str(), r.group.as_str()) {
        ("CustomResourceDefinition", "apiextensions.k8s.io") => 0,
        ("Namespace", "") => 1,
        (_, "admissionregistration.k8s.io") | ("APIService", "apiregistration.k8s.io") => 4,
        _ if r.namespace.is_empty() => 2,
        _ => 3,
    }
}

/// The apply order's sort key: stage, well-known kinds in their order, then other kinds
/// alphabetically, then namespace and name.
pub fn key(r: &ObjRef) -> (u8, usize, String, String, String) {
    (
        stage(r),
        kind_rank(&r.kind),
        r.kind.clone(),
        r.namespace.clone(),
        r.name.clone(),
    )
}

/// A kind's place in [`KIND_ORDER`]; every other kind after them all, but for the network and
/// mesh policies of other projects (Cilium's and Calico's `…NetworkPolicy`, the
/// `AdminNetworkPolicy` API, Istio's `AuthorizationPolicy` and `PeerAuthentication`), which take
/// NetworkPolicy's place for the same reason: pods started before them run unprotected.
fn kind_rank(kind: &str) -> usize {
    let kind = if kind.ends_with("NetworkPolicy")
        || kind == "AuthorizationPolicy"
        || kind == "PeerAuthentication"
    {
        "NetworkPolicy"
    } else {
        kind
    };
    KIND_ORDER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(KIND_ORDER.len())
}

/// The write round of an object, in the order of [`key`]: its stage, then its kind's place in
/// `KIND_ORDER` for the kinds up to Service, and one place for every later kind of the stage
/// (see the module's doc for why).
pub fn round(r: &ObjRef) -> (u8, usize) {
    let shared = kind_rank(LAST_OWN_ROUND) + 1;
    (stage(r), kind_rank(&r.kind).min(shared))
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

    /// The write rounds of `refs` once sorted: the kinds of each round, in order.
    fn rounds(mut refs: Vec<ObjRef>) -> Vec<Vec<String>> {
        sort(&mut refs);
        let mut out: Vec<Vec<String>> = Vec::new();
        let mut last = None;
        for r in refs {
            if last != Some(round(&r)) {
                out.push(Vec::new());
                last = Some(round(&r));
            }
            out.last_mut().unwrap().push(r.kind.clone());
        }
        out
    }

    #[test]
    fn kinds_up_to_service_each_have_a_round_and_later_kinds_share_one() {
        let got = rounds(vec![
            r("networking.k8s.io", "Ingress", "a", "web"),
            r("apps", "Deployment", "a", "web"),
            r("example.com", "Widget", "a", "w"),
            r("", "Service", "a", "web"),
            r("", "ServiceAccount", "a", "web"),
            r("apps", "StatefulSet", "a", "db"),
            r("batch", "Job", "a", "migrate"),
            r("", "ConfigMap", "a", "c"),
            r("", "Secret", "a", "s"),
            r("rbac.authorization.k8s.io", "RoleBinding", "a", "rb"),
            r("rbac.authorization.k8s.io", "Role", "a", "role"),
            r("", "LimitRange", "a", "lr"),
            r("", "ResourceQuota", "a", "rq"),
            r("networking.k8s.io", "NetworkPolicy", "a", "deny"),
            r("apps", "Deployment", "b", "api"),
        ]);
        let want: Vec<Vec<&str>> = vec![
            vec!["NetworkPolicy"],
            vec!["ResourceQuota"],
            vec!["LimitRange"],
            vec!["ServiceAccount"],
            vec!["Secret"],
            vec!["ConfigMap"],
            vec!["Role"],
            vec!["RoleBinding"],
            vec!["Service"],
            // Sorted as before (Ingress first, then other kinds alphabetically), in one round.
            vec![
                "Ingress",
                "Deployment",
                "Deployment",
                "Job",
                "StatefulSet",
                "Widget",
            ],
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn cluster_scoped_kinds_follow_the_same_rule_in_their_own_stage() {
        let got = rounds(vec![
            r(
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
                "",
                "v",
            ),
            r("scheduling.k8s.io", "PriorityClass", "", "high"),
            r("rbac.authorization.k8s.io", "ClusterRoleBinding", "", "crb"),
            r("rbac.authorization.k8s.io", "ClusterRole", "", "cr"),
            r("storage.k8s.io", "StorageClass", "", "fast"),
            r("", "Namespace", "", "a"),
            r(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                "",
                "widgets.example.com",
            ),
            r("apps", "Deployment", "a", "web"),
            r("", "ServiceAccount", "a", "web"),
        ]);
        let want: Vec<Vec<&str>> = vec![
            vec!["CustomResourceDefinition"],
            vec!["Namespace"],
            vec!["StorageClass"],
            vec!["ClusterRole"],
            vec!["ClusterRoleBinding"],
            // Later cluster-scoped kinds together, before any namespaced object; admission
            // last of all (see `admission_and_aggregated_apis_come_after_everything…`).
            vec!["PriorityClass"],
            vec!["ServiceAccount"],
            vec!["Deployment"],
            vec!["ValidatingWebhookConfiguration"],
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_network_policy_is_written_before_the_pods_it_selects() {
        let got = rounds(vec![
            r("apps", "Deployment", "a", "web"),
            r("", "ServiceAccount", "a", "web"),
            r("networking.k8s.io", "NetworkPolicy", "a", "deny-all"),
        ]);
        assert_eq!(
            got,
            vec![
                vec!["NetworkPolicy"],
                vec!["ServiceAccount"],
                vec!["Deployment"]
            ]
        );
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

    #[test]
    fn admission_and_aggregated_apis_come_after_everything_they_could_refuse() {
        let got = rounds(vec![
            r(
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
                "",
                "hook",
            ),
            r(
                "apiregistration.k8s.io",
                "APIService",
                "",
                "v1beta1.metrics.k8s.io",
            ),
            r("external-secrets.io", "ClusterSecretStore", "", "vault"),
            r("apps", "Deployment", "es", "webhook"),
            r("", "Service", "es", "webhook"),
            r(
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration",
                "",
                "inject",
            ),
            r(
                "admissionregistration.k8s.io",
                "ValidatingAdmissionPolicyBinding",
                "",
                "b",
            ),
        ]);
        let want: Vec<Vec<&str>> = vec![
            vec!["ClusterSecretStore"],
            vec!["Service"],
            vec!["Deployment"],
            vec![
                "APIService",
                "MutatingWebhookConfiguration",
                "ValidatingAdmissionPolicyBinding",
                "ValidatingWebhookConfiguration",
            ],
        ];
        assert_eq!(got, want);
        // Pruned in reverse: the webhooks go before the Service and pods that answer them.
        let mut refs = vec![
            r("", "Service", "es", "webhook"),
            r(
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
                "",
                "hook",
            ),
        ];
        sort(&mut refs);
        assert_eq!(refs[1].kind, "ValidatingWebhookConfiguration");
    }

    #[test]
    fn other_projects_network_policies_take_network_policy_s_place() {
        let got = rounds(vec![
            r("apps", "Deployment", "a", "web"),
            r("cilium.io", "CiliumNetworkPolicy", "a", "deny"),
            r("security.istio.io", "AuthorizationPolicy", "a", "authz"),
            r("security.istio.io", "PeerAuthentication", "a", "mtls"),
            r("", "ServiceAccount", "a", "web"),
        ]);
        let want: Vec<Vec<&str>> = vec![
            vec![
                "AuthorizationPolicy",
                "CiliumNetworkPolicy",
                "PeerAuthentication",
            ],
            vec!["ServiceAccount"],
            vec!["Deployment"],
        ];
        assert_eq!(got, want);
    }
}
