//! `strata status` and `strata history`: what the state dir records, without touching the source
//! or any target.

use super::{out, out_json};
use crate::error::Error;
use crate::exit::ExitStatus;

/// `strata status`: the environment named, else every environment the state dir holds (each
/// under a heading; `--json`: an object by environment), else the state dir's one stack.
pub fn status_envs(
    state_dir: &std::path::Path,
    env: Option<&str>,
    json: bool,
) -> Result<ExitStatus, Error> {
    if env.is_some() {
        return status(&super::one_state_dir(state_dir, env)?, json);
    }
    let envs = super::envs_with_state(state_dir);
    if envs.is_empty() {
        return status(state_dir, json);
    }
    if json {
        let mut all = serde_json::Map::new();
        for e in &envs {
            let dir = crate::engine::env_state_dir(state_dir, e);
            let state = crate::state::stack_status::StackState::load(&dir)?;
            let agent = agent_of(&dir)?;
            let mut v = state.to_json(agent.as_ref());
            if let Some(a) = &agent {
                v["agent"] = serde_json::to_value(a).unwrap_or_default();
            }
            all.insert(e.clone(), v);
        }
        out_json(&serde_json::json!({ "environments": all }))?;
        return Ok(ExitStatus::Success);
    }
    // What is where first, then each environment's layers.
    let mut runs = Vec::new();
    for e in &envs {
        let state = crate::state::stack_status::StackState::load(&crate::engine::env_state_dir(
            state_dir, e,
        ))?;
        runs.push(state.runs(e));
    }
    out(&crate::report::status::environments(&runs))?;
    for e in &envs {
        out(&format!("\n=== environment {e} ===\n"))?;
        status(&crate::engine::env_state_dir(state_dir, e), false)?;
    }
    Ok(ExitStatus::Success)
}

/// What the agent on `state_dir` observed, when one runs there.
fn agent_of(
    state_dir: &std::path::Path,
) -> Result<Option<crate::agent::AgentStatus>, crate::state::StateError> {
    crate::state::agent_status::exists(state_dir)
        .then(|| crate::state::agent_status::load(state_dir))
        .transpose()
}

/// `strata history`: the environment named, else every environment the state dir holds.
pub fn history_envs(
    state_dir: &std::path::Path,
    env: Option<&str>,
    limit: usize,
    json: bool,
) -> Result<ExitStatus, Error> {
    let envs = super::envs_with_state(state_dir);
    if env.is_some() || envs.is_empty() || json {
        return history(&super::one_state_dir(state_dir, env)?, limit, json);
    }
    for e in &envs {
        out(&format!("=== environment {e} ===\n"))?;
        history(&crate::engine::env_state_dir(state_dir, e), limit, false)?;
    }
    Ok(ExitStatus::Success)
}

pub fn status(state_dir: &std::path::Path, json: bool) -> Result<ExitStatus, Error> {
    let state = crate::state::stack_status::StackState::load(state_dir)?;
    // On stderr, so that `--json` stays one document and the warning is seen either way.
    let exposed = crate::state::exposure::exposed(state_dir);
    eprint!(
        "{}",
        crate::report::status::exposure_warning(state_dir, &exposed)
    );
    // What the agent observed, when an agent runs on this state dir.
    let agent = agent_of(state_dir)?;
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
