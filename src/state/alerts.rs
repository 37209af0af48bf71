//! `alerts.jsonl`: every alert the agent raised, one JSON line each, newest last.

use std::io::Write;
use std::path::Path;

use crate::notify::Event;

/// Appends an alert to the log, best effort: a log that cannot be written never blocks alerts.
pub fn append(state_dir: &Path, event: &Event) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state_dir.join("alerts.jsonl"))
    {
        let _ = writeln!(f, "{}", serde_json::to_string(event).expect("json"));
    }
}
