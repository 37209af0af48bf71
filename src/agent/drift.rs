//! The periodic drift check: observe every layer against the revision last applied to it,
//! correct the layers that say so, write the report, and raise `diff` / `converged` alerts and
//! the clusters' `degraded` / `recovered` ones.

use std::collections::{BTreeMap, BTreeSet};

use crate::engine::record::{DriftReport, LayerStatus, Observation};
use crate::engine::{Engine, Mode, Source};
use crate::notify::EventType;
use crate::stack::{DriftPolicy, LayerId, LayerKind};

use super::Agent;

fn diff_key(layer: &LayerId) -> String {
    format!("diff {layer}")
}

impl Agent {
    /// Observes every layer; re-applies drifted `drift = "correct"` layers; raises `diff`
    /// alerts (at most one per layer per `diff_interval`, and once per drift), and `converged`
    /// only when every layer was observed in sync after a drift.
    pub async fn drift(&mut self) {
        let Some(revision) = self.status.revision.clone() else {
            return;
        };
        self.status.last_drift_check = Some(crate::now_rfc3339());
        // The newest revision seen: each layer is measured against the one applied to it, and
        // a newer one shows as pending.
        let mut spec = self.opts.spec.clone();
        spec.reference = Some(self.status.latest_seen.clone().unwrap_or(revision.clone()));
        let source = Source::Repo {
            spec,
            opts: self.opts.source.clone(),
        };
        let mut report =
            match crate::engine::diff_applied(source.clone(), self.engine_options()).await {
                Ok(r) => r,
                Err(e) => {
                    // Not looked at: every layer is unknown, never in sync.
                    tracing::warn!("drift check failed: {e}");
                    let reason = format!("the drift check could not run: {e}");
                    for o in self.status.layers.values_mut() {
                        *o = Observation::Unknown {
                            reason: reason.clone(),
                        };
                    }
                    self.http.metrics.record_observed(&self.status.layers);
                    self.save();
                    return;
                }
            };
        self.http.metrics.record_drift(&report);
        self.clusters_from(&report);
        let drifted: Vec<LayerId> = report
            .layers
            .iter()
            .filter(|l| l.observed == Observation::Drifted)
            .map(|l| l.layer.clone())
            .collect();
        let stack = crate::engine::Engine::open(source.clone(), self.engine_options())
            .await
            .ok()
            .map(|e| (e.stack.clone(), e.state()));
        let to_correct: BTreeSet<LayerId> = drifted
            .iter()
            .filter(|id| {
                stack.as_ref().is_some_and(|(s, _)| {
                    s.layer(id).is_some_and(|l| l.drift == DriftPolicy::Correct)
                })
            })
            .cloned()
            .collect();
        if !to_correct.is_empty() {
            self.correct(&source, &to_correct, &mut report).await;
        }
        if let Err(e) =
            crate::state::reports::write(&self.opts.state_dir, &report, crate::state::reports::KEEP)
        {
            tracing::warn!("failed to write the drift report: {e}");
        }
        self.status.layers = report
            .layers
            .iter()
            .map(|l| {
                let o = if report.corrected.contains(&l.layer) {
                    Observation::InSync
                } else {
                    l.observed.clone()
                };
                (l.layer.to_string(), o)
            })
            .collect();
        self.http.metrics.record_observed(&self.status.layers);
        let alert_after = stack
            .as_ref()
            .map(|(s, _)| s.settings.alert_after)
            .unwrap_or_default();
        let state = stack.map(|(_, st)| st).unwrap_or_default();
        if !report.corrected.is_empty() {
            self.owes_converged = true;
        }
        for l in &report.layers {
            let key = diff_key(&l.layer);
            let drifting =
                l.observed == Observation::Drifted && !report.corrected.contains(&l.layer);
            if !drifting {
                // Unknown says nothing either way: the condition stands until observed.
                if !matches!(l.observed, Observation::Unknown { .. }) && self.memory.clear(&key) {
                    self.owes_converged = true;
                }
                continue;
            }
            let old_enough = state
                .layer(&l.layer)
                .and_then(|s| s.drift_since.as_deref())
                .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                .is_none_or(|since| {
                    jiff::Timestamp::now().duration_since(since).as_secs() as u64
                        >= alert_after.as_secs()
                });
            let fingerprint = serde_json::to_string(&l.changes).unwrap_or_default();
            if old_enough
                && self
                    .memory
                    .raise_at_most_every(&key, &fingerprint, self.opts.diff_interval)
            {
                let against = l.revision.clone().unwrap_or(revision.clone());
                self.event(
                    EventType::Diff,
                    &against,
                    vec![l.layer.to_string()],
                    &key,
                    format!(
                        "drift in {}: {} change{} against {}",
                        l.layer,
                        l.changes.len(),
                        if l.changes.len() == 1 { "" } else { "s" },
                        crate::report::run::short(&against)
                    ),
                );
            }
        }
        if self.owes_converged && report.all_in_sync() {
            let names: Vec<String> = report.corrected.iter().map(ToString::to_string).collect();
            let summary = if names.is_empty() {
                "every layer was observed in sync with the revision applied to it".to_string()
            } else {
                format!("drift corrected in {}", names.join(", "))
            };
            self.event(EventType::Converged, &revision, names, "drift", summary);
            self.owes_converged = false;
        }
        self.save();
    }

    /// Re-applies the drifted layers that say `drift = "correct"`, noting which converged.
    async fn correct(
        &mut self,
        source: &Source,
        layers: &BTreeSet<LayerId>,
        report: &mut DriftReport,
    ) {
        let mut opts = self.engine_options();
        opts.only = Some(layers.clone());
        opts.force_plan = layers
            .iter()
            .filter(|l| l.kind == LayerKind::Terraform)
            .cloned()
            .collect();
        let Ok(corrector) = Engine::open(source.clone(), opts).await else {
            return;
        };
        match corrector.run(Mode::Apply).await {
            Ok(r) => {
                self.http.metrics.record_run(&r);
                report.corrected = r
                    .layers
                    .iter()
                    .filter(|l| matches!(l.status, LayerStatus::Applied | LayerStatus::Unchanged))
                    .map(|l| l.layer.clone())
                    .collect();
            }
            Err(e) => tracing::warn!("drift correction failed: {e}"),
        }
    }

    /// Which clusters answered in this check: one that answered for any layer is up; one that
    /// answered for none is down.
    fn clusters_from(&mut self, report: &DriftReport) {
        let mut seen: BTreeMap<String, Option<String>> = BTreeMap::new();
        for l in &report.layers {
            let Some(reach) = &l.cluster else { continue };
            let entry = seen
                .entry(reach.name.clone())
                .or_insert(reach.error.clone());
            if reach.error.is_none() {
                *entry = None;
            }
        }
        for (name, error) in seen {
            self.cluster_seen(&name, error);
        }
    }
}
