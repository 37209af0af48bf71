//! A Terraform layer's step: resolve its inputs, skip it when nothing it depends on changed,
//! plan it, and (for an apply) apply the plan and pass its outputs downstream.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::progress::Event;
use super::record::LayerStatus;
use super::run::{Failure, Hold, Shared, StepResult, Stepped};
use super::{change, inputs, Engine, Mode};
use crate::stack::{ApplyPolicy, Layer, LayerId};
use crate::terraform::{LayerPlan, PlanMode, Prepared, Shown, Terraform};

impl Engine {
    /// Plans (and for an apply, applies) one Terraform layer.
    ///
    /// # Guarantees
    /// - Nothing runs while an input is unknown: the layer is reported waiting, naming the
    ///   outputs it waits on.
    /// - A layer nothing changed for is not planned; its cached outputs (read from its state
    ///   when missing) flow downstream.
    /// - A manual layer is applied only when this run approves the very plan it made (by its
    ///   digest, or `--approve` on the command); otherwise it waits, with that plan's digest.
    /// - Applied outputs are cached (0600) before dependents see them; the cache of the apply
    ///   before is forgotten before an apply starts, so whatever stops this one (strata killed,
    ///   a failed `output`) leaves no stale outputs for the next run to pass on.
    /// - An apply that succeeded is reported applied even when its plan could not be read
    ///   beside it: `changes_unread` says why its change list is missing.
    /// - A layer with unsaved state (`errored.tfstate`) fails, naming the file and the command
    ///   that pushes it, until it is pushed.
    ///
    /// # Errors
    /// Input evaluation, terraform (init, plan, apply, output) and caching failures, as a
    /// [`Failure`] naming the step.
    pub(super) async fn terraform_step(
        &self,
        layer: &Layer,
        mode: Mode,
        shared: &Arc<Mutex<Shared>>,
        started: Instant,
    ) -> StepResult {
        let id = &layer.id;
        let known = shared.lock().expect("shared").known.clone();
        let given = match inputs::terraform_inputs(layer, &known).map_err(Failure::failed)? {
            Ok(given) => given,
            Err(why) => return Ok(self.waiting(id, why, started)),
        };
        let (tf, mut p) = self.prepare_terraform(layer, given).await?;
        if mode == Mode::Apply && self.reinit_requested(id) {
            p.request_reinit();
        }
        // Unsaved state blocks the layer even when nothing changed for it: it must be pushed.
        if let Some(refusal) = tf.unsaved(&p) {
            return Err(refusal.into());
        }
        let reasons = {
            let sh = shared.lock().expect("shared");
            self.reasons(layer, &p.inputs_hash, &sh)
        };
        if reasons.is_empty() {
            if known.layer(id).is_none() {
                self.read_outputs(&tf, &mut p, shared, mode).await?;
            }
            let mut r = self.report(id, LayerStatus::NotAffected, started);
            r.detail = Some("nothing it depends on changed since it last converged".into());
            return Ok(Stepped::done(r));
        }
        self.progress(id, Event::Planning);
        let planned = tf
            .plan_saved(&mut p, PlanMode::Normal, &self.opts.cancel)
            .await?;
        // An apply no approval can gate does not wait for the plan to be read: `show` runs
        // beside it, for the report (changes, digest) and the outputs.
        let (plan, applied) =
            if mode == Mode::Apply && layer.apply == ApplyPolicy::Auto && planned.has_changes {
                self.progress(id, Event::Applying);
                self.forget_outputs(id)?;
                let (shown, applied) = tf
                    .apply_while_showing(&p, &planned, &self.opts.cancel)
                    .await?;
                match shown {
                    Ok(plan) => (plan, Some(applied)),
                    Err(e) => {
                        // The apply happened: the layer is applied and its outputs (read from
                        // terraform after it) pass on; only its change list is missing.
                        let mut report = self.report(id, LayerStatus::Applied, started);
                        report.reasons = reasons;
                        let why = format!("its change list could not be read: {e}");
                        report.detail = Some(why.clone());
                        report.changes_unread = Some(e.to_string());
                        tracing::warn!(layer = %id, "applied, but {why}");
                        shared.lock().expect("shared").changed.insert(id.clone());
                        return self
                            .applied(&tf, &p, applied, report, shared, started)
                            .await;
                    }
                }
            } else {
                (tf.show(&p, &planned, &self.opts.cancel).await?, None)
            };
        let mut report = self.report(id, LayerStatus::Unchanged, started);
        report.reasons = reasons;
        report.counts = Some(plan.counts.to_string());
        report.changes = change::of_terraform(&plan);
        if plan.has_changes {
            report.plan = Some(plan.digest.clone());
            shared.lock().expect("shared").changed.insert(id.clone());
        }
        match mode {
            Mode::Plan => {
                if plan.has_changes {
                    report.status = LayerStatus::Changes;
                    self.share_planned_outputs(id, &plan, shared);
                }
                Ok(Stepped::done(report))
            }
            Mode::Apply => {
                if !plan.has_changes {
                    if known.layer(id).is_none() {
                        self.read_outputs(&tf, &mut p, shared, mode).await?;
                    }
                    self.record_converged(id, Some(p.inputs_hash.clone()));
                    self.keep_applied(&tf, &p).await;
                    return Ok(Stepped::done(report));
                }
                let applied = match applied {
                    Some(applied) => applied,
                    None => {
                        let destructive = super::approval::destructive(&report.changes);
                        let gated = match layer.apply {
                            ApplyPolicy::Manual => true,
                            ApplyPolicy::Safe => !destructive.is_empty(),
                            ApplyPolicy::Auto => false,
                        };
                        if gated {
                            if let Err(why) = self.approves(id, &plan.digest) {
                                report.status = LayerStatus::AwaitingApproval;
                                report.detail = Some(if layer.apply == ApplyPolicy::Safe {
                                    format!(
                                        "{why} (it deletes or replaces {})",
                                        destructive.join(", ")
                                    )
                                } else {
                                    why
                                });
                                return Ok(Stepped {
                                    report,
                                    hold: Some(Hold::Approval),
                                });
                            }
                        }
                        self.progress(id, Event::Applying);
                        self.forget_outputs(id)?;
                        tf.apply(&p, &plan, &self.opts.cancel).await?
                    }
                };
                self.applied(&tf, &p, applied, report, shared, started)
                    .await
            }
        }
    }

    /// Before an apply: forgets the layer's cached outputs, so an apply that does not finish
    /// cleanly here (strata killed, the plan's `show` or the outputs failing) leaves no outputs
    /// of the apply before it behind; the next run reads them from terraform.
    ///
    /// # Errors
    /// The cache could not be removed: the apply does not start.
    fn forget_outputs(&self, id: &LayerId) -> Result<(), Failure> {
        crate::state::outputs::forget(&self.opts.state_dir, id).map_err(|e| {
            Failure::failed(format!(
                "not applied: its cached outputs could not be forgotten before the apply: {e}"
            ))
        })
    }

    /// A layer applied: its outputs cached and passed on, it is recorded converged.
    async fn applied(
        &self,
        tf: &Terraform,
        p: &Prepared,
        applied: crate::terraform::Applied,
        mut report: crate::engine::record::LayerReport,
        shared: &Arc<Mutex<Shared>>,
        started: Instant,
    ) -> StepResult {
        let id = &p.layer;
        crate::state::outputs::save(&self.opts.state_dir, id, &applied.outputs)
            .map_err(|e| Failure::failed(format!("failed to save its outputs: {e}")))?;
        shared
            .lock()
            .expect("shared")
            .known
            .insert(id.clone(), applied.outputs);
        self.record_converged(id, Some(p.inputs_hash.clone()));
        self.keep_applied(tf, p).await;
        report.status = LayerStatus::Applied;
        report.duration_ms = started.elapsed().as_millis() as u64;
        Ok(Stepped::done(report))
    }

    /// Keeps the working copy of a converged layer, which its resources are destroyed from
    /// should it leave the stack file. Not keeping it fails nothing now; it is kept next time.
    async fn keep_applied(&self, tf: &Terraform, p: &Prepared) {
        if let Err(e) = tf.keep_applied(p).await {
            tracing::warn!("{e}: destroying this layer's resources once it leaves the stack file needs a later apply to keep its working copy");
        }
    }

    /// After a plan with changes, downstream sees the outputs this plan knows; the rest are
    /// unknown until applied, so dependents wait instead of planning with stale values.
    fn share_planned_outputs(&self, id: &LayerId, plan: &LayerPlan, shared: &Arc<Mutex<Shared>>) {
        let mut sh = shared.lock().expect("shared");
        let mut outputs = sh.known.layer(id).cloned().unwrap_or_default();
        let mut unknown = Vec::new();
        for o in &plan.outputs {
            match &o.after {
                Shown::Value(v) if !o.sensitive => {
                    outputs.insert(o.name.clone(), crate::value::Output::plain(v.clone()));
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

    /// Reads a layer's outputs from its state (no cached copy yet) and makes them known to its
    /// dependents; an apply also caches them.
    ///
    /// # Guarantees
    /// Only an apply (which holds the stack lock) writes the cache. A `plan` takes no stack
    /// lock, so it may read a state an apply is about to change: cached, those outputs would
    /// outlive the apply's forgetting them and, if it then died before saving its own, be passed
    /// on as current.
    ///
    /// # Errors
    /// `terraform output` failing. A failure to cache is not an error: the next run reads the
    /// state again.
    async fn read_outputs(
        &self,
        tf: &Terraform,
        p: &mut Prepared,
        shared: &Arc<Mutex<Shared>>,
        mode: Mode,
    ) -> Result<(), crate::terraform::TerraformError> {
        let outputs = tf.outputs(p, &self.opts.cancel).await?;
        if mode == Mode::Apply {
            let _ = crate::state::outputs::save_if_absent(&self.opts.state_dir, &p.layer, &outputs);
        }
        shared
            .lock()
            .expect("shared")
            .known
            .insert(p.layer.clone(), outputs);
        Ok(())
    }
}
