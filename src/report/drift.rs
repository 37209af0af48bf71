//! Drift reports (terradiff + kubediff) as text and Markdown.

use std::fmt::Write;

use crate::engine::record::{DriftReport, DriftState};

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
        let state = l.state.as_str();
        let detail = l
            .detail
            .as_ref()
            .map(|x| format!(": {x}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {:width$}  {state}{detail}", l.layer.to_string());
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
    let drifted = d
        .layers
        .iter()
        .filter(|l| l.state == DriftState::Drifted)
        .count();
    let _ = writeln!(
        out,
        "{}",
        if drifted == 0 {
            "No drift.".to_string()
        } else {
            format!(
                "Drift in {drifted} layer{}.",
                if drifted == 1 { "" } else { "s" }
            )
        }
    );
    out
}

/// Markdown, for a pull request comment or a chat message.
pub fn markdown(d: &DriftReport) -> String {
    let mut out = format!("## Drift report: `{}`\n\nRevision `{}`, checked {}.\n\n| layer | state | details |\n| --- | --- | --- |\n", d.stack, short(&d.revision), d.checked_at);
    for l in &d.layers {
        let details = l.detail.clone().unwrap_or_default().replace('|', "\\|");
        let _ = writeln!(
            out,
            "| `{}` | {} | {} |",
            l.layer,
            l.state.as_str(),
            details
        );
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
    out
}
