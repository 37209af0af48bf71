//! `agent.json`: the agent's [`AgentStatus`], kept across restarts.

use std::path::{Path, PathBuf};

use crate::agent::AgentStatus;

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("agent.json")
}

/// The status saved by the last agent on this state dir; empty when there is none.
pub fn load(state_dir: &Path) -> AgentStatus {
    std::fs::read(path(state_dir))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Saves the status, best effort: the agent keeps running on a state dir it cannot write.
pub fn save(state_dir: &Path, status: &AgentStatus) {
    let _ = std::fs::create_dir_all(state_dir);
    let _ = std::fs::write(
        path(state_dir),
        serde_json::to_vec_pretty(status).expect("json"),
    );
}
