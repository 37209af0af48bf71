//! `stack-name`, in the state database only: which stack a namespace holds the state of. A state
//! dir sits beside its stack, but one database serves many stacks, and two stacks sharing a
//! namespace would each read the other's records as their own (a layer "not affected" that never
//! ran, a converged revision of another repository) and overwrite them.

use std::path::{Path, PathBuf};

use super::file::{self, StateError};

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("stack-name")
}

/// Records that the state at `state_dir` is stack `name`'s, or checks that it is.
///
/// # Guarantees
/// A no-op for a local state dir. In the state database, the first run of a stack claims its
/// namespace, under the document's lock (two stacks starting together: one claims, the other is
/// refused); a later run of another stack is refused before it reads or writes anything else.
///
/// # Errors
/// [`StateError::OtherStack`] naming both stacks and the way out; [`StateError::Store`] when
/// the database cannot be read or written.
pub fn claim(state_dir: &Path, name: &str) -> Result<(), StateError> {
    let p = path(state_dir);
    if !file::is_shared(&p) {
        return Ok(());
    }
    let _lock = file::FileLock::beside(&p)?;
    match file::read(&p)? {
        None => file::write(&p, name.as_bytes()),
        Some(held) if held == name.as_bytes() => Ok(()),
        Some(held) => Err(StateError::OtherStack {
            at: file::shown(&p),
            holds: String::from_utf8_lossy(&held).into_owned(),
            this: name.to_string(),
        }),
    }
}
