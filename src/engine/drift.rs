//! The drift check: terradiff (a refresh plan) and kubediff of every layer against the
//! revision it converged to, and the drift state (and since when) remembered per layer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::inputs;
use super::kube_step::KubeInputs;
use super::progress::Event;
use super::record::{DriftReport, DriftState, LayerDrift, SCHEMA_VERSION};
use super::{change, Engine, EngineError};
use crate::graph::walk::{walk, Outcome};
use crate::kube as k8s;
use crate::stack::{Layer, LayerId, LayerSpec};
use crate::terraform::{LayerInput, PlanMode};
use crate::value::Outputs;

impl Engine {
    /// terradiff and kubediff of every layer against this revision.
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
        walk(&self.graph, self.stack.settings.parallelism, None, |id| {
            let (known, results) = (known.clone(), results.clone());
            async move {
                let layer = self.stack.layer(&id).expect("layer");
                let k = known.lock().expect("known").clone();
                let drift = self.diff_layer(layer, &k).await;
                self.progress(&id, Event::Checked(drift.state));
                results.lock().expect("results").insert(id, drift);
                Outcome::<String>::Done
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
        self.record_drift(&layers, &now)?;
        Ok(DriftReport {
            schema_version: SCHEMA_VERSION,
            stack: self.stack.name.clone(),
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
            changes: vec![],
            terraform: None,
            kubernetes: None,
            detail: None,
        };
        let not = |state: DriftState, detail: String| LayerDrift {
            layer: id.clone(),
            state,
            changes: vec![],
            terraform: None,
            kubernetes: None,
            detail: Some(detail),
        };
        if !self.ever_converged(&id) {
            return not(DriftState::NotChecked, "never applied".into());
        }
        match &layer.spec {
            LayerSpec::Terraform(spec) => {
                let vars = inputs::eval_map(&layer.vars, known);
                let backend = inputs::eval_map(&spec.backend_config, known);
                let (vars, backend) = match (vars, backend) {
                    (Ok(v), Ok(b)) => (v, b),
                    (Err(e), _) | (_, Err(e)) => return not(DriftState::Error, e),
                };
                if let Some(why) = inputs::waiting_on(vars.values().chain(backend.values())) {
                    return not(DriftState::NotChecked, why.to_string());
                }
                self.progress(&id, Event::Terradiff);
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
                    Ok(plan) => LayerDrift {
                        state: if plan.has_changes {
                            DriftState::Drifted
                        } else {
                            DriftState::InSync
                        },
                        changes: change::of_terraform(&plan),
                        terraform: Some(plan),
                        ..d
                    },
                    Err(e) => not(DriftState::Error, e.to_string()),
                }
            }
            LayerSpec::Kubernetes(_) => {
                self.progress(&id, Event::Kubediff);
                let k = match self.kube_inputs(layer, known).await {
                    Ok(Ok(k)) => k,
                    Ok(Err(why)) => return not(DriftState::NotChecked, why.to_string()),
                    Err(e) => return not(DriftState::Error, e),
                };
                let KubeInputs {
                    client,
                    desired,
                    resources,
                } = k;
                match k8s::diff(&client, &desired, &resources, &self.sync_options(layer)).await {
                    Ok(kd) => LayerDrift {
                        state: if kd.has_drift() {
                            DriftState::Drifted
                        } else {
                            DriftState::InSync
                        },
                        changes: kd.objects.iter().map(change::Change::from).collect(),
                        kubernetes: Some(kd),
                        ..d
                    },
                    Err(e) => not(DriftState::Error, e.to_string()),
                }
            }
        }
    }
}
