//! `history.jsonl`: one [`RunRecord`] per plan or apply, oldest first; the oldest are dropped
//! when it grows past its cap ([`retention::HISTORY`]).

use std::path::{Path, PathBuf};

use super::file::{self, StateError};
use super::retention::{self, Retention};
use crate::engine::record::RunRecord;

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("history.jsonl")
}

/// Appends a record to the history.
///
/// # Guarantees
/// One complete line per record, even with a plan and an apply finishing together; a line torn by
/// a crash never takes this one with it. The file is 0600 and stays within its cap
/// ([`retention::HISTORY`]), dropping its oldest records.
///
/// # Errors
/// [`StateError::Io`] naming `history.jsonl`.
pub fn append(state_dir: &Path, record: &RunRecord) -> Result<(), StateError> {
    append_kept(state_dir, record, retention::HISTORY)
}

/// [`append`] with another cap.
///
/// # Errors
/// As [`append`].
pub fn append_kept(
    state_dir: &Path,
    record: &RunRecord,
    keep: Retention,
) -> Result<(), StateError> {
    file::ensure_state_dir(state_dir)?;
    file::append_line(
        &path(state_dir),
        &serde_json::to_string(record).expect("json"),
        keep,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> RunRecord {
        RunRecord {
            run_id: format!("run-{n}"),
            command: "apply".into(),
            revision: "abc".into(),
            commit: None,
            started: "2024-01-01T00:00:00Z".into(),
            finished: "2024-01-01T00:00:01Z".into(),
            result: crate::engine::record::RunResult::Ok,
            layers: vec![],
        }
    }

    #[test]
    fn many_appends_stay_within_the_cap_and_keep_the_newest_records_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let keep = Retention { max_bytes: 16_384 };
        for n in 0..2_000 {
            append_kept(dir.path(), &record(n), keep).unwrap();
            let len = std::fs::metadata(path(dir.path())).unwrap().len();
            assert!(len <= keep.max_bytes, "{len} bytes after record {n}");
        }
        let kept = read(dir.path(), usize::MAX).unwrap();
        assert!(kept.len() > 50, "half the cap is kept: {}", kept.len());
        let first = 2_000 - kept.len();
        let ids: Vec<String> = kept.iter().map(|r| r.run_id.clone()).collect();
        let expected: Vec<String> = (first..2_000).map(|n| format!("run-{n}")).collect();
        assert_eq!(ids, expected, "the newest records, contiguous and in order");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(path(dir.path())).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "still private after compaction");
    }
}
