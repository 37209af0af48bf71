//! Results as data: per-layer reports of a plan or apply, the drift report, and the run records
//! appended to `history.jsonl`.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::kube::KubeDiff;
use crate::stack::LayerId;
use crate::terraform::LayerPlan;

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
    /// One line per change: `+ null_resource.x`, `~ ConfigMap/platform/settings`.
    #[serde(default)]
    pub changes: Vec<String>,
    /// For waiting, skipped and failed layers: what it waits on, or the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub duration_ms: u64,
}

/// A whole plan or apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    /// `plan` or `apply`.
    pub command: String,
    pub stack: String,
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitInfo>,
    pub started: String,
    pub finished: String,
    pub layers: Vec<LayerReport>,
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

/// One layer's drift.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerDrift {
    pub layer: LayerId,
    /// `in_sync`, `drifted`, `not_checked` or `error`.
    pub state: String,
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
    pub stack: String,
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

impl DriftReport {
    pub fn drifted(&self) -> bool {
        self.layers.iter().any(|l| l.state == "drifted")
    }

    pub fn errors(&self) -> bool {
        self.layers.iter().any(|l| l.state == "error")
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
    /// `ok`, `changes`, `drift` or `failed`.
    pub result: String,
    pub layers: Vec<LayerRecord>,
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

/// Appends a record to the history.
pub fn append(state_dir: &Path, record: &RunRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join("history.jsonl"))?;
    let mut line = serde_json::to_string(record).expect("json");
    line.push('\n');
    f.write_all(line.as_bytes())
}

/// The last `limit` records, oldest first.
pub fn history(state_dir: &Path, limit: usize) -> Vec<RunRecord> {
    let text = std::fs::read_to_string(state_dir.join("history.jsonl")).unwrap_or_default();
    let all: Vec<RunRecord> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let skip = all.len().saturating_sub(limit);
    all.into_iter().skip(skip).collect()
}

impl RunRecord {
    pub fn of(report: &RunReport, result: &str) -> RunRecord {
        RunRecord {
            run_id: report.run_id.clone(),
            command: report.command.clone(),
            revision: report.revision.clone(),
            commit: report.commit.clone(),
            started: report.started.clone(),
            finished: report.finished.clone(),
            result: result.into(),
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
