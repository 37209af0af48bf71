//! A plan or an apply: walking the graph, handing each layer to its kind's step, reporting the
//! layers that did not run, and recording the run (per-layer state, converged revision,
//! history line).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::inputs::{self, WaitingOn};
use super::progress::Event;
use super::record::{self, LayerReport, LayerStatus, RunReport, SCHEMA_VERSION};
use super::{Engine, EngineError, Mode, Source};
use crate::graph::walk::{walk, Cause, Outcome, Parallelism};
use crate::stack::{Layer, LayerId, LayerSpec};
use crate::state::stack_status::StackState;
use crate::value::Outputs;

/// Why a layer that ran holds its dependents back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// `apply = "manual"` and not approved in this run.
    Approval,
    /// Its inputs read outputs that are not known until an upstream layer is applied.
    Waiting(WaitingOn),
}

/// `awaiting approval`, `waiting on terraform.cluster (outputs.kubeconfig unknown until applied)`.
impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hold::Approval => f.write_str("awaiting approval"),
            Hold::Waiting(w) => write!(f, "{w}"),
        }
    }
}

/// What a run shares between its layers.
pub(super) struct Shared {
    pub(super) known: Outputs,
    pub(super) reports: BTreeMap<LayerId, LayerReport>,
    /// Layers planned with changes (or applied with changes) in this run.
    pub(super) changed: BTreeSet<LayerId>,
    /// What each Kubernetes layer declares, once loaded; and the layers whose prune is to come.
    pub(super) declared: super::kube_prune::Declared,
    pub(super) pending: BTreeMap<LayerId, super::kube_prune::Pending>,
    /// The run's read snapshot of each cluster (by name and server), made on first use.
    pub(super) snapshots: BTreeMap<(String, String), Arc<crate::kube::snapshot::Snapshot>>,
    /// When the run began, and when each layer that ran finished: a layer is ready once every
    /// layer it depends on finished, and reads no snapshot older than that.
    pub(super) began: Instant,
    pub(super) finished: BTreeMap<LayerId, Instant>,
}

/// A layer step that did not fail: its report, and whether it holds its dependents back.
pub(super) struct Stepped {
    pub(super) report: LayerReport,
    pub(super) hold: Option<Hold>,
}

impl Stepped {
    pub(super) fn done(report: LayerReport) -> Stepped {
        Stepped { report, hold: None }
    }
}

/// A layer step that failed (or was interrupted), and the error.
pub(super) struct Failure {
    pub(super) status: LayerStatus,
    pub(super) message: String,
}

impl Failure {
    pub(super) fn failed(message: impl ToString) -> Failure {
        Failure {
            status: LayerStatus::Failed,
            message: message.to_string(),
        }
    }
}

impl From<crate::terraform::TerraformError> for Failure {
    fn from(e: crate::terraform::TerraformError) -> Failure {
        Failure {
            status: if e.is_interrupted() {
                LayerStatus::Interrupted
            } else {
                LayerStatus::Failed
            },
            message: e.to_string(),
        }
    }
}

pub(super) type StepResult = Result<Stepped, Failure>;

impl Engine {
    /// Plans (or applies) every layer in graph order.
    ///
    /// # Guarantees
    /// - A layer runs once all its upstream layers are done; outputs flow downstream as each
    ///   layer finishes; independent layers run in parallel up to `stack.parallelism` Terraform
    ///   layers and `stack.kubernetes_parallelism` Kubernetes layers.
    /// - A failed layer's dependents are skipped, naming the root cause; other branches go on.
    /// - A layer whose inputs are still unknown is shown waiting, never with made-up values.
    /// - `apply` holds the stack's lock for its whole run; `plan` writes nothing but terraform's
    ///   own caches and its own run record.
    ///
    /// # Errors
    /// The lock is held by another writer, or the run could not be recorded.
    pub async fn run(&self, mode: Mode) -> Result<RunReport, EngineError> {
        let _lock = self.writer_lock(mode, "strata apply").await?;
        if mode == Mode::Apply {
            // Opened before the lock was ours: another apply may have converged layers since.
            *self.state.lock().expect("state") = StackState::load(&self.opts.state_dir)?;
        }
        let started = crate::now_rfc3339();
        let _progress = self.start_progress();
        let shared = Arc::new(Mutex::new(Shared {
            known: self.cached_outputs(),
            reports: BTreeMap::new(),
            changed: BTreeSet::new(),
            declared: BTreeMap::new(),
            pending: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            began: Instant::now(),
            finished: BTreeMap::new(),
        }));
        if mode == Mode::Apply {
            self.record_new_kube_targets().await;
        }
        let parallelism = Parallelism::of(&self.stack.settings);
        let outcomes = walk(&self.graph, parallelism, self.opts.only.as_ref(), |id| {
            let shared = shared.clone();
            async move { self.step(&id, mode, &shared).await }
        })
        .await;
        // Removed Kubernetes layers are pruned with the stack's prune, as its most downstream
        // layers; Terraform orphans last: what the stack still declares is converged before
        // anything is destroyed.
        let mut orphaned = self.orphans(&started);
        self.prune_kubernetes(mode, &shared, &mut orphaned).await;
        // Every load of this run is done: parses no layer took (it did not run) go now.
        self.parsed.clear();
        if mode == Mode::Apply {
            self.destroy_orphans(&mut orphaned).await;
        }
        let mut sh = shared.lock().expect("shared");
        let mut layers = Vec::new();
        for id in self.graph.layers() {
            if self.opts.only.as_ref().is_some_and(|o| !o.contains(id)) {
                continue;
            }
            let report = match sh.reports.remove(id) {
                Some(r) => r,
                None => {
                    let r = self.not_run(id, &outcomes[id], &sh.known);
                    self.progress(id, Event::Done(Box::new(r.clone())));
                    r
                }
            };
            layers.push(report);
        }
        let report = RunReport {
            schema_version: SCHEMA_VERSION,
            run_id: format!("{}-{}", started.replace([':', '-'], ""), std::process::id()),
            command: if mode == Mode::Apply {
                "apply".into()
            } else {
                "plan".into()
            },
            stack: self.stack.name.clone(),
            env: self.stack.env.clone(),
            revision: self.revision.clone(),
            commit: self.commit_info(),
            started,
            finished: crate::now_rfc3339(),
            orphaned,
            layers,
        };
        self.finish(&report, &outcomes, mode)?;
        Ok(report)
    }

    /// The report of a layer the walk did not run.
    fn not_run(&self, id: &LayerId, outcome: &Outcome<Hold>, known: &Outputs) -> LayerReport {
        let mut r = self.report(id, LayerStatus::Skipped, Instant::now());
        r.duration_ms = 0;
        match outcome {
            // Held back by an upstream layer that waits: this one waits too, on its own inputs
            // when they are unknown as well, else on what the upstream layer waits on.
            Outcome::Skipped(Cause::Blocked(up, Hold::Waiting(theirs))) => {
                r.status = LayerStatus::Waiting;
                let (detail, waits) = match self.own_waiting(id, known) {
                    Some(own) => (own.to_string(), own.0),
                    None => (
                        format!("waiting: upstream {up} is {theirs}"),
                        theirs.0.clone(),
                    ),
                };
                r.detail = Some(detail);
                r.waiting_on = waits;
            }
            Outcome::Skipped(cause) => r.detail = Some(cause.to_string()),
            other => {
                r.status = LayerStatus::Failed;
                r.detail = Some(format!("{other:?}"));
            }
        }
        r
    }

    /// What a layer's own inputs wait on, if anything.
    fn own_waiting(&self, id: &LayerId, known: &Outputs) -> Option<WaitingOn> {
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

    /// Records the run: per-layer results and the converged revision (apply), the history line
    /// (both).
    ///
    /// # Guarantees
    /// - The stack's converged revision moves only when an apply converged every layer.
    /// - `plan` records only its own run (the history line, when it last ran); it never writes a
    ///   converged revision, result or inputs hash, so a plan overlapping an apply cannot revert
    ///   what the apply recorded.
    /// - `status.json` is re-read under its lock and only the fields this run owns are set.
    ///
    /// # Errors
    /// `status.json` or `history.jsonl` could not be read or written; the error names the file.
    fn finish(
        &self,
        report: &RunReport,
        outcomes: &BTreeMap<LayerId, Outcome<Hold>>,
        mode: Mode,
    ) -> Result<(), EngineError> {
        let source = match &self.source {
            Source::Dir(d) => d.display().to_string(),
            Source::Repo { spec, .. } => format!(
                "{}@{}",
                spec.url,
                spec.reference.clone().unwrap_or_else(|| "HEAD".into())
            ),
        };
        let converged = |s: LayerStatus| {
            matches!(
                s,
                LayerStatus::Applied | LayerStatus::Unchanged | LayerStatus::NotAffected
            )
        };
        let converged_all =
            mode == Mode::Apply && report.layers.iter().all(|l| converged(l.status));
        // What this apply's steps recorded as converged (`record_converged`), to merge in.
        let mine = self.state();
        // What the environment runs now, read before the state's lock is taken.
        let images = converged_all.then(|| {
            crate::images::running::of_found(&self.root, self.stack.env.as_deref(), &self.markers)
        });
        self.record_state(|state| {
            self.unrecord_unreached_kube_targets(state);
            state.stack = self.stack.name.clone();
            state.source = Some(source);
            state.last_revision = Some(self.revision.clone());
            for l in &report.layers {
                let ls = state.layer_mut(&l.layer);
                ls.last_run = Some(report.finished.clone());
                if mode == Mode::Plan {
                    continue;
                }
                ls.last_result = Some(if converged(l.status) {
                    "converged".into()
                } else {
                    l.status.key().to_string()
                });
                ls.last_error = matches!(l.status, LayerStatus::Failed | LayerStatus::Interrupted)
                    .then(|| l.detail.clone())
                    .flatten();
                // What `strata approve` may approve: the plan the layer waits with now. A layer
                // that did not get as far as planning keeps the plan it waited with before.
                match l.status {
                    LayerStatus::AwaitingApproval => {
                        ls.awaiting_plan = l.plan.clone();
                        ls.awaiting_revision = Some(self.revision.clone());
                    }
                    LayerStatus::Skipped | LayerStatus::Waiting | LayerStatus::Interrupted => {}
                    _ => {
                        ls.awaiting_plan = None;
                        ls.awaiting_revision = None;
                    }
                }
                ls.reason = super::reason::of(l, outcomes.get(&l.layer));
                if let Some(m) = mine
                    .layer(&l.layer)
                    .filter(|m| m.converged_revision.as_deref() == Some(&self.revision))
                {
                    ls.converged_revision = m.converged_revision.clone();
                    if m.inputs_hash.is_some() {
                        ls.inputs_hash = m.inputs_hash.clone();
                    }
                }
            }
            if converged_all {
                state.converged_revision = Some(self.revision.clone());
                state.converged_images = images.clone();
            }
            // Orphans stay in the state (never forgotten, never reported converged); a layer
            // declared again is no orphan.
            for o in &report.orphaned {
                if o.status.gone() {
                    state.layers.remove(&o.layer.to_string());
                    continue;
                }
                let ls = state.layer_mut(&o.layer);
                ls.orphaned_since = Some(o.since.clone());
                if mode == Mode::Apply {
                    ls.last_result = Some("orphaned".into());
                    // A Terraform orphan's destroy waits for approval like a manual layer.
                    if o.layer.kind == crate::stack::LayerKind::Terraform {
                        ls.awaiting_plan = Some(o.plan.clone());
                        ls.awaiting_revision = Some(self.revision.clone());
                    }
                    ls.reason = Some(o.reason());
                }
            }
            for l in &report.layers {
                state.layer_mut(&l.layer).orphaned_since = None;
            }
        })?;
        crate::state::history::append(&self.opts.state_dir, &record::RunRecord::of(report))?;
        // Only the dashboard reads it: a run is not failed for it (the dashboard says the file
        // is corrupt and how to recover when it cannot read it).
        if let Err(e) = crate::state::layer_runs::record(&self.opts.state_dir, report) {
            tracing::warn!("{e}");
        }
        if mode == Mode::Apply {
            self.settle_approvals(report);
        }
        Ok(())
    }

    /// An empty report of a layer in `status`, timed from `started`.
    pub(super) fn report(
        &self,
        id: &LayerId,
        status: LayerStatus,
        started: Instant,
    ) -> LayerReport {
        let mut r = LayerReport::new(id.clone(), self.wave_of(id), status);
        r.duration_ms = started.elapsed().as_millis() as u64;
        r
    }

    /// Runs one layer through its kind's step and keeps its report for the run.
    async fn step(&self, id: &LayerId, mode: Mode, shared: &Arc<Mutex<Shared>>) -> Outcome<Hold> {
        let started = Instant::now();
        let layer = self.stack.layer(id).expect("graph layers are stack layers");
        let result = match &layer.spec {
            LayerSpec::Terraform(_) => self.terraform_step(layer, mode, shared, started).await,
            LayerSpec::Kubernetes(_) => self.kube_step(layer, mode, shared, started).await,
        };
        let (report, outcome) = match result {
            Ok(Stepped { report, hold: None }) => (report, Outcome::Done),
            Ok(Stepped {
                report,
                hold: Some(hold),
            }) => (report, Outcome::Blocked(hold)),
            Err(f) => {
                let mut r = self.report(id, f.status, started);
                r.detail = Some(f.message);
                (r, Outcome::Failed)
            }
        };
        self.progress(id, Event::Done(Box::new(report.clone())));
        let mut sh = shared.lock().expect("shared");
        sh.finished.insert(id.clone(), Instant::now());
        sh.reports.insert(id.clone(), report);
        outcome
    }

    /// A layer whose inputs are not known yet.
    pub(super) fn waiting(&self, id: &LayerId, why: WaitingOn, started: Instant) -> Stepped {
        let mut report = self.report(id, LayerStatus::Waiting, started);
        report.detail = Some(why.to_string());
        report.waiting_on = why.0.clone();
        Stepped {
            report,
            hold: Some(Hold::Waiting(why)),
        }
    }

    pub(super) fn record_converged(&self, id: &LayerId, inputs_hash: Option<String>) {
        let mut state = self.state.lock().expect("state");
        let ls = state.layer_mut(id);
        ls.converged_revision = Some(self.revision.clone());
        if inputs_hash.is_some() {
            ls.inputs_hash = inputs_hash;
        }
        ls.last_result = Some("converged".into());
    }

    /// Why a Terraform layer must be planned; empty when nothing it depends on changed.
    pub(super) fn reasons(&self, layer: &Layer, inputs_hash: &str, shared: &Shared) -> Vec<String> {
        let mut r = Vec::new();
        if self.opts.all {
            r.push("--all".to_string());
        }
        if self.reinit_requested(&layer.id) {
            r.push("--reinit".to_string());
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::inputs::Waiting;

    #[test]
    fn a_hold_reads_as_its_dependents_are_told() {
        let waits = WaitingOn(vec![Waiting {
            on: LayerId::terraform("cluster"),
            output: "outputs.kubeconfig".into(),
        }]);
        let cause = Cause::Blocked(LayerId::terraform("cluster"), Hold::Waiting(waits));
        assert_eq!(
            cause.to_string(),
            "upstream terraform.cluster: waiting on terraform.cluster (outputs.kubeconfig unknown until applied)"
        );
        assert_eq!(Hold::Approval.to_string(), "awaiting approval");
    }
}
