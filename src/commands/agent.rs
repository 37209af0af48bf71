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

fn duration(s: &Option<String>) -> Result<Option<std::time::Duration>, Error> {
    s.as_deref()
        .map(crate::util::duration::parse_duration)
        .transpose()
        .map_err(Error::Usage)
}

pub fn run(a: &AgentArgs, bootstrap: bool, watch: bool) -> Result<ExitStatus, Error> {
    let (spec, sopts) = source_of(&a.repo);
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
    if let Some(f) = &a.webhook_secret_file {
        let secret = std::fs::read(f).map_err(|e| Error::Io {
            action: "read",
            path: f.clone(),
            source: e,
        })?;
        let trimmed = String::from_utf8_lossy(&secret).trim().as_bytes().to_vec();
        opts.webhook_secret = Some(crate::redact::Redacted::new(trimmed));
    }
    if let Some(c) = &a.config {
        opts.config = crate::notify::load_config(c).map_err(Error::Usage)?;
    }
    runtime()?.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        super::cancel_on_signal(shutdown.clone(), "strata: stopping");
        match Agent::new(opts).run(shutdown).await {
            Ended::Clean => Ok(ExitStatus::Success),
            Ended::NotConverged => Ok(ExitStatus::Failure),
            Ended::Interrupted => Ok(ExitStatus::Interrupted),
        }
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
        let engine = Engine::open(Source::Repo { spec, opts: sopts }, opts)
            .await
            .map_err(engine_err)?;
        crate::state::pin::write(&r.state_dir, &engine.revision).map_err(|e| Error::Io {
            action: "write",
            path: r.state_dir.join("pin"),
            source: e,
        })?;
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
    let was = crate::state::pin::read(state_dir);
    crate::state::pin::remove(state_dir).map_err(|e| Error::Io {
        action: "remove",
        path: state_dir.join("pin"),
        source: e,
    })?;
    match was {
        Some(p) => out(&format!(
            "unpinned (was {p}); the agent follows the source again\n"
        ))?,
        None => out("not pinned\n")?,
    }
    Ok(ExitStatus::Success)
}

pub fn report(state_dir: &std::path::Path, format: ReportFormat) -> Result<ExitStatus, Error> {
    let file = match format {
        ReportFormat::Text => "latest.txt",
        ReportFormat::Json => "latest.json",
        ReportFormat::Markdown => "latest.md",
    };
    let path = crate::report::store::dir(state_dir).join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Io {
        action: "read",
        path: path.clone(),
        source: e,
    })?;
    out(&text)?;
    Ok(ExitStatus::Success)
}
