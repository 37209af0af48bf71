//! `approvals/<layer>`: approvals of `apply = "manual"` layers, given by `strata approve` or the
//! agent's HTTP API, taken by the agent's next sync and removed once the layer applied.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("approvals")
}

/// Records an approval for `layer` (`name` or `kind.name`).
///
/// # Errors
/// A layer name with characters other than ASCII letters, digits, `_` and `-`, or the file could
/// not be written.
pub fn give(state_dir: &Path, layer: &str) -> Result<(), String> {
    let name = layer.rsplit('.').next().unwrap_or(layer);
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!("invalid layer name \"{layer}\""));
    }
    super::file::ensure_state_dir(state_dir).map_err(|e| e.to_string())?;
    super::file::write(&dir(state_dir).join(name), crate::now_rfc3339().as_bytes())
        .map_err(|e| e.to_string())
}

/// The names of the layers approved now.
pub fn list(state_dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir(state_dir))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                // Temporary files of a write in progress, or left by a crash, are no approvals.
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// Removes the approval of the layer `name` once it was used; a missing one is not an error.
pub fn consume(state_dir: &Path, name: &str) {
    let _ = std::fs::remove_file(dir(state_dir).join(name));
}
