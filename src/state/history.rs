//! `history.jsonl`: one [`RunRecord`] per plan or apply, oldest first.

use std::io::Write;
use std::path::Path;

use crate::engine::record::RunRecord;

/// Appends a record to the history.
pub fn append(state_dir: &Path, record: &RunRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join("history.jsonl"))?;
    let mut line = serde_json::to_string(record).expect("json");
    line.push('\n');
    f.write_all(line.as_bytes())
}

/// The last `limit` records, oldest first.
pub fn read(state_dir: &Path, limit: usize) -> Vec<RunRecord> {
    let text = std::fs::read_to_string(state_dir.join("history.jsonl")).unwrap_or_default();
    let all: Vec<RunRecord> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let skip = all.len().saturating_sub(limit);
    all.into_iter().skip(skip).collect()
}
