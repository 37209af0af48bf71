//! Drift reports (terradiff + kubediff) as text and Markdown.

use std::fmt::Write;

use crate::engine::record::{DriftReport, DriftState, LayerDrift, Observation};

/// A layer's observation in words: `in sync`, `drifted`, `unknown: why`, `never applied`,
/// `pending abc1234: in sync with def5678`.
fn observed(l: &LayerDrift) -> String {
    let against = l.revision.as_deref().map(short).unwrap_or("-");
    match &l.observed {
        Observation::InSync => "in sync".into(),
        Observation::Drifted => "drifted".into(),
        Observation::Unknown { reason } => format!("unknown: {reason}"),
        Observation::NeverApplied => "never applied: not checked".into(),
        Observation::Pending { revision } => format!(
            "pending {}: in sync with {against}, the revision last applied",
            short(revision)
        ),
    }
}

/// The last line: what was found, most serious first, naming the layers.
fn verdict(d: &DriftReport) -> String {
    let names = |key: &str| {
        d.observed(key)
            .iter()
            .map(|l| l.layer.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let count = |key: &str| d.observed(key).len();
    let layers = |n: usize| if n == 1 { "layer" } else { "layers" };
    let mut parts = Vec::new();
    for (key, what) in [
        ("unknown", "Could not check"),
        ("drifted", "Drift in"),
        ("never_applied", "Never applied:"),
        ("pending", "A newer revision is pending for"),
    ] {
        let n = count(key);
        if n > 0 {
            parts.push(format!("{what} {n} {}: {}.", layers(n), names(key)));
        }
    }
    if parts.is_empty() {
        "No drift: every layer was observed in sync.".into()
    } else {
        parts.join(" ")
    }
}

use super::run::short;

fn terraform_lines(plan: &crate::terraform::LayerPlan) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for r in &plan.resources {
        v.push(format!("{} {}", r.action.symbol(), r.address));
        for a in &r.attributes {
            v.push(format!("    {}: {} → {}", a.name, a.before, a.after));
        }
    }
    for o in &plan.outputs {
        v.push(format!(
            "{} output.{}: {} → {}",
            o.action.symbol(),
            o.name,
            o.before,
            o.after
        ));
    }
    v
}

/// Plain text; `color` adds ANSI colours to kubediff values.
pub fn text(d: &DriftReport, color: bool) -> String {
    let mut out = format!(
        "drift of stack \"{}\" against {} (checked {})\n",
        d.stack,
        short(&d.revision),
        d.checked_at
    );
    let width = d
        .layers
        .iter()
        .map(|l| l.layer.to_string().len())
        .max()
        .unwrap_or(0);
    for l in &d.layers {
        let _ = writeln!(out, "  {:width$}  {}", l.layer.to_string(), observed(l));
        if l.state == DriftState::Drifted {
            if let Some(p) = &l.terraform {
                for line in terraform_lines(p) {
                    let _ = writeln!(out, "      {line}");
                }
            }
            if let Some(k) = &l.kubernetes {
                for line in k.to_text(color).lines() {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
    if let Some(p) = &d.pending_revision {
        let _ = writeln!(
            out,
            "pending revision: {} (committed, not applied yet; not counted as drift)",
            short(p)
        );
    }
    let _ = writeln!(out, "{}", verdict(d));
    out
}

/// Markdown, for a pull request comment or a chat message.
pub fn markdown(d: &DriftReport) -> String {
    let mut out = format!("## Drift report: `{}`\n\nRevision `{}`, checked {}.\n\n| layer | state | details |\n| --- | --- | --- |\n", d.stack, short(&d.revision), d.checked_at);
    for l in &d.layers {
        let text = observed(l).replace('|', "\\|").replace('\n', " ");
        let (state, details) = text.split_once(": ").unwrap_or((&text, ""));
        let _ = writeln!(out, "| `{}` | {state} | {details} |", l.layer);
    }
    for l in d.layers.iter().filter(|l| l.state == DriftState::Drifted) {
        let _ = writeln!(out, "\n### `{}`\n\n```diff", l.layer);
        if let Some(p) = &l.terraform {
            for line in terraform_lines(p) {
                let _ = writeln!(out, "{line}");
            }
        }
        if let Some(k) = &l.kubernetes {
            out.push_str(&k.to_text(false));
        }
        out.push_str("```\n");
    }
    if let Some(p) = &d.pending_revision {
        let _ = writeln!(
            out,
            "\nPending revision `{}` is committed but not applied yet.",
            short(p)
        );
    }
    let _ = writeln!(out, "\n{}", verdict(d));
    out
}
