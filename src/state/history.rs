//! `history.jsonl`: one [`RunRecord`] per plan or apply, oldest first.

use std::path::{Path, PathBuf};

use super::file::{self, StateError};
use crate::engine::record::RunRecord;

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("history.jsonl")
}

/// Appends a record to the history.
///
/// # Guarantees
/// One complete line per record, even with a plan and an apply finishing together; a line torn by
/// a crash never takes this one with it. The file is 0600.
///
/// # Errors
/// [`StateError::Io`] naming `history.jsonl`.
pub fn append(state_dir: &Path, record: &RunRecord) -> Result<(), StateError> {
    file::ensure_state_dir(state_dir)?;
    file::append_line(
        &path(state_dir),
        &serde_json::to_string(record).expect("json"),
    )
}

/// The last `limit` records, oldest first. A line that is not a record (torn by a crash) is
/// skipped with a warning.
///
/// # Errors
/// [`StateError::Io`] when the file exists but cannot be read.
pub fn read(state_dir: &Path, limit: usize) -> Result<Vec<RunRecord>, StateError> {
    let all: Vec<RunRecord> = file::read_lines(&path(state_dir))?;
    let skip = all.len().saturating_sub(limit);
    Ok(all.into_iter().skip(skip).collect())
}
