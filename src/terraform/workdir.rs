//! A layer's writable working copy for one run, its var file, and its lasting place in the state
//! directory (data dir, local state, lock file, init stamp).

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::modules::ConfigInfo;
use crate::hash::Hasher;
use crate::redact::Redactor;
use crate::stack::LayerId;
use crate::value::InputValue;

/// The lock file terraform writes beside the configuration.
pub const LOCK_FILE: &str = ".terraform.lock.hcl";

/// Where a layer's lasting files live: `<state>/layers/<name>/`.
#[derive(Debug, Clone)]
pub struct LayerPaths {
    pub dir: PathBuf,
    /// `TF_DATA_DIR`: providers and modules, kept between runs.
    pub data_dir: PathBuf,
    /// Local state, for layers without a backend.
    pub state_file: PathBuf,
    /// Local state of non-default workspaces.
    pub workspace_dir: PathBuf,
    /// The lock file of the last init, for sources that don't commit one.
    pub lock_copy: PathBuf,
    /// The fingerprint of the last successful init.
    pub init_stamp: PathBuf,
    /// Per-run working copies.
    pub runs: PathBuf,
}

impl LayerPaths {
    pub fn new(state_dir: &Path, layer: &LayerId) -> LayerPaths {
        let dir = state_dir.join("layers").join(&layer.name);
        LayerPaths {
            data_dir: dir.join("tf-data"),
            state_file: dir.join("terraform.tfstate"),
            workspace_dir: dir.join("terraform.tfstate.d"),
            lock_copy: dir.join(LOCK_FILE),
            init_stamp: dir.join("init.stamp"),
            runs: dir.join("runs"),
            dir,
        }
    }
}

/// A run directory (mode 0700) that removes itself when dropped; it records the strata process
/// that made it, so a later strata knows whether it is still in use (see [`super::orphans`]).
#[derive(Debug)]
pub struct RunDir(PathBuf);

impl RunDir {
    /// Creates a new run dir under `runs` (created 0700 too when missing).
    ///
    /// # Errors
    /// Any error from creating the dirs or writing the owner record.
    pub fn create(runs: &Path) -> std::io::Result<RunDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(runs)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!(
            "{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = runs.join(name);
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        let dir = RunDir(path);
        super::orphans::OwnerRecord::write_current(dir.path())?;
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for RunDir {
    /// Removes the dir, but never an `errored.tfstate` terraform left in it: that is moved into
    /// the layer's state dir first, and when it cannot be, the dir stays for the next run to
    /// settle.
    fn drop(&mut self) {
        let layer_dir = self.0.parent().and_then(Path::parent);
        if let Some(layer_dir) = layer_dir {
            match super::errored::rescue_all(&self.0, layer_dir) {
                Ok(moved) => {
                    for f in moved {
                        tracing::error!(
                            "terraform could not save its state to the backend: kept it in {}",
                            f.display()
                        );
                    }
                }
                Err(e) => {
                    tracing::error!(
                        "kept {}: its errored.tfstate could not be moved: {e}",
                        self.0.display()
                    );
                    return;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes a file of a run dir (the var file, the backend settings, decrypted inputs, the record
/// of the terraform running): readable by its owner only, from the moment it exists.
///
/// # Guarantees
/// Mode 0600 from creation. Not synced to disk: the file lives and dies with the run (a
/// terraform reading it, or a later strata reading the record after this one was killed, reads
/// it from the page cache; a machine that goes down takes that terraform along, and the next
/// strata removes the dir). An fsync here would only cost each layer time and put inputs that
/// may be secret on the disk sooner.
///
/// # Errors
/// Any error from creating or writing `path`.
pub fn write_scratch(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

/// Copies `rel` (a directory under `from`) to the same place under `to`: hard links where the
/// filesystem allows, copies otherwise. The lock file is always copied, since terraform may
/// rewrite it; `.terraform` directories are left out.
pub fn copy_tree(from: &Path, to: &Path, rel: &Path) -> std::io::Result<()> {
    copy_tree_with(from, to, rel, true)
}

/// [`copy_tree`] with every file copied, never linked: a copy that must not change when the
/// files it came from are edited in place (the last applied working copy).
pub fn copy_tree_detached(from: &Path, to: &Path, rel: &Path) -> std::io::Result<()> {
    copy_tree_with(from, to, rel, false)
}

fn copy_tree_with(from: &Path, to: &Path, rel: &Path, link: bool) -> std::io::Result<()> {
    let src = from.join(rel);
    let dst = to.join(rel);
    std::fs::create_dir_all(&dst)?;
    for entry in std::fs::read_dir(&src)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == ".terraform" {
            continue;
        }
        let ty = entry.file_type()?;
        let child = rel.join(&name);
        let target = to.join(&child);
        if ty.is_dir() {
            copy_tree_with(from, to, &child, link)?;
        } else if ty.is_symlink() {
            if !target.exists() {
                std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
            }
        } else if target.exists() {
            continue;
        } else if !link || name == LOCK_FILE || std::fs::hard_link(entry.path(), &target).is_err() {
            std::fs::copy(entry.path(), &target)?;
            let mut perms = std::fs::metadata(&target)?.permissions();
            std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
            std::fs::set_permissions(&target, perms)?;
        }
    }
    Ok(())
}

/// Resolved inputs as JSON, with every sensitive value's text added to `redactor`.
///
/// # Errors
/// The name and reason of the first input that is still unknown.
pub fn inputs_json(
    inputs: &BTreeMap<String, InputValue>,
    redactor: &mut Redactor,
) -> Result<serde_json::Map<String, serde_json::Value>, (String, String)> {
    let mut map = serde_json::Map::new();
    for (name, value) in inputs {
        match value {
            InputValue::Unknown(why) => return Err((name.clone(), crate::value::references(why))),
            InputValue::Sensitive(v) => {
                redactor.add_json(v.expose());
                map.insert(name.clone(), v.expose().clone());
            }
            InputValue::Known(v) => {
                map.insert(name.clone(), v.clone());
            }
        }
    }
    Ok(map)
}

/// A hash of everything a plan depends on besides the live world: the layer's files, its local
/// modules' files, its inputs, backend settings and workspace.
pub fn inputs_hash(
    stack_root: &Path,
    source: &Path,
    config: &ConfigInfo,
    vars_json: &[u8],
    backend_json: &[u8],
    workspace: &str,
) -> std::io::Result<String> {
    let mut h = Hasher::new();
    h.tree("layer", &stack_root.join(source), &[".terraform"])?;
    for m in &config.local_modules {
        h.tree(
            &format!("module:{}", m.display()),
            &stack_root.join(m),
            &[".terraform"],
        )?;
    }
    h.part("vars", vars_json)
        .part("backend", backend_json)
        .part("workspace", workspace.as_bytes());
    Ok(h.finish())
}
