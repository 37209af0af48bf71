//! `strata status` as text: where each layer stands, from what the state dir remembers.

use std::fmt::Write;
use std::path::Path;

use super::run::short;
use crate::agent::{AgentStatus, Reach};
use crate::engine::record::Observation;
use crate::engine::DriftState;
use crate::state::stack_status::StackState;

/// The stack, the terraform in use (`terraform` is already a line of text: finding it touches
/// the machine), and one row per layer.
pub fn text(state: &StackState, state_dir: &Path, terraform: &str) -> String {
    if state.layers.is_empty() {
        return format!("no runs recorded in {}\n", state_dir.display());
    }
    let mut t = format!(
        "stack \"{}\" from {}\nterraform: {terraform}\nconverged revision: {}\n\n",
        state.stack,
        state.source.clone().unwrap_or_default(),
        state
            .converged_revision
            .as_deref()
            .map(short)
            .unwrap_or("none")
    );
    let width = state.layers.keys().map(String::len).max().unwrap_or(0);
    let _ = writeln!(
        t,
        "  {:width$}  {:14}  {:14}  {:10}  last run",
        "layer", "converged at", "last result", "drift"
    );
    for (name, l) in &state.layers {
        let _ = writeln!(
            t,
            "  {:width$}  {:14}  {:14}  {:10}  {}",
            name,
            l.converged_revision.as_deref().map(short).unwrap_or("-"),
            l.last_result.as_deref().unwrap_or("-"),
            l.drift.map_or("unknown", DriftState::key),
            l.last_run.as_deref().unwrap_or("-"),
        );
    }
    t
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
    if !agent.awaiting_approval.is_empty() {
        let _ = writeln!(
            t,
            "  awaiting approval: {} (strata approve LAYER)",
            agent.awaiting_approval.join(", ")
        );
    }
    if let Some(why) = &agent.not_ready {
        let _ = writeln!(t, "  not ready: {why}");
    }
    t.push('\n');
    t.push_str(&text(state, state_dir, terraform));
    t
}
