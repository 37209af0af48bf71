//! `strata status` and `strata history`: what the state dir records, without touching the source
//! or any target.

use super::{out, out_json};
use crate::error::Error;
use crate::exit::ExitStatus;

pub fn status(state_dir: &std::path::Path, json: bool) -> Result<ExitStatus, Error> {
    let state = crate::state::stack_status::StackState::load(state_dir)?;
    // On stderr, so that `--json` stays one document and the warning is seen either way.
    let exposed = crate::state::exposure::exposed(state_dir);
    eprint!(
        "{}",
        crate::report::status::exposure_warning(state_dir, &exposed)
    );
    // What the agent observed, when an agent runs on this state dir.
    let agent = crate::state::agent_status::path(state_dir)
        .exists()
        .then(|| crate::state::agent_status::load(state_dir))
        .transpose()?;
    if json {
        let mut v = state.to_json(agent.as_ref());
        if let Some(a) = &agent {
            v["agent"] = serde_json::to_value(a).unwrap_or_default();
        }
        out_json(&v)?;
        return Ok(ExitStatus::Success);
    }
    if state.layers.is_empty() {
        out(&crate::report::status::text(
            &state,
            agent.as_ref(),
            state_dir,
            "",
        ))?;
        return Ok(ExitStatus::Success);
    }
    let terraform = super::runtime()
        .ok()
        .map(|rt| rt.block_on(terraform_line()))
        .unwrap_or_else(|| "not found on PATH".into());
    out(&crate::report::status::text(
        &state,
        agent.as_ref(),
        state_dir,
        &terraform,
    ))?;
    if let Some(a) = &agent {
        out(&crate::report::status::agent(a))?;
    }
    Ok(ExitStatus::Success)
}

pub fn history(state_dir: &std::path::Path, limit: usize, json: bool) -> Result<ExitStatus, Error> {
    let records = crate::state::history::read(state_dir, limit)?;
    if json {
        out_json(&records)?;
        return Ok(ExitStatus::Success);
    }
    out(&crate::report::history::text(&records, state_dir))?;
    Ok(ExitStatus::Success)
}

/// The terraform (or tofu) `status` reports: flavour, version and path, or that none was found.
pub(super) async fn terraform_line() -> String {
    crate::terraform::TerraformBinary::find(None)
        .await
        .map(|b| format!("{:?} {} ({})", b.flavour, b.version, b.path.display()))
        .unwrap_or_else(|_| "not found on PATH".into())
}
