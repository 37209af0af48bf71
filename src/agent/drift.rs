//! The periodic drift check: diff every layer against the converged revision, correct the layers
//! that say so, write the report, and raise `diff` / `converged` alerts.

use std::collections::BTreeSet;

use crate::engine::record::LayerStatus;
use crate::engine::{Engine, Mode, Source};
use crate::notify::EventType;
use crate::stack::{DriftPolicy, LayerId, LayerKind};

use super::Agent;

impl Agent {
    /// Checks every layer for drift; re-applies `drift = "correct"` layers; raises `diff` and
    /// `converged` alerts.
    pub async fn drift(&mut self) {
        let Some(revision) = self.status.revision.clone() else {
            return;
        };
        self.status.last_drift_check = Some(crate::now_rfc3339());
        let mut spec = self.opts.spec.clone();
        spec.reference = Some(revision.clone());
        let source = Source::Repo {
            spec,
            opts: self.opts.source.clone(),
        };
        let engine = match Engine::open(source.clone(), self.engine_options()).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("drift check skipped: {e}");
                return;
            }
        };
        let pending = self.status.latest_seen.clone().filter(|l| *l != revision);
        let mut report = match engine.diff(pending).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("drift check failed: {e}");
                return;
            }
        };
        self.http.metrics.record_drift(&report);
        let drifted: Vec<LayerId> = report
            .layers
            .iter()
            .filter(|l| l.state == crate::engine::DriftState::Drifted)
            .map(|l| l.layer.clone())
            .collect();
        let to_correct: BTreeSet<LayerId> = drifted
            .iter()
            .filter(|id| {
                engine
                    .stack
                    .layer(id)
                    .is_some_and(|l| l.drift == DriftPolicy::Correct)
            })
            .cloned()
            .collect();
        if !to_correct.is_empty() {
            let mut opts = self.engine_options();
            opts.only = Some(to_correct.clone());
            opts.force_plan = to_correct
                .iter()
                .filter(|l| l.kind == LayerKind::Terraform)
                .cloned()
                .collect();
            if let Ok(corrector) = Engine::open(source, opts).await {
                match corrector.run(Mode::Apply).await {
                    Ok(r) => {
                        self.http.metrics.record_run(&r);
                        report.corrected = r
                            .layers
                            .iter()
                            .filter(|l| {
                                matches!(l.status, LayerStatus::Applied | LayerStatus::Unchanged)
                            })
                            .map(|l| l.layer.clone())
                            .collect();
                    }
                    Err(e) => tracing::warn!("drift correction failed: {e}"),
                }
            }
        }
        if let Err(e) =
            crate::state::reports::write(&self.opts.state_dir, &report, crate::state::reports::KEEP)
        {
            tracing::warn!("failed to write the drift report: {e}");
        }
        // Alerts: `diff` once a layer has stayed divergent longer than alert_after (and was not
        // corrected); `converged` when every layer matches again after an alert.
        let still: Vec<LayerId> = drifted
            .into_iter()
            .filter(|d| !report.corrected.contains(d))
            .collect();
        let alert_after = engine.stack.settings.alert_after;
        let state = engine.state();
        let due: Vec<LayerId> = still
            .iter()
            .filter(|id| !self.alerted.contains(*id))
            .filter(|id| {
                state
                    .layer(id)
                    .and_then(|l| l.drift_since.as_deref())
                    .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                    .is_none_or(|since| {
                        jiff::Timestamp::now().duration_since(since).as_secs() as u64
                            >= alert_after.as_secs()
                    })
            })
            .cloned()
            .collect();
        if !due.is_empty() {
            let names: Vec<String> = due.iter().map(ToString::to_string).collect();
            self.event(
                EventType::Diff,
                &revision,
                names.clone(),
                format!("drift in {}", names.join(", ")),
            );
            self.alerted.extend(due);
        }
        if still.is_empty() && (!self.alerted.is_empty() || !report.corrected.is_empty()) {
            let names: Vec<String> = report.corrected.iter().map(ToString::to_string).collect();
            let summary = if names.is_empty() {
                "every layer matches the revision again".to_string()
            } else {
                format!("drift corrected in {}", names.join(", "))
            };
            self.event(EventType::Converged, &revision, names, summary);
            self.alerted.clear();
        }
        self.alerted.retain(|a| still.contains(a));
        self.save();
    }
}
