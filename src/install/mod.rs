//! `strata install --export`: the manifests that run the agent in a cluster, the way `flux
//! install --export` prints Flux's. Typed options in, Kubernetes objects out (JSON values), YAML
//! rendered by [`emit`].

pub mod emit;

use serde_json::{json, Value};

/// What the manifests say: `strata install`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct InstallOptions {
    /// The namespace the agent runs in, its Leases with it.
    #[arg(long, default_value = "strata-system")]
    pub namespace: String,
    /// The agent's image (see the Containerfile).
    #[arg(long, default_value = "ghcr.io/strata-dev/strata:latest")]
    pub image: String,
    /// The repository the agent follows; not with --config-map, whose agent.hcl declares the
    /// stacks (a `stack` block for this repository there).
    #[arg(long, required_unless_present = "config_map")]
    pub repo: Option<String>,
    /// The branch, tag or commit of --repo (default: the remote's HEAD).
    #[arg(long = "ref", requires = "repo")]
    pub reference: Option<String>,
    /// The directory of strata.hcl in --repo.
    #[arg(long, requires = "repo")]
    pub path: Option<String>,
    /// The kinds the layers hold, as GROUP/RESOURCE (`configmaps`, `apps/deployments`):
    /// what the agent's ClusterRole grants. Default: the common built-in kinds.
    #[arg(long, value_name = "GROUP/RESOURCE,...", value_parser = parse_resource_list)]
    pub resources: Option<ResourceList>,
    /// Grant every verb on every resource instead (a wildcard ClusterRole).
    #[arg(long, conflicts_with = "resources")]
    pub cluster_admin: bool,
    /// Agent replicas; they share the stacks through Leases in the namespace.
    #[arg(long, default_value_t = 2)]
    pub replicas: u32,
    /// Keep the state in PostgreSQL, shared by the replicas: the Secret (in the namespace)
    /// whose key `url` holds the state database's postgres:// URL, given to the agent as
    /// STRATA_STATE. Without it, each pod's state is an emptyDir of its own.
    #[arg(long, value_name = "NAME")]
    pub state_secret: Option<String>,
    /// The agent's configuration (stack blocks, alerts, writeback): the ConfigMap (in the
    /// namespace) whose key `agent.hcl` is mounted read-only and given as --config.
    #[arg(long, value_name = "NAME")]
    pub config_map: Option<String>,
}

/// `--resources`: the kinds the layers' objects may be, as `(api group, resource)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceList(pub Vec<(String, String)>);

fn parse_resource_list(s: &str) -> Result<ResourceList, String> {
    parse_resources(s).map(ResourceList)
}

/// Where the ConfigMap of `--config-map` is mounted, and the key the agent reads.
const CONFIG_DIR: &str = "/etc/strata";
const CONFIG_KEY: &str = "agent.hcl";
/// How long a stopping agent lets a running apply finish (`--shutdown-grace`) before it
/// interrupts terraform: long enough for most applies, short enough for a rollout.
const SHUTDOWN_GRACE_SECS: u64 = 120;
/// What the agent needs after it gives up waiting: terraform's grace after SIGINT (to stop and
/// save its state), then giving its Leases back and exiting.
const AFTER_GRACE_SECS: u64 = 30;

/// The pod's `terminationGracePeriodSeconds`. strata is the container's PID 1: when the pod's
/// grace ends the kubelet kills every process in it, terraform included, so it must outlast the
/// agent's own shutdown (a terraform killed mid-apply may leave its state unsaved and locked).
fn termination_grace_secs() -> u64 {
    let terraform_grace = crate::engine::EngineOptions::new("").grace.as_secs();
    SHUTDOWN_GRACE_SECS + terraform_grace + AFTER_GRACE_SECS
}

/// The pod's writable dir: the state dir, or with `--state-secret` the working dir of caches.
const STATE_DIR: &str = "/var/lib/strata";

/// Why these options would export manifests whose pods cannot start, if they would.
///
/// `--repo` beside `--config-map`: the agent refuses `--repo` beside the stack blocks of its
/// `--config` (both would name what to converge), so every pod would crash-loop.
pub fn refusal(o: &InstallOptions) -> Option<String> {
    let (Some(repo), Some(cm)) = (&o.repo, &o.config_map) else {
        return None;
    };
    Some(format!(
        "--repo {repo} and --config-map {cm} both name what to converge, and the agent would          refuse to start with both (its pods would crash-loop): declare the repository as a          `stack \"NAME\" {{ repo = \"{repo}\" }}` block in the ConfigMap's {CONFIG_KEY} and          leave out --repo (and --ref, --path)"
    ))
}

/// What the manifests mean for the agent's state and configuration, for the comments printed
/// above them.
pub fn notes(o: &InstallOptions) -> Vec<String> {
    let ns = &o.namespace;
    let mut out = vec![format!(
        "strata agent: {} replica(s) in namespace {ns}, sharing the stacks through Leases there.",
        o.replicas
    )];
    match &o.state_secret {
        Some(secret) => out.extend([
            format!("State: in PostgreSQL, its URL read from Secret {secret} (key `url`) as STRATA_STATE; every replica reads and writes the same records, so a stack taken over resumes from them."),
            format!("Create the Secret first, from a file holding postgres://USER:PASSWORD@HOST:5432/DB?sslmode=verify-full: kubectl -n {ns} create secret generic {secret} --from-file=url=FILE"),
            format!("{STATE_DIR} is an emptyDir of caches only (Git mirrors, Terraform data dirs), rebuilt when lost."),
        ]),
        None => out.extend([
            format!("State: each pod's own emptyDir ({STATE_DIR}), lost with the pod and not shared: a stack another replica takes over starts there from Git,"),
            "and a Terraform layer without a backend of its own would be planned from empty state and create its resources again.".to_string(),
            "Give --state-secret NAME to keep the state in PostgreSQL, shared by the replicas, or give every Terraform layer a backend: --replicas 1 does not help, its emptyDir is lost too whenever its pod is replaced (a rollout, an eviction, a node drain).".to_string(),
        ]),
    }
    if let Some(cm) = &o.config_map {
        out.extend([
            format!("Configuration: ConfigMap {cm} (key `{CONFIG_KEY}`: stack blocks, alerts, writeback), mounted read-only at {CONFIG_DIR}; read at start, so restart the pods after changing it."),
            format!("Create it first: kubectl -n {ns} create configmap {cm} --from-file={CONFIG_KEY}"),
        ]);
    }
    out
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
    let chosen: Vec<(String, String)> = match &o.resources {
        Some(ResourceList(list)) if !list.is_empty() => list.clone(),
        _ => DEFAULT_RESOURCES
            .iter()
            .map(|(g, r)| (g.to_string(), r.to_string()))
            .collect(),
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
    let mut args = vec!["run".to_string()];
    if let Some(repo) = &o.repo {
        args.extend(["--repo".into(), repo.clone()]);
    }
    args.extend(["--listen".into(), "0.0.0.0:9090".into()]);
    args.extend(["--shutdown-grace".into(), format!("{SHUTDOWN_GRACE_SECS}s")]);
    // With the state in PostgreSQL the agent keeps only caches on disk, where XDG_STATE_HOME
    // says (the root file system is read-only); a state dir and --state are refused together.
    if o.state_secret.is_none() {
        args.extend(["--state-dir".into(), STATE_DIR.into()]);
    }
    if o.config_map.is_some() {
        args.extend(["--config".into(), format!("{CONFIG_DIR}/{CONFIG_KEY}")]);
    }
    // The replicas share the stacks through Leases in this namespace, each known by its pod's
    // name; the Leases' cluster is the one the pod runs in (its service account).
    args.extend([
        "--coordination".into(),
        "kubernetes".into(),
        "--lease-namespace".into(),
        ns.to_string(),
        "--replica-id".into(),
        "$(POD_NAME)".into(),
    ]);
    if let Some(r) = &o.reference {
        args.extend(["--ref".into(), r.clone()]);
    }
    if let Some(p) = &o.path {
        args.extend(["--path".into(), p.clone()]);
    }
    let mut env = vec![
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}),
    ];
    let mut mounts = vec![
        json!({"name": "state", "mountPath": STATE_DIR}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    let mut volumes = vec![
        json!({"name": "state", "emptyDir": {}}),
        json!({"name": "tmp", "emptyDir": {}}),
    ];
    if let Some(secret) = &o.state_secret {
        // From the Secret by the kubelet: the URL and its password are in no manifest, no
        // command line and no RBAC grant of the agent's (it never reads Secrets for it).
        env.push(json!({"name": "STRATA_STATE", "valueFrom": {"secretKeyRef": {"name": secret, "key": "url"}}}));
        env.push(json!({"name": "XDG_STATE_HOME", "value": STATE_DIR}));
    }
    if let Some(cm) = &o.config_map {
        mounts.push(json!({"name": "config", "mountPath": CONFIG_DIR, "readOnly": true}));
        volumes.push(json!({"name": "config", "configMap": {"name": cm}}));
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
                "terminationGracePeriodSeconds": termination_grace_secs(),
                "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "agent", "image": o.image, "args": args,
                    "env": env,
                    "ports": [{"name": "http", "containerPort": 9090, "protocol": "TCP"}],
                    "livenessProbe": probe("/healthz"), "readinessProbe": probe("/readyz"),
                    "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                        "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": mounts,
                }],
                "volumes": volumes,
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
            repo: Some("https://git.example.com/platform/shop.git".into()),
            reference: None,
            path: None,
            resources: None,
            cluster_admin: false,
            replicas: 2,
            state_secret: None,
            config_map: None,
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
        narrow.resources = Some(parse_resource_list("configmaps,apps/deployments").unwrap());
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
