//! Run dirs left by earlier strata processes, and the terraform they may still be running.
//!
//! terraform outlives a strata that dies (see [`super::exec`]): each run dir records which strata
//! made it (`owner.json`) and which terraform command runs in it (`terraform.json`), each with a
//! pid and that process's start time, so a reused pid is never mistaken for it. Before a layer
//! runs terraform, the run dirs of dead strata processes are settled: a terraform still running
//! in one is waited for (never started beside), then the dir is removed, after any
//! `errored.tfstate` in it is moved into the layer's state dir.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{Step, TerraformError};
use super::exec::Limits;
use crate::stack::LayerId;

/// The strata process that made a run dir.
pub(crate) const OWNER_FILE: &str = "owner.json";
/// The terraform command running in a run dir, while it runs.
pub(crate) const TERRAFORM_FILE: &str = "terraform.json";

/// How often a terraform left by an earlier strata is checked while waiting for it.
const POLL_EVERY: Duration = Duration::from_millis(250);

/// A process, told apart from a later one that reuses its pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ProcessId {
    pub pid: u32,
    /// Clock ticks after boot (`/proc/<pid>/stat` field 22); 0 when it could not be read.
    pub start: u64,
}

impl ProcessId {
    /// This strata process.
    pub fn current() -> ProcessId {
        let pid = std::process::id();
        ProcessId {
            pid,
            start: start_ticks(pid).unwrap_or(0),
        }
    }

    fn of(pid: u32) -> ProcessId {
        ProcessId {
            pid,
            start: start_ticks(pid).unwrap_or(0),
        }
    }

    /// Whether this very process is still running (a zombie counts as gone: it does nothing
    /// more). A start time of 0 (unknown) matches any process with the pid.
    pub fn is_running(&self) -> bool {
        match stat(self.pid) {
            Some((state, start)) => state != 'Z' && (self.start == 0 || start == self.start),
            None => false,
        }
    }
}

/// `(state, start time)` from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// Whether a process that is not a zombie is in process group `pgid`.
pub(crate) fn group_has_live_process(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let Ok(text) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        let Some(rest) = text.rfind(')').map(|i| &text[i + 1..]) else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.first() != Some(&"Z") && fields.get(2).and_then(|g| g.parse().ok()) == Some(pgid)
    })
}

fn start_ticks(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// The strata process that made a run dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OwnerRecord {
    pub strata: ProcessId,
}

impl OwnerRecord {
    /// Records this process as the owner of `run_dir`.
    pub fn write_current(run_dir: &Path) -> std::io::Result<()> {
        let r = OwnerRecord {
            strata: ProcessId::current(),
        };
        crate::util::fs::write_private(
            &run_dir.join(OWNER_FILE),
            &serde_json::to_vec(&r).expect("json"),
        )
    }

    /// Who made `run_dir`: its owner record, else the pid its name starts with (a dir whose
    /// record is not written yet, or one made by an older strata).
    fn read(run_dir: &Path) -> Option<ProcessId> {
        if let Ok(text) = std::fs::read(run_dir.join(OWNER_FILE)) {
            if let Ok(r) = serde_json::from_slice::<OwnerRecord>(&text) {
                return Some(r.strata);
            }
        }
        let name = run_dir.file_name()?.to_str()?;
        let pid = name.split('-').next()?.parse().ok()?;
        Some(ProcessId { pid, start: 0 })
    }
}

/// The terraform command running in a run dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TerraformRecord {
    pub terraform: ProcessId,
    pub layer: String,
    pub step: Step,
    /// Its arguments (no secrets: values go in the var file).
    pub args: Vec<String>,
    /// When it started, RFC 3339.
    pub started: String,
}

impl TerraformRecord {
    pub fn of(pid: u32, layer: &LayerId, step: Step, args: &[OsString], started: &str) -> Self {
        TerraformRecord {
            terraform: ProcessId::of(pid),
            layer: layer.to_string(),
            step,
            args: args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            started: started.to_string(),
        }
    }

    pub fn write(&self, run_dir: &Path) -> std::io::Result<()> {
        super::workdir::write_scratch(
            &run_dir.join(TERRAFORM_FILE),
            &serde_json::to_vec(self).expect("json"),
        )
    }

    fn read(run_dir: &Path) -> Option<TerraformRecord> {
        serde_json::from_slice(&std::fs::read(run_dir.join(TERRAFORM_FILE)).ok()?).ok()
    }

    pub fn remove(run_dir: &Path) {
        let _ = std::fs::remove_file(run_dir.join(TERRAFORM_FILE));
    }
}

/// The current time as a record writes it.
pub(crate) fn started_label() -> String {
    crate::now_rfc3339()
}

/// Settles the run dirs in `runs` that strata processes which are gone left behind.
///
/// # Guarantees
/// - Dirs of running strata processes (this one included) are left alone.
/// - A terraform still running in a dead strata's dir is waited for, up to the layer's
///   deadline, with a warning naming it; no terraform is started for the layer meanwhile.
/// - A dir whose terraform is gone is removed, after any `errored.tfstate` in it is moved into
///   `layer_dir` (see [`super::errored::rescue`]); a dir whose file could not be moved is kept.
///
/// # Errors
/// `EarlierRunStillRunning` when the deadline passes or the run is cancelled while waiting.
/// Failures to remove a stale dir are logged, not returned: they only cost disk space.
pub(crate) async fn settle(
    layer: &LayerId,
    runs: &Path,
    layer_dir: &Path,
    limits: &Limits<'_>,
) -> Result<(), TerraformError> {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return Ok(());
    };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let Some(owner) = OwnerRecord::read(&dir) else {
            continue;
        };
        // This process's own dirs, and those of another strata that is running, are theirs.
        if owner.is_running() {
            continue;
        }
        if let Some(record) = TerraformRecord::read(&dir) {
            wait_for(layer, &record, limits).await?;
        }
        if let Err(e) = super::errored::rescue_all(&dir, layer_dir) {
            tracing::error!(layer = %layer, "kept {} because its errored.tfstate could not be moved: {e}", dir.display());
            continue;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::info!(layer = %layer, "removed {} left by an earlier strata", dir.display())
            }
            Err(e) => tracing::warn!(layer = %layer, "failed to remove {}: {e}", dir.display()),
        }
    }
    Ok(())
}

/// Waits until the terraform `record` describes is gone.
async fn wait_for(
    layer: &LayerId,
    record: &TerraformRecord,
    limits: &Limits<'_>,
) -> Result<(), TerraformError> {
    if !record.terraform.is_running() {
        return Ok(());
    }
    tracing::warn!(
        layer = %layer,
        "waiting for terraform (pid {}) left running by an earlier strata ({} of {} started at {})",
        record.terraform.pid,
        record.step,
        record.layer,
        record.started
    );
    while record.terraform.is_running() {
        let stopped = tokio::select! {
            _ = tokio::time::sleep(POLL_EVERY) => false,
            _ = tokio::time::sleep_until(limits.deadline) => true,
            _ = limits.cancel.cancelled() => true,
        };
        if stopped && record.terraform.is_running() {
            return Err(TerraformError::EarlierRunStillRunning {
                layer: layer.clone(),
                pid: record.terraform.pid,
                step: record.step,
                started: record.started.clone(),
            });
        }
    }
    tracing::warn!(layer = %layer, "terraform (pid {}) left by an earlier strata has ended", record.terraform.pid);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_pid_is_not_the_recorded_process() {
        let me = ProcessId::current();
        assert!(me.start > 0);
        assert!(me.is_running());
        let reused = ProcessId {
            pid: me.pid,
            start: me.start + 1,
        };
        assert!(!reused.is_running(), "same pid, other start time");
    }

    #[test]
    fn a_dir_without_owner_record_belongs_to_the_pid_in_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("4242-1700000000-0");
        std::fs::create_dir(&run).unwrap();
        assert_eq!(
            OwnerRecord::read(&run),
            Some(ProcessId {
                pid: 4242,
                start: 0
            })
        );
        OwnerRecord::write_current(&run).unwrap();
        assert_eq!(OwnerRecord::read(&run), Some(ProcessId::current()));
    }
}
