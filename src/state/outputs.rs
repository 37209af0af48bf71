//! `layers/<name>/outputs.json`: each Terraform layer's outputs, cached after its last apply (or
//! refresh) so unaffected layers need no terraform run. 0600, like the Terraform state beside it:
//! outputs may hold secrets. In the state database (`--state postgres://…`) only layers without
//! sensitive outputs are cached.

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

/// Forgets a destroyed layer's outputs; a missing cache is fine.
///
/// # Errors
/// [`StateError::Io`] naming the file.
pub fn forget(state_dir: &Path, id: &LayerId) -> Result<(), StateError> {
    file::remove(&path(state_dir, id)).map(drop)
}

/// Caches the outputs an apply produced.
///
/// # Guarantees
/// Replaced atomically, mode 0600 (they may hold secrets), under the lock beside the file.
///
/// # Errors
/// [`StateError::Io`] naming the file.
pub fn save(
    state_dir: &Path,
    id: &LayerId,
    outputs: &BTreeMap<String, Output>,
) -> Result<(), StateError> {
    file::ensure_state_dir(state_dir)?;
    let _lock = file::FileLock::beside(&path(state_dir, id))?;
    write(state_dir, id, outputs)
}

/// Caches outputs an apply read from the layer's state (it had no cached copy), only when no
/// readable cache exists: outputs cached meanwhile by the layer's own apply are newer, and win.
/// A plan never caches (it holds no stack lock, and may read a state an apply is changing).
///
/// # Errors
/// [`StateError::Io`] naming the file.
pub fn save_if_absent(
    state_dir: &Path,
    id: &LayerId,
    outputs: &BTreeMap<String, Output>,
) -> Result<(), StateError> {
    file::ensure_state_dir(state_dir)?;
    let _lock = file::FileLock::beside(&path(state_dir, id))?;
    if load(state_dir, id).is_some() {
        return Ok(());
    }
    write(state_dir, id, outputs)
}

fn write(
    state_dir: &Path,
    id: &LayerId,
    outputs: &BTreeMap<String, Output>,
) -> Result<(), StateError> {
    // In the state database, sensitive values would sit in clear in a table many can read: a
    // layer with any is not cached there, its outputs are read from its Terraform state (in the
    // pg backend, where Terraform keeps them anyway) whenever they are needed.
    if file::is_shared(&path(state_dir, id)) && outputs.values().any(|o| o.sensitive) {
        return file::remove(&path(state_dir, id)).map(drop);
    }
    let raw: BTreeMap<&String, (&serde_json::Value, bool)> = outputs
        .iter()
        .map(|(k, o)| (k, (&o.value, o.sensitive)))
        .collect();
    file::write(
        &path(state_dir, id),
        &serde_json::to_vec(&raw).expect("json"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_a_plan_read_before_an_apply_finished_never_replace_the_apply_s() {
        let d = tempfile::tempdir().unwrap();
        let id = LayerId::terraform("cluster");
        let one = |v: &str| {
            BTreeMap::from([(
                "endpoint".to_string(),
                Output {
                    value: serde_json::json!(v),
                    sensitive: false,
                },
            )])
        };
        // The plan found no cache and read the old state; the apply then finished first.
        save(d.path(), &id, &one("new")).unwrap();
        save_if_absent(d.path(), &id, &one("old")).unwrap();
        assert_eq!(load(d.path(), &id).unwrap(), one("new"));
        // With no cache (or an unreadable one), what the plan read is kept.
        std::fs::write(path(d.path(), &id), "{torn").unwrap();
        save_if_absent(d.path(), &id, &one("read")).unwrap();
        assert_eq!(load(d.path(), &id).unwrap(), one("read"));
    }
}
