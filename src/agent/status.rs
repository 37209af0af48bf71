//! What the agent knows of itself, served as `/api/v1/status` and kept in the state dir by
//! [`crate::state::agent_status`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::record::Observation;
use crate::notify::memory::Active;

/// Whether the agent reaches something it depends on (the source, a cluster).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reach {
    pub up: bool,
    /// Unreachable since (RFC 3339), while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_since: Option<String>,
    /// Why it could not be reached, while it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Default for Reach {
    fn default() -> Self {
        Reach {
            up: true,
            down_since: None,
            reason: None,
        }
    }
}

/// A revision the agent will not apply, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub revision: String,
    pub reason: String,
}

/// What the agent knows of itself (`agent.json` in the state dir, and `/api/v1/status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentStatus {
    /// The stack's name, as of the last revision opened.
    pub stack: String,
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
    /// The layers (and orphaned layers' destroys) waiting for approval, with their plans.
    pub awaiting_approval: Vec<Awaiting>,
    /// A sync succeeded, and neither the source nor a cluster has been unreachable for longer
    /// than the agent's threshold.
    pub ready: bool,
    /// Why `/readyz` fails, while it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ready: Option<String>,
    /// Polls and webhooks handled since the agent started.
    pub syncs: u64,
    pub source: Reach,
    /// Per cluster, from the last drift check.
    pub clusters: BTreeMap<String, Reach>,
    /// Per layer, what the last drift check observed.
    pub layers: BTreeMap<String, Observation>,
    /// The conditions alerted on that still hold; a restarted agent remembers them.
    pub conditions: Vec<Active>,
}

/// A plan waiting for approval: `strata approve LAYER --plan PLAN`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awaiting {
    /// `terraform.gate`.
    pub layer: String,
    /// The digest of the plan it waits with.
    pub plan: String,
    /// The revision that plan was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

impl Awaiting {
    /// `terraform.gate`, the layer names of a list, for summaries.
    pub fn names(list: &[Awaiting]) -> String {
        list.iter()
            .map(|a| a.layer.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}
