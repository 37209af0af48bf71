//! `strata history` as text: one line per run, then one per layer.

use std::fmt::Write;
use std::path::Path;

use super::run::short;
use crate::engine::record::RunRecord;

pub fn text(records: &[RunRecord], state_dir: &Path) -> String {
    let mut t = String::new();
    for r in records {
        let commit = r
            .commit
            .as_ref()
            .map(|c| format!(" \"{}\" by {}", c.summary, c.author))
            .unwrap_or_default();
        let _ = writeln!(
            t,
            "{}  {:5}  {:7}  {}{}",
            r.finished,
            r.command,
            r.result.as_str(),
            short(&r.revision),
            commit
        );
        for l in &r.layers {
            let err = l
                .error
                .as_ref()
                .map(|e| format!(" — {}", super::summary_line(e)))
                .unwrap_or_default();
            let _ = writeln!(
                t,
                "    {:24} {:18} {:10} {}ms{}",
                l.layer,
                l.action,
                l.counts.clone().unwrap_or_default(),
                l.duration_ms,
                err
            );
        }
    }
    if records.is_empty() {
        let _ = writeln!(t, "no runs recorded in {}", state_dir.display());
    }
    t
}
