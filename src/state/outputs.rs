//! `layers/<name>/outputs.json`: each Terraform layer's outputs, cached after its last apply (or
//! refresh) so unaffected layers need no terraform run. 0600, like the Terraform state beside it:
//! outputs may hold secrets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::file::{self, StateError};
use crate::stack::LayerId;
use crate::value::Output;

fn path(state_dir: &Path, id: &LayerId) -> PathBuf {
    state_dir.join("layers").join(&id.name).join("outputs.json")
}

/// The outputs cached after the layer's last apply (or refresh), if any.
///
/// A cache that does not parse is reported as a warning and read as missing: the engine then
/// reads the outputs from the layer's Terraform state again and rewrites the cache, so nothing is
/// lost or made up.
pub fn load(state_dir: &Path, id: &LayerId) -> Option<BTreeMap<String, Output>> {
    let raw: BTreeMap<String, (serde_json::Value, bool)> = match file::read_json(
        &path(state_dir, id),
        "it is rebuilt from the layer's Terraform state",
    ) {
        Ok(raw) => raw?,
        Err(e) => {
            tracing::warn!("{e}");
            return None;
        }
    };
    Some(
        raw.into_iter()
            .map(|(k, (value, sensitive))| (k, Output { value, sensitive }))
            .collect(),
    )
}

/// Caches outputs.
///
/// # Guarantees
/// Replaced atomically, mode 0600 (they may hold secrets).
///
/// # Errors
/// [`StateError::Io`] naming the file.
pub fn save(
    state_dir: &Path,
    id: &LayerId,
    outputs: &BTreeMap<String, Output>,
) -> Result<(), StateError> {
    file::ensure_state_dir(state_dir)?;
    let raw: BTreeMap<&String, (&serde_json::Value, bool)> = outputs
        .iter()
        .map(|(k, o)| (k, (&o.value, o.sensitive)))
        .collect();
    file::write(
        &path(state_dir, id),
        &serde_json::to_vec(&raw).expect("json"),
    )
}
