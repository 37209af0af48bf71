//! `strata run`, `bootstrap`, `approve`, `rollback`, `resume` and `report`: the agent and the
//! commands that steer it.

use std::io::IsTerminal;

use super::source::source_of;
use super::{engine_err, out, out_json, runtime};
use crate::agent::{Agent, AgentOptions, Ended};
use crate::cli::{AgentArgs, RepoArgs, ReportFormat};
use crate::engine::record::LayerStatus;
use crate::engine::{Engine, EngineOptions, Mode, Source};
use crate::error::Error;
use crate::exit::ExitStatus;

/// The shortest webhook secret the agent accepts, in bytes (after trimming whitespace).
const MIN_WEBHOOK_SECRET: usize = 16;

fn duration(s: &Option<String>) -> Result<Option<std::time::Duration>, Error> {
    s.as_deref()
        .map(crate::util::duration::parse_duration)
        .transpose()
        .map_err(Error::Usage)
}

pub fn run(a: &AgentArgs, bootstrap: bool, watch: bool) -> Result<ExitStatus, Error> {
    let (spec, sopts) = source_of(&a.repo);
    let state_dir = &a.repo.state_dir;
    let mut opts = AgentOptions::new(spec, sopts);
    opts.listen = (!bootstrap || watch).then_some(a.listen);
    opts.poll_interval = duration(&a.poll_interval)?;
    opts.drift_interval = duration(&a.drift_interval)?;
    opts.shutdown_grace =
        crate::util::duration::parse_duration(&a.shutdown_grace).map_err(Error::Usage)?;
    opts.unreachable_after =
        crate::util::duration::parse_duration(&a.unreachable_after).map_err(Error::Usage)?;
    opts.diff_interval =
        crate::util::duration::parse_duration(&a.diff_alert_interval).map_err(Error::Usage)?;
    opts.once = bootstrap && !watch;
    opts.all_first = bootstrap;
    opts.progress = std::io::stderr().is_terminal() || bootstrap;
    opts.age_keys = crate::secrets::AgeKeys::from_flag_or_env(a.repo.age_key_file.as_deref());
    if let Some(f) = &a.webhook_secret_file {
        let secret = std::fs::read(f).map_err(|e| Error::Io {
            action: "read",
            path: f.clone(),
            source: e,
        })?;
        // The bytes as they are (a binary secret from /dev/urandom included), less the
        // whitespace an editor or `echo` adds around them.
        let trimmed = secret.trim_ascii().to_vec();
        // A short secret is guessed; an empty one makes every signature made with an empty key
        // pass. Neither starts an agent. The message gives the length, never the secret.
        if trimmed.len() < MIN_WEBHOOK_SECRET {
            return Err(Error::Usage(format!(
                "the webhook secret in {} is {} bytes long: use at least {MIN_WEBHOOK_SECRET} random bytes (e.g. `openssl rand -hex 32`)",
                f.display(),
                trimmed.len()
            )));
        }
        opts.webhook_secret = Some(crate::redact::Redacted::new(trimmed));
    }
    if let Some(c) = &a.config {
        opts.config = crate::notify::load_config(c).map_err(Error::Usage)?;
    }
    runtime()?.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        super::cancel_on_signal(shutdown.clone(), "strata: stopping");
        let ended = Agent::new(opts)?.run(shutdown).await;
        if bootstrap && !watch && ended != Ended::Interrupted {
            let agent = crate::state::agent_status::load(state_dir)?;
            let state = crate::state::stack_status::StackState::load(state_dir)?;
            out(&crate::report::status::bootstrap(
                ended == Ended::Clean,
                &agent,
                &state,
                state_dir,
                &super::state::terraform_line().await,
            ))?;
        }
        Ok(match ended {
            Ended::Clean => ExitStatus::Success,
            Ended::NotConverged => ExitStatus::Failure,
            Ended::Interrupted => ExitStatus::Interrupted,
        })
    })
}

pub fn approve(
    layer: &str,
    state_dir: &std::path::Path,
    agent: Option<&str>,
) -> Result<ExitStatus, Error> {
    crate::state::approvals::give(state_dir, layer).map_err(Error::Usage)?;
    let Some(url) = agent else {
        out(&format!(
            "approved {layer}; the agent applies it on its next sync\n"
        ))?;
        return Ok(ExitStatus::Success);
    };
    let url = format!(
        "{}/api/v1/approve/{}",
        url.trim_end_matches('/'),
        layer.rsplit('.').next().unwrap_or(layer)
    );
    let sent = runtime()?.block_on(async {
        reqwest::Client::new()
            .post(&url)
            .send()
            .await
            .map(|r| r.status())
    });
    match sent {
        Ok(s) if s.is_success() => out(&format!("approved {layer}; the agent applies it now\n"))?,
        Ok(s) => return Err(Error::Usage(format!("the agent at {url} answered {s}"))),
        Err(e) => {
            return Err(Error::Usage(format!(
                "failed to reach the agent at {url}: {e}"
            )))
        }
    }
    Ok(ExitStatus::Success)
}

pub fn rollback(r: &RepoArgs, to: &str, json: bool) -> Result<ExitStatus, Error> {
    let (mut spec, sopts) = source_of(r);
    spec.reference = Some(to.to_string());
    runtime()?.block_on(async {
        let mut opts = EngineOptions::new(&r.state_dir);
        opts.progress = true;
        opts.age_keys = crate::secrets::AgeKeys::from_flag_or_env(r.age_key_file.as_deref());
        let engine = Engine::open(Source::Repo { spec, opts: sopts }, opts)
            .await
            .map_err(engine_err)?;
        crate::state::pin::write(&r.state_dir, &engine.revision)?;
        let report = engine.run(Mode::Apply).await.map_err(engine_err)?;
        if json {
            out_json(&report)?;
        } else {
            out(&crate::report::run::text(&report))?;
            out(&format!(
                "pinned at {}: new commits are fetched and reported, not applied, until `strata resume`\n",
                engine.revision
            ))?;
        }
        Ok(
            if report.any(LayerStatus::Failed) || report.any(LayerStatus::Interrupted) {
                ExitStatus::Failure
            } else {
                ExitStatus::Success
            },
        )
    })
}

pub fn resume(state_dir: &std::path::Path) -> Result<ExitStatus, Error> {
    // A pin that does not parse is removed all the same: resuming is how to get rid of it.
    let was = crate::state::pin::read(state_dir).unwrap_or_else(|e| Some(e.to_string()));
    crate::state::pin::remove(state_dir)?;
    match was {
        Some(p) => out(&format!(
            "unpinned (was {p}); the agent follows the source again\n"
        ))?,
        None => out("not pinned\n")?,
    }
    Ok(ExitStatus::Success)
}

pub fn report(state_dir: &std::path::Path, format: ReportFormat) -> Result<ExitStatus, Error> {
    use crate::state::reports::{latest_path, Latest};
    let path = latest_path(
        state_dir,
        match format {
            ReportFormat::Text => Latest::Text,
            ReportFormat::Json => Latest::Json,
            ReportFormat::Markdown => Latest::Markdown,
        },
    );
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Usage(format!(
                "no drift report in {} yet: run `strata diff` or the agent (`strata run`) first",
                state_dir.display()
            )))
        }
        Err(e) => {
            return Err(Error::Io {
                action: "read",
                path,
                source: e,
            })
        }
    };
    out(&text)?;
    Ok(ExitStatus::Success)
}
