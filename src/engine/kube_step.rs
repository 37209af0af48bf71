//! A Kubernetes layer's step: resolve its cluster and vars, load its objects, then plan (dry
//! runs) or sync them. Its inputs are shared with the drift check.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::inputs::{self, WaitingOn};
use super::kube_prune::{Pending, Stage};
use super::progress::Event;
use super::record::LayerStatus;
use super::run::{Failure, Shared, StepResult, Stepped};
use super::{change, Engine, Mode, Source};
use crate::kube::{self as k8s, SyncOptions};
use crate::stack::{ApplyPolicy, DriftPolicy, Layer, LayerSpec};
use crate::value::Outputs;

/// What a Kubernetes layer works with once its inputs are known: a client for its cluster, its
/// desired objects, and the cluster's resource types.
pub(super) struct KubeInputs {
    pub(super) client: Arc<k8s::Cluster>,
    pub(super) desired: Vec<k8s::Desired>,
    pub(super) resources: k8s::resolve::Resources,
    /// The cluster's API server URL.
    pub(super) server: String,
}

impl Engine {
    pub(super) fn sync_options(&self, layer: &Layer) -> SyncOptions {
        let LayerSpec::Kubernetes(k) = &layer.spec else {
            unreachable!("kubernetes layer")
        };
        let mut apply = k8s::ApplyOptions::new(&self.stack_label(), &layer.id.name);
        apply.stack_id = self.stack_id();
        apply.adopt = self.opts.adopt;
        apply.age_keys = self.opts.age_keys.clone();
        apply.namespace = k.namespace.clone();
        apply.limits = k.limits.over(&self.stack.settings.limits);
        apply.force_conflicts = layer.drift == DriftPolicy::Correct || self.opts.force_conflicts;
        SyncOptions {
            apply,
            prune: k.prune,
            wait: k.wait,
            timeout: layer.timeout,
        }
    }

    /// Connects to a Kubernetes layer's cluster and loads its desired objects; `Ok(Err(waits))`
    /// while its inputs are unknown.
    ///
    /// # Errors
    /// Input evaluation, an unknown or unusable cluster, connecting, and loading the manifests,
    /// as text naming what failed.
    pub(super) async fn kube_inputs(
        &self,
        layer: &Layer,
        known: &Outputs,
    ) -> Result<Result<KubeInputs, WaitingOn>, String> {
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
        let client = self
            .clusters
            .connect(&access, &self.opts.state_dir, &cluster.name)
            .await
            .map_err(|e| e.to_string())?;
        let url = &client.url;
        let opts = self.sync_options(layer);
        // The first request to the cluster happens here: name the cluster and its server, so
        // that a refused connection or a changed CA says where.
        let (desired, resources) = k8s::desired_parsed(
            &client,
            &self.root,
            &layer.source,
            &vars,
            &opts.apply,
            Some(&self.parsed),
        )
        .await
        .map_err(|e| match e {
            // The guard's verdict names the cluster and its server already.
            k8s::KubeError::Read { ref message, .. }
                if message.starts_with(&format!("cluster \"{}\"", cluster.name)) =>
            {
                e.to_string()
            }
            k8s::KubeError::Read { .. } => {
                format!("cluster \"{}\" at {url}: {e}", cluster.name)
            }
            other => other.to_string(),
        })?;
        let server = url.clone();
        Ok(Ok(KubeInputs {
            client,
            desired,
            resources,
            server,
        }))
    }

    /// The layer's view of the run's snapshot of its cluster (made by the first layer that
    /// asks): ready once every layer it depends on finished.
    fn reads(
        &self,
        layer: &Layer,
        cluster: &str,
        server: &str,
        shared: &Arc<Mutex<Shared>>,
    ) -> k8s::snapshot::Reads {
        let mut sh = shared.lock().expect("shared");
        let ready = self
            .graph
            .upstream(&layer.id)
            .iter()
            .filter_map(|up| sh.finished.get(up).copied())
            .fold(sh.began, Instant::max);
        let snapshot = sh
            .snapshots
            .entry((cluster.to_string(), server.to_string()))
            .or_insert_with(|| {
                Arc::new(k8s::snapshot::Snapshot::new(
                    &self.stack_label(),
                    &self.stack_id(),
                    self.declared.get(cluster).cloned().unwrap_or_default(),
                ))
            })
            .clone();
        k8s::snapshot::Reads { snapshot, ready }
    }

    /// The stack's identity on its clusters: its `id` setting, else derived from where the stack comes from (the
    /// repository URL and path, or the stack directory) and its name, so that two stacks that
    /// share a name never own each other's objects, and a new state dir for the same source owns
    /// the same ones.
    /// Worked out once per engine: it reads the file system (the stack directory's real path),
    /// and every layer asks.
    pub(super) fn stack_id(&self) -> String {
        self.stack_id
            .get_or_init(|| {
                let base = self.base_stack_id();
                // Each environment owns its own objects: one never prunes or adopts another's,
                // even in the same cluster and namespace.
                match &self.stack.env {
                    Some(env) => k8s::owner::derive_id(&base, &format!("env:{env}")),
                    None => base,
                }
            })
            .clone()
    }

    /// The stack's name on its objects (`strata.dev/stack`): `shop`, or `shop.dev` for
    /// environment `dev`, so that an object another environment owns is named as such.
    pub(super) fn stack_label(&self) -> String {
        match &self.stack.env {
            Some(env) => format!("{}.{env}", self.stack.name),
            None => self.stack.name.clone(),
        }
    }

    fn base_stack_id(&self) -> String {
        if let Some(id) = &self.stack.settings.id {
            return id.clone();
        }
        let source = match &self.source {
            Source::Dir(d) => {
                let dir = std::fs::canonicalize(d).unwrap_or_else(|_| d.clone());
                format!("dir:{}", dir.display())
            }
            Source::Repo { spec, .. } => format!(
                "repo:{}:{}",
                spec.url,
                spec.path
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display()
            ),
        };
        k8s::owner::derive_id(&source, &self.stack.name)
    }

    /// Plans (dry runs) or applies one Kubernetes layer; its prune comes once every layer ran
    /// ([`Engine::prune_kubernetes`]).
    ///
    /// # Guarantees
    /// - Nothing is sent to a cluster while an input is unknown: the layer is reported waiting.
    /// - A plan writes nothing; an apply records the layer converged once its prune succeeded.
    ///
    /// # Errors
    /// Inputs, connecting, dry runs, applying, pruning and waiting, as a [`Failure`].
    pub(super) async fn kube_step(
        &self,
        layer: &Layer,
        mode: Mode,
        shared: &Arc<Mutex<Shared>>,
        started: Instant,
    ) -> StepResult {
        let id = &layer.id;
        let known = shared.lock().expect("shared").known.clone();
        let k = match self
            .kube_inputs(layer, &known)
            .await
            .map_err(Failure::failed)?
        {
            Ok(k) => k,
            Err(why) => return Ok(self.waiting(id, why, started)),
        };
        let mut opts = self.sync_options(layer);
        let LayerSpec::Kubernetes(spec) = &layer.spec else {
            unreachable!("kubernetes layer")
        };
        opts.apply.reads = Some(self.reads(layer, &spec.cluster, &k.server, shared));
        let refs = k.desired.iter().map(|d| d.r.clone()).collect();
        shared
            .lock()
            .expect("shared")
            .declared
            .insert(id.clone(), Ok((spec.cluster.clone(), refs)));
        let mut report = self.report(id, LayerStatus::Unchanged, started);
        report.reasons = vec!["compared with the cluster".into()];
        let inventory = k8s::read_inventory(&k.client, &opts.apply)
            .await
            .map_err(Failure::failed)?;
        let previous = inventory.entries.clone();
        // `apply = "manual"` holds a layer whose dry run changes anything, as for Terraform
        // layers: it is compared, never written, until this run approves that very plan.
        // `safe` compares first too, and holds only a plan that deletes, recreates or prunes.
        let gated = mode == Mode::Apply && layer.apply != ApplyPolicy::Auto;
        let mut held: Option<String> = None;
        let planned = if mode == Mode::Plan || gated {
            self.progress(id, Event::Comparing);
            let cs = k8s::plan_apply(&k.client, &k.desired, &opts)
                .await
                .map_err(Failure::failed)?;
            let declared: std::collections::BTreeSet<&k8s::ObjRef> =
                k.desired.iter().map(|d| &d.r).collect();
            let prunes = previous.iter().any(|r| !declared.contains(r));
            if cs.has_changes() || prunes {
                let digest = super::approval::kubernetes_plan(
                    id,
                    &cs,
                    k.desired.iter().map(|d| (&d.r, &d.object)),
                    &previous,
                );
                let destructive = prunes
                    || cs
                        .changes
                        .iter()
                        .any(|c| matches!(c.action, k8s::Action::Deleted | k8s::Action::Recreated));
                if gated && (layer.apply == ApplyPolicy::Manual || destructive) {
                    held = self.approves(id, &digest).err();
                }
                report.plan = Some(digest);
            }
            Some(cs)
        } else {
            None
        };
        let (cs, stage) = match (mode, planned) {
            (Mode::Plan, Some(cs)) => (cs.clone(), Stage::Planned(cs)),
            // Held, or nothing to write: a manual layer is only compared.
            (Mode::Apply, Some(cs)) if held.is_some() || report.plan.is_none() => {
                (cs.clone(), Stage::Held(cs))
            }
            _ => {
                // Where it applies is on disk before anything is: once the layer leaves the
                // stack file, its objects can still be pruned.
                let target = crate::state::stack_status::KubeTarget {
                    cluster: spec.cluster.clone(),
                    server: k.server.clone(),
                    prune: opts.prune,
                };
                self.record_kube_target(id, target)
                    .await
                    .map_err(Failure::failed)?;
                self.progress(id, Event::Applying);
                let applied = k8s::apply_layer(&k.client, &k.desired, inventory, &opts)
                    .await
                    .map_err(Failure::failed)?;
                (applied.cs.clone(), Stage::Applied(applied))
            }
        };
        shared.lock().expect("shared").pending.insert(
            id.clone(),
            Pending {
                client: k.client,
                desired: k.desired,
                resources: k.resources,
                previous,
                stage,
            },
        );
        report.counts = Some(cs.summary());
        report.changes = change::of_kubernetes(&cs);
        if let Some(why) = held.filter(|_| cs.has_changes()) {
            report.status = LayerStatus::AwaitingApproval;
            report.detail = Some(why);
            report.duration_ms = started.elapsed().as_millis() as u64;
            return Ok(Stepped {
                report,
                hold: Some(super::run::Hold::Approval),
            });
        }
        if cs.has_changes() {
            shared.lock().expect("shared").changed.insert(id.clone());
            report.status = if mode == Mode::Apply {
                LayerStatus::Applied
            } else {
                LayerStatus::Changes
            };
        }
        report.duration_ms = started.elapsed().as_millis() as u64;
        Ok(Stepped::done(report))
    }
}
