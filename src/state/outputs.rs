//! `layers/<name>/outputs.json`: each Terraform layer's outputs, cached after its last apply (or
//! refresh) so unaffected layers need no terraform run. 0600, like the Terraform state beside it:
//! outputs may hold secrets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::stack::LayerId;
use crate::value::Output;

fn outputs_path(state_dir: &Path, id: &LayerId) -> PathBuf {
    state_dir.join("layers").join(&id.name).join("outputs.json")
}

/// The outputs cached after the layer's last apply (or refresh), if any.
pub fn load(state_dir: &Path, id: &LayerId) -> Option<BTreeMap<String, Output>> {
    let bytes = std::fs::read(outputs_path(state_dir, id)).ok()?;
    let raw: BTreeMap<String, (serde_json::Value, bool)> = serde_json::from_slice(&bytes).ok()?;
    Some(
        raw.into_iter()
            .map(|(k, (value, sensitive))| (k, Output { value, sensitive }))
            .collect(),
    )
}

/// Caches outputs (mode 0600: they may hold secrets, like the Terraform state beside them).
pub fn save(
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
