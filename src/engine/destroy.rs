//! `strata destroy`: the stack torn down in the reverse of its apply order. Kubernetes layers
//! first (every object of a layer's inventory deleted with the rules of any prune, waited for
//! until gone, then the inventory), then Terraform layers (`terraform destroy` from the
//! layer's inputs, its upstream layers' outputs still cached), each layer only once everything
//! that depends on it is gone. A layer that fails to be destroyed keeps what it depends on.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::change;
use super::record::{LayerReport, LayerStatus, RunReport, SCHEMA_VERSION};
use super::{inputs, Engine, EngineError, Mode};
use crate::graph::walk::{walk, Cause, Outcome, Parallelism};
use crate::graph::LayerGraph;
use crate::kube as k8s;
use crate::stack::{Layer, LayerId, LayerSpec};
use crate::state::stack_status::StackState;
use crate::terraform::PlanMode;
use crate::value::Outputs;

/// The longest a destroyed Kubernetes layer's objects may take to be gone (finalizers, a
/// Namespace's contents); a shorter layer `timeout` bounds it too.
const GONE_TIMEOUT: Duration = Duration::from_secs(300);

impl Engine {
    /// Plans (`Mode::Plan`: says what would be destroyed, writes nothing) or destroys every layer
    /// of the stack, dependents before what they depend on.
    ///
    /// # Guarantees
    /// - A layer is destroyed only once every layer that depends on it was destroyed (or never
    ///   applied); one that fails keeps everything it depends on, and other branches go on.
    /// - A layer never applied from this state dir is left alone: destroying a stack that was
    ///   never applied does nothing.
    /// - Kubernetes objects are deleted with the rules of any prune (another stack's objects, a
    ///   Namespace or CRD holding anything else, `strata.dev/prune: disabled` are kept, and the
    ///   layer then fails: its cluster is not destroyed under them); the inventory goes last.
    /// - The state dir forgets a layer (its record, its outputs) only once it is destroyed; a run
    ///   killed midway is finished by the next `destroy`.
    /// - The destroy holds the stack's lock for its whole run.
    ///
    /// # Errors
    /// The lock is held by another writer, or the run could not be recorded.
    pub async fn destroy(&self, mode: Mode) -> Result<RunReport, EngineError> {
        let _lock = self.writer_lock(mode, "strata destroy").await?;
        *self.state.lock().expect("state") = StackState::load(&self.opts.state_dir)?;
        let started = crate::now_rfc3339();
        let known = self.cached_outputs();
        let reversed = reversed(&self.graph);
        // Reported in the order of the teardown: wave 1 goes first.
        let waves: BTreeMap<LayerId, usize> = reversed
            .waves()
            .into_iter()
            .enumerate()
            .flat_map(|(i, w)| w.into_iter().map(move |id| (id, i + 1)))
            .collect();
        let wave_of = |id: &LayerId| waves.get(id).copied().unwrap_or(0);
        let reports: Mutex<BTreeMap<LayerId, LayerReport>> = Mutex::new(BTreeMap::new());
        let outcomes = walk(
            &reversed,
            Parallelism::of(&self.stack.settings),
            None,
            |id| {
                let (known, reports, wave_of) = (&known, &reports, &wave_of);
                async move {
                    let begun = Instant::now();
                    let layer = self
                        .stack
                        .layer(&id)
                        .expect("graph layers are stack layers");
                    let mut r = LayerReport::new(id.clone(), wave_of(&id), LayerStatus::Unchanged);
                    let result = if !self.ever_recorded(&id) {
                        r.status = LayerStatus::NotAffected;
                        r.detail =
                            Some("never applied from this state dir: nothing to destroy".into());
                        Ok(())
                    } else if self.opts.cancel.is_cancelled() {
                        Err((
                            LayerStatus::Interrupted,
                            "interrupted before it was destroyed".into(),
                        ))
                    } else {
                        match &layer.spec {
                            LayerSpec::Terraform(_) => {
                                self.destroy_terraform(layer, mode, known, &mut r).await
                            }
                            LayerSpec::Kubernetes(_) => {
                                self.destroy_kubernetes(layer, mode, known, &mut r).await
                            }
                        }
                    };
                    let outcome: Outcome<String> = match result {
                        Ok(()) => Outcome::Done,
                        Err((status, message)) => {
                            r.status = status;
                            r.detail = Some(message);
                            Outcome::Failed
                        }
                    };
                    r.duration_ms = begun.elapsed().as_millis() as u64;
                    reports.lock().expect("reports").insert(id, r);
                    outcome
                }
            },
        )
        .await;
        let mut reports = reports.into_inner().expect("reports");
        let mut layers = Vec::new();
        // Dependents first, as they were destroyed.
        for wave in reversed.waves() {
            for id in wave {
                let report = reports.remove(&id).unwrap_or_else(|| {
                    let mut r = LayerReport::new(id.clone(), wave_of(&id), LayerStatus::Skipped);
                    if let Some(Outcome::Skipped(cause)) = outcomes.get(&id) {
                        let (Cause::Failed(by) | Cause::Blocked(by, _)) = cause;
                        r.detail = Some(format!(
                            "kept: {by}, which depends on it, was not destroyed"
                        ));
                    }
                    r
                });
                layers.push(report);
            }
        }
        let report = RunReport {
            schema_version: SCHEMA_VERSION,
            run_id: format!("{}-{}", started.replace([':', '-'], ""), std::process::id()),
            command: if mode == Mode::Apply {
                "destroy"
            } else {
                "destroy plan"
            }
            .into(),
            stack: self.stack.name.clone(),
            env: self.stack.env.clone(),
            revision: self.revision.clone(),
            commit: self.commit_info(),
            started,
            finished: crate::now_rfc3339(),
            orphaned: Vec::new(),
            layers,
        };
        if mode == Mode::Apply {
            self.forget_destroyed(&report)?;
        }
        Ok(report)
    }

    /// Whether the state dir remembers the layer at all (applied, or an apply of it began).
    fn ever_recorded(&self, id: &LayerId) -> bool {
        self.state().layer(id).is_some_and(|l| {
            l.converged_revision.is_some() || l.last_result.is_some() || l.kubernetes.is_some()
        })
    }

    async fn destroy_terraform(
        &self,
        layer: &Layer,
        mode: Mode,
        known: &Outputs,
        r: &mut LayerReport,
    ) -> Result<(), (LayerStatus, String)> {
        let failed = |e: String| (LayerStatus::Failed, e);
        let given = match inputs::terraform_inputs(layer, known).map_err(failed)? {
            Ok(given) => given,
            Err(why) => {
                return Err(failed(format!(
                    "its inputs are not known ({why}): the outputs they read are not cached, so \
                     terraform cannot be given the values the layer was applied with"
                )))
            }
        };
        let (tf, mut p) = self
            .prepare_terraform(layer, given)
            .await
            .map_err(|e| failed(e.to_string()))?;
        if let Some(refusal) = tf.unsaved(&p) {
            return Err(failed(refusal.to_string()));
        }
        let interrupted = |e: crate::terraform::TerraformError| {
            let status = if e.is_interrupted() {
                LayerStatus::Interrupted
            } else {
                LayerStatus::Failed
            };
            (status, e.to_string())
        };
        let plan = tf
            .plan(&mut p, PlanMode::Destroy, &self.opts.cancel)
            .await
            .map_err(interrupted)?;
        r.counts = Some(plan.counts.to_string());
        r.changes = change::of_terraform(&plan);
        if mode == Mode::Plan {
            r.status = if plan.has_changes {
                LayerStatus::Changes
            } else {
                LayerStatus::Unchanged
            };
            return Ok(());
        }
        if plan.has_changes {
            tf.apply(&p, &plan, &self.opts.cancel)
                .await
                .map_err(interrupted)?;
        }
        tf.forget_applied(&layer.id);
        r.status = LayerStatus::Destroyed;
        Ok(())
    }

    async fn destroy_kubernetes(
        &self,
        layer: &Layer,
        mode: Mode,
        known: &Outputs,
        r: &mut LayerReport,
    ) -> Result<(), (LayerStatus, String)> {
        let failed = |e: String| (LayerStatus::Failed, e);
        let LayerSpec::Kubernetes(spec) = &layer.spec else {
            unreachable!("kubernetes layer")
        };
        let cluster = self
            .stack
            .cluster(&spec.cluster)
            .ok_or_else(|| failed(format!("unknown cluster {}", spec.cluster)))?;
        let access = match inputs::cluster_access(cluster, known).map_err(failed)? {
            Ok(a) => a,
            Err(waiting) => {
                return Err(failed(format!(
                    "its cluster \"{}\" is {waiting}: its objects cannot be reached",
                    spec.cluster
                )))
            }
        };
        let client = self
            .clusters
            .connect(&access, &self.opts.state_dir, &spec.cluster)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let url = client.url.clone();
        let at = |e: k8s::KubeError| failed(format!("cluster \"{}\" at {url}: {e}", spec.cluster));
        let opts = self.sync_options(layer).apply;
        let inventory = k8s::read_inventory(&client, &opts).await.map_err(at)?;
        let kinds = inventory
            .entries
            .iter()
            .map(|r| (r.group.clone(), r.version.clone(), r.kind.clone()));
        let resources = (*client.served(kinds).await.map_err(at)?).clone();
        // Everything of the layer goes; nothing the stack declares is handed over (it is all
        // being destroyed), and prune's rules keep what is not the stack's to delete.
        let everything =
            k8s::prune::Stackwide::of_layer(&layer.id.to_string(), &[], &inventory.entries);
        let mut cs = k8s::ChangeSet {
            dry_run: mode == Mode::Plan,
            ..Default::default()
        };
        let kept =
            k8s::prune::removed_layer(&client, &inventory, &everything, &resources, &opts, &mut cs)
                .await
                .map_err(at)?;
        r.counts = Some(cs.summary());
        r.changes = change::of_kubernetes(&cs);
        if mode == Mode::Plan {
            r.status = if cs.has_changes() {
                LayerStatus::Changes
            } else {
                LayerStatus::Unchanged
            };
            return Ok(());
        }
        let deleted: Vec<k8s::ObjRef> = cs
            .changes
            .iter()
            .filter(|c| c.action == k8s::Action::Deleted)
            .map(|c| c.object.clone())
            .collect();
        let timeout = layer.timeout.min(GONE_TIMEOUT);
        k8s::wait::all_gone(&client, &deleted, &resources, timeout, &self.opts.cancel)
            .await
            .map_err(at)?;
        if !kept.is_empty() {
            return Err(failed(format!(
                "{} object(s) kept ({}): they stay in its inventory, and what it depends on is \
                 not destroyed under them; the next destroy deletes them once nothing keeps them",
                kept.len(),
                kept.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        r.status = LayerStatus::Destroyed;
        Ok(())
    }

    /// The state dir forgets the destroyed layers: their records and cached outputs.
    fn forget_destroyed(&self, report: &RunReport) -> Result<(), EngineError> {
        let gone: Vec<&LayerId> = report
            .layers
            .iter()
            .filter(|l| l.status == LayerStatus::Destroyed)
            .map(|l| &l.layer)
            .collect();
        for id in &gone {
            crate::state::outputs::forget(&self.opts.state_dir, id)?;
        }
        let all = report
            .layers
            .iter()
            .all(|l| matches!(l.status, LayerStatus::Destroyed | LayerStatus::NotAffected));
        self.record_state(|state| {
            for id in &gone {
                state.layers.remove(&id.to_string());
            }
            state.last_revision = Some(self.revision.clone());
            if all {
                state.converged_revision = None;
            }
        })?;
        crate::state::history::append(&self.opts.state_dir, &super::record::RunRecord::of(report))?;
        Ok(())
    }
}

/// The graph with every edge turned around: a layer's dependents come before it.
fn reversed(graph: &LayerGraph) -> LayerGraph {
    LayerGraph::from_edges(
        graph.layers().iter().cloned(),
        graph.edges().into_iter().flat_map(|e| {
            e.labels
                .into_iter()
                .map(move |l| (e.to.clone(), e.from.clone(), l))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reversed_graph_puts_dependents_first() {
        let (net, cluster, apps) = (
            LayerId::terraform("net"),
            LayerId::terraform("cluster"),
            LayerId::kubernetes("apps"),
        );
        let g = LayerGraph::from_edges(
            [net.clone(), cluster.clone(), apps.clone()],
            [
                (net.clone(), cluster.clone(), "outputs.subnet".to_string()),
                (cluster.clone(), apps.clone(), "cluster".to_string()),
            ],
        );
        let r = reversed(&g);
        assert_eq!(
            r.waves(),
            vec![vec![apps.clone()], vec![cluster.clone()], vec![net.clone()]]
        );
        assert_eq!(r.upstream(&cluster), vec![apps]);
    }
}
