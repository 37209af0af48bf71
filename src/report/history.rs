//! `strata history`: recorded runs, newest last, one line per run and one per layer.

use crate::engine::record::RunRecord;
use crate::report::run::short;

pub fn text(records: &[RunRecord]) -> String {
    let mut t = String::new();
    for r in records {
        let commit = r
            .commit
            .as_ref()
            .map(|c| format!(" \"{}\" by {}", c.summary, c.author))
            .unwrap_or_default();
        t.push_str(&format!(
            "{}  {:5}  {:7}  {}{}\n",
            r.finished,
            r.command,
            r.result,
            short(&r.revision),
            commit
        ));
        for l in &r.layers {
            let err = l
                .error
                .as_ref()
                .map(|e| format!(" — {}", e.lines().next().unwrap_or("")))
                .unwrap_or_default();
            t.push_str(&format!(
                "    {:24} {:18} {:10} {}ms{}\n",
                l.layer,
                l.action,
                l.counts.clone().unwrap_or_default(),
                l.duration_ms,
                err
            ));
        }
    }
    t
}
