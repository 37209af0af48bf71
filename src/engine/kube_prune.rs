//! Pruning for the whole stack, once every Kubernetes layer's desired set is known. An object
//! that moves from one layer to another in one revision (upstream or downstream) is then a
//! hand-over, never a delete and a re-create; and a Namespace or CRD is pruned only when nothing
//! it holds is still declared by any layer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::progress::Event;
use super::record::LayerStatus;
use super::run::Shared;
use super::{change, Engine, Mode};
use crate::kube::{self as k8s, prune::Stackwide, ObjRef};
use crate::stack::{LayerId, LayerSpec};

/// What a Kubernetes layer that ran left for the prune phase.
pub(super) struct Pending {
    pub(super) client: Arc<k8s::Cluster>,
    pub(super) desired: Vec<k8s::Desired>,
    pub(super) resources: k8s::resolve::Resources,
    /// Its inventory before this run.
    pub(super) previous: Vec<ObjRef>,
    /// Apply: the layer applied, prune to come. Plan: the planned change set so far.
    pub(super) stage: Stage,
}

pub(super) enum Stage {
    Applied(k8s::Applied),
    Planned(k8s::ChangeSet),
    /// An apply of an `apply = "manual"` layer not approved: compared, not written, not pruned.
    Held(k8s::ChangeSet),
}

/// What every Kubernetes layer declares in this run, by layer: its cluster and objects, or why
/// it is unknown.
pub(super) type Declared = BTreeMap<LayerId, Result<(String, Vec<ObjRef>), String>>;

fn cluster_of(engine: &Engine, id: &LayerId) -> Option<String> {
    match &engine.stack.layer(id)?.spec {
        LayerSpec::Kubernetes(k) => Some(k.cluster.clone()),
        LayerSpec::Terraform(_) => None,
    }
}

impl Engine {
    /// What each Kubernetes layer declares: from this run's steps, else loaded now (a layer that
    /// did not run, or whose inputs are still unknown, is loaded with the outputs known now).
    async fn declared_by_all(&self, shared: &Arc<Mutex<Shared>>) -> Declared {
        let (mut declared, known) = {
            let sh = shared.lock().expect("shared");
            (sh.declared.clone(), sh.known.clone())
        };
        for layer in &self.stack.layers {
            if !matches!(layer.spec, LayerSpec::Kubernetes(_)) || declared.contains_key(&layer.id) {
                continue;
            }
            let cluster = cluster_of(self, &layer.id).unwrap_or_default();
            let entry = match self.kube_inputs(layer, &known).await {
                Ok(Ok(k)) => Ok((cluster, k.desired.iter().map(|d| d.r.clone()).collect())),
                Ok(Err(waiting)) => Err(format!("{}: {waiting}", layer.id)),
                Err(e) => Err(format!(
                    "{}: {}",
                    layer.id,
                    e.lines().next().unwrap_or_default()
                )),
            };
            declared.insert(layer.id.clone(), entry);
        }
        declared
    }

    /// The stack-wide view of one cluster: what every layer on it declares, what the layers that
    /// ran would prune, and which layers' desired sets are unknown.
    /// `pruning` is, per layer that prunes in this run (removed layers included), its cluster
    /// and its inventory.
    fn stackwide(
        &self,
        cluster: &str,
        declared: &Declared,
        pruning: &[(String, Vec<ObjRef>)],
    ) -> Stackwide {
        let mut s = Stackwide::default();
        for (id, entry) in declared {
            match entry {
                Ok((c, refs)) if c == cluster => s.add(&id.to_string(), refs, &[]),
                Ok(_) => {}
                // A layer whose cluster is unknown may be on this one.
                Err(why) => s.unknown.push(why.clone()),
            }
        }
        for (c, previous) in pruning {
            if c == cluster {
                s.pruning.extend(previous.iter().map(ObjRef::key));
            }
        }
        s.settle();
        s
    }

    /// Prunes (or plans the prune of) every Kubernetes layer that ran, last layers first, against
    /// the whole stack's desired objects, and completes their reports. Layers removed from the
    /// stack file (among `orphans`) come first: nothing declared depends on them.
    ///
    /// # Guarantees
    /// - Runs after the walk: every layer's desired set is known, or the layer is named as
    ///   unknown and nothing is pruned on that cluster while it is.
    /// - A layer is recorded converged only once its prune succeeded.
    /// - A cancelled run prunes nothing: its layers are reported interrupted, their objects stay
    ///   in their inventories for the next run.
    pub(super) async fn prune_kubernetes(
        &self,
        mode: Mode,
        shared: &Arc<Mutex<Shared>>,
        orphans: &mut [super::orphans::Orphan],
    ) {
        let mut pending = std::mem::take(&mut shared.lock().expect("shared").pending);
        let removed_any = orphans
            .iter()
            .any(|o| o.layer.kind == crate::stack::LayerKind::Kubernetes);
        if pending.is_empty() && !removed_any {
            return;
        }
        let known = shared.lock().expect("shared").known.clone();
        let removed = self.removed_kube_layers(mode, orphans, &known).await;
        let declared = self.declared_by_all(shared).await;
        let mut summary: Vec<(String, Vec<ObjRef>)> = pending
            .iter()
            .filter(|(id, _)| {
                self.stack
                    .layer(id)
                    .is_some_and(|l| self.sync_options(l).prune)
            })
            .map(|(id, p)| (cluster_of(self, id).unwrap_or_default(), p.previous.clone()))
            .collect();
        summary.extend(removed.iter().map(|r| {
            let (c, previous) = super::kube_orphans::pruning(r);
            (c.to_string(), previous.to_vec())
        }));
        for r in removed {
            let o = &mut orphans[r.index];
            if mode == Mode::Apply && self.opts.cancel.is_cancelled() {
                o.detail = "interrupted before pruning: the next apply prunes it".into();
                continue;
            }
            let stack = self.stackwide(&r.cluster, &declared, &summary);
            self.prune_removed(mode, r, &stack, o).await;
        }
        let order: Vec<LayerId> = self.graph.layers().iter().rev().cloned().collect();
        // The same for every layer on a cluster: built once per cluster (once per layer made a
        // no-op apply of 1,000 layers spend most of its time here).
        let mut stackwide: BTreeMap<String, Stackwide> = BTreeMap::new();
        for id in order {
            let Some(p) = pending.remove(&id) else {
                continue;
            };
            if mode == Mode::Apply && self.opts.cancel.is_cancelled() {
                let mut sh = shared.lock().expect("shared");
                if let Some(report) = sh.reports.get_mut(&id) {
                    report.status = LayerStatus::Interrupted;
                    report.detail = Some(
                        "interrupted before pruning: the next apply prunes what left Git".into(),
                    );
                }
                continue;
            }
            let layer = self
                .stack
                .layer(&id)
                .expect("graph layers are stack layers");
            let opts = self.sync_options(layer);
            let cluster = cluster_of(self, &id).unwrap_or_default();
            let stack = stackwide
                .entry(cluster.clone())
                .or_insert_with(|| self.stackwide(&cluster, &declared, &summary));
            let held = matches!(p.stage, Stage::Held(_));
            let result = match p.stage {
                Stage::Applied(applied) => {
                    k8s::finish(&p.client, applied, &p.desired, stack, &opts).await
                }
                Stage::Planned(mut cs) | Stage::Held(mut cs) => {
                    k8s::plan_prune(&p.client, &p.previous, &p.resources, stack, &opts, &mut cs)
                        .await
                        .map(|()| cs)
                }
            };
            // The guard is dropped before anything below locks `shared` again.
            let (before, after, converged) = {
                let mut sh = shared.lock().expect("shared");
                let Some(report) = sh.reports.get_mut(&id) else {
                    continue;
                };
                let before = report.clone();
                let converged = match result {
                    Ok(cs) if held && cs.has_changes() => {
                        // Only its prunes changed something: still nothing is written unapproved.
                        report.counts = Some(cs.summary());
                        report.changes = change::of_kubernetes(&cs);
                        report.status = LayerStatus::AwaitingApproval;
                        report.detail = report
                            .plan
                            .as_deref()
                            .and_then(|plan| self.approves(&id, plan).err());
                        false
                    }
                    Ok(cs) => {
                        report.counts = Some(cs.summary());
                        report.changes = change::of_kubernetes(&cs);
                        if cs.has_changes() {
                            report.status = match mode {
                                Mode::Apply => LayerStatus::Applied,
                                Mode::Plan => LayerStatus::Changes,
                            };
                            sh.changed.insert(id.clone());
                        }
                        true
                    }
                    Err(e) => {
                        report.status = LayerStatus::Failed;
                        report.detail = Some(e.to_string());
                        false
                    }
                };
                let after = sh
                    .reports
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| before.clone());
                (before, after, converged)
            };
            if converged && mode == Mode::Apply {
                self.record_converged(&id, None);
            }
            // The layer's line said what its apply did; now it says what its prune did too.
            if after != before {
                self.progress(&id, Event::Done(Box::new(after)));
            }
        }
    }
}
