//! `agent.json`: the agent's [`AgentStatus`], kept across restarts.

use std::path::{Path, PathBuf};

use super::file::{self, StateError};
use crate::agent::AgentStatus;

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("agent.json")
}

/// Whether an agent saved its status on this state dir (in the state database too); an
/// unreadable store counts as yes, so that loading it reports the error.
pub fn exists(state_dir: &Path) -> bool {
    file::exists(&path(state_dir)).unwrap_or(true)
}

/// The status saved by the last agent on this state dir; empty when there is none.
///
/// # Errors
/// [`StateError::Corrupt`] naming the file and how to recover when it does not parse (an agent
/// that started from an empty status would forget a refused revision and its failure count);
/// [`StateError::Io`] when it cannot be read.
pub fn load(state_dir: &Path) -> Result<AgentStatus, StateError> {
    Ok(file::read_json(
        &path(state_dir),
        "move it aside (the agent starts afresh: it forgets a refused revision and its \
         failure count, and re-applies the newest commit) or restore it from a backup",
    )?
    .unwrap_or_default())
}

/// Saves the status.
///
/// # Guarantees
/// Replaced atomically (0600). The agent writes its whole status from its own memory, never
/// a copy read earlier, so there is nothing to merge.
///
/// # Errors
/// [`StateError::Io`] naming the file.
pub fn save(state_dir: &Path, status: &AgentStatus) -> Result<(), StateError> {
    file::ensure_state_dir(state_dir)?;
    file::write(
        &path(state_dir),
        &serde_json::to_vec_pretty(status).expect("json"),
    )
}
