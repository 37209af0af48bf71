//! `strata status`: the state dir's record of each layer, as an aligned table.

use crate::engine::state::StackState;
use crate::report::run::short;

/// `terraform` describes the binary in use (`None`: not found on PATH).
pub fn text(state: &StackState, terraform: Option<&str>) -> String {
    let mut t = format!(
        "stack \"{}\" from {}\nterraform: {}\nconverged revision: {}\n\n",
        state.stack,
        state.source.clone().unwrap_or_default(),
        terraform.unwrap_or("not found on PATH"),
        state
            .converged_revision
            .as_deref()
            .map(short)
            .unwrap_or("none")
    );
    let width = state.layers.keys().map(String::len).max().unwrap_or(0);
    t.push_str(&format!(
        "  {:width$}  {:14}  {:14}  {:10}  {}\n",
        "layer", "converged at", "last result", "drift", "last run"
    ));
    for (name, l) in &state.layers {
        t.push_str(&format!(
            "  {:width$}  {:14}  {:14}  {:10}  {}\n",
            name,
            l.converged_revision.as_deref().map(short).unwrap_or("-"),
            l.last_result.as_deref().unwrap_or("-"),
            l.drift.as_deref().unwrap_or("unknown"),
            l.last_run.as_deref().unwrap_or("-"),
        ));
    }
    t
}
