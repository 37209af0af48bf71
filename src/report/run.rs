//! Plans and applies as text.

use std::fmt::Write;

use crate::engine::change::{Change, ChangeAction, Target};
use crate::engine::record::{LayerReport, LayerStatus, RunReport};

fn revision_line(r: &RunReport) -> String {
    let mut s = format!("stack \"{}\"", r.stack);
    if let Some(env) = &r.env {
        s.push_str(&format!(" (environment {env})"));
    }
    s.push_str(&format!(" at {}", short(&r.revision)));
    if let Some(c) = &r.commit {
        s.push_str(&format!(" ({}, {})", c.summary, c.author));
    }
    s
}

pub fn short(rev: &str) -> &str {
    if rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit()) {
        &rev[..12]
    } else {
        rev
    }
}

/// The plan or apply, wave by wave, then a summary line.
pub fn text(r: &RunReport) -> String {
    let mut out = format!("{} — {}\n", r.command, revision_line(r));
    let width = r
        .layers
        .iter()
        .map(|l| l.layer.to_string().len())
        .max()
        .unwrap_or(0);
    let waves = r.layers.iter().map(|l| l.wave).max().unwrap_or(0);
    for w in 1..=waves {
        let _ = writeln!(out, "\nwave {w}");
        for l in r.layers.iter().filter(|l| l.wave == w) {
            let counts = l.counts.clone().unwrap_or_default();
            let what = match l.status {
                LayerStatus::Waiting
                | LayerStatus::Skipped
                | LayerStatus::Failed
                | LayerStatus::Interrupted
                | LayerStatus::NotAffected
                | LayerStatus::AwaitingApproval => {
                    let detail = l.detail.clone().unwrap_or_default();
                    if detail.is_empty() {
                        l.status.as_str().to_string()
                    } else {
                        format!("{}: {detail}", l.status.as_str())
                    }
                }
                // Applied, but what it changed could not be read: said, not an empty list.
                LayerStatus::Applied if l.changes_unread.is_some() => {
                    format!("applied, but {}", l.detail.clone().unwrap_or_default())
                }
                s => s.as_str().to_string(),
            };
            let what = if l.status == LayerStatus::Waiting {
                l.detail.clone().unwrap_or_default()
            } else {
                what
            };
            let _ = writeln!(
                out,
                "  {:width$}  {:10}  {what}",
                l.layer.to_string(),
                counts
            );
            out.push_str(&changes_text(&l.changes, "      "));
            if matches!(l.status, LayerStatus::Changes | LayerStatus::Applied)
                && !l.reasons.is_empty()
            {
                let _ = writeln!(out, "      why: {}", l.reasons.join("; "));
            }
            // What `strata approve --plan` names, for a plan a reviewer approves.
            if let Some(plan) = l.plan.as_deref().filter(|_| {
                matches!(
                    l.status,
                    LayerStatus::Changes | LayerStatus::AwaitingApproval
                )
            }) {
                let _ = writeln!(out, "      plan: {plan}");
            }
        }
    }
    let n = |s: LayerStatus| r.count(s);
    let summary = if r.command == "destroy" {
        format!(
            "Destroy: {} destroyed, {} never applied, {} failed, {} kept for a dependent.",
            n(LayerStatus::Destroyed),
            n(LayerStatus::NotAffected),
            n(LayerStatus::Failed) + n(LayerStatus::Interrupted),
            n(LayerStatus::Skipped),
        )
    } else if r.command == "destroy plan" {
        format!(
            "Destroy plan: {} to destroy, {} with nothing left, {} never applied, {} failed.",
            plural(n(LayerStatus::Changes), "layer"),
            n(LayerStatus::Unchanged),
            n(LayerStatus::NotAffected),
            n(LayerStatus::Failed) + n(LayerStatus::Interrupted),
        )
    } else if r.command == "apply" {
        format!(
            "Apply: {} applied, {} unchanged, {} not affected, {} awaiting approval, {} failed, {} skipped.",
            n(LayerStatus::Applied),
            n(LayerStatus::Unchanged),
            n(LayerStatus::NotAffected),
            n(LayerStatus::AwaitingApproval),
            n(LayerStatus::Failed) + n(LayerStatus::Interrupted),
            n(LayerStatus::Skipped) + n(LayerStatus::Waiting),
        )
    } else {
        format!(
            "Plan: {} with changes, {} waiting, {} unchanged, {} not affected, {} failed, {} skipped.",
            plural(n(LayerStatus::Changes), "layer"),
            n(LayerStatus::Waiting),
            n(LayerStatus::Unchanged),
            n(LayerStatus::NotAffected),
            n(LayerStatus::Failed) + n(LayerStatus::Interrupted),
            n(LayerStatus::Skipped),
        )
    };
    out.push_str(&super::orphans::text(&r.orphaned));
    let _ = writeln!(out, "\n{summary}");
    out
}

/// One line per change, each indented by `indent`, an update's fields below it.
pub fn changes_text(changes: &[Change], indent: &str) -> String {
    let mut out = String::new();
    for c in changes {
        let _ = writeln!(out, "{indent}{}", change_line(c));
        for f in &c.fields {
            let _ = writeln!(out, "{indent}    {}", field_line(f));
        }
        for line in conflict_lines(c) {
            let _ = writeln!(out, "{indent}    {line}");
        }
    }
    out
}

/// `+`, `~`, `-`, `-/+`, `<=`, and `!` for what is listed but left alone.
pub fn symbol(a: ChangeAction) -> &'static str {
    match a {
        ChangeAction::Create => "+",
        ChangeAction::Update => "~",
        ChangeAction::Delete => "-",
        ChangeAction::Replace => "-/+",
        ChangeAction::Read => "<=",
        ChangeAction::Noop => "!",
    }
}

/// `-/+ null_resource.server`, `~ ConfigMap/platform/settings`; what is left alone says why, a
/// Kubernetes object as `! kept Namespace/shop: still holds ...`.
pub fn change_line(c: &Change) -> String {
    match (&c.reason, c.action) {
        (Some(why), ChangeAction::Noop) if !c.kept.is_empty() => {
            format!("{} {} ({why})", symbol(c.action), c.target)
        }
        (Some(why), ChangeAction::Noop) if matches!(c.target, Target::Object { .. }) => {
            format!("{} kept {}: {why}", symbol(c.action), c.target)
        }
        (Some(why), ChangeAction::Noop) => format!("{} {} ({why})", symbol(c.action), c.target),
        // Only an adoption gives a Kubernetes update a reason: it must be seen.
        (Some(why), ChangeAction::Update) if matches!(c.target, Target::Object { .. }) => {
            format!("{} {} ({why})", symbol(c.action), c.target)
        }
        _ if !c.forces_replacement.is_empty() => format!(
            "{} {} ({} forces replacement)",
            symbol(c.action),
            c.target,
            c.forces_replacement.join(", ")
        ),
        _ => format!("{} {}", symbol(c.action), c.target),
    }
}

/// `.data.color: "blue" → "green"`: one field of an updated object, before → after, long values
/// shortened around what changed.
/// A Kubernetes object's field-manager conflicts: what was taken because Git changed it, what
/// was left to its other manager (drift).
pub fn conflict_lines(c: &Change) -> Vec<String> {
    use crate::kube::conflicts::KeptBecause;
    let taken = c
        .taken
        .iter()
        .map(|t| format!("{}: taken from \"{}\" (changed in Git)", t.path, t.manager));
    let kept = c.kept.iter().map(|k| {
        let why = match k.because {
            KeptBecause::UnchangedInGit => "unchanged in Git since strata last applied it",
            KeptBecause::NoRecord => "strata has no record of what it last applied",
        };
        format!(
            "{}: left to \"{}\" ({why}; `--force-conflicts` takes it)",
            k.path, k.manager
        )
    });
    taken.chain(kept).collect()
}

pub fn field_line(f: &crate::kube::diff::FieldDiff) -> String {
    let show = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .map_or_else(|| "(absent)".to_string(), |v| v.to_string())
    };
    let (before, after) = super::shorten_change(&show(&f.live), &show(&f.desired));
    format!("{}: {before} → {after}", f.path)
}

/// A layer's final state in one line: `applied +1 ~0 -0`, `waiting on ...`, `failed: ...`.
pub fn final_line(r: &LayerReport) -> String {
    match (r.status, &r.counts, &r.detail) {
        (LayerStatus::Waiting, _, Some(d)) => d.clone(),
        (LayerStatus::Applied, _, Some(d)) if r.changes_unread.is_some() => {
            format!("applied, but {}", super::summary_line(d))
        }
        (s, _, Some(d))
            if matches!(
                s,
                LayerStatus::Failed
                    | LayerStatus::Skipped
                    | LayerStatus::Interrupted
                    | LayerStatus::AwaitingApproval
            ) =>
        {
            format!("{}: {}", s.as_str(), super::summary_line(d))
        }
        (s, Some(c), _) => format!("{} {c}", s.as_str()),
        (s, None, _) => s.as_str().to_string(),
    }
}

fn plural(n: usize, w: &str) -> String {
    format!("{n} {w}{}", if n == 1 { "" } else { "s" })
}
