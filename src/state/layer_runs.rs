//! `layer-runs.json`: per layer, the last plan or apply that ran it, with that run's structured
//! changes, so the dashboard can show what a layer's last run did (or what a waiting plan would
//! do) after the run's own report is gone. `history.jsonl` keeps every run, but only a count of
//! its changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::file::{self, StateError};
use crate::engine::record::{CommitInfo, LayerReport, LayerStatus, RunReport};

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("layer-runs.json")
}

/// The last run of one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRun {
    pub run_id: String,
    /// `plan` or `apply`.
    pub command: String,
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitInfo>,
    /// RFC 3339.
    pub finished: String,
    /// The layer's report in that run: its status, changes (sensitive values masked as in
    /// `strata plan --json`), detail and plan digest.
    pub report: LayerReport,
}

/// What to do about a corrupt `layer-runs.json`.
const RECOVERY: &str = "move it aside: it only feeds the dashboard's view of each layer's last \
run, and the next plan or apply writes it afresh";

/// Every layer's last run; empty when none was recorded.
///
/// # Errors
/// [`StateError::Corrupt`] naming the file and how to recover when it does not parse;
/// [`StateError::Io`] when it cannot be read.
pub fn load(state_dir: &Path) -> Result<BTreeMap<String, LayerRun>, StateError> {
    Ok(file::read_json(&path(state_dir), RECOVERY)?.unwrap_or_default())
}

/// Records `report` as the last run of each layer it ran. A layer the run did not plan
/// ([`LayerStatus::NotAffected`]) keeps the run before.
///
/// # Guarantees
/// Read, merged and written back under the lock beside the file, so two runs finishing together
/// lose neither's layers; replaced atomically (0600).
///
/// # Errors
/// The file is corrupt or cannot be read, locked or written; nothing is written then.
pub fn record(state_dir: &Path, report: &RunReport) -> Result<(), StateError> {
    let ran: Vec<&LayerReport> = report
        .layers
        .iter()
        .filter(|l| l.status != LayerStatus::NotAffected)
        .collect();
    if ran.is_empty() {
        return Ok(());
    }
    file::ensure_state_dir(state_dir)?;
    let p = path(state_dir);
    let _lock = file::FileLock::beside(&p)?;
    let mut all = load(state_dir)?;
    for l in ran {
        all.insert(
            l.layer.to_string(),
            LayerRun {
                run_id: report.run_id.clone(),
                command: report.command.clone(),
                revision: report.revision.clone(),
                commit: report.commit.clone(),
                finished: report.finished.clone(),
                report: l.clone(),
            },
        );
    }
    file::write(&p, &serde_json::to_vec_pretty(&all).expect("json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::{LayerId, LayerKind};

    fn layer(name: &str, status: LayerStatus) -> LayerReport {
        LayerReport {
            layer: LayerId {
                kind: LayerKind::Kubernetes,
                name: name.into(),
            },
            wave: 1,
            status,
            reasons: vec![],
            counts: None,
            changes: vec![],
            detail: None,
            waiting_on: vec![],
            plan: None,
            changes_unread: None,
            duration_ms: 1,
        }
    }

    fn run(id: &str, layers: Vec<LayerReport>) -> RunReport {
        RunReport {
            schema_version: 1,
            run_id: id.into(),
            command: "apply".into(),
            stack: "s".into(),
            env: None,
            revision: format!("rev-{id}"),
            commit: None,
            started: "2026-01-01T00:00:00Z".into(),
            finished: "2026-01-01T00:00:01Z".into(),
            layers,
            orphaned: vec![],
        }
    }

    #[test]
    fn a_layer_the_run_did_not_plan_keeps_its_last_run() {
        let dir = tempfile::tempdir().unwrap();
        record(
            dir.path(),
            &run(
                "1",
                vec![
                    layer("a", LayerStatus::Applied),
                    layer("b", LayerStatus::Failed),
                ],
            ),
        )
        .unwrap();
        record(
            dir.path(),
            &run(
                "2",
                vec![
                    layer("a", LayerStatus::NotAffected),
                    layer("b", LayerStatus::Applied),
                ],
            ),
        )
        .unwrap();
        let all = load(dir.path()).unwrap();
        assert_eq!(all["kubernetes.a"].run_id, "1");
        assert_eq!(all["kubernetes.a"].report.status, LayerStatus::Applied);
        assert_eq!(all["kubernetes.b"].run_id, "2");
        assert_eq!(all["kubernetes.b"].revision, "rev-2");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(path(dir.path())).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it_never_an_empty_memory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), "{ torn").unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("layer-runs.json"), "{e}");
        assert!(
            record(
                dir.path(),
                &run("1", vec![layer("a", LayerStatus::Applied)])
            )
            .is_err(),
            "nothing is written over it"
        );
        assert_eq!(std::fs::read_to_string(path(dir.path())).unwrap(), "{ torn");
    }
}
