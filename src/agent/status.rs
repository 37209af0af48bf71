//! What the agent knows of itself, served as `/api/v1/status` and kept in the state dir by
//! [`crate::state::agent_status`].

use serde::{Deserialize, Serialize};

/// A revision the agent will not apply, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub revision: String,
    pub reason: String,
}

/// What the agent knows of itself (`agent.json` in the state dir, and `/api/v1/status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The revision last converged (or attempted).
    pub revision: Option<String>,
    /// The newest revision seen on the source.
    pub latest_seen: Option<String>,
    /// Pinned by `strata rollback`: new commits are reported, not applied.
    pub pinned: Option<String>,
    pub refused: Option<Refused>,
    /// The source could not be fetched since this time (RFC 3339).
    pub stale_since: Option<String>,
    pub last_sync: Option<String>,
    pub last_drift_check: Option<String>,
    /// Consecutive failed syncs (backoff grows with it).
    pub failures: u32,
    pub awaiting_approval: Vec<String>,
    pub ready: bool,
}
