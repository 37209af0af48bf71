//! The engine: plan, apply and diff a whole stack across its graph, with failure isolation,
//! change detection, one writer per stack, and run records.

pub mod inputs;
pub mod lock;
pub mod progress;
pub mod record;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::graph::walk::{walk, Outcome};
use crate::graph::LayerGraph;
use crate::kube::{self as k8s, SyncOptions};
use crate::source::{Affected, Revision, SourceOptions, SourceSpec};
use crate::stack::{ApplyPolicy, DriftPolicy, Layer, LayerId, LayerKind, LayerSpec, Stack};
use crate::terraform::{LayerInput, PlanMode, Shown, Terraform, TerraformBinary, TerraformOptions};
use crate::value::Outputs;
use record::{CommitInfo, DriftReport, LayerDrift, LayerReport, LayerStatus, RunReport};
use state::StackState;

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
    Lock(#[from] lock::LockError),
    #[error("failed to write {}: {source}", path.display())]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
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
    terraform: tokio::sync::OnceCell<Arc<Terraform>>,
    progress: Mutex<Option<Arc<progress::Progress>>>,
}

/// What a run shares between its layers.
struct Shared {
    known: Outputs,
    reports: BTreeMap<LayerId, LayerReport>,
    /// Layers planned with changes (or applied with changes) in this run.
    changed: BTreeSet<LayerId>,
}

/// Two Kubernetes layers must not declare the same object: each would undo the other.
fn duplicate_objects(stack: &Stack, root: &Path) -> Result<(), crate::stack::Diagnostics> {
    let mut seen: BTreeMap<(String, String, String, String), (LayerId, String)> = BTreeMap::new();
    let mut diags = crate::stack::Diagnostics::default();
    for layer in &stack.layers {
        let LayerSpec::Kubernetes(k) = &layer.spec else {
            continue;
        };
        for (key, place) in k8s::manifest::identities(root, &layer.source, k.namespace.as_deref()) {
            match seen.get(&key) {
                Some((other, first)) if *other != layer.id => {
                    let (_, kind, ns, name) = &key;
                    let object = if ns.is_empty() {
                        format!("{kind}/{name}")
                    } else {
                        format!("{kind}/{ns}/{name}")
                    };
                    diags.push(
                        layer.location.clone(),
                        format!("{object} is declared by two layers: {other} ({first}) and {} ({place})", layer.id),
                    );
                }
                Some(_) => {}
                None => {
                    seen.insert(key, (layer.id.clone(), place));
                }
            }
        }
    }
    if diags.is_empty() {
        Ok(())
    } else {
        Err(diags)
    }
}

/// A layer's final state in one line: `applied +1 ~0 -0`, `waiting on ...`, `failed: ...`.
fn final_text(r: &LayerReport) -> String {
    match (r.status, &r.counts, &r.detail) {
        (LayerStatus::Waiting, _, Some(d)) => d.clone(),
        (s, _, Some(d))
            if matches!(
                s,
                LayerStatus::Failed
                    | LayerStatus::Skipped
                    | LayerStatus::Interrupted
                    | LayerStatus::AwaitingApproval
            ) =>
        {
            format!("{}: {}", s.as_str(), d.lines().next().unwrap_or(""))
        }
        (s, Some(c), _) => format!("{} {c}", s.as_str()),
        (s, None, _) => s.as_str().to_string(),
    }
}

struct ProgressGuard(Option<tokio::task::JoinHandle<()>>);

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plan,
    Apply,
}

/// The content hash that names a directory revision: `dir-<12 hex>`.
fn dir_revision(root: &Path) -> String {
    let mut h = crate::hash::Hasher::new();
    let _ = h.tree("stack", root, &[".terraform", ".strata", ".git"]);
    format!("dir-{}", &h.finish()[..12])
}

impl Engine {
    /// Pins the source, validates the stack and loads what the state dir remembers.
    ///
    /// # Errors
    /// Source failures (unreachable without an earlier revision, refused signature, unsafe
    /// content) and every validation problem.
    pub async fn open(source: Source, opts: EngineOptions) -> Result<Engine, EngineError> {
        let rev = match &source {
            Source::Dir(_) => None,
            Source::Repo { spec, opts: sopts } => {
                let (spec2, sopts2) = (spec.clone(), sopts.clone());
                let rev =
                    tokio::task::spawn_blocking(move || crate::source::resolve(&spec2, &sopts2))
                        .await
                        .expect("source task")?;
                if let Some(stale) = &rev.stale {
                    tracing::warn!(
                        "the source could not be fetched ({}); using revision {} fetched {}s ago",
                        stale.error,
                        rev.commit,
                        stale.age_secs
                    );
                }
                Some(rev)
            }
        };
        Engine::open_revision(source, rev, opts).await
    }

    /// Like [`Engine::open`], with the Git revision already resolved (`None` for a directory).
    pub async fn open_revision(
        source: Source,
        rev: Option<Revision>,
        opts: EngineOptions,
    ) -> Result<Engine, EngineError> {
        let (root, revision, commit) = match (&source, rev) {
            (Source::Dir(d), _) => (d.clone(), dir_revision(d), None),
            (Source::Repo { .. }, Some(rev)) => {
                (rev.stack_dir.clone(), rev.commit.clone(), Some(rev))
            }
            (Source::Repo { spec, .. }, None) => {
                return Err(EngineError::Source(crate::source::SourceError::Fetch {
                    url: spec.url.clone(),
                    message: "no revision resolved".into(),
                }))
            }
        };
        let v = crate::validate(&root).map_err(EngineError::Invalid)?;
        duplicate_objects(&v.stack, &root).map_err(EngineError::Invalid)?;
        let state = StackState::load(&opts.state_dir);
        let affected = match (&source, &commit, &state.converged_revision) {
            (Source::Repo { spec, opts: sopts }, Some(rev), Some(old)) if old != &rev.commit => {
                let repo = crate::source::open_mirror(&sopts.state_dir, &spec.url)?;
                let old_id = gix::ObjectId::from_hex(old.as_bytes()).ok();
                let new_id = gix::ObjectId::from_hex(rev.commit.as_bytes()).ok();
                match (old_id, new_id) {
                    (Some(o), Some(n)) => Some(crate::source::affected::affected(
                        &repo, o, n, &rev.path, &v.stack, &v.graph, &root,
                    )),
                    _ => None,
                }
            }
            (Source::Repo { .. }, Some(rev), Some(old)) if old == &rev.commit => {
                Some(Affected::default())
            }
            _ => None,
        };
        Ok(Engine {
            opts,
            source,
            stack: v.stack,
            graph: v.graph,
            root,
            revision,
            commit,
            affected,
            state: Mutex::new(state),
            terraform: tokio::sync::OnceCell::new(),
            progress: Mutex::new(None),
        })
    }

    /// The terraform driver, found on first use.
    async fn terraform(&self) -> Result<Arc<Terraform>, crate::terraform::TerraformError> {
        self.terraform
            .get_or_try_init(|| async {
                let bin =
                    TerraformBinary::find(self.stack.settings.terraform_bin.as_deref()).await?;
                let mut o = TerraformOptions::new(&self.opts.state_dir);
                o.grace = self.opts.grace;
                o.env = self.opts.terraform_env.clone();
                Ok(Arc::new(Terraform::new(bin, o)))
            })
            .await
            .cloned()
    }

    /// How many terraform commands this engine has run (for tests and benchmarks).
    pub fn terraform_invocations(&self) -> usize {
        self.terraform.get().map_or(0, |t| t.invocations())
    }

    fn wave_of(&self, id: &LayerId) -> usize {
        self.graph
            .waves()
            .iter()
            .position(|w| w.contains(id))
            .map_or(0, |w| w + 1)
    }

    fn approved(&self, id: &LayerId) -> bool {
        self.opts
            .approve
            .iter()
            .any(|a| *a == id.name || *a == id.to_string())
    }

    fn progress(&self, id: &LayerId, what: &str) {
        let done = !matches!(
            what,
            "planning" | "applying" | "comparing with the cluster" | "terradiff" | "kubediff"
        );
        if let Some(p) = self.progress.lock().expect("progress").as_ref() {
            p.set(id, what, done);
        }
    }

    /// Starts the progress display of a run; the handle stops its heartbeat when dropped.
    fn start_progress(&self) -> ProgressGuard {
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
            if let Some(o) = state::load_outputs(&self.opts.state_dir, &l.id) {
                known.insert(l.id.clone(), o);
            }
        }
        known
    }

    /// Why a Terraform layer must be planned; empty when nothing it depends on changed.
    fn reasons(&self, layer: &Layer, inputs_hash: &str, shared: &Shared) -> Vec<String> {
        let mut r = Vec::new();
        if self.opts.all {
            r.push("--all".to_string());
        }
        if self.opts.force_plan.contains(&layer.id) {
            r.push("drift correction".to_string());
        }
        let state = self.state.lock().expect("state");
        let ls = state.layer(&layer.id);
        match ls.and_then(|s| s.converged_revision.as_ref()) {
            None => r.push("first run".into()),
            Some(_) => {
                if ls.and_then(|s| s.inputs_hash.as_deref()) != Some(inputs_hash) {
                    r.push("its files, modules or inputs changed".into());
                }
                if ls.and_then(|s| s.last_result.as_deref()) != Some("converged") {
                    r.push("it did not converge last time".into());
                }
            }
        }
        if let Some(a) = &self.affected {
            if let Some(reasons) = a.layers.get(&layer.id) {
                r.extend(reasons.iter().map(ToString::to_string));
            }
        }
        for up in self.graph.upstream(&layer.id) {
            if shared.changed.contains(&up) {
                r.push(format!("upstream {up} has changes"));
            }
        }
        r.dedup();
        r
    }

    /// Plans (or applies) every layer in graph order.
    ///
    /// # Guarantees
    /// - A layer runs once all its upstream layers are done; outputs flow downstream as each
    ///   layer finishes; independent layers run in parallel up to `stack.parallelism`.
    /// - A failed layer's dependents are skipped, naming the root cause; other branches go on.
    /// - A layer whose inputs are still unknown is shown waiting, never with made-up values.
    /// - `apply` holds the stack's lock for its whole run; `plan` writes nothing but terraform's
    ///   own caches.
    pub async fn run(&self, mode: Mode) -> Result<RunReport, EngineError> {
        let _lock = match mode {
            Mode::Apply => Some(
                lock::Lock::acquire(&self.opts.state_dir, "strata apply", self.opts.lock_timeout)
                    .await?,
            ),
            Mode::Plan => None,
        };
        let started = crate::now_rfc3339();
        let _progress = self.start_progress();
        let shared = Arc::new(Mutex::new(Shared {
            known: self.cached_outputs(),
            reports: BTreeMap::new(),
            changed: BTreeSet::new(),
        }));
        let parallelism = self.stack.settings.parallelism;
        let outcomes = walk(&self.graph, parallelism, self.opts.only.as_ref(), |id| {
            let shared = shared.clone();
            async move { self.step(&id, mode, &shared).await }
        })
        .await;
        let mut sh = shared.lock().expect("shared");
        let mut layers = Vec::new();
        for id in self.graph.layers() {
            if self.opts.only.as_ref().is_some_and(|o| !o.contains(id)) {
                continue;
            }
            let from_step = sh.reports.remove(id);
            let synthesized = from_step.is_none();
            let report = match (from_step, &outcomes[id]) {
                (Some(r), _) => r,
                // Held back by an upstream layer that waits: this one waits too.
                (None, Outcome::Skipped(why)) if why.contains(": waiting on ") => LayerReport {
                    layer: id.clone(),
                    wave: self.wave_of(id),
                    status: LayerStatus::Waiting,
                    reasons: vec![],
                    counts: None,
                    changes: vec![],
                    detail: Some(self.own_waiting(id, &sh.known).unwrap_or_else(|| {
                        why.replacen(": waiting on ", " is waiting on ", 1)
                            .replacen("upstream ", "waiting: upstream ", 1)
                    })),
                    duration_ms: 0,
                },
                (None, Outcome::Skipped(why)) => LayerReport {
                    layer: id.clone(),
                    wave: self.wave_of(id),
                    status: LayerStatus::Skipped,
                    reasons: vec![],
                    counts: None,
                    changes: vec![],
                    detail: Some(why.clone()),
                    duration_ms: 0,
                },
                (None, other) => LayerReport {
                    layer: id.clone(),
                    wave: self.wave_of(id),
                    status: LayerStatus::Failed,
                    reasons: vec![],
                    counts: None,
                    changes: vec![],
                    detail: Some(format!("{other:?}")),
                    duration_ms: 0,
                },
            };
            if synthesized {
                self.progress(id, &final_text(&report));
            }
            layers.push(report);
        }
        let report = RunReport {
            run_id: format!("{}-{}", started.replace([':', '-'], ""), std::process::id()),
            command: if mode == Mode::Apply {
                "apply".into()
            } else {
                "plan".into()
            },
            stack: self.stack.name.clone(),
            revision: self.revision.clone(),
            commit: self.commit_info(),
            started,
            finished: crate::now_rfc3339(),
            layers,
        };
        self.finish(&report, mode)?;
        Ok(report)
    }

    /// What a layer's own inputs wait on, if anything.
    fn own_waiting(&self, id: &LayerId, known: &Outputs) -> Option<String> {
        let layer = self.stack.layer(id)?;
        let mut values: Vec<crate::value::InputValue> = inputs::eval_map(&layer.vars, known)
            .ok()?
            .into_values()
            .collect();
        match &layer.spec {
            LayerSpec::Terraform(t) => values.extend(
                inputs::eval_map(&t.backend_config, known)
                    .ok()?
                    .into_values(),
            ),
            LayerSpec::Kubernetes(k) => {
                let cluster = self.stack.cluster(&k.cluster)?;
                if let Ok(Err(why)) = inputs::cluster_access(cluster, known) {
                    return Some(why);
                }
            }
        }
        inputs::waiting_on(values.iter())
    }

    /// Records the run: per-layer state, the stack's converged revision, the history line.
    fn finish(&self, report: &RunReport, mode: Mode) -> Result<(), EngineError> {
        let failed = report.any(LayerStatus::Failed) || report.any(LayerStatus::Interrupted);
        let mut state = self.state.lock().expect("state");
        state.stack = self.stack.name.clone();
        state.source = Some(match &self.source {
            Source::Dir(d) => d.display().to_string(),
            Source::Repo { spec, .. } => format!(
                "{}@{}",
                spec.url,
                spec.reference.clone().unwrap_or_else(|| "HEAD".into())
            ),
        });
        state.last_revision = Some(self.revision.clone());
        for l in &report.layers {
            let ls = state.layer_mut(&l.layer);
            ls.last_run = Some(report.finished.clone());
            if mode == Mode::Apply || matches!(l.status, LayerStatus::Failed) {
                ls.last_result = Some(match l.status {
                    LayerStatus::Applied | LayerStatus::Unchanged | LayerStatus::NotAffected => {
                        "converged".into()
                    }
                    other => other.as_str().replace(' ', "_"),
                });
                ls.last_error = matches!(l.status, LayerStatus::Failed | LayerStatus::Interrupted)
                    .then(|| l.detail.clone())
                    .flatten();
            }
        }
        let converged_all = mode == Mode::Apply
            && report.layers.iter().all(|l| {
                matches!(
                    l.status,
                    LayerStatus::Applied | LayerStatus::Unchanged | LayerStatus::NotAffected
                )
            });
        if converged_all {
            state.converged_revision = Some(self.revision.clone());
        }
        state
            .save(&self.opts.state_dir)
            .map_err(|source| EngineError::State {
                path: StackState::path(&self.opts.state_dir),
                source,
            })?;
        let result = if failed {
            "failed"
        } else if mode == Mode::Plan
            && report
                .layers
                .iter()
                .any(|l| matches!(l.status, LayerStatus::Changes | LayerStatus::Waiting))
        {
            "changes"
        } else {
            "ok"
        };
        record::append(&self.opts.state_dir, &record::RunRecord::of(report, result)).map_err(
            |source| EngineError::State {
                path: self.opts.state_dir.join("history.jsonl"),
                source,
            },
        )
    }

    fn report(&self, id: &LayerId, status: LayerStatus, started: Instant) -> LayerReport {
        LayerReport {
            layer: id.clone(),
            wave: self.wave_of(id),
            status,
            reasons: vec![],
            counts: None,
            changes: vec![],
            detail: None,
            duration_ms: started.elapsed().as_millis() as u64,
        }
    }

    async fn step(&self, id: &LayerId, mode: Mode, shared: &Arc<Mutex<Shared>>) -> Outcome {
        let started = Instant::now();
        let layer = self.stack.layer(id).expect("graph layers are stack layers");
        let result = match &layer.spec {
            LayerSpec::Terraform(_) => self.terraform_step(layer, mode, shared, started).await,
            LayerSpec::Kubernetes(_) => self.kube_step(layer, mode, shared, started).await,
        };
        let (report, outcome) = match result {
            Ok(ok) => ok,
            Err((status, message)) => {
                let mut r = self.report(id, status, started);
                r.detail = Some(message);
                (r, Outcome::Failed)
            }
        };
        self.progress(id, &final_text(&report));
        shared
            .lock()
            .expect("shared")
            .reports
            .insert(id.clone(), report);
        outcome
    }

    fn waiting(&self, id: &LayerId, why: String, started: Instant) -> (LayerReport, Outcome) {
        let mut r = self.report(id, LayerStatus::Waiting, started);
        r.detail = Some(why.clone());
        (r, Outcome::Blocked(why))
    }

    fn record_converged(&self, id: &LayerId, inputs_hash: Option<String>) {
        let mut state = self.state.lock().expect("state");
        let ls = state.layer_mut(id);
        ls.converged_revision = Some(self.revision.clone());
        if inputs_hash.is_some() {
            ls.inputs_hash = inputs_hash;
        }
        ls.last_result = Some("converged".into());
    }

    async fn terraform_step(
        &self,
        layer: &Layer,
        mode: Mode,
        shared: &Arc<Mutex<Shared>>,
        started: Instant,
    ) -> Result<(LayerReport, Outcome), (LayerStatus, String)> {
        let id = &layer.id;
        let LayerSpec::Terraform(spec) = &layer.spec else {
            unreachable!("terraform step")
        };
        let known = shared.lock().expect("shared").known.clone();
        let fail = |e: String| (LayerStatus::Failed, e);
        let vars = inputs::eval_map(&layer.vars, &known).map_err(fail)?;
        let backend = inputs::eval_map(&spec.backend_config, &known).map_err(fail)?;
        if let Some(why) = inputs::waiting_on(vars.values().chain(backend.values())) {
            return Ok(self.waiting(id, why, started));
        }
        let tf = self.terraform().await.map_err(|e| fail(e.to_string()))?;
        let tferr = |e: crate::terraform::TerraformError| {
            let status = if e.is_interrupted() {
                LayerStatus::Interrupted
            } else {
                LayerStatus::Failed
            };
            (status, e.to_string())
        };
        let mut p = tf
            .prepare(LayerInput {
                layer,
                stack_root: &self.root,
                revision: &self.revision,
                vars,
                backend_config: backend,
            })
            .await
            .map_err(tferr)?;
        let reasons = {
            let sh = shared.lock().expect("shared");
            self.reasons(layer, &p.inputs_hash, &sh)
        };
        if reasons.is_empty() {
            if known.layer(id).is_none() {
                self.read_outputs(&tf, &mut p, shared)
                    .await
                    .map_err(tferr)?;
            }
            let mut r = self.report(id, LayerStatus::NotAffected, started);
            r.detail = Some("nothing it depends on changed since it last converged".into());
            return Ok((r, Outcome::Done));
        }
        self.progress(id, "planning");
        let plan = tf
            .plan(&mut p, PlanMode::Normal, &self.opts.cancel)
            .await
            .map_err(tferr)?;
        let mut changes: Vec<String> = plan
            .resources
            .iter()
            .map(|r| format!("{} {}", r.action.symbol(), r.address))
            .collect();
        changes.extend(
            plan.outputs
                .iter()
                .map(|o| format!("{} output.{}", o.action.symbol(), o.name)),
        );
        let mut report = self.report(id, LayerStatus::Unchanged, started);
        report.reasons = reasons;
        report.counts = Some(plan.counts.to_string());
        report.changes = changes;
        if plan.has_changes {
            shared.lock().expect("shared").changed.insert(id.clone());
        }
        match mode {
            Mode::Plan => {
                report.status = if plan.has_changes {
                    LayerStatus::Changes
                } else {
                    LayerStatus::Unchanged
                };
                // Downstream sees the outputs this plan knows; the rest are unknown until applied.
                if plan.has_changes {
                    let mut sh = shared.lock().expect("shared");
                    let mut outputs = sh.known.layer(id).cloned().unwrap_or_default();
                    let mut unknown = Vec::new();
                    for o in &plan.outputs {
                        match &o.after {
                            Shown::Value(v) if !o.sensitive => {
                                outputs
                                    .insert(o.name.clone(), crate::value::Output::plain(v.clone()));
                            }
                            Shown::Absent => {
                                outputs.remove(&o.name);
                            }
                            _ => {
                                outputs.remove(&o.name);
                                unknown.push(o.name.clone());
                            }
                        }
                    }
                    sh.known.insert(id.clone(), outputs);
                    for n in unknown {
                        sh.known.mark_unknown(id, &n);
                    }
                }
                Ok((report, Outcome::Done))
            }
            Mode::Apply => {
                if !plan.has_changes {
                    if known.layer(id).is_none() {
                        self.read_outputs(&tf, &mut p, shared)
                            .await
                            .map_err(tferr)?;
                    }
                    self.record_converged(id, Some(p.inputs_hash.clone()));
                    return Ok((report, Outcome::Done));
                }
                if layer.apply == ApplyPolicy::Manual && !self.approved(id) {
                    report.status = LayerStatus::AwaitingApproval;
                    report.detail = Some(format!(
                        "apply = \"manual\": approve with --approve {}",
                        id.name
                    ));
                    return Ok((report, Outcome::Blocked("awaiting approval".into())));
                }
                self.progress(id, "applying");
                let applied = tf
                    .apply(&p, &plan, &self.opts.cancel)
                    .await
                    .map_err(tferr)?;
                state::save_outputs(&self.opts.state_dir, id, &applied.outputs)
                    .map_err(|e| fail(format!("failed to save its outputs: {e}")))?;
                shared
                    .lock()
                    .expect("shared")
                    .known
                    .insert(id.clone(), applied.outputs);
                self.record_converged(id, Some(p.inputs_hash.clone()));
                report.status = LayerStatus::Applied;
                report.duration_ms = started.elapsed().as_millis() as u64;
                Ok((report, Outcome::Done))
            }
        }
    }

    /// Reads a layer's outputs from its state (no cached copy yet), caches them and makes them
    /// known to its dependents.
    async fn read_outputs(
        &self,
        tf: &Terraform,
        p: &mut crate::terraform::Prepared,
        shared: &Arc<Mutex<Shared>>,
    ) -> Result<(), crate::terraform::TerraformError> {
        let outputs = tf.outputs(p, &self.opts.cancel).await?;
        let _ = state::save_outputs(&self.opts.state_dir, &p.layer, &outputs);
        shared
            .lock()
            .expect("shared")
            .known
            .insert(p.layer.clone(), outputs);
        Ok(())
    }

    fn sync_options(&self, layer: &Layer) -> SyncOptions {
        let LayerSpec::Kubernetes(k) = &layer.spec else {
            unreachable!("kubernetes layer")
        };
        let mut apply = k8s::ApplyOptions::new(&self.stack.name, &layer.id.name);
        apply.namespace = k.namespace.clone();
        apply.force_conflicts = layer.drift == DriftPolicy::Correct;
        SyncOptions {
            apply,
            prune: k.prune,
            wait: k.wait,
            timeout: layer.timeout,
        }
    }

    /// Connects to a Kubernetes layer's cluster and loads its desired objects; `Ok(Err(why))`
    /// while its inputs are unknown.
    async fn kube_inputs(
        &self,
        layer: &Layer,
        known: &Outputs,
    ) -> Result<Result<(::kube::Client, Vec<k8s::Desired>, k8s::resolve::Resources), String>, String>
    {
        let LayerSpec::Kubernetes(k) = &layer.spec else {
            unreachable!("kubernetes layer")
        };
        let vars = inputs::eval_map(&layer.vars, known)?;
        let cluster = self
            .stack
            .cluster(&k.cluster)
            .ok_or_else(|| format!("unknown cluster {}", k.cluster))?;
        let access = inputs::cluster_access(cluster, known)?;
        let waiting = inputs::waiting_on(vars.values());
        let access = match (access, waiting) {
            (Err(w), _) | (Ok(_), Some(w)) => return Ok(Err(w)),
            (Ok(a), None) => a,
        };
        let client = k8s::cluster::connect(&access, &self.opts.state_dir, &cluster.name)
            .await
            .map_err(|e| e.to_string())?;
        let opts = self.sync_options(layer);
        let (desired, resources) =
            k8s::desired(&client, &self.root, &layer.source, &vars, &opts.apply)
                .await
                .map_err(|e| e.to_string())?;
        Ok(Ok((client, desired, resources)))
    }

    async fn kube_step(
        &self,
        layer: &Layer,
        mode: Mode,
        shared: &Arc<Mutex<Shared>>,
        started: Instant,
    ) -> Result<(LayerReport, Outcome), (LayerStatus, String)> {
        let id = &layer.id;
        let known = shared.lock().expect("shared").known.clone();
        let fail = |e: String| (LayerStatus::Failed, e);
        let (client, desired, resources) =
            match self.kube_inputs(layer, &known).await.map_err(fail)? {
                Ok(x) => x,
                Err(why) => return Ok(self.waiting(id, why, started)),
            };
        let opts = self.sync_options(layer);
        let mut report = self.report(id, LayerStatus::Unchanged, started);
        report.reasons = vec!["compared with the cluster".into()];
        let cs = match mode {
            Mode::Plan => {
                self.progress(id, "comparing with the cluster");
                k8s::plan(&client, &desired, &resources, &opts)
                    .await
                    .map_err(|e| fail(e.to_string()))?
            }
            Mode::Apply => {
                self.progress(id, "applying");
                let cs = k8s::sync(&client, &desired, &resources, &opts)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                self.record_converged(id, None);
                cs
            }
        };
        report.counts = Some(cs.summary());
        report.changes = cs
            .changes
            .iter()
            .filter(|c| c.action != k8s::Action::Unchanged)
            .map(|c| match &c.reason {
                Some(r) if c.action == k8s::Action::Skipped => {
                    format!("{} {} ({r})", c.action.symbol(), c.object)
                }
                _ => format!("{} {}", c.action.symbol(), c.object),
            })
            .collect();
        if cs.has_changes() {
            shared.lock().expect("shared").changed.insert(id.clone());
            report.status = if mode == Mode::Apply {
                LayerStatus::Applied
            } else {
                LayerStatus::Changes
            };
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        Ok((report, Outcome::Done))
    }

    /// terradiff and kubediff of every layer against this revision.
    ///
    /// # Guarantees
    /// Writes nothing to the live system; records each layer's drift state (and since when) in
    /// the state dir. Secret values never appear in the report.
    pub async fn diff(&self, pending_revision: Option<String>) -> Result<DriftReport, EngineError> {
        let _progress = self.start_progress();
        let known = Arc::new(Mutex::new(self.cached_outputs()));
        let results: Arc<Mutex<BTreeMap<LayerId, LayerDrift>>> =
            Arc::new(Mutex::new(BTreeMap::new()));
        walk(&self.graph, self.stack.settings.parallelism, None, |id| {
            let (known, results) = (known.clone(), results.clone());
            async move {
                let layer = self.stack.layer(&id).expect("layer");
                let k = known.lock().expect("known").clone();
                let drift = self.diff_layer(layer, &k).await;
                self.progress(&id, &drift.state.replace('_', " "));
                results.lock().expect("results").insert(id, drift);
                Outcome::Done
            }
        })
        .await;
        let mut results = results.lock().expect("results");
        let layers: Vec<LayerDrift> = self
            .graph
            .layers()
            .iter()
            .filter_map(|id| results.remove(id))
            .collect();
        let now = crate::now_rfc3339();
        {
            let mut state = self.state.lock().expect("state");
            for l in &layers {
                let ls = state.layer_mut(&l.layer);
                let before = ls.drift.clone();
                ls.drift = Some(l.state.clone());
                if l.state == "drifted" {
                    if before.as_deref() != Some("drifted") {
                        ls.drift_since = Some(now.clone());
                    }
                } else {
                    ls.drift_since = None;
                }
            }
            state
                .save(&self.opts.state_dir)
                .map_err(|source| EngineError::State {
                    path: StackState::path(&self.opts.state_dir),
                    source,
                })?;
        }
        Ok(DriftReport {
            stack: self.stack.name.clone(),
            revision: self.revision.clone(),
            pending_revision,
            checked_at: now,
            layers,
            corrected: Vec::new(),
        })
    }

    async fn diff_layer(&self, layer: &Layer, known: &Outputs) -> LayerDrift {
        let id = layer.id.clone();
        let mut d = LayerDrift {
            layer: id.clone(),
            state: "in_sync".into(),
            terraform: None,
            kubernetes: None,
            detail: None,
        };
        let never = self
            .state
            .lock()
            .expect("state")
            .layer(&id)
            .and_then(|s| s.converged_revision.clone())
            .is_none();
        if never {
            d.state = "not_checked".into();
            d.detail = Some("never applied".into());
            return d;
        }
        match &layer.spec {
            LayerSpec::Terraform(spec) => {
                let vars = inputs::eval_map(&layer.vars, known);
                let backend = inputs::eval_map(&spec.backend_config, known);
                let (vars, backend) = match (vars, backend) {
                    (Ok(v), Ok(b)) => (v, b),
                    (Err(e), _) | (_, Err(e)) => {
                        return LayerDrift {
                            state: "error".into(),
                            detail: Some(e),
                            ..d
                        }
                    }
                };
                if let Some(why) = inputs::waiting_on(vars.values().chain(backend.values())) {
                    return LayerDrift {
                        state: "not_checked".into(),
                        detail: Some(why),
                        ..d
                    };
                }
                self.progress(&id, "terradiff");
                let result = async {
                    let tf = self.terraform().await?;
                    let mut p = tf
                        .prepare(LayerInput {
                            layer,
                            stack_root: &self.root,
                            revision: &self.revision,
                            vars,
                            backend_config: backend,
                        })
                        .await?;
                    tf.plan(&mut p, PlanMode::Normal, &self.opts.cancel).await
                }
                .await;
                match result {
                    Ok(plan) => {
                        if plan.has_changes {
                            d.state = "drifted".into();
                        }
                        d.terraform = Some(plan);
                    }
                    Err(e) => {
                        d.state = "error".into();
                        d.detail = Some(e.to_string());
                    }
                }
            }
            LayerSpec::Kubernetes(_) => {
                self.progress(&id, "kubediff");
                match self.kube_inputs(layer, known).await {
                    Ok(Ok((client, desired, resources))) => {
                        match k8s::diff(&client, &desired, &resources, &self.sync_options(layer))
                            .await
                        {
                            Ok(kd) => {
                                if kd.has_drift() {
                                    d.state = "drifted".into();
                                }
                                d.kubernetes = Some(kd);
                            }
                            Err(e) => {
                                d.state = "error".into();
                                d.detail = Some(e.to_string());
                            }
                        }
                    }
                    Ok(Err(why)) => {
                        d.state = "not_checked".into();
                        d.detail = Some(why);
                    }
                    Err(e) => {
                        d.state = "error".into();
                        d.detail = Some(e);
                    }
                }
            }
        }
        d
    }

    /// What the state dir remembers.
    pub fn state(&self) -> StackState {
        self.state.lock().expect("state").clone()
    }
}
