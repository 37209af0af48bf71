//! What `strata image scan` found and what `strata image update` committed, as text.

use std::fmt::Write as _;

use crate::images::scan::ScanReport;
use crate::images::writeback::{summary, Outcome};

pub fn scan_text(r: &ScanReport) -> String {
    let mut t = String::new();
    for i in &r.images {
        let _ = writeln!(t, "image {} ({}, {})", i.image, i.repository, i.policy);
        match (&i.error, &i.latest) {
            (Some(e), _) => {
                let _ = writeln!(t, "  error ({}): {}", e.kind, e.message);
            }
            (None, None) => {
                let _ = writeln!(
                    t,
                    "  no tag matches the policy ({} listed, {} unparseable)",
                    i.tags.listed, i.tags.unparseable
                );
            }
            (None, Some(latest)) => {
                let _ = writeln!(
                    t,
                    "  latest {latest} ({} listed, {} matched, {} unparseable and ignored)",
                    i.tags.listed, i.tags.matched, i.tags.unparseable
                );
            }
        }
        for m in &i.markers {
            match &m.wanted {
                Some(w) => {
                    let _ = writeln!(t, "  {}:{}  {} → {w}", m.file, m.line, m.current);
                }
                None => {
                    let _ = writeln!(t, "  {}:{}  {} (up to date)", m.file, m.line, m.current);
                }
            }
        }
    }
    let (updates, errors) = (r.updates(), r.errors());
    let _ = match (updates, errors) {
        (0, 0) => writeln!(t, "every image is up to date."),
        (n, 0) => writeln!(
            t,
            "{n} marked line(s) would change: `strata image update` commits them."
        ),
        (n, e) => writeln!(
            t,
            "{n} marked line(s) would change; {e} image(s) could not be scanned."
        ),
    };
    t
}

pub fn update_text(o: &Outcome) -> String {
    match &o.commit {
        None => format!(
            "every marker on {} is up to date: nothing committed.\n",
            o.pushed_to
        ),
        Some(c) => {
            let mut t = String::new();
            let _ = writeln!(t, "{c}");
            let what = if o.proposed {
                format!("proposed on {} (for {})", o.pushed_to, o.branch)
            } else {
                format!("pushed to {}", o.pushed_to)
            };
            let _ = writeln!(t, "{what}: {}", summary(&o.changes));
            for ch in &o.changes {
                for l in &ch.lines {
                    let _ = writeln!(t, "  {}:{}  {} → {}", l.file, l.line, l.from, l.to);
                }
            }
            if o.attempts > 1 {
                let _ = writeln!(
                    t,
                    "the branch moved meanwhile: the edit was made again on its new head ({} pushes).",
                    o.attempts
                );
            }
            t
        }
    }
}
