//! The engine: plan, apply and diff a whole stack across its graph, with failure isolation,
//! change detection, one writer per stack, and run records.
//!
//! The engine walks; the layer kinds do the work. [`open`] pins a revision and checks the stack,
//! [`run`] walks the graph for a plan or an apply, handing each layer to its kind's step
//! ([`terraform_step`], [`kube_step`]), and [`drift`] walks it for a diff. Every step returns
//! data ([`record`], [`change`]); text is rendered from it in [`crate::report`].

mod approval;
pub mod change;
mod destroy;
mod drift;
pub mod inputs;
mod kube_orphans;
mod kube_prune;
mod kube_step;
mod open;
pub mod orphans;
pub mod progress;
mod reason;
pub mod record;
mod run;
mod state_push;
mod terraform_step;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::graph::LayerGraph;
use crate::source::{Affected, Revision, SourceOptions, SourceSpec};
use crate::stack::{LayerId, LayerKind, Stack};
use crate::state::stack_status::StackState;
use crate::terraform::{Terraform, TerraformBinary, TerraformOptions};
use crate::value::Outputs;
use record::CommitInfo;

pub use approval::orphan_plan;
pub use change::{Change, ChangeAction, Target};
pub use drift::diff_applied;
pub use inputs::{Waiting, WaitingOn};
pub use open::env_state_dir;
pub use record::{DriftState, SCHEMA_VERSION};
pub use run::Hold;

/// Where the stack comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A plain directory (local work).
    Dir(PathBuf),
    /// A Git repository, pinned to a commit.
    Repo {
        spec: SourceSpec,
        opts: SourceOptions,
    },
}

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub state_dir: PathBuf,
    /// Plan every layer, affected or not.
    pub all: bool,
    /// Layers with `apply = "manual"` that may be applied in this run (`network` or
    /// `terraform.network`).
    pub approve: Vec<String>,
    /// How long `apply` waits for another writer's lock. Default 0.
    pub lock_timeout: Duration,
    /// Extra environment for terraform.
    pub terraform_env: Vec<(OsString, OsString)>,
    /// terraform's grace period after SIGINT. Default 30s.
    pub grace: Duration,
    pub cancel: CancellationToken,
    /// Print one line per layer step to stderr.
    pub progress: bool,
    /// Run only these layers (others count as done); all when `None`.
    pub only: Option<BTreeSet<LayerId>>,
    /// Plan these Terraform layers even when nothing they depend on changed (drift correction).
    pub force_plan: BTreeSet<LayerId>,
    /// Take over Kubernetes objects another stack, or no stack, manages (`apply --adopt`).
    pub adopt: bool,
    /// Force every field-manager conflict of Kubernetes layers, this run only
    /// (`--force-conflicts`), as `drift = "correct"` does.
    pub force_conflicts: bool,
    /// The age keys SOPS-encrypted files in layers are decrypted with (`--age-key-file`).
    pub age_keys: Option<crate::secrets::AgeKeys>,
    /// Terraform layers to init afresh, from an empty data dir (`apply --reinit`): `network` or
    /// `terraform.network`.
    pub reinit: Vec<String>,
    /// The environment to run (`--env`); required when the stack declares several. Its state
    /// (records, locks, Terraform state, outputs) lives in `state_dir/envs/NAME`.
    pub env: Option<String>,
    /// The clients of the clusters, shared by the engines given the same (the agent keeps them
    /// across its loops); each engine connects its own when `None`.
    pub clusters: Option<Arc<crate::kube::Clusters>>,
    /// Told every layer's steps as they happen (the agent's dashboard shows what runs now).
    pub observer: Option<Arc<dyn progress::Observer>>,
}

impl EngineOptions {
    pub fn new(state_dir: impl Into<PathBuf>) -> EngineOptions {
        EngineOptions {
            state_dir: state_dir.into(),
            all: false,
            approve: Vec::new(),
            lock_timeout: Duration::ZERO,
            terraform_env: Vec::new(),
            grace: Duration::from_secs(30),
            cancel: CancellationToken::new(),
            progress: false,
            only: None,
            force_plan: BTreeSet::new(),
            adopt: false,
            force_conflicts: false,
            age_keys: None,
            reinit: Vec::new(),
            env: None,
            clusters: None,
            observer: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Invalid(crate::stack::Diagnostics),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Lock(#[from] crate::state::lock::LockError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Terraform(#[from] Box<crate::terraform::TerraformError>),
    #[error("no terraform layer \"{0}\" in this stack")]
    NoSuchLayer(String),
    #[error(transparent)]
    Env(#[from] crate::stack::EnvError),
}

/// A stack pinned to a revision, ready to plan, apply or diff.
pub struct Engine {
    pub opts: EngineOptions,
    pub source: Source,
    pub stack: Stack,
    pub graph: LayerGraph,
    /// The stack directory the layers' sources are relative to.
    pub root: PathBuf,
    pub revision: String,
    pub commit: Option<Revision>,
    /// Layers affected since the last converged commit, when that is known (Git sources).
    pub affected: Option<Affected>,
    state: Mutex<StackState>,
    /// The approvals of plans in the state dir when the engine opened ([`approval`]).
    approvals: std::collections::BTreeMap<LayerId, crate::state::approvals::Approval>,
    terraform: tokio::sync::OnceCell<Arc<Terraform>>,
    progress: Mutex<Option<Arc<progress::Progress>>>,
    /// One client and one discovery per cluster, for every layer.
    clusters: Arc<crate::kube::Clusters>,
    /// The names of the objects the Kubernetes layers declare, by cluster, kind and namespace.
    declared: Declared,
    /// The Kubernetes layers' files as parsed when the stack was opened, each taken by its
    /// layer's load (parsed once per run).
    parsed: crate::kube::parsed::ParsedFiles,
    /// Each layer's wave, once asked for.
    waves: std::sync::OnceLock<std::collections::HashMap<LayerId, usize>>,
    /// Where Kubernetes layers apply, recorded before their first write; layers recording at
    /// once share a write of `status.json`.
    kube_targets:
        crate::util::group_commit::GroupCommit<(LayerId, crate::state::stack_status::KubeTarget)>,
    /// The stack's identity on its clusters, once asked for ([`Engine::stack_id`]).
    stack_id: std::sync::OnceLock<String>,
    /// Layers whose target this apply recorded ahead ([`Engine::record_new_kube_targets`]),
    /// with that target, and those that went on to record it themselves before writing: a
    /// layer recorded ahead that never got there has it cleared when the run records.
    kube_ahead: Mutex<(
        std::collections::BTreeMap<LayerId, crate::state::stack_status::KubeTarget>,
        std::collections::BTreeSet<LayerId>,
    )>,
    /// The image markers of the stack's files as the engine opened them: a converged apply
    /// records the images they name as running.
    markers: crate::images::markers::Found,
}

/// Object names by cluster, then by (group, kind, namespace).
type Declared = std::collections::HashMap<
    String,
    std::collections::HashMap<crate::kube::snapshot::Place, std::collections::HashSet<String>>,
>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plan,
    Apply,
}

/// Stops a run's progress heartbeat when the run ends, however it ends.
struct ProgressGuard(Option<tokio::task::JoinHandle<()>>);

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

impl Engine {
    /// The terraform driver, found on first use.
    async fn terraform(&self) -> Result<Arc<Terraform>, crate::terraform::TerraformError> {
        self.terraform
            .get_or_try_init(|| async {
                let bin =
                    TerraformBinary::find(self.stack.settings.terraform_bin.as_deref()).await?;
                let mut o = TerraformOptions::new(&self.opts.state_dir);
                o.grace = self.opts.grace;
                o.env = self.opts.terraform_env.clone();
                o.age_keys = self.opts.age_keys.clone();
                Ok(Arc::new(Terraform::new(bin, o)))
            })
            .await
            .cloned()
    }

    /// The terraform driver and a working copy of `layer` at this engine's revision, with the
    /// inputs given.
    ///
    /// # Errors
    /// terraform could not be found, or the working copy prepared (init included).
    async fn prepare_terraform(
        &self,
        layer: &crate::stack::Layer,
        (vars, backend_config): inputs::TerraformInputs,
    ) -> Result<(Arc<Terraform>, crate::terraform::Prepared), crate::terraform::TerraformError>
    {
        let tf = self.terraform().await?;
        let p = tf
            .prepare(crate::terraform::LayerInput {
                layer,
                stack_root: &self.root,
                revision: &self.revision,
                vars,
                backend_config,
            })
            .await?;
        Ok((tf, p))
    }

    /// The stack's lock for a run that writes (`Mode::Apply`), held until dropped; `None` for a
    /// plan, which writes nothing but its own records. `what` names the holder to a second
    /// writer.
    ///
    /// # Errors
    /// Another writer holds it beyond `lock_timeout`.
    async fn writer_lock(
        &self,
        mode: Mode,
        what: &str,
    ) -> Result<Option<crate::state::lock::Lock>, EngineError> {
        Ok(match mode {
            Mode::Apply => Some(
                crate::state::lock::Lock::acquire(
                    &self.opts.state_dir,
                    what,
                    self.opts.lock_timeout,
                )
                .await?,
            ),
            Mode::Plan => None,
        })
    }

    /// How many terraform commands this engine has run (for tests and benchmarks).
    pub fn terraform_invocations(&self) -> usize {
        self.terraform.get().map_or(0, |t| t.invocations())
    }

    /// The wave of a layer, counted from 1 (0 for a layer on a cycle); the waves are computed
    /// once per engine, not once per layer report.
    fn wave_of(&self, id: &LayerId) -> usize {
        let waves = self.waves.get_or_init(|| {
            let mut by_layer = std::collections::HashMap::new();
            for (w, wave) in self.graph.waves().into_iter().enumerate() {
                for l in wave {
                    by_layer.insert(l, w + 1);
                }
            }
            by_layer
        });
        waves.get(id).copied().unwrap_or(0)
    }

    /// Whether `apply --reinit` names this layer.
    fn reinit_requested(&self, id: &LayerId) -> bool {
        self.opts
            .reinit
            .iter()
            .any(|a| *a == id.name || *a == id.to_string())
    }

    fn progress(&self, id: &LayerId, event: progress::Event) {
        if let Some(o) = &self.opts.observer {
            o.event(id, &event);
        }
        if let Some(p) = self.progress.lock().expect("progress").as_ref() {
            p.set(id, event);
        }
    }

    /// Starts the progress display of a run; the handle stops its heartbeat when dropped.
    fn start_progress(&self) -> ProgressGuard {
        if let Some(o) = &self.opts.observer {
            o.started(&self.revision);
        }
        let p = progress::Progress::new(self.opts.progress, self.graph.layers().to_vec());
        let beat = p.heartbeat();
        *self.progress.lock().expect("progress") = Some(p);
        ProgressGuard(beat)
    }

    fn commit_info(&self) -> Option<CommitInfo> {
        self.commit.as_ref().map(|c| CommitInfo {
            author: c.author.clone(),
            summary: c.summary.clone(),
        })
    }

    /// The outputs cached for every Terraform layer.
    fn cached_outputs(&self) -> Outputs {
        let mut known = Outputs::new();
        for l in self
            .stack
            .layers
            .iter()
            .filter(|l| l.id.kind == LayerKind::Terraform)
        {
            if let Some(o) = crate::state::outputs::load(&self.opts.state_dir, &l.id) {
                known.insert(l.id.clone(), o);
            }
        }
        known
    }

    /// Whether the layer has ever converged (been applied) from this state dir.
    fn ever_converged(&self, id: &LayerId) -> bool {
        self.state
            .lock()
            .expect("state")
            .layer(id)
            .is_some_and(|s| s.converged_revision.is_some())
    }

    /// Records what this run owns in `status.json` through `change`, and keeps the merged
    /// result as this engine's view.
    ///
    /// # Guarantees
    /// Fields `change` does not set keep what is on disk now, whoever wrote them since this
    /// engine opened: a plan or diff never reverts what an apply recorded in between.
    ///
    /// # Errors
    /// `status.json` is corrupt or could not be written; the error names it.
    fn record_state(&self, change: impl FnOnce(&mut StackState)) -> Result<(), EngineError> {
        let merged = StackState::update(&self.opts.state_dir, change)?;
        *self.state.lock().expect("state") = merged;
        Ok(())
    }

    /// What the state dir remembers.
    pub fn state(&self) -> StackState {
        self.state.lock().expect("state").clone()
    }
}
