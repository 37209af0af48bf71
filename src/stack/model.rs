//! The parsed stack: settings, layers and clusters, with where each was declared.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::diag::Location;
use super::expr::Expr;

/// The two kinds of layer. Terraform layers come first in a system; nothing enforces that but
/// the references between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerKind {
    Terraform,
    Kubernetes,
}

impl LayerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LayerKind::Terraform => "terraform",
            LayerKind::Kubernetes => "kubernetes",
        }
    }

    pub fn parse(s: &str) -> Option<LayerKind> {
        match s {
            "terraform" => Some(LayerKind::Terraform),
            "kubernetes" => Some(LayerKind::Kubernetes),
            _ => None,
        }
    }
}

/// A layer's address, `terraform.network` or `kubernetes.apps`: unique within a stack.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LayerId {
    pub kind: LayerKind,
    pub name: String,
}

impl LayerId {
    pub fn new(kind: LayerKind, name: impl Into<String>) -> LayerId {
        LayerId {
            kind,
            name: name.into(),
        }
    }

    pub fn terraform(name: impl Into<String>) -> LayerId {
        LayerId::new(LayerKind::Terraform, name)
    }

    pub fn kubernetes(name: impl Into<String>) -> LayerId {
        LayerId::new(LayerKind::Kubernetes, name)
    }

    /// Parses `terraform.NAME` or `kubernetes.NAME`.
    pub fn parse(s: &str) -> Option<LayerId> {
        let (kind, name) = s.split_once('.')?;
        let kind = LayerKind::parse(kind)?;
        (!name.is_empty() && !name.contains('.')).then(|| LayerId::new(kind, name))
    }
}

impl fmt::Display for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind.as_str(), self.name)
    }
}

impl Serialize for LayerId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for LayerId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LayerId::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("not a layer id: \"{s}\"")))
    }
}

/// What to do when the live system drifts from Git.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftPolicy {
    /// Record and alert, change nothing.
    #[default]
    Report,
    /// Re-apply what Git says (forcing Kubernetes field-manager conflicts).
    Correct,
}

/// Whether a layer's changes are applied without a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ApplyPolicy {
    #[default]
    Auto,
    /// Planned always; applied only when approved (`--approve NAME`).
    Manual,
    /// Applied without a human when the plan only creates and updates; approved like `manual`
    /// when it deletes or replaces anything (a Kubernetes prune counts as a delete).
    Safe,
}

impl ApplyPolicy {
    /// The stricter of two policies: `manual` over `safe` over `auto`.
    pub fn stricter(self, other: ApplyPolicy) -> ApplyPolicy {
        let rank = |p: ApplyPolicy| match p {
            ApplyPolicy::Auto => 0,
            ApplyPolicy::Safe => 1,
            ApplyPolicy::Manual => 2,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// The `stack "NAME" { ... }` block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StackSettings {
    /// Terraform layers run at once. Default 4.
    pub parallelism: usize,
    /// Kubernetes layers run at once. Default 16.
    pub kubernetes_parallelism: usize,
    /// How often the agent fetches the source. Default 1m.
    #[serde(with = "duration_text")]
    pub poll_interval: Duration,
    /// How often the agent checks every layer for drift. Default 10m.
    #[serde(with = "duration_text")]
    pub drift_interval: Duration,
    /// How long a layer may stay divergent before a "diff" alert. Default 0s.
    #[serde(with = "duration_text")]
    pub alert_after: Duration,
    /// The terraform (or tofu) binary to run, instead of the one found on PATH.
    pub terraform_bin: Option<String>,
    /// The stack's identity on its clusters, instead of one derived from its source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The bounds on every Kubernetes layer's manifests (its `limits` block).
    pub limits: crate::kube::limits::ManifestLimits,
}

impl Default for StackSettings {
    fn default() -> Self {
        StackSettings {
            parallelism: 4,
            kubernetes_parallelism: 16,
            poll_interval: Duration::from_secs(60),
            drift_interval: Duration::from_secs(600),
            alert_after: Duration::ZERO,
            terraform_bin: None,
            id: None,
            limits: crate::kube::limits::ManifestLimits::default(),
        }
    }
}

/// A reference from one layer's expression to another layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reference {
    pub target: LayerId,
    /// `Some("subnet_id")` for `terraform.network.outputs.subnet_id`; `None` when the whole
    /// outputs object is referenced.
    pub output: Option<String>,
    pub location: Location,
}

impl Reference {
    /// `outputs.subnet_id`, or `outputs` for the whole object.
    pub fn label(&self) -> String {
        match &self.output {
            Some(o) => format!("outputs.{o}"),
            None => "outputs".into(),
        }
    }
}

/// An explicit `depends_on` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DependsOn {
    pub target: LayerId,
    pub location: Location,
}

/// Attributes only Terraform layers have.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TerraformSpec {
    /// Workspace to select (created if missing). Default `default`.
    pub workspace: String,
    /// Passed to `terraform init` as `-backend-config key=value`.
    pub backend_config: BTreeMap<String, Expr>,
    /// Passed as `-lock-timeout` to every state-locking command. Unset (`None`) is 0s, or 5m on
    /// strata's own `pg` backend; a value the stack file sets, 0s included, is always used.
    #[serde(serialize_with = "duration_text::serialize_option")]
    pub lock_timeout: Option<Duration>,
}

/// Attributes only Kubernetes layers have.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KubernetesSpec {
    /// The `cluster "NAME"` block this layer applies to.
    pub cluster: String,
    pub cluster_location: Location,
    /// Namespace for namespaced objects that name none.
    pub namespace: Option<String>,
    /// Delete objects that left Git. Default true.
    pub prune: bool,
    /// Wait for applied objects to be ready. Default true.
    pub wait: bool,
    /// The layer's `limits` block: bounds on its manifests over the stack's.
    #[serde(skip_serializing_if = "is_default")]
    pub limits: super::limits::LimitsOverride,
}

fn is_default(l: &super::limits::LimitsOverride) -> bool {
    l.set.is_empty()
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum LayerSpec {
    Terraform(TerraformSpec),
    Kubernetes(KubernetesSpec),
}

/// One layer: a Terraform configuration or a directory of Kubernetes manifests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Layer {
    pub id: LayerId,
    pub location: Location,
    /// Directory, relative to the stack root.
    pub source: PathBuf,
    pub vars: BTreeMap<String, Expr>,
    pub depends_on: Vec<DependsOn>,
    pub drift: DriftPolicy,
    pub apply: ApplyPolicy,
    /// Bounds one plan or apply of the layer. Default 30m.
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    #[serde(flatten)]
    pub spec: LayerSpec,
}

impl Layer {
    /// Every output reference in this layer's own expressions (not through its cluster).
    pub fn references(&self) -> impl Iterator<Item = &Reference> {
        let backend = match &self.spec {
            LayerSpec::Terraform(t) => Some(t.backend_config.values()),
            LayerSpec::Kubernetes(_) => None,
        };
        self.vars
            .values()
            .chain(backend.into_iter().flatten())
            .flat_map(|e| e.refs.iter())
    }

    pub fn cluster(&self) -> Option<&str> {
        match &self.spec {
            LayerSpec::Kubernetes(k) => Some(&k.cluster),
            LayerSpec::Terraform(_) => None,
        }
    }
}

/// A `cluster "NAME"` block: how Kubernetes layers reach a cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    pub name: String,
    pub location: Location,
    /// Kubeconfig content, usually an upstream output (may be sensitive).
    pub kubeconfig: Option<Expr>,
    /// Path to a kubeconfig file (`~` expands to the home directory).
    pub kubeconfig_path: Option<Expr>,
    /// Context within the kubeconfig; its current context when unset.
    pub context: Option<Expr>,
    /// The cluster strata runs in, reached through its pod's service account.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub in_cluster: bool,
}

impl Cluster {
    pub fn references(&self) -> impl Iterator<Item = &Reference> {
        [&self.kubeconfig, &self.kubeconfig_path, &self.context]
            .into_iter()
            .flatten()
            .flat_map(|e| e.refs.iter())
    }
}

/// A whole stack: the `strata.hcl` at `root` and what it declares.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stack {
    pub name: String,
    /// The stack directory, as given.
    pub root: PathBuf,
    /// The stack file, `root/strata.hcl`.
    pub file: PathBuf,
    pub settings: StackSettings,
    /// In declaration order.
    pub layers: Vec<Layer>,
    pub clusters: Vec<Cluster>,
    /// `image` blocks: registry repositories whose new tags the agent commits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<super::images::Image>,
    /// The `writeback` block: how image updates are committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writeback: Option<super::images::Writeback>,
    /// Where each layer is in `layers`: lookups by id are made for every reference and every
    /// step, and a scan each time made a 60,000-layer stack quadratic.
    #[serde(skip)]
    pub(crate) positions: std::collections::HashMap<LayerId, usize>,
    /// The `environment` blocks, in declaration order; none: one implicit environment.
    pub environments: Vec<Environment>,
    /// The environment this stack was specialised for ([`Stack::for_env`]), if any.
    pub env: Option<String>,
}

/// An `environment "NAME"` block: one instance of the stack, with its own vars, state,
/// inventories and approval policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Environment {
    pub name: String,
    pub location: Location,
    /// `env.vars.X` in expressions: literal values.
    #[serde(skip)]
    pub vars: hcl::Map<String, hcl::Value>,
    /// The default of its layers; a layer's own `apply` wins when it is stricter.
    pub apply: ApplyPolicy,
}

impl Stack {
    pub fn layer(&self, id: &LayerId) -> Option<&Layer> {
        match self.positions.get(id).and_then(|&i| self.layers.get(i)) {
            Some(l) if &l.id == id => Some(l),
            // `layers` is public: one changed after loading is still searched correctly.
            _ => self.layers.iter().find(|l| &l.id == id),
        }
    }

    /// Indexes the layers by id (the first of two with the same id).
    pub(crate) fn index_layers(&mut self) {
        self.positions.clear();
        for (i, l) in self.layers.iter().enumerate() {
            self.positions.entry(l.id.clone()).or_insert(i);
        }
    }

    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

/// Serialises a duration as the stack file writes it (`"10m"`).
pub(crate) mod duration_text {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::util::duration::format_duration(*d))
    }

    /// An optional duration: the text, or nothing.
    pub fn serialize_option<S: serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => serialize(d, s),
            None => s.serialize_none(),
        }
    }
}
