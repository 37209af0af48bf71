//! Recovering a layer from what went wrong outside a run: a terraform an earlier strata left
//! running, and state terraform could not save to its backend (`errored.tfstate`), which blocks
//! the layer until [`Terraform::push_state`] pushes it.

use std::ffi::OsString;
use std::path::PathBuf;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::error::{Step, TerraformError};
use super::exec::{self, Limits};
use super::{errored, orphans, Prepared, Terraform};
use crate::stack::LayerId;

/// One unsaved state file `strata state push` pushed to the layer's backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushedState {
    /// The file that was pushed.
    pub file: PathBuf,
    /// Where it was moved after the push (it no longer blocks the layer).
    pub moved_to: PathBuf,
}

/// What `strata state push` did for a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatePush {
    pub layer: LayerId,
    /// Oldest first; empty when the layer had nothing unsaved.
    pub pushed: Vec<PushedState>,
}

/// When terraform could not write state to its backend, it leaves `errored.tfstate` in its
/// working directory: moved into the layer's state dir, it fails the step loudly.
///
/// # Errors
/// (As `Some`.) `UnsavedState` naming the kept file (and terraform's error), or `Io` when it
/// could not be moved (the run dir, and the file in it, are then kept: see
/// [`super::workdir::RunDir`]).
pub(super) fn keep_errored_state(
    p: &Prepared,
    step: Step,
    out: &exec::Finished,
) -> Option<TerraformError> {
    let file = p.work_dir.join(errored::ERRORED_STATE);
    if !file.exists() {
        return None;
    }
    let kept = match errored::rescue(&file, &p.paths.dir) {
        Ok(kept) => kept,
        Err(source) => {
            return Some(TerraformError::Io {
                layer: p.layer.clone(),
                action: "keep the unsaved state",
                path: file.clone(),
                source,
            })
        }
    };
    let cause = match Terraform::failed(p, step, out) {
        TerraformError::Failed { message, .. } => message,
        other => other.to_string(),
    };
    tracing::error!(layer = %p.layer, "terraform could not save its state to the backend: kept it in {}", kept.display());
    Some(TerraformError::UnsavedState {
        layer: p.layer.clone(),
        path: kept,
        cause: Some(cause),
    })
}

impl Terraform {
    /// Refuses a layer that has state terraform could not save to its backend: planning or
    /// applying it before that state is pushed would act on an out-of-date record.
    ///
    /// Returns the refusal: `UnsavedState` naming the oldest file to push, or `None` when the
    /// layer has nothing unsaved.
    pub fn unsaved(&self, p: &Prepared) -> Option<TerraformError> {
        errored::pending(&p.paths.dir)
            .into_iter()
            .next()
            .map(|path| TerraformError::UnsavedState {
                layer: p.layer.clone(),
                path,
                cause: None,
            })
    }

    /// Before the layer's first terraform command: settles what earlier strata processes left
    /// (waiting for a terraform still running), then refuses the layer if it has unsaved state
    /// (unless `unsaved_ok`, for pushing it).
    pub(super) async fn settle(
        &self,
        p: &Prepared,
        limits: &Limits<'_>,
        unsaved_ok: bool,
    ) -> Result<(), TerraformError> {
        orphans::settle(&p.layer, &p.paths.runs, &p.paths.dir, limits).await?;
        match self.unsaved(p) {
            Some(refusal) if !unsaved_ok => Err(refusal),
            _ => Ok(()),
        }
    }

    /// Pushes the layer's unsaved state files (oldest first) to its backend with
    /// `terraform state push`, in a working copy initialised like the layer's own (same backend,
    /// backend config and workspace).
    ///
    /// # Guarantees
    /// - A file is moved aside (`<name>.pushed-<time>`) only after terraform pushed it; the first
    ///   failure stops, and that file and the later ones stay and keep blocking the layer.
    /// - terraform refuses a state older than the backend's (a lower serial or another lineage),
    ///   so a push never rolls the backend back; strata never forces it.
    /// - Waits for a terraform an earlier strata left running for the layer first.
    ///
    /// # Errors
    /// The failing step (init, workspace, state push) with terraform's error text, redacted;
    /// `Io` when a pushed file could not be moved aside (it is then pushed again next time,
    /// which terraform accepts as the same state).
    pub async fn push_state(
        &self,
        p: &mut Prepared,
        cancel: &CancellationToken,
    ) -> Result<StatePush, TerraformError> {
        let limits = self.limits(p, cancel);
        self.settle(p, &limits, true).await?;
        let files = errored::pending(&p.paths.dir);
        let mut pushed = Vec::new();
        if files.is_empty() {
            return Ok(StatePush {
                layer: p.layer.clone(),
                pushed,
            });
        }
        self.init(p, &limits).await?;
        for file in files {
            let args: Vec<OsString> = vec![
                "state".into(),
                "push".into(),
                Self::lock_timeout_arg(p),
                file.clone().into(),
            ];
            let out = self.run(p, Step::StatePush, args, true, &limits).await?;
            if out.code != 0 {
                return Err(Self::failed(p, Step::StatePush, &out));
            }
            let moved_to = errored::set_aside(&file).map_err(|source| TerraformError::Io {
                layer: p.layer.clone(),
                action: "move aside the pushed state",
                path: file.clone(),
                source,
            })?;
            tracing::warn!(layer = %p.layer, "pushed {} to the backend; kept it as {}", file.display(), moved_to.display());
            pushed.push(PushedState { file, moved_to });
        }
        Ok(StatePush {
            layer: p.layer.clone(),
            pushed,
        })
    }
}
