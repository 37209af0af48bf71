//! A plan in two halves: `terraform plan -out` says whether anything changes and saves the plan;
//! `terraform show -json` of the saved plan says what (each change with its values, the
//! approval digest, the outputs it knows). The second half costs a terraform start and the
//! providers' schemas, so it is skipped where it can say nothing (a plan without changes) and
//! runs beside the apply where nothing waits for it (an apply no approval gates).

use std::ffi::OsString;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::exec::Limits;
use super::{Applied, LayerPlan, PlanMode, Prepared, Step, Terraform, TerraformError};

/// A saved plan not read yet: whether it changes anything, and its file.
#[derive(Debug)]
pub struct Planned {
    layer: crate::stack::LayerId,
    revision: String,
    inputs_hash: String,
    mode: PlanMode,
    /// terraform's `-detailed-exitcode` said 2.
    pub has_changes: bool,
    plan_file: PathBuf,
}

impl Terraform {
    /// Plans the layer (init first when needed) and reads the plan: [`Self::plan_saved`], then
    /// [`Self::show`]. A `Normal` plan refreshes, so it is also the layer's drift check
    /// (terradiff).
    ///
    /// # Guarantees
    /// Those of [`Self::plan_saved`].
    ///
    /// # Errors
    /// Which step failed (init, workspace, plan, show) with terraform's error text, redacted;
    /// `UnsavedState`; `EarlierRunStillRunning`.
    pub async fn plan(
        &self,
        p: &mut Prepared,
        mode: PlanMode,
        cancel: &CancellationToken,
    ) -> Result<LayerPlan, TerraformError> {
        let planned = self.plan_saved(p, mode, cancel).await?;
        self.show(p, &planned, cancel).await
    }

    /// Plans the layer (init first when needed) into a plan file of its run, without reading
    /// the plan.
    ///
    /// # Guarantees
    /// - Changes nothing but terraform's own caches and the state lock; bounded by the layer's
    ///   `timeout`; on timeout or cancellation terraform is interrupted and nothing is left
    ///   running.
    /// - Never runs beside a terraform an earlier strata left running for the layer: waits for it
    ///   first (within the timeout), so the plan sees what it did.
    /// - Refuses a layer with unsaved state (`errored.tfstate`) until it is pushed.
    ///
    /// # Errors
    /// Which step failed (init, workspace, plan) with terraform's error text, redacted;
    /// `UnsavedState`; `EarlierRunStillRunning`.
    pub async fn plan_saved(
        &self,
        p: &mut Prepared,
        mode: PlanMode,
        cancel: &CancellationToken,
    ) -> Result<Planned, TerraformError> {
        let limits = self.limits(p, cancel);
        self.settle(p, &limits, false).await?;
        self.init(p, &limits).await?;
        let plan_file = p.run.path().join("layer.tfplan");
        let mut args: Vec<OsString> = vec![
            "plan".into(),
            "-input=false".into(),
            "-no-color".into(),
            "-detailed-exitcode".into(),
            Self::lock_timeout_arg(p),
        ];
        let mut var_file = OsString::from("-var-file=");
        var_file.push(&p.var_file);
        args.push(var_file);
        let mut out_arg = OsString::from("-out=");
        out_arg.push(&plan_file);
        args.push(out_arg);
        if mode == PlanMode::Destroy {
            args.push("-destroy".into());
        }
        let out = self.run(p, Step::Plan, args, true, &limits).await?;
        let has_changes = match out.code {
            0 => false,
            2 => true,
            _ => return Err(Self::failed(p, Step::Plan, &out)),
        };
        Ok(Planned {
            layer: p.layer.clone(),
            revision: p.revision.clone(),
            inputs_hash: p.inputs_hash.clone(),
            mode,
            has_changes,
            plan_file,
        })
    }

    /// Reads a saved plan with `terraform show -json`; sensitive values never enter the result.
    /// A plan without changes is not read: terraform said it changes nothing (exit code 0 of
    /// `-detailed-exitcode`), so there is nothing to show, to count or to digest but the layer
    /// itself, which is what `show` would give. Its outputs are then left to `terraform
    /// output`, should anything apply it.
    ///
    /// # Guarantees
    /// Reads only; bounded by the layer's `timeout`.
    ///
    /// # Errors
    /// `show` failing or printing something that is not JSON.
    pub async fn show(
        &self,
        p: &Prepared,
        planned: &Planned,
        cancel: &CancellationToken,
    ) -> Result<LayerPlan, TerraformError> {
        if !planned.has_changes {
            return Ok(self.read_plan(
                p,
                planned,
                &serde_json::json!({ "terraform_version": self.bin.version }),
            ));
        }
        let limits = self.limits(p, cancel);
        self.show_in(p.run.path(), false, p, planned, &limits).await
    }

    /// Applies a saved plan whose apply no approval gates, reading it (`show -json`, at a lower
    /// CPU priority) at the same time: the apply does not wait for what `show` says, and the
    /// layer's report still has every change, the plan's digest and its outputs.
    ///
    /// # Guarantees
    /// Those of [`Self::apply`]. `show` records itself apart from the apply (a sub-dir of the
    /// run), so a later strata still finds and waits for an apply this strata left running. A
    /// `show` that fails (or times out) beside an apply that succeeded does not undo or hide the
    /// apply: it is returned as the first half's error, and the outputs are then read with
    /// `terraform output`, so what passes downstream is what the apply produced.
    ///
    /// # Errors
    /// A stale plan; the apply's error (before `show`'s); `output`'s; `UnsavedState`;
    /// `EarlierRunStillRunning`. `show`'s own failure is in the first half of the result.
    pub async fn apply_while_showing(
        &self,
        p: &Prepared,
        planned: &Planned,
        cancel: &CancellationToken,
    ) -> Result<(Result<LayerPlan, TerraformError>, Applied), TerraformError> {
        if let Some(refusal) =
            super::stale(p, &planned.layer, &planned.revision, &planned.inputs_hash)
        {
            return Err(refusal);
        }
        let limits = self.limits(p, cancel);
        self.settle(p, &limits, false).await?;
        let beside = p.run.path().join("show");
        crate::util::fs::create_private_dir_all(&beside)
            .map_err(TerraformError::io(&p.layer, "create", &beside))?;
        let (shown, started) = tokio::join!(
            self.show_in(&beside, true, p, planned, &limits),
            self.apply_file(p, &planned.plan_file, &limits),
        );
        let started = started?;
        // The outputs the plan knows, as for any apply; the rest (all, without a plan read)
        // read after it.
        let known = shown
            .as_ref()
            .ok()
            .and_then(|plan| plan.known_outputs.as_ref());
        let applied = self.finish_apply(p, started, known, &limits).await?;
        Ok((shown, applied))
    }

    /// `show -json` of the saved plan, its files and record in `run_dir`; at a lower CPU
    /// priority when it runs in the `background` of an apply.
    async fn show_in(
        &self,
        run_dir: &std::path::Path,
        background: bool,
        p: &Prepared,
        planned: &Planned,
        limits: &Limits<'_>,
    ) -> Result<LayerPlan, TerraformError> {
        let show = vec![
            "show".into(),
            "-json".into(),
            "-no-color".into(),
            planned.plan_file.clone().into(),
        ];
        let out = self
            .run_in(run_dir, background, p, Step::Show, show, false, limits)
            .await?;
        if out.code != 0 {
            return Err(Self::failed(p, Step::Show, &out));
        }
        let json: serde_json::Value =
            serde_json::from_str(&out.stdout).map_err(|e| TerraformError::Failed {
                layer: p.layer.clone(),
                step: Step::Show,
                message: format!("`show -json` printed something that is not JSON ({e})"),
            })?;
        Ok(self.read_plan(p, planned, &json))
    }

    fn read_plan(&self, p: &Prepared, planned: &Planned, json: &serde_json::Value) -> LayerPlan {
        let mut plan = LayerPlan::from_show_json(
            json,
            p.layer.clone(),
            planned.mode,
            p.revision.clone(),
            p.inputs_hash.clone(),
            planned.has_changes,
            planned.plan_file.clone(),
        );
        plan.scrub(&p.redactor);
        plan
    }
}
