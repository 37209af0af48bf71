//! Kubernetes layers gone from the stack file. What is not in Git does not exist: an apply prunes
//! a removed layer's objects with the rules of any prune, as the stack's most downstream layer
//! (a renamed layer's objects are declared by its new name, so they are handed over, never
//! deleted), then deletes its inventory. Its cluster and `prune` setting come from what the
//! state dir recorded before its first write ([`KubeTarget`]); when that cluster is gone from
//! the stack file, or points at another server now, nothing is touched and the layer stays
//! orphaned, saying why. A plan says what would be pruned and writes nothing.

use super::orphans::{Orphan, OrphanStatus};
use super::{change, Engine, Mode};
use crate::kube::{self as k8s, inventory::Inventory, prune::Stackwide, ObjRef};
use crate::stack::{LayerId, LayerKind};
use crate::state::stack_status::{KubeTarget, StackState};
use crate::value::Outputs;

/// A removed Kubernetes layer, connected to its cluster, its inventory read: ready to prune.
pub(super) struct Removed {
    /// Its index among the run's orphans.
    pub(super) index: usize,
    pub(super) cluster: String,
    pub(super) client: std::sync::Arc<k8s::Cluster>,
    pub(super) inventory: Inventory,
    pub(super) resources: k8s::resolve::Resources,
    pub(super) opts: k8s::ApplyOptions,
}

/// How reaching a removed layer's objects ended short of a prune.
enum Settled {
    /// Nothing touched, nothing to do by this run: stays orphaned, with why.
    Kept(String),
    /// Nothing of it left in the cluster.
    Gone(String),
    Failed(String),
}

impl Engine {
    /// Where the state dir says a Kubernetes layer applies.
    fn kube_target(&self, id: &LayerId) -> Option<KubeTarget> {
        // Read in place: every layer's apply asks, and a copy of the whole state each time made
        // a 1,000-layer apply quadratic.
        let state = self.state.lock().expect("state");
        state.layer(id).and_then(|l| l.kubernetes.clone())
    }

    /// Records where a Kubernetes layer applies (its cluster, that cluster's server, its
    /// `prune`), before its apply writes anything.
    ///
    /// # Guarantees
    /// Written (atomically, under the status lock) before the first object is: once the layer
    /// is removed from the stack file, an apply killed at any point still knows where to prune.
    /// Unchanged, it is not written again. Layers recording at the same time share one write of
    /// `status.json` ([`crate::util::group_commit`]); each goes on only once the write that
    /// carried its own record succeeded.
    ///
    /// # Errors
    /// `status.json` could not be written: the layer must not be applied then.
    pub(super) async fn record_kube_target(
        &self,
        id: &LayerId,
        target: KubeTarget,
    ) -> Result<(), String> {
        // About to write: a target recorded ahead for it stays.
        self.kube_ahead
            .lock()
            .expect("kube ahead")
            .1
            .insert(id.clone());
        if self.kube_target(id).as_ref() == Some(&target) {
            return Ok(());
        }
        // Only these fields, on disk and in memory: what the run's other steps recorded in
        // memory so far (converged layers) must survive until the run records it.
        let state_dir = self.opts.state_dir.clone();
        self.kube_targets
            .commit((id.clone(), target.clone()), move |batch| {
                write_targets(&state_dir, batch).map_err(|e| e.to_string())
            })
            .await?;
        self.state.lock().expect("state").layer_mut(id).kubernetes = Some(target);
        Ok(())
    }

    /// Before an apply's walk: records in one write where each Kubernetes layer that never
    /// recorded a target applies, when its cluster is known without any output (a kubeconfig
    /// path or in-cluster access), so that a first apply of many layers does not rewrite
    /// `status.json` once per layer.
    ///
    /// # Guarantees
    /// - Only layers with no recorded target: a layer that applied somewhere keeps its target
    ///   until it records a new one before its own first write there (a layer moved to another
    ///   cluster and then skipped in this run still prunes where its objects are).
    /// - A layer that does not get as far as writing in this run (skipped, failed before its
    ///   apply, held for approval) has the target cleared again when the run records
    ///   ([`Engine::unrecord_unreached_kube_targets`]), so that removing it later never waits
    ///   on a cluster it never wrote to. Should strata die before, the target stays, as after a
    ///   crash right after a layer's own record: harmless once the cluster answers (the layer
    ///   has no inventory there and is forgotten).
    /// - Failing to write changes nothing: each layer then records its own before its first
    ///   write, as always.
    pub(super) async fn record_new_kube_targets(&self) {
        let static_only = crate::value::Outputs::default();
        let mut servers: std::collections::HashMap<String, Option<String>> = Default::default();
        let mut batch = Vec::new();
        for id in self.graph.layers() {
            if id.kind != LayerKind::Kubernetes
                || self.opts.only.as_ref().is_some_and(|o| !o.contains(id))
                || self.kube_target(id).is_some()
            {
                continue;
            }
            let Some(layer) = self.stack.layer(id) else {
                continue;
            };
            let crate::stack::LayerSpec::Kubernetes(k) = &layer.spec else {
                continue;
            };
            let server = match servers.get(&k.cluster) {
                Some(known) => known.clone(),
                None => {
                    let server = match self
                        .stack
                        .cluster(&k.cluster)
                        .map(|c| (c, super::inputs::cluster_access(c, &static_only)))
                    {
                        Some((c, Ok(Ok(access)))) => self
                            .clusters
                            .connect(&access, &self.opts.state_dir, &c.name)
                            .await
                            .ok()
                            .map(|client| client.url.clone()),
                        _ => None,
                    };
                    servers.insert(k.cluster.clone(), server.clone());
                    server
                }
            };
            if let Some(server) = server {
                let target = KubeTarget {
                    cluster: k.cluster.clone(),
                    server,
                    prune: k.prune,
                };
                batch.push((id.clone(), target));
            }
        }
        if batch.is_empty() {
            return;
        }
        let state_dir = self.opts.state_dir.clone();
        let written = batch.clone();
        let outcome = tokio::task::spawn_blocking(move || write_targets(&state_dir, written)).await;
        if let Ok(Ok(_)) = outcome {
            let mut state = self.state.lock().expect("state");
            let mut ahead = self.kube_ahead.lock().expect("kube ahead");
            for (id, target) in batch {
                state.layer_mut(&id).kubernetes = Some(target.clone());
                ahead.0.insert(id, target);
            }
        }
    }

    /// When the run records: clears the targets recorded ahead for layers that never went on
    /// to write (see [`Engine::record_new_kube_targets`]), where the state still holds exactly
    /// that target.
    pub(super) fn unrecord_unreached_kube_targets(&self, state: &mut StackState) {
        let ahead = self.kube_ahead.lock().expect("kube ahead");
        let (recorded, reached) = &*ahead;
        for (id, target) in recorded {
            if reached.contains(id) {
                continue;
            }
            if let Some(ls) = state.layers.get_mut(&id.to_string()) {
                if ls.kubernetes.as_ref() == Some(target) {
                    ls.kubernetes = None;
                }
            }
        }
    }

    /// Connects to each removed Kubernetes layer's cluster and reads its inventory, for the
    /// prune phase. One that can't be reached, or needn't be, is settled here: its detail says
    /// why, and nothing of it is touched.
    pub(super) async fn removed_kube_layers(
        &self,
        mode: Mode,
        orphans: &mut [Orphan],
        known: &Outputs,
    ) -> Vec<Removed> {
        let mut ready = Vec::new();
        for (index, o) in orphans.iter_mut().enumerate() {
            if o.layer.kind != LayerKind::Kubernetes {
                continue;
            }
            let settled = match self.reach_removed(mode, &o.layer, known).await {
                Ok(Ok(mut r)) => {
                    r.index = index;
                    ready.push(r);
                    continue;
                }
                Ok(Err(s)) => s,
                Err(e) => Settled::Failed(e),
            };
            let (status, detail) = match settled {
                Settled::Kept(why) => (OrphanStatus::Orphaned, why),
                Settled::Gone(why) if mode == Mode::Apply => (OrphanStatus::Pruned, why),
                Settled::Gone(why) => (OrphanStatus::Orphaned, why),
                Settled::Failed(why) => (OrphanStatus::Failed, why),
            };
            o.status = status;
            o.detail = detail;
        }
        ready
    }

    async fn reach_removed(
        &self,
        mode: Mode,
        id: &LayerId,
        known: &Outputs,
    ) -> Result<Result<Removed, Settled>, String> {
        let keep = |why: String| Ok(Err(Settled::Kept(why)));
        let Some(target) = self.kube_target(id) else {
            return keep(format!(
                "removed from the stack file, but strata does not know which cluster it was \
                 applied to (an older strata applied it): its objects and inventory are kept; \
                 put {id} back and apply once, then remove it again to prune them"
            ));
        };
        let name = &target.cluster;
        if mode == Mode::Apply && self.opts.only.is_some() {
            return keep(
                "removed from the stack file: a run of some layers only prunes nothing of it; \
                 the next full apply does"
                    .into(),
            );
        }
        let Some(cluster) = self.stack.cluster(name) else {
            return keep(format!(
                "removed from the stack file, and so is its cluster \"{name}\" (at {}): its \
                 objects and inventory are kept; put the cluster block back to prune them, or \
                 delete them with kubectl",
                target.server
            ));
        };
        let access = match super::inputs::cluster_access(cluster, known)? {
            Ok(a) => a,
            Err(waiting) => {
                return keep(format!(
                    "removed from the stack file; its cluster \"{name}\" is {waiting}: pruned \
                     once it is known"
                ))
            }
        };
        let client = self
            .clusters
            .connect(&access, &self.opts.state_dir, name)
            .await
            .map_err(|e| format!("{e}: its objects are kept, the next apply prunes them"))?;
        let url = client.url.clone();
        if url != target.server {
            return keep(format!(
                "removed from the stack file; it was applied to cluster \"{name}\" at {}, which \
                 points at {url} now: its objects and inventory are kept there (point the \
                 cluster back to prune them, or delete them with kubectl)",
                target.server
            ));
        }
        let mut opts = k8s::ApplyOptions::new(&self.stack_label(), &id.name);
        opts.stack_id = self.stack_id();
        let fail = |e: k8s::KubeError| format!("cluster \"{name}\" at {url}: {e}");
        let inventory = k8s::read_inventory(&client, &opts).await.map_err(fail)?;
        if inventory.entries.is_empty() {
            return Ok(Err(Settled::Gone(
                "removed from the stack file; it has no inventory in its cluster: nothing left \
                 to prune"
                    .into(),
            )));
        }
        if !target.prune {
            return keep(format!(
                "removed from the stack file; prune = false: its {} objects stay in the cluster \
                 and in {} (delete that ConfigMap to stop tracking them; the objects stay)",
                inventory.entries.len(),
                k8s::inventory::describe(&opts)
            ));
        }
        if mode == Mode::Apply && self.opts.cancel.is_cancelled() {
            return keep("interrupted before pruning: the next apply prunes it".into());
        }
        let kinds = inventory
            .entries
            .iter()
            .map(|r| (r.group.clone(), r.version.clone(), r.kind.clone()));
        let resources = (*client.served(kinds).await.map_err(fail)?).clone();
        Ok(Ok(Removed {
            index: 0,
            cluster: name.clone(),
            client,
            inventory,
            resources,
            opts,
        }))
    }

    /// Prunes (or plans the prune of) one removed layer against the whole stack's view of its
    /// cluster, and says so in its orphan.
    ///
    /// # Guarantees
    /// As [`k8s::prune::removed_layer`]: pruned like any layer's objects, its inventory last.
    /// The state dir forgets the layer only once nothing of it is left ([`OrphanStatus::Pruned`]).
    pub(super) async fn prune_removed(
        &self,
        mode: Mode,
        r: Removed,
        stack: &Stackwide,
        o: &mut Orphan,
    ) {
        let mut cs = k8s::ChangeSet {
            dry_run: mode == Mode::Plan,
            ..Default::default()
        };
        let result = k8s::prune::removed_layer(
            &r.client,
            &r.inventory,
            stack,
            &r.resources,
            &r.opts,
            &mut cs,
        )
        .await;
        o.counts = Some(cs.summary());
        o.changes = change::of_kubernetes(&cs);
        let deleted = cs.count(k8s::Action::Deleted);
        let kept = match result {
            Ok(kept) => kept,
            Err(e) => {
                o.status = OrphanStatus::Failed;
                o.detail = format!(
                    "prune failed on cluster \"{}\": {e}; what is left stays in its inventory \
                     for the next apply",
                    r.cluster
                );
                return;
            }
        };
        let handed = r
            .inventory
            .entries
            .iter()
            .filter(|e| stack.declared.contains_key(&e.key()))
            .count();
        let (status, detail) = match (mode, kept.is_empty()) {
            (Mode::Plan, _) => (
                OrphanStatus::Orphaned,
                format!(
                    "removed from the stack file: the next apply prunes it ({deleted} to delete, \
                     {} kept, {handed} declared by other layers)",
                    kept.len()
                ),
            ),
            (Mode::Apply, true) => (
                OrphanStatus::Pruned,
                format!(
                    "pruned: {deleted} deleted, {handed} handed over to other layers; its \
                     inventory is deleted"
                ),
            ),
            (Mode::Apply, false) => (
                OrphanStatus::Orphaned,
                format!(
                    "{deleted} deleted; {} kept (see why below): they stay in its inventory, and \
                     the next apply prunes them once nothing keeps them",
                    kept.len()
                ),
            ),
        };
        o.status = status;
        o.detail = detail;
    }
}

/// What a removed layer's prune takes from its cluster, for every other prune's view of it.
pub(super) fn pruning(r: &Removed) -> (&str, &[ObjRef]) {
    (&r.cluster, &r.inventory.entries)
}

/// Records where each of `batch`'s layers applies, in one update of `status.json` (only these
/// fields: see [`StackState::update`]).
fn write_targets(
    state_dir: &std::path::Path,
    batch: Vec<(LayerId, KubeTarget)>,
) -> Result<(), crate::state::StateError> {
    StackState::update(state_dir, |s| {
        for (id, target) in batch {
            s.layer_mut(&id).kubernetes = Some(target);
        }
    })
    .map(drop)
}
