//! `strata status` as text: where each layer stands, from what the state dir remembers.

use std::fmt::Write;
use std::path::Path;

use super::run::short;
use crate::agent::{AgentStatus, Reach};
use crate::engine::record::Observation;
use crate::engine::DriftState;
use crate::images::running::RunningImage;
use crate::state::stack_status::{EnvironmentRuns, Reason, StackState};

/// The stack, the terraform in use (`terraform` is already a line of text: finding it touches
/// the machine), and one row per layer: with `agent` (an agent runs on the state dir), what it
/// observed and the revisions it has not applied.
pub fn text(
    state: &StackState,
    agent: Option<&AgentStatus>,
    state_dir: &Path,
    terraform: &str,
) -> String {
    if state.layers.is_empty() {
        return format!("no runs recorded in {}\n", state_dir.display());
    }
    let mut t = format!(
        "stack \"{}\" from {}\nterraform: {terraform}\nconverged revision: {}\n",
        state.stack,
        state.source.clone().unwrap_or_default(),
        state
            .converged_revision
            .as_deref()
            .map(short)
            .unwrap_or("none")
    );
    if let Some(images) = state.converged_images.as_ref().filter(|i| !i.is_empty()) {
        let places: Vec<String> = images
            .iter()
            .map(|i| {
                let at = match &i.var {
                    Some(v) => format!("env.vars.{v}"),
                    None => format!("{}:{}", i.file, i.line),
                };
                format!("{} {} ({at})", i.image, i.tag)
            })
            .collect();
        let _ = writeln!(t, "images: {}", places.join(", "));
    }
    t.push('\n');
    // Every cell first, then each column as wide as its widest cell: aligned for every state.
    let header = [
        "layer",
        "converged at",
        "last result",
        "drift",
        "observed",
        "last run",
        "reason",
    ]
    .map(String::from);
    let rows: Vec<[String; 7]> = state
        .view(agent)
        .into_iter()
        .map(|l| {
            [
                l.layer,
                l.converged_revision
                    .as_deref()
                    .map(short)
                    .unwrap_or("-")
                    .to_string(),
                l.last_result.as_deref().unwrap_or("-").to_string(),
                l.drift.map_or("unknown", DriftState::key).to_string(),
                l.observed.as_ref().map_or("-".into(), observed),
                l.last_run.as_deref().unwrap_or("-").to_string(),
                l.reason.as_ref().map_or("-".into(), reason),
            ]
        })
        .collect();
    t.push_str(&aligned(&header, &rows, "  "));
    t
}

/// `in sync`, `pending 0123456789ab`, `unknown`: what the agent observed of a layer, in a cell.
/// `web 1.4.0, api main-10`: each image once, with every tag its markers carry (`1.3.0/1.4.0`
/// when they disagree).
pub fn image_tags(images: &[RunningImage]) -> String {
    let mut tags: Vec<(&str, Vec<&str>)> = Vec::new();
    for i in images {
        match tags.iter_mut().find(|(name, _)| *name == i.image) {
            Some((_, t)) if t.contains(&i.tag.as_str()) => {}
            Some((_, t)) => t.push(&i.tag),
            None => tags.push((&i.image, vec![&i.tag])),
        }
    }
    tags.iter()
        .map(|(name, t)| format!("{name} {}", t.join("/")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What is where: per environment, the revision it last converged and the image tags it runs.
pub fn environments(runs: &[EnvironmentRuns]) -> String {
    let rows: Vec<[String; 3]> = runs
        .iter()
        .map(|r| {
            let images = match (&r.converged_revision, &r.images) {
                (None, _) => "-".to_string(),
                (Some(_), None) => "not recorded".to_string(),
                (Some(_), Some(i)) if i.is_empty() => "no image markers".to_string(),
                (Some(_), Some(i)) => image_tags(i),
            };
            [
                r.env.clone(),
                r.converged_revision
                    .as_deref()
                    .map(short)
                    .unwrap_or("none")
                    .to_string(),
                images,
            ]
        })
        .collect();
    let header = ["environment", "converged", "images"].map(String::from);
    aligned(&header, &rows, "")
}

/// `header` and `rows` as lines of columns padded to their widest cell (in characters), two
/// spaces apart, each line after `indent`, trailing blanks trimmed.
fn aligned<const N: usize>(header: &[String; N], rows: &[[String; N]], indent: &str) -> String {
    let mut widths = [0usize; N];
    for row in std::iter::once(header).chain(rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut t = String::new();
    for row in std::iter::once(header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:w$}"))
            .collect();
        let _ = writeln!(t, "{indent}{}", cells.join("  ").trim_end());
    }
    t
}

pub fn observed(o: &Observation) -> String {
    match o {
        Observation::InSync => "in sync".into(),
        Observation::Drifted => "drifted".into(),
        Observation::Unknown { .. } => "unknown".into(),
        Observation::NeverApplied => "never applied".into(),
        Observation::Pending { revision } => format!("pending {}", short(revision)),
    }
}

/// Why a layer is not converged, in one line.
pub fn reason(r: &Reason) -> String {
    let one_line = |s: &str| crate::report::summary_line(s);
    match r {
        Reason::AwaitingApproval => "awaiting approval".into(),
        Reason::Waiting { on } => crate::engine::WaitingOn(on.clone()).to_string(),
        Reason::UpstreamFailed { upstream } => format!("held: upstream {upstream} failed"),
        Reason::UpstreamHeld { upstream, why } => format!("held: upstream {upstream}: {why}"),
        Reason::Failed { error } => format!("failed: {}", one_line(error)),
        Reason::Interrupted => "interrupted: the next apply resumes it".into(),
        // A Terraform orphan's detail begins with the word already.
        Reason::Orphaned { detail } if detail.starts_with("orphaned") => one_line(detail),
        Reason::Orphaned { detail } => format!("orphaned: {}", one_line(detail)),
        Reason::PendingRevision { revision } => {
            format!(
                "pending revision {} (newer, not applied yet)",
                short(revision)
            )
        }
        Reason::RefusedRevision { revision, reason } => {
            format!("revision {} refused: {}", short(revision), one_line(reason))
        }
        Reason::Pinned { revision, newest } => match newest {
            Some(n) => format!(
                "pinned at {} by strata rollback ({} waits for strata resume)",
                short(revision),
                short(n)
            ),
            None => format!("pinned at {} by strata rollback", short(revision)),
        },
    }
}

/// How many exposed paths the warning lists before it only counts them.
const EXPOSED_SHOWN: usize = 10;

/// The warning `strata status` prints when the state dir, or anything in it, is open to others:
/// what is, and the command that fixes it. Empty when nothing is.
pub fn exposure_warning(state_dir: &Path, exposed: &[crate::state::exposure::Exposed]) -> String {
    if exposed.is_empty() {
        return String::new();
    }
    let mut t = format!(
        "warning: the state dir {} holds secrets but is readable by others (its group or other users):\n",
        state_dir.display()
    );
    for e in exposed.iter().take(EXPOSED_SHOWN) {
        let _ = writeln!(t, "  {} ({:04o})", e.path.display(), e.mode);
    }
    if exposed.len() > EXPOSED_SHOWN {
        let _ = writeln!(t, "  and {} more", exposed.len() - EXPOSED_SHOWN);
    }
    let _ = writeln!(t, "  fix it with: chmod -R go-rwx {}", state_dir.display());
    t
}

/// What the agent observed: the source, each cluster and each layer.
pub fn agent(a: &AgentStatus) -> String {
    let reach = |r: &Reach| {
        if r.up {
            "up".to_string()
        } else {
            format!(
                "unreachable since {}: {}",
                r.down_since.as_deref().unwrap_or("?"),
                r.reason.as_deref().unwrap_or("")
            )
        }
    };
    let mut t = format!(
        "\nagent: {}\n",
        a.not_ready
            .as_deref()
            .map_or("ready".into(), |w| format!("not ready: {w}"))
    );
    let _ = writeln!(t, "  source: {}", reach(&a.source));
    if let Some(seen) = &a.latest_seen {
        let _ = writeln!(t, "  latest revision seen: {}", short(seen));
    }
    if let Some(pin) = &a.pinned {
        let _ = writeln!(
            t,
            "  pinned at {} by `strata rollback`: new commits are not applied until `strata resume`",
            short(pin)
        );
    }
    if let Some(r) = &a.refused {
        let _ = writeln!(t, "  refused revision {}: {}", short(&r.revision), r.reason);
    }
    awaiting(&mut t, &a.awaiting_approval);
    for (name, r) in &a.clusters {
        let _ = writeln!(t, "  cluster {name}: {}", reach(r));
    }
    for (layer, o) in &a.layers {
        let detail = match o {
            Observation::Unknown { reason } => format!(": {reason}"),
            Observation::Pending { revision } => format!(" {}", short(revision)),
            _ => String::new(),
        };
        let _ = writeln!(t, "  {layer}: observed {}{detail}", o.key());
    }
    for c in &a.conditions {
        let _ = writeln!(
            t,
            "  alerted since {}: {} ({})",
            c.since, c.key, c.fingerprint
        );
    }
    t
}

/// What `strata bootstrap` says when it ends: whether everything converged, at which revision,
/// and where each layer stands (or why it did not converge).
pub fn bootstrap(
    converged: bool,
    agent: &AgentStatus,
    state: &StackState,
    state_dir: &Path,
    terraform: &str,
) -> String {
    let at = agent
        .revision
        .as_deref()
        .map(short)
        .unwrap_or("no revision");
    let mut t = if converged {
        format!(
            "bootstrap of stack \"{}\": converged at {at}\n",
            agent.stack
        )
    } else {
        format!(
            "bootstrap of stack \"{}\": NOT converged (at {at})\n",
            agent.stack
        )
    };
    if let Some(r) = &agent.refused {
        let _ = writeln!(t, "  revision {} refused: {}", short(&r.revision), r.reason);
    }
    awaiting(&mut t, &agent.awaiting_approval);
    if let Some(why) = &agent.not_ready {
        let _ = writeln!(t, "  not ready: {why}");
    }
    t.push('\n');
    t.push_str(&text(state, Some(agent), state_dir, terraform));
    t
}

/// One line per plan waiting for approval, with the command that approves exactly that plan.
fn awaiting(t: &mut String, list: &[crate::agent::Awaiting]) {
    for a in list {
        let at = a
            .revision
            .as_deref()
            .map(|r| format!(" (at {})", short(r)))
            .unwrap_or_default();
        let _ = writeln!(
            t,
            "  awaiting approval: {} plan {}{at}: strata approve {} --plan {}",
            a.layer, a.plan, a.layer, a.plan
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::stack_status::LayerState;

    #[test]
    fn every_reason_reads_as_one_line_in_an_aligned_column() {
        use crate::engine::Waiting;
        use crate::stack::LayerId;
        let reasons = [
            (Reason::AwaitingApproval, "awaiting approval"),
            (
                Reason::Waiting {
                    on: vec![Waiting {
                        on: LayerId::terraform("cluster"),
                        output: "outputs.kubeconfig".into(),
                    }],
                },
                "waiting on terraform.cluster (outputs.kubeconfig unknown until applied)",
            ),
            (
                Reason::UpstreamFailed {
                    upstream: "terraform.network".into(),
                },
                "held: upstream terraform.network failed",
            ),
            (
                Reason::Failed {
                    error: "terraform apply failed:\n  Error: boom".into(),
                },
                "failed: terraform apply failed: Error: boom",
            ),
            (
                Reason::Orphaned {
                    detail: "removed from the stack file".into(),
                },
                "orphaned: removed from the stack file",
            ),
            (
                Reason::PendingRevision {
                    revision: "c".repeat(40),
                },
                "pending revision cccccccccccc (newer, not applied yet)",
            ),
        ];
        let mut state = StackState {
            stack: "demo".into(),
            ..Default::default()
        };
        for (i, (r, text)) in reasons.iter().enumerate() {
            assert_eq!(reason(r), *text);
            state.layers.insert(
                format!("kubernetes.l{i}"),
                LayerState {
                    reason: Some(r.clone()),
                    last_result: Some("awaiting_approval".into()),
                    ..Default::default()
                },
            );
        }
        state
            .layers
            .insert("kubernetes.ok".into(), LayerState::default());
        let mut agent = AgentStatus::default();
        agent.layers.insert(
            "kubernetes.ok".into(),
            Observation::Pending {
                revision: "d".repeat(40),
            },
        );
        let t = text(&state, Some(&agent), Path::new("s"), "terraform 1.11");
        let lines: Vec<&str> = t.lines().skip_while(|l| !l.contains("layer")).collect();
        let col = lines[0].find("reason").unwrap();
        assert!(
            lines[1..]
                .iter()
                .all(|l| l[..col].ends_with("  ") && !l[col..].starts_with(' ')),
            "{t}"
        );
        for (_, text) in &reasons {
            assert!(t.contains(text), "{t}");
        }
        assert!(t.contains("pending dddddddddddd"), "{t}");
    }

    #[test]
    fn columns_stay_aligned_for_every_state() {
        let mut state = StackState {
            stack: "demo".into(),
            ..Default::default()
        };
        for (name, result) in [
            ("terraform.network", "converged"),
            ("kubernetes.apps", "awaiting approval"),
            ("terraform.x", "not affected"),
        ] {
            state.layers.insert(
                name.into(),
                LayerState {
                    last_result: Some(result.into()),
                    ..Default::default()
                },
            );
        }
        let t = text(&state, None, Path::new("s"), "terraform 1.11");
        let lines: Vec<&str> = t.lines().skip_while(|l| !l.contains("layer")).collect();
        let col = |l: &str| l.find("drift").or_else(|| l.find("unknown")).unwrap();
        let first = col(lines[0]);
        assert!(lines[1..].iter().all(|l| col(l) == first), "{t}");
    }
}
