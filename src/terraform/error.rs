//! What can go wrong while driving terraform. Every message names the layer and the step, and
//! carries terraform's own words with known secrets scrubbed out.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::stack::LayerId;
use crate::util::duration::format_duration;

/// The terraform command a layer was running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Prepare,
    Init,
    Workspace,
    Plan,
    Show,
    Apply,
    Output,
    /// `terraform state push` of an unsaved state.
    StatePush,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Prepare => "prepare",
            Step::Init => "init",
            Step::Workspace => "workspace",
            Step::Plan => "plan",
            Step::Show => "show",
            Step::Apply => "apply",
            Step::Output => "output",
            Step::StatePush => "state push",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TerraformError {
    #[error("failed to find terraform: searched {searched} (install terraform >= 1.0 or OpenTofu, or set STRATA_TERRAFORM)")]
    NotFound { searched: String },

    #[error("failed to use {path} as terraform: {message}")]
    Version { path: PathBuf, message: String },

    /// terraform ran and failed; `message` is its error text, redacted.
    #[error("{layer}: terraform {step} failed: {message}")]
    Failed {
        layer: LayerId,
        step: Step,
        message: String,
    },

    #[error("{layer}: terraform {step} timed out after {} and was interrupted", format_duration(*.after))]
    TimedOut {
        layer: LayerId,
        step: Step,
        after: Duration,
    },

    #[error("{layer}: terraform {step} was interrupted")]
    Interrupted { layer: LayerId, step: Step },

    #[error("{layer}: input \"{name}\" is not known yet ({why})")]
    UnknownInput {
        layer: LayerId,
        name: String,
        why: String,
    },

    #[error("{layer}: the plan was made from revision {planned} with inputs {planned_inputs}, not revision {current} with inputs {current_inputs}: plan again")]
    StalePlan {
        layer: LayerId,
        planned: String,
        planned_inputs: String,
        current: String,
        current_inputs: String,
    },

    /// terraform could not write its state to the backend and left `errored.tfstate`, which
    /// strata keeps in the layer's state dir; the layer is refused until it is pushed.
    #[error("{layer} has unsaved state in {}: run \"strata state push {layer}\" once its backend works again, then apply{}", path.display(), cause.as_deref().map(|c| format!(" (terraform could not save it: {c})")).unwrap_or_default())]
    UnsavedState {
        layer: LayerId,
        path: PathBuf,
        /// terraform's error, when this run is the one that failed to save.
        cause: Option<String>,
    },

    #[error("{layer}: terraform (pid {pid}, {step} started at {started}) left running by an earlier strata is still running; not starting another beside it: wait for it to end, or stop it (kill -INT {pid}) and run again")]
    EarlierRunStillRunning {
        layer: LayerId,
        pid: u32,
        step: Step,
        started: String,
    },

    #[error("{layer}: {message}")]
    Config { layer: LayerId, message: String },

    #[error("{layer}: failed to {action} {}: {source}", path.display())]
    Io {
        layer: LayerId,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl TerraformError {
    /// A `map_err` for an I/O error of `layer` while it did `action` to `path`.
    pub(crate) fn io(
        layer: &LayerId,
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> TerraformError {
        let (layer, path) = (layer.clone(), path.to_path_buf());
        move |source| TerraformError::Io {
            layer,
            action,
            path,
            source,
        }
    }

    /// Whether the layer was stopped (timeout or cancellation) rather than failing on its own.
    pub fn is_interrupted(&self) -> bool {
        matches!(
            self,
            TerraformError::TimedOut { .. } | TerraformError::Interrupted { .. }
        )
    }
}
