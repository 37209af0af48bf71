//! Orphaned layers as text, in plans and applies.

use std::fmt::Write;

use super::run::short;
use crate::engine::orphans::{Orphan, OrphanStatus};

/// One block per orphaned layer; empty when there are none.
pub fn text(orphans: &[Orphan]) -> String {
    let mut out = String::new();
    if orphans.is_empty() {
        return out;
    }
    let _ = writeln!(out, "\norphaned (no longer in the stack file)");
    for o in orphans {
        let at = o
            .converged_revision
            .as_deref()
            .map(|r| format!(", last converged at {}", short(r)))
            .unwrap_or_default();
        let what = match o.status {
            OrphanStatus::Orphaned => "orphaned",
            OrphanStatus::Destroyed => "destroyed",
            OrphanStatus::Pruned => "pruned",
            OrphanStatus::Failed => "failed",
        };
        let _ = writeln!(out, "  {}  {what}, orphaned since {}{at}", o.layer, o.since);
        let _ = writeln!(out, "      {}", o.detail);
        if !o.changes.is_empty() {
            let counts = o.counts.as_deref().unwrap_or_default();
            let _ = writeln!(out, "      objects: {counts}");
            out.push_str(&super::run::changes_text(&o.changes, "        "));
        }
    }
    out
}
