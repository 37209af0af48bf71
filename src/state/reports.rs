//! Drift reports kept in the state dir: `reports/<time>.json`, and `reports/latest.json`,
//! `reports/latest.md` and `reports/latest.txt`, keeping the last `keep`.

use std::path::{Path, PathBuf};

use super::file::{self, StateError};
use crate::engine::record::DriftReport;

/// Reports kept by default.
pub const KEEP: usize = 50;

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("reports")
}

/// The latest report's file in each format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latest {
    Text,
    Json,
    Markdown,
}

/// Where the latest report is in `format`.
pub fn latest_path(state_dir: &Path, format: Latest) -> PathBuf {
    dir(state_dir).join(match format {
        Latest::Text => "latest.txt",
        Latest::Json => "latest.json",
        Latest::Markdown => "latest.md",
    })
}

/// Writes a report and drops the oldest beyond `keep`. Returns the timestamped file.
///
/// # Guarantees
/// Every file is replaced atomically with mode 0600 (a reader never sees half a report); the
/// `latest` files are written after the timestamped one.
///
/// # Errors
/// [`StateError::Io`] naming the file that could not be written.
pub fn write(state_dir: &Path, report: &DriftReport, keep: usize) -> Result<PathBuf, StateError> {
    file::ensure_state_dir(state_dir)?;
    let d = dir(state_dir);
    file::ensure_dir(&d)?;
    let json = serde_json::to_vec_pretty(report).expect("json");
    // Writers (the agent's drift check, a `strata diff`) take turns: two reports of the same
    // second get two names, and the `latest` files and the pruning see one writer at a time.
    let _writers = file::FileLock::beside(&latest_path(state_dir, Latest::Json))?;
    let stamp = report.checked_at.replace(':', "");
    let mut path = d.join(format!("{stamp}.json"));
    let mut n = 1;
    while path.exists() {
        path = d.join(format!("{stamp}-{n}.json"));
        n += 1;
    }
    file::write(&path, &json)?;
    file::write(&latest_path(state_dir, Latest::Json), &json)?;
    file::write(
        &latest_path(state_dir, Latest::Markdown),
        crate::report::drift::markdown(report).as_bytes(),
    )?;
    file::write(
        &latest_path(state_dir, Latest::Text),
        crate::report::drift::text(report, false).as_bytes(),
    )?;
    let mut old: Vec<PathBuf> = std::fs::read_dir(&d)
        .map_err(StateError::io("list", &d))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json") && !p.ends_with("latest.json"))
        .collect();
    old.sort();
    let excess = old.len().saturating_sub(keep);
    for p in old.into_iter().take(excess) {
        // An old report that will not go away only takes room; the new one is written.
        if let Err(e) = std::fs::remove_file(&p) {
            tracing::warn!("failed to remove the old report {}: {e}", p.display());
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_of_the_same_second_from_concurrent_writers_are_all_kept() {
        let d = tempfile::tempdir().unwrap();
        let report = DriftReport {
            schema_version: 1,
            stack: "s".into(),
            env: None,
            revision: "r".into(),
            pending_revision: None,
            checked_at: "2026-11-24T10:00:00Z".into(),
            layers: Vec::new(),
            corrected: Vec::new(),
        };
        let paths: Vec<PathBuf> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| write(d.path(), &report, KEEP).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let unique: std::collections::BTreeSet<_> = paths.iter().collect();
        assert_eq!(unique.len(), 8, "{paths:?}");
        assert!(paths.iter().all(|p| p.exists()));
    }
}
