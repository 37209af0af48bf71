//! `strata promote` as text.

use std::fmt::Write;

use crate::promote::{summary, Promotion};

pub fn text(p: &Promotion) -> String {
    let Some(commit) = &p.commit else {
        return format!(
            "environment {} already holds {}'s values on {}: nothing committed.\n",
            p.to, p.from, p.pushed_to
        );
    };
    let mut t = String::new();
    let _ = writeln!(t, "{commit}");
    let what = if p.proposed {
        format!("proposed on {} (for {})", p.pushed_to, p.branch)
    } else {
        format!("pushed to {}", p.pushed_to)
    };
    let _ = writeln!(
        t,
        "{what}: promote {} → {}: {}",
        p.from,
        p.to,
        summary(&p.changes)
    );
    for c in &p.changes {
        let _ = writeln!(
            t,
            "  {}:{}  {}  {} → {}",
            p.file, c.line, c.var, c.from, c.to
        );
    }
    if p.attempts > 1 {
        let _ = writeln!(
            t,
            "the branch moved meanwhile: the edit was made again on its new head ({} pushes).",
            p.attempts
        );
    }
    t
}
