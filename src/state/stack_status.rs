//! `status.json`: what the engine remembers per stack between runs: per layer the last converged
//! revision and inputs hash, the last result and drift state.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

impl StackState {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("status.json")
    }

    pub fn load(state_dir: &Path) -> StackState {
        std::fs::read(StackState::path(state_dir))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(state_dir)?;
        crate::util::fs::write_atomic(
            &StackState::path(state_dir),
            &serde_json::to_vec_pretty(self).expect("json"),
        )
    }

    pub fn layer(&self, id: &LayerId) -> Option<&LayerState> {
        self.layers.get(&id.to_string())
    }

    pub fn layer_mut(&mut self, id: &LayerId) -> &mut LayerState {
        self.layers.entry(id.to_string()).or_default()
    }
}
