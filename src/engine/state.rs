//! What the engine remembers per stack between runs (`status.json` in the state dir): per layer
//! the last converged revision and inputs hash, the last result and drift state; plus each
//! Terraform layer's outputs (0600, beside its state) so unaffected layers need no terraform run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::record::DriftState;
use crate::stack::LayerId;
use crate::value::Output;

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

fn outputs_path(state_dir: &Path, id: &LayerId) -> PathBuf {
    state_dir.join("layers").join(&id.name).join("outputs.json")
}

/// The outputs cached after the layer's last apply (or refresh), if any.
pub fn load_outputs(state_dir: &Path, id: &LayerId) -> Option<BTreeMap<String, Output>> {
    let bytes = std::fs::read(outputs_path(state_dir, id)).ok()?;
    let raw: BTreeMap<String, (serde_json::Value, bool)> = serde_json::from_slice(&bytes).ok()?;
    Some(
        raw.into_iter()
            .map(|(k, (value, sensitive))| (k, Output { value, sensitive }))
            .collect(),
    )
}

/// Caches outputs (mode 0600: they may hold secrets, like the Terraform state beside them).
pub fn save_outputs(
    state_dir: &Path,
    id: &LayerId,
    outputs: &BTreeMap<String, Output>,
) -> std::io::Result<()> {
    let path = outputs_path(state_dir, id);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let raw: BTreeMap<&String, (&serde_json::Value, bool)> = outputs
        .iter()
        .map(|(k, o)| (k, (&o.value, o.sensitive)))
        .collect();
    crate::util::fs::write_private(&path, &serde_json::to_vec(&raw).expect("json"))
}
