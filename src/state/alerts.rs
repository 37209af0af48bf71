//! `alerts.jsonl`: every alert the agent raised, one JSON line each, newest last.

use std::path::Path;

use super::file::{self, StateError};
use crate::notify::Event;

/// Appends an alert to the log.
///
/// # Guarantees
/// One complete line per alert (see [`crate::state::history::append`]); the file is 0600.
///
/// # Errors
/// [`StateError::Io`] naming `alerts.jsonl`.
pub fn append(state_dir: &Path, event: &Event) -> Result<(), StateError> {
    file::ensure_state_dir(state_dir)?;
    file::append_line(
        &state_dir.join("alerts.jsonl"),
        &serde_json::to_string(event).expect("json"),
    )
}
