//! `strata source show`: the revision a source resolves to, and the layers a range of commits
//! affects.

use std::fmt::Write as _;

/// What `strata source show` found.
#[derive(Debug, serde::Serialize)]
pub struct SourceShow {
    pub revision: crate::source::Revision,
    /// The commit the affected layers are computed from, when there is one.
    pub since: Option<String>,
    pub affected: Option<Vec<AffectedLayer>>,
}

/// A layer a range of commits affects, and why.
#[derive(Debug, serde::Serialize)]
pub struct AffectedLayer {
    pub layer: crate::stack::LayerId,
    pub reasons: Vec<crate::source::Reason>,
}

pub fn text(s: &SourceShow) -> String {
    let r = &s.revision;
    let mut t = String::new();
    let _ = writeln!(t, "source     {}", r.url);
    let _ = writeln!(t, "ref        {} → {}", r.reference, r.ref_name);
    let _ = writeln!(t, "commit     {}", r.commit);
    let _ = writeln!(t, "author     {}", r.author);
    let _ = writeln!(t, "date       {}", r.date);
    let _ = writeln!(t, "message    {}", r.summary);
    let _ = writeln!(t, "signature  {}", r.signature);
    let _ = writeln!(t, "stack      {}", r.stack_dir.display());
    if let Some(stale) = &r.stale {
        let _ = writeln!(
            t,
            "stale      the last fetch failed ({}); this revision was fetched {} ago",
            stale.error,
            crate::util::duration::format_duration(std::time::Duration::from_secs(stale.age_secs))
        );
    }
    if r.history_rewritten {
        let _ = writeln!(
            t,
            "history    rewritten: the ref no longer descends from the commit it had"
        );
    }
    match (&s.since, &s.affected) {
        (Some(since), Some(layers)) if layers.is_empty() => {
            let _ = writeln!(t, "affected   no layer since {}", &since[..12]);
        }
        (Some(since), Some(layers)) => {
            let _ = writeln!(t, "affected   since {}:", &since[..12]);
            let width = layers
                .iter()
                .map(|l| l.layer.to_string().len())
                .max()
                .unwrap_or(0);
            for l in layers {
                let reasons: Vec<String> = l.reasons.iter().map(ToString::to_string).collect();
                let _ = writeln!(
                    t,
                    "  {:width$}  {}",
                    l.layer.to_string(),
                    reasons.join("; ")
                );
            }
        }
        _ => {}
    }
    t
}
