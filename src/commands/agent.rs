//! `strata run`, `bootstrap`, `approve`, `rollback`, `resume` and `report`: the agent and the
//! commands that steer it.

use std::io::IsTerminal;

use super::source::source_of;
use super::{engine_err, out, out_json, runtime};
use crate::agent::{run_stacks, AgentOptions, Ended, StacksPlan};
use crate::cli::{AgentArgs, RepoArgs, ReportFormat};
use crate::engine::record::LayerStatus;
use crate::engine::{Engine, EngineOptions, Mode, Source};
use crate::error::Error;
use crate::exit::ExitStatus;

/// The shortest webhook secret or API token the agent accepts, in bytes (after trimming
/// whitespace).
const MIN_SECRET: usize = 16;

/// Reads a secret (`what`: "webhook secret", "API token") from `f`.
///
/// # Errors
/// The file cannot be read, or holds fewer than [`MIN_SECRET`] bytes: a short secret is
/// guessed, and an empty one makes every signature made with an empty key pass. The message
/// gives the length, never the secret.
fn read_secret(f: &std::path::Path, what: &str) -> Result<crate::redact::Redacted<Vec<u8>>, Error> {
    let secret = std::fs::read(f).map_err(|e| Error::Io {
        action: "read",
        path: f.to_path_buf(),
        source: e,
    })?;
    // The bytes as they are (a binary secret from /dev/urandom included), less the whitespace
    // an editor or `echo` adds around them.
    let trimmed = secret.trim_ascii().to_vec();
    if trimmed.len() < MIN_SECRET {
        return Err(Error::Usage(format!(
            "the {what} in {} is {} bytes long: use at least {MIN_SECRET} random bytes (e.g. `openssl rand -hex 32`)",
            f.display(),
            trimmed.len()
        )));
    }
    Ok(crate::redact::Redacted::new(trimmed))
}

fn duration(s: &Option<String>) -> Result<Option<std::time::Duration>, Error> {
    s.as_deref()
        .map(crate::util::duration::parse_duration)
        .transpose()
        .map_err(Error::Usage)
}

pub fn run(a: &AgentArgs, bootstrap: bool, watch: bool) -> Result<ExitStatus, Error> {
    let (spec, sopts) = source_of(&a.repo);
    let mut opts = AgentOptions::new(spec, sopts);
    opts.envs = a.repo.env.clone();
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
        opts.webhook_secret = Some(read_secret(f, "webhook secret")?);
    }
    if let Some(f) = &a.api_token_file {
        opts.api_token = Some(read_secret(f, "API token")?);
    }
    let mut declared = Vec::new();
    if let Some(c) = &a.config {
        opts.config = crate::notify::load_config(c).map_err(Error::Usage)?;
        declared = crate::agent::stacks::load(c).map_err(|e| Error::Usage(e.to_string()))?;
    }
    let stacks = stacks_of(opts, declared, a)?;
    let plan = StacksPlan {
        max_concurrent: a.max_concurrent_stacks,
        coordination: coordination_of(a)?,
    };
    if plan.coordination.is_some() && bootstrap && !watch {
        return Err(Error::Usage(
            "--coordination is for agents that keep running: use `strata bootstrap --watch` or `strata run`".into(),
        ));
    }
    runtime()?.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        super::cancel_on_signal(shutdown.clone(), "strata: stopping");
        let fleet = run_stacks(stacks, plan, shutdown)
            .await
            .map_err(|e| Error::Usage(e.to_string()))?;
        let ended = fleet.ended;
        if bootstrap && !watch && ended != Ended::Interrupted {
            let several = fleet.state_dirs.len() > 1;
            for (stack, env, state_dir) in &fleet.state_dirs {
                if let Some(stack) = stack {
                    out(&format!("=== stack {stack} ===\n"))?;
                }
                // The engine keeps an environment's state in its own dir, as the agent does.
                let agent = crate::state::agent_status::load(state_dir)?;
                let state = crate::state::stack_status::StackState::load(state_dir)?;
                if several {
                    out(&format!(
                        "=== environment {} ===\n",
                        env.as_deref().unwrap_or_default()
                    ))?;
                }
                out(&crate::report::status::bootstrap(
                    agent.ready && agent.failures == 0 && agent.refused.is_none(),
                    &agent,
                    &state,
                    state_dir,
                    &super::state::terraform_line().await,
                ))?;
            }
        }
        Ok(match ended {
            Ended::Clean => ExitStatus::Success,
            Ended::NotConverged => ExitStatus::Failure,
            Ended::Interrupted => ExitStatus::Interrupted,
        })
    })
}

/// The stacks to converge: the `--repo` one, or each `stack` block of `--config`, each in its
/// own state dir (`STATE/stacks/NAME`).
fn stacks_of(
    base: AgentOptions,
    declared: Vec<crate::agent::StackSource>,
    a: &AgentArgs,
) -> Result<Vec<AgentOptions>, Error> {
    match (declared.is_empty(), a.repo.repo.is_empty()) {
        (true, true) => Err(Error::Usage(
            "no stack to converge: pass --repo, or --config with stack \"NAME\" { repo = \"...\" } blocks".into(),
        )),
        (true, false) => Ok(vec![base]),
        (false, false) => Err(Error::Usage(format!(
            "--repo and the stack blocks of {} both name what to converge: declare the --repo stack as a stack block too",
            a.config.as_deref().unwrap_or(std::path::Path::new("--config")).display()
        ))),
        (false, true) => {
            let flags = [
                ("--env", !a.repo.env.is_empty()),
                ("--ref", a.repo.reference.is_some()),
                ("--path", a.repo.path.is_some()),
                ("--verify", a.repo.verify.is_some()),
            ];
            if let Some((flag, _)) = flags.iter().find(|(_, given)| *given) {
                return Err(Error::Usage(format!(
                    "{flag} applies to the --repo stack: with stack blocks, set it in each block (env, ref, path, verify)"
                )));
            }
            Ok(declared
                .into_iter()
                .map(|d| {
                    let mut o = base.clone();
                    let dir = a.repo.state_dir.join("stacks").join(&d.name);
                    o.spec = crate::source::SourceSpec {
                        url: d.repo,
                        reference: d.reference,
                        path: d.path,
                    };
                    o.source = crate::source::SourceOptions::new(&dir);
                    o.source.verify = d.verify;
                    o.state_dir = dir;
                    o.envs = d.env;
                    o.stack = Some(d.name);
                    o
                })
                .collect())
        }
    }
}

/// `--coordination kubernetes` and its flags.
fn coordination_of(
    a: &AgentArgs,
) -> Result<Option<crate::coordination::CoordinationOptions>, Error> {
    let Some(crate::cli::Coordination::Kubernetes) = a.coordination else {
        return Ok(None);
    };
    let lease_duration =
        crate::util::duration::parse_duration(&a.lease_duration).map_err(Error::Usage)?;
    if lease_duration < std::time::Duration::from_secs(3) {
        return Err(Error::Usage(format!(
            "--lease-duration {} is too short: at least 3s (renewed every third of it)",
            a.lease_duration
        )));
    }
    Ok(Some(crate::coordination::CoordinationOptions {
        namespace: a.lease_namespace.clone(),
        kubeconfig: a.coordination_kubeconfig.clone(),
        replica_id: a
            .replica_id
            .clone()
            .unwrap_or_else(crate::coordination::CoordinationOptions::default_replica_id),
        lease_duration,
    }))
}

/// Where `strata approve` gives its approval.
pub enum ApproveAt {
    /// In the state dir the agent (or the next apply) reads.
    StateDir(std::path::PathBuf),
    /// Through a running agent's API, which wakes it at once.
    Agent {
        url: String,
        token_file: std::path::PathBuf,
        /// The environment, for an agent that converges several.
        env: Option<String>,
        /// The stack, for an agent that converges several.
        stack: Option<String>,
    },
}

/// `strata approve LAYER [--plan DIGEST]`: exit 0 when the approval was taken, 1 (saying why)
/// when nothing waits for approval on that layer, another plan waits, or the agent refused.
pub fn approve(layer: &str, plan: Option<&str>, at: ApproveAt) -> Result<ExitStatus, Error> {
    let id = crate::state::approvals::parse_layer(layer).map_err(Error::Usage)?;
    match at {
        ApproveAt::StateDir(state_dir) => {
            let a = crate::state::approvals::give(&state_dir, &id, plan).map_err(|e| match e {
                crate::state::approvals::Refusal::State(s) => Error::State(s),
                other => Error::Usage(other.to_string()),
            })?;
            out(&format!(
                "approved plan {} of {id}; the agent applies it on its next sync\n",
                a.plan
            ))?;
        }
        ApproveAt::Agent {
            url,
            token_file,
            env,
            stack,
        } => {
            let token = read_secret(&token_file, "API token")?;
            let mut url = format!("{}/api/v1/approve/{id}", url.trim_end_matches('/'));
            // Which environment's layer, for an agent that converges several. Environment
            // names are letters, digits, '_' and '-': nothing in one needs escaping in a URL.
            if let Some(env) = env {
                if !env
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(Error::Usage(format!(
                        "invalid environment name \"{env}\": use letters, digits, '_' and '-'"
                    )));
                }
                url.push_str(&format!("?env={env}"));
            }
            // Stack names are lowercase letters, digits and '-' (checked where they are
            // declared): refuse anything else rather than escape it.
            if let Some(stack) = stack {
                if !stack
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                {
                    return Err(Error::Usage(format!(
                        "invalid stack name \"{stack}\": use lowercase letters, digits and '-'"
                    )));
                }
                url.push_str(if url.contains('?') { "&" } else { "?" });
                url.push_str(&format!("stack={stack}"));
            }
            let body = match plan {
                Some(p) => serde_json::json!({ "plan": p }),
                None => serde_json::json!({}),
            };
            let sent = runtime()?.block_on(async {
                let r = reqwest::Client::new()
                    .post(&url)
                    .bearer_auth(String::from_utf8_lossy(token.expose()))
                    .json(&body)
                    .send()
                    .await?;
                let status = r.status();
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                Ok::<_, reqwest::Error>((status, v))
            });
            match sent {
                Ok((s, v)) if s == reqwest::StatusCode::ACCEPTED => out(&format!(
                    "approved plan {} of {id}; the agent applies it now\n",
                    v["plan"].as_str().unwrap_or_default()
                ))?,
                Ok((s, v)) => {
                    let why = v["message"].as_str().unwrap_or_default();
                    return Err(Error::Usage(if s == reqwest::StatusCode::CONFLICT {
                        why.to_string()
                    } else {
                        format!("the agent at {url} answered {s}: {why}")
                    }));
                }
                Err(e) => {
                    return Err(Error::Usage(format!(
                        "failed to reach the agent at {url}: {e}"
                    )))
                }
            }
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
        opts.env = r.one_env()?;
        let engine = Engine::open(Source::Repo { spec, opts: sopts }, opts)
            .await
            .map_err(engine_err)?;
        // The pin of the environment rolled back (its agent reads it from its own state).
        crate::state::pin::write(&engine.opts.state_dir, &engine.revision)?;
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
    use crate::state::reports::{read_latest_text, Latest};
    let format = match format {
        ReportFormat::Text => Latest::Text,
        ReportFormat::Json => Latest::Json,
        ReportFormat::Markdown => Latest::Markdown,
    };
    let Some(text) = read_latest_text(state_dir, format)? else {
        return Err(Error::Usage(format!(
            "no drift report in {} yet: run `strata diff` or the agent (`strata run`) first",
            state_dir.display()
        )));
    };
    out(&text)?;
    Ok(ExitStatus::Success)
}
