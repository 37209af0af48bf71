//! `pin`: the revision `strata rollback` pinned the agent to. New commits are fetched and reported,
//! not applied, while it exists; `strata resume` removes it.

use std::path::{Path, PathBuf};

use super::file::{self, StateError};

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("pin")
}

/// The pinned revision, if `strata rollback` set one.
///
/// # Errors
/// [`StateError::Corrupt`] when the file holds something other than a commit id: the agent must
/// not guess which revision it is pinned to. `strata resume` removes it.
pub fn read(state_dir: &Path) -> Result<Option<String>, StateError> {
    let p = path(state_dir);
    let Some(text) = file::read(&p)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&text);
    let revision = text.trim();
    if revision.is_empty() || !revision.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(StateError::Corrupt {
            path: p,
            reason: "it does not hold a commit id".into(),
            recovery: "run `strata resume` to remove it, then `strata rollback` to pin again",
        });
    }
    Ok(Some(revision.to_string()))
}

/// Pins the agent to `revision`.
///
/// # Errors
/// [`StateError::Io`] naming the file.
pub fn write(state_dir: &Path, revision: &str) -> Result<(), StateError> {
    file::ensure_state_dir(state_dir)?;
    file::write(&path(state_dir), revision.as_bytes())
}

/// Removes the pin; no pin is not an error.
///
/// # Errors
/// [`StateError::Io`] naming the file.
pub fn remove(state_dir: &Path) -> Result<(), StateError> {
    file::remove(&path(state_dir)).map(drop)
}
