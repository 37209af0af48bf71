//! Drift reports kept in the state dir: `reports/<time>.json`, and `reports/latest.json`,
//! `reports/latest.md` and `reports/latest.txt`, keeping the last `keep`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::file::{self, StateError};
use crate::engine::change::Change;
use crate::engine::record::{DriftReport, DriftState, Observation};

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
    while file::exists(&path)? {
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
    let old: Vec<PathBuf> = file::list(&d)?
        .into_iter()
        .map(|name| d.join(name))
        .filter(|p| p.extension().is_some_and(|e| e == "json") && !p.ends_with("latest.json"))
        .collect();
    let excess = old.len().saturating_sub(keep);
    for p in old.into_iter().take(excess) {
        // An old report that will not go away only takes room; the new one is written.
        if let Err(e) = file::remove(&p) {
            tracing::warn!("failed to remove the old report: {e}");
        }
    }
    Ok(path)
}

/// The latest drift report in `format` as written (`strata report`); `None` before the first.
///
/// # Errors
/// [`StateError`] when it exists but cannot be read.
pub fn read_latest_text(state_dir: &Path, format: Latest) -> Result<Option<String>, StateError> {
    Ok(file::read(&latest_path(state_dir, format))?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// The latest drift report read back from `reports/latest.json`: what a reader (the dashboard)
/// needs of it. The file is what `strata diff --json` prints, so every value in it is already
/// masked as the CLI masks it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LatestDrift {
    pub revision: String,
    pub checked_at: String,
    #[serde(default)]
    pub pending_revision: Option<String>,
    pub layers: Vec<LatestLayerDrift>,
}

/// One layer of [`LatestDrift`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LatestLayerDrift {
    pub layer: String,
    pub state: DriftState,
    pub observed: Observation,
    #[serde(default)]
    pub revision: Option<String>,
    /// What an apply would change to undo the drift; a Kubernetes object's with its fields.
    #[serde(default)]
    pub changes: Vec<Change>,
    /// terradiff: each drifted resource's attributes, before → after.
    #[serde(default)]
    pub terraform: Option<TerraformDrift>,
    #[serde(default)]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TerraformDrift {
    #[serde(default)]
    pub resources: Vec<ResourceDrift>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ResourceDrift {
    pub address: String,
    #[serde(default)]
    pub attributes: Vec<AttributeDrift>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AttributeDrift {
    pub name: String,
    pub before: ShownValue,
    pub after: ShownValue,
}

/// [`crate::terraform::Shown`] read back.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShownValue {
    Value(serde_json::Value),
    Sensitive,
    Unknown,
    Absent,
}

impl From<ShownValue> for crate::terraform::Shown {
    fn from(v: ShownValue) -> crate::terraform::Shown {
        use crate::terraform::Shown;
        match v {
            ShownValue::Value(v) => Shown::Value(v),
            ShownValue::Sensitive => Shown::Sensitive,
            ShownValue::Unknown => Shown::Unknown,
            ShownValue::Absent => Shown::Absent,
        }
    }
}

/// The latest drift report; `None` when no drift check wrote one yet.
///
/// # Errors
/// [`StateError::Corrupt`] naming the file when it does not parse; [`StateError::Io`] when it
/// cannot be read.
pub fn read_latest(state_dir: &Path) -> Result<Option<LatestDrift>, StateError> {
    file::read_json(
        &latest_path(state_dir, Latest::Json),
        "move it aside: the next drift check writes it again",
    )
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
