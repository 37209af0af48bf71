//! Results as data: per-layer reports of a plan or apply, the drift report, and the run records
//! that [`crate::state::history`] appends to `history.jsonl`.

use serde::{Deserialize, Serialize};

use super::change::Change;
use super::inputs::Waiting;
use crate::kube::KubeDiff;
use crate::stack::LayerId;
use crate::terraform::LayerPlan;

/// The version of the JSON that `plan`, `apply` and `diff` print; raised when a field changes
/// meaning or goes away, not when one is added.
pub const SCHEMA_VERSION: u32 = 1;

fn schema_version() -> u32 {
    SCHEMA_VERSION
}

/// What happened to a layer in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerStatus {
    /// Planned, with changes.
    Changes,
    /// Planned (or compared), nothing to do.
    Unchanged,
    /// Not planned: nothing it depends on changed since it last converged.
    NotAffected,
    /// Its inputs are not known until an upstream layer is applied.
    Waiting,
    /// `apply = "manual"` and not approved in this run.
    AwaitingApproval,
    Applied,
    Failed,
    /// Not run because an upstream layer failed or is held back.
    Skipped,
    /// Stopped by a timeout or cancellation.
    Interrupted,
    /// Torn down by `strata destroy`.
    Destroyed,
}

impl LayerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LayerStatus::Changes => "changes",
            LayerStatus::Unchanged => "unchanged",
            LayerStatus::NotAffected => "not affected",
            LayerStatus::Waiting => "waiting",
            LayerStatus::AwaitingApproval => "awaiting approval",
            LayerStatus::Applied => "applied",
            LayerStatus::Failed => "failed",
            LayerStatus::Skipped => "skipped",
            LayerStatus::Interrupted => "interrupted",
            LayerStatus::Destroyed => "destroyed",
        }
    }

    /// The name in `status.json` and metric labels: `not_affected`, `awaiting_approval`, ...
    pub fn key(self) -> &'static str {
        match self {
            LayerStatus::NotAffected => "not_affected",
            LayerStatus::AwaitingApproval => "awaiting_approval",
            other => other.as_str(),
        }
    }
}

/// One layer in a plan or apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    pub layer: LayerId,
    /// One-based.
    pub wave: usize,
    pub status: LayerStatus,
    /// Why the layer was planned (changed paths, changed module, upstream, first run, --all).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// `+3 ~1 -0`, when there was a plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<String>,
    /// What the plan changes (or the apply changed).
    #[serde(default)]
    pub changes: Vec<Change>,
    /// For waiting, skipped and failed layers: what it waits on, or the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For waiting layers: the unknown upstream outputs, its own or those of the upstream layer
    /// it waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_on: Vec<Waiting>,
    /// The digest of the plan, when it changes anything: what `strata approve --plan` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// For a layer applied without its change list (the plan read beside the apply failed):
    /// why `changes` is empty although the apply changed something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes_unread: Option<String>,
    pub duration_ms: u64,
}

impl LayerReport {
    /// A layer's report before its step says more: no plan, no changes, no detail.
    pub fn new(layer: LayerId, wave: usize, status: LayerStatus) -> LayerReport {
        LayerReport {
            layer,
            wave,
            status,
            reasons: vec![],
            counts: None,
            changes: vec![],
            detail: None,
            waiting_on: vec![],
            plan: None,
            changes_unread: None,
            duration_ms: 0,
        }
    }
}

/// A whole plan or apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    #[serde(default = "schema_version")]
    pub schema_version: u32,
    pub run_id: String,
    /// `plan` or `apply`.
    pub command: String,
    pub stack: String,
    /// The environment it ran in, when the stack declares environments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitInfo>,
    pub started: String,
    pub finished: String,
    pub layers: Vec<LayerReport>,
    /// Layers the stack had and no longer declares, whose resources remain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub orphaned: Vec<super::orphans::Orphan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitInfo {
    pub author: String,
    pub summary: String,
}

impl RunReport {
    pub fn any(&self, status: LayerStatus) -> bool {
        self.layers.iter().any(|l| l.status == status)
    }

    pub fn count(&self, status: LayerStatus) -> usize {
        self.layers.iter().filter(|l| l.status == status).count()
    }
}

/// Where a layer stands against the live system, from the last diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftState {
    InSync,
    Drifted,
    /// Not compared: never applied, or its inputs are not known (the detail says which).
    NotChecked,
    /// The comparison failed.
    Error,
    /// Not known: no diff yet, or a value this version does not know (read, never written).
    #[serde(other)]
    Unknown,
}

impl DriftState {
    /// The name in JSON and state files: `in_sync`, `drifted`, `not_checked`, `error`, `unknown`.
    pub fn key(self) -> &'static str {
        match self {
            DriftState::InSync => "in_sync",
            DriftState::Drifted => "drifted",
            DriftState::NotChecked => "not_checked",
            DriftState::Error => "error",
            DriftState::Unknown => "unknown",
        }
    }

    /// `in sync`, `drifted`, `not checked`, `error`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftState::InSync => "in sync",
            DriftState::Drifted => "drifted",
            DriftState::NotChecked => "not checked",
            DriftState::Error => "error",
            DriftState::Unknown => "unknown",
        }
    }
}

/// What strata could observe of a layer: the truth it may report, and nothing more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Observation {
    /// Looked, and the live system matches the revision last applied to the layer.
    InSync,
    /// Looked, and the live system differs from the revision last applied to the layer.
    Drifted,
    /// Could not look (API unreachable, auth failure, terraform missing, source unreadable,
    /// inputs not known): nothing is claimed about the live system.
    Unknown { reason: String },
    /// Never applied from this state dir: there is nothing to compare with.
    NeverApplied,
    /// In sync with the revision last applied, but a newer revision failed or is not applied
    /// yet.
    Pending { revision: String },
}

impl Observation {
    /// `in_sync`, `drifted`, `unknown`, `never_applied`, `pending`: the metric label.
    pub fn key(&self) -> &'static str {
        match self {
            Observation::InSync => "in_sync",
            Observation::Drifted => "drifted",
            Observation::Unknown { .. } => "unknown",
            Observation::NeverApplied => "never_applied",
            Observation::Pending { .. } => "pending",
        }
    }

    /// Every key, for metrics that show 0 for the states a layer is not in.
    pub const KEYS: [&'static str; 5] =
        ["in_sync", "drifted", "unknown", "never_applied", "pending"];
}

/// Whether a Kubernetes layer's cluster answered its drift check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterReach {
    pub name: String,
    /// Why the cluster could not be read; `None` when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One layer's drift.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerDrift {
    pub layer: LayerId,
    pub state: DriftState,
    /// What was observed, against [`LayerDrift::revision`].
    pub observed: Observation,
    /// The revision last applied to the layer, which the live system was compared with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// For Kubernetes layers that tried to reach their cluster: whether it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterReach>,
    /// What an apply would change to undo the drift.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// terradiff: the refresh plan's changes (sensitive values redacted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terraform: Option<LayerPlan>,
    /// kubediff.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubeDiff>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// terradiff and kubediff of a whole stack against its last converged revision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftReport {
    pub schema_version: u32,
    pub stack: String,
    /// The environment it checked, when the stack declares environments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// The revision the live system is compared with.
    pub revision: String,
    /// A newer revision that has not been applied yet, reported apart from drift.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_revision: Option<String>,
    pub checked_at: String,
    pub layers: Vec<LayerDrift>,
    /// Layers with `drift = "correct"` that were re-applied after this check.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub corrected: Vec<LayerId>,
}

/// What a whole drift check says, most serious first: `strata diff`'s exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A layer could not be observed (exit 1).
    Unknown,
    /// A layer drifted or was never applied (exit 2).
    Diverged,
    /// Every layer was observed in sync with the revision last applied to it (exit 0); some
    /// may have a newer revision pending.
    InSync,
}

impl DriftReport {
    pub fn drifted(&self) -> bool {
        self.layers.iter().any(|l| l.state == DriftState::Drifted)
    }

    pub fn errors(&self) -> bool {
        self.layers.iter().any(|l| l.state == DriftState::Error)
    }

    /// The layers observed in `key` state ([`Observation::key`]).
    pub fn observed(&self, key: &str) -> Vec<&LayerDrift> {
        self.layers
            .iter()
            .filter(|l| l.observed.key() == key)
            .collect()
    }

    pub fn verdict(&self) -> Verdict {
        if !self.observed("unknown").is_empty() {
            Verdict::Unknown
        } else if self
            .layers
            .iter()
            .any(|l| matches!(l.observed, Observation::Drifted | Observation::NeverApplied))
        {
            Verdict::Diverged
        } else {
            Verdict::InSync
        }
    }

    /// Whether every layer was observed in sync at the revision applied to it, with nothing
    /// pending: only then may the agent say `converged`.
    pub fn all_in_sync(&self) -> bool {
        self.layers
            .iter()
            .all(|l| l.observed == Observation::InSync)
    }
}

/// A line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub command: String,
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitInfo>,
    pub started: String,
    pub finished: String,
    pub result: RunResult,
    pub layers: Vec<LayerRecord>,
}

/// How a plan or apply ended, as its exit code says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunResult {
    /// Exit 0: a plan with nothing to do, or an apply that converged every layer.
    Ok,
    /// Exit 2 of a plan: changes to apply (or layers waiting on outputs an apply makes known).
    Changes,
    /// Exit 2 of an apply: it left layers awaiting approval or waiting on upstream outputs.
    Pending,
    /// Exit 1: a layer (or an orphan's destroy or prune) failed.
    Failed,
    /// Exit 130: stopped by a signal or a timeout before every layer ran.
    Interrupted,
    /// A result this strata does not know (written by a newer one).
    #[serde(other)]
    Unknown,
}

impl RunResult {
    /// `ok`, `changes`, `pending`, `failed`, `interrupted`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunResult::Ok => "ok",
            RunResult::Changes => "changes",
            RunResult::Pending => "pending",
            RunResult::Failed => "failed",
            RunResult::Interrupted => "interrupted",
            RunResult::Unknown => "unknown",
        }
    }

    /// What the run in `report` came to.
    pub fn of(report: &RunReport) -> RunResult {
        let orphan_failed = report
            .orphaned
            .iter()
            .any(|o| o.status == super::orphans::OrphanStatus::Failed);
        let any = |s: LayerStatus| report.layers.iter().any(|l| l.status == s);
        if any(LayerStatus::Failed) || orphan_failed {
            RunResult::Failed
        } else if any(LayerStatus::Interrupted) {
            RunResult::Interrupted
        } else if report.command == "plan" {
            if any(LayerStatus::Changes) || any(LayerStatus::Waiting) {
                RunResult::Changes
            } else {
                RunResult::Ok
            }
        } else if any(LayerStatus::AwaitingApproval) || any(LayerStatus::Waiting) {
            RunResult::Pending
        } else {
            RunResult::Ok
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub layer: String,
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<String>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RunRecord {
    pub fn of(report: &RunReport) -> RunRecord {
        RunRecord {
            run_id: report.run_id.clone(),
            command: report.command.clone(),
            revision: report.revision.clone(),
            commit: report.commit.clone(),
            started: report.started.clone(),
            finished: report.finished.clone(),
            result: RunResult::of(report),
            layers: report
                .layers
                .iter()
                .map(|l| LayerRecord {
                    layer: l.layer.to_string(),
                    action: l.status.as_str().into(),
                    counts: l.counts.clone(),
                    duration_ms: l.duration_ms,
                    error: matches!(l.status, LayerStatus::Failed | LayerStatus::Interrupted)
                        .then(|| l.detail.clone())
                        .flatten(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_status_key_is_its_json_name() {
        use LayerStatus::*;
        for s in [
            Changes,
            Unchanged,
            NotAffected,
            Waiting,
            AwaitingApproval,
            Applied,
            Failed,
            Skipped,
            Interrupted,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.key());
        }
    }
    use super::*;

    #[test]
    fn drift_states_read_and_write_the_strings_state_files_already_hold() {
        let all = [
            (DriftState::InSync, "\"in_sync\""),
            (DriftState::Drifted, "\"drifted\""),
            (DriftState::NotChecked, "\"not_checked\""),
            (DriftState::Error, "\"error\""),
            (DriftState::Unknown, "\"unknown\""),
        ];
        for (state, json) in all {
            assert_eq!(serde_json::to_string(&state).unwrap(), json);
            assert_eq!(format!("\"{}\"", state.key()), json);
            assert_eq!(serde_json::from_str::<DriftState>(json).unwrap(), state);
        }
        assert_eq!(
            serde_json::from_str::<DriftState>("\"a_future_state\"").unwrap(),
            DriftState::Unknown,
            "a state file from a newer version still loads"
        );
    }
}
