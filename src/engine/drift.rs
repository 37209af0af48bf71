//! The drift check: terradiff (a refresh plan) and kubediff of every layer against the
//! revision it converged to, and the drift state (and since when) remembered per layer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::inputs;
use super::kube_step::KubeInputs;
use super::progress::Event;
use super::record::{
    ClusterReach, DriftReport, DriftState, LayerDrift, Observation, SCHEMA_VERSION,
};
use super::{change, Engine, EngineError, EngineOptions, Source};
use crate::graph::walk::{walk, Outcome, Parallelism};
use crate::kube as k8s;
use crate::stack::{Layer, LayerId, LayerSpec};
use crate::terraform::PlanMode;
use crate::value::Outputs;

/// The detail of a layer that was never applied.
const NEVER_APPLIED: &str = "never applied";

/// terradiff and kubediff of every layer of `source` (its newest revision, or the one its
/// reference names) against the revision last applied to that layer: a layer whose newer
/// revision failed, was skipped or awaits approval is compared with what was really applied,
/// and shown [`Observation::Pending`] when it matches that.
///
/// # Guarantees
/// As [`Engine::diff`]: writes nothing to the live system. A revision that cannot be opened
/// makes its layers [`Observation::Unknown`], never in sync.
///
/// # Errors
/// The newest revision cannot be opened, or the state dir could not be written.
pub async fn diff_applied(
    source: Source,
    mut opts: EngineOptions,
) -> Result<DriftReport, EngineError> {
    // Every revision's engine talks to the same clusters: one client and discovery each.
    opts.clusters
        .get_or_insert_with(|| Arc::new(k8s::Clusters::new(opts.cancel.clone())));
    let latest = Engine::open(source.clone(), opts.clone()).await?;
    let state = latest.state();
    let Source::Repo { spec, opts: sopts } = &source else {
        return latest.diff(None).await;
    };
    let newest = latest.revision.clone();
    let pending = state
        .converged_revision
        .clone()
        .filter(|c| *c != newest)
        .map(|_| newest.clone());
    // Each layer against the revision last applied to it; never applied ones against the newest.
    let mut groups: BTreeMap<String, std::collections::BTreeSet<LayerId>> = BTreeMap::new();
    for id in latest.graph.layers() {
        let applied = state
            .layer(id)
            .and_then(|l| l.converged_revision.clone())
            .unwrap_or_else(|| newest.clone());
        groups.entry(applied).or_default().insert(id.clone());
    }
    let order: Vec<LayerId> = latest.graph.layers().to_vec();
    let stack = latest.stack.name.clone();
    let env = latest.stack.env.clone();
    // Every engine loads the state dir when opened and saves it after its diff: one at a time.
    drop(latest);
    let mut found: BTreeMap<LayerId, LayerDrift> = BTreeMap::new();
    let mut checked_at = crate::now_rfc3339();
    for (revision, layers) in groups {
        let mut pinned = spec.clone();
        pinned.reference = Some(revision.clone());
        let mut o = opts.clone();
        o.only = Some(layers.clone());
        let source = Source::Repo {
            spec: pinned,
            opts: sopts.clone(),
        };
        let opened = Engine::open(source, o).await;
        let report = match opened {
            Ok(engine) => engine.diff(None).await?,
            Err(e) => {
                for id in layers {
                    found.insert(
                        id.clone(),
                        unknown(&id, format!("revision {revision} cannot be opened: {e}")),
                    );
                }
                continue;
            }
        };
        checked_at = report.checked_at.clone();
        for l in report.layers {
            found.insert(l.layer.clone(), l);
        }
        for id in layers {
            found
                .entry(id.clone())
                .or_insert_with(|| unknown(&id, format!("not in revision {revision}")));
        }
    }
    let mut layers: Vec<LayerDrift> = order.iter().filter_map(|id| found.remove(id)).collect();
    // A layer in sync with what was applied, whose newer revision did not converge, is pending.
    for l in &mut layers {
        let unfinished = state
            .layer(&l.layer)
            .is_some_and(|s| s.last_result.as_deref() != Some("converged"));
        if l.observed == Observation::InSync && unfinished && l.revision.as_deref() != Some(&newest)
        {
            l.observed = Observation::Pending {
                revision: newest.clone(),
            };
        }
    }
    Ok(DriftReport {
        schema_version: SCHEMA_VERSION,
        stack,
        env,
        revision: state.converged_revision.clone().unwrap_or(newest),
        pending_revision: pending,
        checked_at,
        layers,
        corrected: Vec::new(),
    })
}

fn unknown(id: &LayerId, reason: String) -> LayerDrift {
    LayerDrift {
        layer: id.clone(),
        state: DriftState::Error,
        observed: Observation::Unknown {
            reason: reason.clone(),
        },
        revision: None,
        cluster: None,
        changes: vec![],
        terraform: None,
        kubernetes: None,
        detail: Some(reason),
    }
}

impl Engine {
    /// terradiff and kubediff of every layer (of `only`, when set) against this revision.
    ///
    /// # Guarantees
    /// Writes nothing to the live system; records each layer's drift state (and since when) in
    /// the state dir. Secret values never appear in the report.
    ///
    /// # Errors
    /// The state dir could not be written.
    pub async fn diff(&self, pending_revision: Option<String>) -> Result<DriftReport, EngineError> {
        let _progress = self.start_progress();
        let known = Arc::new(Mutex::new(self.cached_outputs()));
        let results: Arc<Mutex<BTreeMap<LayerId, LayerDrift>>> =
            Arc::new(Mutex::new(BTreeMap::new()));
        let only = self.opts.only.as_ref();
        walk(
            &self.graph,
            Parallelism::of(&self.stack.settings),
            only,
            |id| {
                let (known, results) = (known.clone(), results.clone());
                async move {
                    let layer = self.stack.layer(&id).expect("layer");
                    let k = known.lock().expect("known").clone();
                    let drift = self.diff_layer(layer, &k).await;
                    self.progress(&id, Event::Checked(drift.state));
                    results.lock().expect("results").insert(id, drift);
                    Outcome::<String>::Done
                }
            },
        )
        .await;
        // Every load of this diff is done: parses no layer took (it was not checked) go now.
        self.parsed.clear();
        let mut results = results.lock().expect("results");
        let layers: Vec<LayerDrift> = self
            .graph
            .layers()
            .iter()
            .filter_map(|id| results.remove(id))
            .collect();
        let now = crate::now_rfc3339();
        self.record_drift(&layers, &now)?;
        Ok(DriftReport {
            schema_version: SCHEMA_VERSION,
            stack: self.stack.name.clone(),
            env: self.stack.env.clone(),
            revision: self.revision.clone(),
            pending_revision,
            checked_at: now,
            layers,
            corrected: Vec::new(),
        })
    }

    /// Remembers each layer's drift state, and when its current drift was first seen.
    ///
    /// # Errors
    /// `status.json` could not be written.
    fn record_drift(&self, layers: &[LayerDrift], now: &str) -> Result<(), EngineError> {
        // Only the drift fields: the converged revision and results belong to `apply`.
        self.record_state(|state| {
            for l in layers {
                let ls = state.layer_mut(&l.layer);
                let before = ls.drift.replace(l.state);
                if l.state == DriftState::Drifted {
                    if before != Some(DriftState::Drifted) {
                        ls.drift_since = Some(now.to_string());
                    }
                } else {
                    ls.drift_since = None;
                }
            }
        })
    }

    async fn diff_layer(&self, layer: &Layer, known: &Outputs) -> LayerDrift {
        let id = layer.id.clone();
        let d = LayerDrift {
            layer: id.clone(),
            state: DriftState::InSync,
            observed: Observation::InSync,
            revision: Some(self.revision.clone()),
            cluster: None,
            changes: vec![],
            terraform: None,
            kubernetes: None,
            detail: None,
        };
        let not = |state: DriftState, detail: String| LayerDrift {
            layer: id.clone(),
            state,
            observed: if detail == NEVER_APPLIED {
                Observation::NeverApplied
            } else {
                Observation::Unknown {
                    reason: detail.clone(),
                }
            },
            revision: None,
            cluster: None,
            changes: vec![],
            terraform: None,
            kubernetes: None,
            detail: Some(detail),
        };
        if !self.ever_converged(&id) {
            return not(DriftState::NotChecked, NEVER_APPLIED.into());
        }
        match &layer.spec {
            LayerSpec::Terraform(_) => {
                let given = match inputs::terraform_inputs(layer, known) {
                    Ok(Ok(given)) => given,
                    Ok(Err(why)) => return not(DriftState::NotChecked, why.to_string()),
                    Err(e) => return not(DriftState::Error, e),
                };
                self.progress(&id, Event::Terradiff);
                let result = async {
                    let (tf, mut p) = self.prepare_terraform(layer, given).await?;
                    tf.plan(&mut p, PlanMode::Normal, &self.opts.cancel).await
                }
                .await;
                match result {
                    Ok(plan) => LayerDrift {
                        state: if plan.has_changes {
                            DriftState::Drifted
                        } else {
                            DriftState::InSync
                        },
                        observed: if plan.has_changes {
                            Observation::Drifted
                        } else {
                            Observation::InSync
                        },
                        changes: change::of_terraform(&plan),
                        terraform: Some(plan),
                        ..d
                    },
                    Err(e) => not(DriftState::Error, e.to_string()),
                }
            }
            LayerSpec::Kubernetes(spec) => {
                self.progress(&id, Event::Kubediff);
                let reach = |error: Option<String>| {
                    Some(ClusterReach {
                        name: spec.cluster.clone(),
                        error,
                    })
                };
                let k = match self.kube_inputs(layer, known).await {
                    Ok(Ok(k)) => k,
                    Ok(Err(why)) => return not(DriftState::NotChecked, why.to_string()),
                    Err(e) => {
                        return LayerDrift {
                            cluster: reach(Some(e.clone())),
                            ..not(DriftState::Error, e)
                        }
                    }
                };
                let KubeInputs {
                    client,
                    desired,
                    resources,
                    ..
                } = k;
                match k8s::diff(&client, &desired, &resources, &self.sync_options(layer)).await {
                    Ok(kd) => LayerDrift {
                        state: if kd.has_drift() {
                            DriftState::Drifted
                        } else {
                            DriftState::InSync
                        },
                        observed: if kd.has_drift() {
                            Observation::Drifted
                        } else {
                            Observation::InSync
                        },
                        changes: kd.objects.iter().map(change::Change::from).collect(),
                        kubernetes: Some(kd),
                        cluster: reach(None),
                        ..d
                    },
                    Err(e) => LayerDrift {
                        cluster: reach(Some(e.to_string())),
                        ..not(DriftState::Error, e.to_string())
                    },
                }
            }
        }
    }
}
