//! `alerts.jsonl`: every alert the agent raised, one JSON line each, newest last; the oldest are
//! dropped when it grows past its cap ([`retention::ALERTS`]).

use std::path::{Path, PathBuf};

use super::file::{self, StateError};
use super::retention::{self, Retention};
use crate::notify::Event;

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("alerts.jsonl")
}

/// Appends an alert to the log.
///
/// # Guarantees
/// One complete line per alert (see [`crate::state::history::append`]); the file is 0600 and
/// stays within its cap, dropping its oldest alerts.
///
/// # Errors
/// [`StateError::Io`] naming `alerts.jsonl`.
pub fn append(state_dir: &Path, event: &Event) -> Result<(), StateError> {
    append_kept(state_dir, event, retention::ALERTS)
}

/// [`append`] with another cap.
///
/// # Errors
/// As [`append`].
pub fn append_kept(state_dir: &Path, event: &Event, keep: Retention) -> Result<(), StateError> {
    file::ensure_state_dir(state_dir)?;
    file::append_line(
        &path(state_dir),
        &serde_json::to_string(event).expect("json"),
        keep,
    )
}

/// One alert as the log keeps it: [`Event`] read back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlertRecord {
    /// `diff`, `failed`, `converged`, ... ([`crate::notify::EventType::key`]).
    #[serde(rename = "type")]
    pub kind: String,
    pub stack: String,
    /// The environment; absent for a stack without `environment` blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    pub revision: String,
    #[serde(default)]
    pub layers: Vec<String>,
    pub condition: String,
    pub summary: String,
    /// RFC 3339.
    pub time: String,
}

/// The last `limit` alerts, oldest first. A line that is not an alert (torn by a crash) is
/// skipped with a warning.
///
/// # Errors
/// [`StateError::Io`] when the file exists but cannot be read.
pub fn read(state_dir: &Path, limit: usize) -> Result<Vec<AlertRecord>, StateError> {
    let all: Vec<AlertRecord> = file::read_lines(&path(state_dir))?;
    let skip = all.len().saturating_sub(limit);
    Ok(all.into_iter().skip(skip).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::EventType;

    #[test]
    fn alerts_read_back_as_written_newest_last() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path(), 10).unwrap().is_empty(), "no log yet");
        for n in 0..3 {
            let event = Event {
                kind: EventType::Diff,
                stack: "s".into(),
                env: None,
                revision: "abc".into(),
                layers: vec!["kubernetes.app".into()],
                condition: "diff kubernetes.app".into(),
                summary: format!("{n}"),
                time: "2024-01-01T00:00:00Z".into(),
            };
            append(dir.path(), &event).unwrap();
        }
        let got = read(dir.path(), 2).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].summary, "1");
        assert_eq!(got[1].summary, "2");
        assert_eq!(got[1].kind, EventType::Diff.key());
        assert_eq!(got[1].layers, ["kubernetes.app"]);
    }

    /// Writers racing with compaction: every line stays whole, nothing appended after the last
    /// compaction is lost, and each writer's records stay in its order.
    #[test]
    fn racing_appends_with_compaction_keep_whole_ordered_lines() {
        let dir = tempfile::tempdir().unwrap();
        let keep = Retention { max_bytes: 8_192 };
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let state = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    for n in 0..150 {
                        let event = Event {
                            kind: EventType::Failed,
                            stack: "s".into(),
                            env: None,
                            revision: "abc".into(),
                            layers: vec![format!("{t}")],
                            condition: "sync".into(),
                            summary: format!("{n}"),
                            time: "2024-01-01T00:00:00Z".into(),
                        };
                        append_kept(&state, &event, keep).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(path(dir.path())).unwrap();
        assert!(text.len() as u64 <= keep.max_bytes, "{} bytes", text.len());
        let mut last = std::collections::BTreeMap::new();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("a whole record");
            let t = v["layers"][0].as_str().unwrap().to_string();
            let n: usize = v["summary"].as_str().unwrap().parse().unwrap();
            if let Some(prev) = last.insert(t.clone(), n) {
                assert!(n > prev, "writer {t}: {n} after {prev}");
            }
        }
        assert!(
            last.values().any(|&n| n == 149),
            "the last records are kept: {last:?}"
        );
    }
}
