//! `pin`: the revision `strata rollback` pinned the agent to. New commits are fetched and reported,
//! not applied, while it exists; `strata resume` removes it.

use std::path::{Path, PathBuf};

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("pin")
}

/// The pinned revision, if `strata rollback` set one.
pub fn read(state_dir: &Path) -> Option<String> {
    std::fs::read_to_string(path(state_dir))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Pins the agent to `revision`.
pub fn write(state_dir: &Path, revision: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    std::fs::write(path(state_dir), revision)
}

/// Removes the pin; no pin is not an error.
pub fn remove(state_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path(state_dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
