//! Drift reports kept in the state dir: `reports/<time>.json`, and `reports/latest.json` +
//! `reports/latest.md`, keeping the last `keep`.

use std::path::{Path, PathBuf};

use crate::engine::record::DriftReport;

/// Reports kept by default.
pub const KEEP: usize = 50;

pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("reports")
}

/// Writes a report and drops the oldest beyond `keep`. Returns the timestamped file.
pub fn write(state_dir: &Path, report: &DriftReport, keep: usize) -> std::io::Result<PathBuf> {
    let d = dir(state_dir);
    std::fs::create_dir_all(&d)?;
    let json = serde_json::to_vec_pretty(report).expect("json");
    let stamp = report.checked_at.replace(':', "");
    let mut file = d.join(format!("{stamp}.json"));
    let mut n = 1;
    while file.exists() {
        file = d.join(format!("{stamp}-{n}.json"));
        n += 1;
    }
    std::fs::write(&file, &json)?;
    std::fs::write(d.join("latest.json"), &json)?;
    std::fs::write(d.join("latest.md"), crate::report::drift::markdown(report))?;
    std::fs::write(
        d.join("latest.txt"),
        crate::report::drift::text(report, false),
    )?;
    let mut old: Vec<PathBuf> = std::fs::read_dir(&d)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json") && !p.ends_with("latest.json"))
        .collect();
    old.sort();
    let excess = old.len().saturating_sub(keep);
    for p in old.into_iter().take(excess) {
        let _ = std::fs::remove_file(p);
    }
    Ok(file)
}

/// The latest report's JSON, if any.
pub fn latest(state_dir: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(dir(state_dir).join("latest.json")).ok()?).ok()
}
