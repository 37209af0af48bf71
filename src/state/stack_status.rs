//! `status.json`: what the engine remembers per stack between runs: per layer the last converged
//! revision and inputs hash, the last result and drift state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::file::{self, StateError};
use crate::engine::record::DriftState;
use crate::stack::LayerId;

/// One layer's memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerState {
    /// The revision the layer last converged to.
    pub converged_revision: Option<String>,
    /// Its inputs hash then (Terraform layers).
    pub inputs_hash: Option<String>,
    /// `converged`, `failed`, `awaiting_approval`, ...
    pub last_result: Option<String>,
    pub last_error: Option<String>,
    /// RFC 3339.
    pub last_run: Option<String>,
    /// From the last diff.
    pub drift: Option<DriftState>,
    /// When the current drift was first seen.
    pub drift_since: Option<String>,
    /// When a run first found the layer gone from the stack file while its resources remain
    /// (RFC 3339); cleared when it is declared again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphaned_since: Option<String>,
    /// The digest of the plan the layer waits with for approval (`apply = "manual"`, or an
    /// orphaned Terraform layer's destroy); `strata approve` takes only this one. Cleared by any
    /// other result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_plan: Option<String>,
    /// The revision that plan was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_revision: Option<String>,
}

/// The whole stack's memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StackState {
    pub stack: String,
    /// The source (a directory or `url@ref:path`).
    pub source: Option<String>,
    /// The revision of the last run that converged every layer.
    pub converged_revision: Option<String>,
    /// The revision of the last run of any kind.
    pub last_revision: Option<String>,
    pub layers: BTreeMap<String, LayerState>,
}

/// What to do about a corrupt `status.json`.
const RECOVERY: &str = "restore it from a backup, or move it aside and strata will treat every \
layer as never applied (planning all of them; Terraform state and Kubernetes inventories are kept \
elsewhere and stay intact)";

impl StackState {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("status.json")
    }

    /// What the state dir remembers; empty when the stack never ran from it.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] naming the file and how to recover when it exists but does not
    /// parse (never an empty state in its place); [`StateError::Io`] when it cannot be read.
    pub fn load(state_dir: &Path) -> Result<StackState, StateError> {
        Ok(file::read_json(&StackState::path(state_dir), RECOVERY)?.unwrap_or_default())
    }

    /// Re-reads `status.json` under its lock, lets `change` set the fields its caller owns, and
    /// writes the result back; returns it.
    ///
    /// # Guarantees
    /// Two updates never lose each other's fields: each reads what the other wrote (the lock
    /// orders them), so a caller that sets only its own fields never reverts anyone else's. The
    /// file is replaced atomically (0600); a crash leaves the old one or the new one.
    ///
    /// # Errors
    /// The file is corrupt or cannot be read, locked or written; nothing is written then.
    pub fn update(
        state_dir: &Path,
        change: impl FnOnce(&mut StackState),
    ) -> Result<StackState, StateError> {
        file::ensure_state_dir(state_dir)?;
        let path = StackState::path(state_dir);
        let _lock = file::FileLock::beside(&path)?;
        let mut state = StackState::load(state_dir)?;
        change(&mut state);
        file::write(&path, &serde_json::to_vec_pretty(&state).expect("json"))?;
        Ok(state)
    }

    pub fn layer(&self, id: &LayerId) -> Option<&LayerState> {
        self.layers.get(&id.to_string())
    }

    pub fn layer_mut(&mut self, id: &LayerId) -> &mut LayerState {
        self.layers.entry(id.to_string()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_updates_of_different_fields_lose_none() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let dir = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    for n in 0..25 {
                        StackState::update(&dir, |s| {
                            s.layers.entry(format!("layer{i}")).or_default().last_run =
                                Some(n.to_string());
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let state = StackState::load(dir.path()).unwrap();
        assert_eq!(state.layers.len(), 8);
        assert!(state
            .layers
            .values()
            .all(|l| l.last_run.as_deref() == Some("24")));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with(".strata-tmp-")),
            "{names:?}"
        );
    }
}
