//! Runs a parsed command line and turns its outcome into an exit status.
//!
//! One file per command family; each command reads its inputs, calls the library, and hands the
//! resulting data to [`crate::report`] to be rendered. Nothing here decides how a result looks.

mod agent;
mod converge;
mod devcluster;
mod image;
mod promote;
mod source;
mod stack;
mod state;
mod state_push;

use std::io::Write;

use crate::cli::{Cli, Command, ImageCommand, SourceCommand, StateCommand};
use crate::error::Error;
use crate::exit::ExitStatus;

/// Runs `cli`, printing results to stdout and errors to stderr.
pub fn run(cli: Cli) -> ExitStatus {
    let baseline = match cli.command {
        Command::Run(_) | Command::Bootstrap { .. } => crate::logging::Baseline::Lifecycle,
        _ => crate::logging::Baseline::Warnings,
    };
    crate::logging::init(cli.verbose, cli.log_format, baseline);
    let mut command = cli.command;
    if let Some(url) = &cli.state {
        if let Err(e) = crate::store::bind::bind(url, &cli.state_namespace, &mut command) {
            return failed(e.into());
        }
    }
    let result = match command {
        Command::Validate(args) => stack::validate(&args),
        Command::Graph { stack, format } => stack::graph(&stack, format),
        Command::Devcluster(args) => devcluster::run(&args),
        Command::Run(args) => agent::run(&args, false, true),
        Command::Bootstrap { agent: args, watch } => agent::run(&args, true, watch),
        Command::Approve {
            layer,
            state_dir,
            agent,
            api_token_file,
            plan,
            env,
            stack,
        } => (|| {
            let at = match agent {
                Some(url) => agent::ApproveAt::Agent {
                    url,
                    token_file: api_token_file.unwrap_or_default(),
                    env: env.clone(),
                    stack: stack.clone(),
                },
                None => agent::ApproveAt::StateDir(one_state_dir(
                    &stack_state_dir(&state_dir, stack.as_deref())?,
                    env.as_deref(),
                )?),
            };
            agent::approve(&layer, plan.as_deref(), at)
        })(),
        Command::Rollback { repo, to, json } => agent::rollback(&repo, &to, json),
        Command::Resume {
            state_dir,
            env,
            stack,
        } => stack_state_dir(&state_dir, stack.as_deref())
            .and_then(|d| one_state_dir(&d, env.as_deref()))
            .and_then(|d| agent::resume(&d)),
        Command::Report {
            state_dir,
            format,
            env,
            stack,
        } => stack_state_dir(&state_dir, stack.as_deref())
            .and_then(|d| one_state_dir(&d, env.as_deref()))
            .and_then(|d| agent::report(&d, format)),
        Command::Plan {
            source,
            all,
            force_conflicts,
            json,
        } => converge::plan(&source, all, force_conflicts, json),
        Command::Apply {
            source,
            auto_approve,
            approve,
            all,
            lock_timeout,
            adopt,
            force_conflicts,
            reinit,
            json,
        } => converge::apply(
            &source,
            converge::ApplyFlags {
                auto_approve,
                approve,
                reinit,
                all,
                adopt,
                force_conflicts,
                json,
            },
            &lock_timeout,
        ),
        Command::Install { export, options } => (|| {
            if !export {
                return Err(Error::Usage(
                    "strata install prints manifests only: run `strata install --export ... | \
                     kubectl apply -f -`"
                        .into(),
                ));
            }
            if let Some(why) = crate::install::refusal(&options) {
                return Err(Error::Usage(why));
            }
            out(&crate::install::emit::commented(
                &crate::install::notes(&options),
                &crate::install::manifests(&options),
            ))?;
            Ok(ExitStatus::Success)
        })(),
        Command::Destroy {
            source,
            auto_approve,
            lock_timeout,
            json,
        } => converge::destroy(&source, auto_approve, &lock_timeout, json),
        Command::Diff {
            source,
            json,
            markdown,
        } => converge::diff(&source, json, markdown),
        Command::Status {
            state_dir,
            json,
            env,
            stack,
        } => stack_state_dir(&state_dir, stack.as_deref())
            .and_then(|d| state::status_envs(&d, env.as_deref(), json)),
        Command::History {
            state_dir,
            limit,
            json,
            env,
            stack,
        } => stack_state_dir(&state_dir, stack.as_deref())
            .and_then(|d| state::history_envs(&d, env.as_deref(), limit, json)),
        Command::Source(SourceCommand::Show { repo, since, json }) => {
            source::show(&repo, since.as_deref(), json)
        }
        Command::State(StateCommand::Push {
            layer,
            source,
            lock_timeout,
            json,
        }) => state_push::push(&layer, &source, &lock_timeout, json),
        Command::Image(ImageCommand::Scan { source, json }) => image::scan(&source, json),
        Command::Image(ImageCommand::Update {
            repo,
            git_timeout,
            json,
        }) => image::update(&repo, &git_timeout, json),
        Command::Promote(args) => promote::promote(&args),
    };
    result.unwrap_or_else(failed)
}

/// Prints `err` on stderr; the exit status it calls for.
fn failed(err: Error) -> ExitStatus {
    let _ = std::io::stderr()
        .lock()
        .write_all(crate::report::error::text(&err).as_bytes());
    err.status()
}

/// Writes `text` to stdout.
fn out(text: &str) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
        .map_err(Error::Output)
}

/// Writes `value` to stdout as pretty JSON.
fn out_json(value: &impl serde::Serialize) -> Result<(), Error> {
    out(&crate::report::json(value))
}

fn engine_err(e: crate::engine::EngineError) -> Error {
    Error::Engine(Box::new(e))
}

/// Cancels `token` on SIGTERM or SIGINT, saying `message` on stderr. The handlers are in place
/// when this returns.
fn cancel_on_signal(token: tokio_util::sync::CancellationToken, message: &'static str) {
    let signalled = shutdown_signal();
    tokio::spawn(async move {
        signalled.await;
        eprintln!("{message}");
        token.cancel();
    });
}

/// The async runtime the commands run on.
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Runtime::new().map_err(|e| Error::Io {
        action: "start",
        path: "the async runtime".into(),
        source: e,
    })
}

/// Resolves on SIGTERM or SIGINT. The handlers are registered when this is called, not when the
/// future is first polled: a signal that arrives in between (right after a command said it is
/// ready, say) stops it gracefully instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

/// The environments that have state in `state_dir` (`envs/NAME`), sorted.
pub(super) fn envs_with_state(state_dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state_dir.join("envs"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The state dir of `stack`, one of the stacks of an agent's `--config` (`STATE/stacks/NAME`),
/// or `state_dir` itself without one.
///
/// Through `--state`, the stacks are those the state database holds, whatever this machine's
/// cache dir holds.
///
/// # Errors
/// A name that cannot name a stack, or one `state_dir` holds no state for (naming those it
/// holds); the state database failing to list its stacks.
fn stack_state_dir(
    state_dir: &std::path::Path,
    stack: Option<&str>,
) -> Result<std::path::PathBuf, Error> {
    let Some(name) = stack else {
        return Ok(state_dir.to_path_buf());
    };
    // Stack names are lowercase letters, digits and '-' (checked where they are declared):
    // anything else, a path among them, is refused rather than joined.
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(Error::Usage(format!(
            "invalid stack name \"{name}\": use lowercase letters, digits and '-'"
        )));
    }
    let stacks = state_dir.join("stacks");
    let dir = stacks.join(name);
    // Through --state, the database says which stacks there are: this machine's cache dir may
    // never have seen one, or keep a dir of one the database no longer holds.
    let (known, place) = match crate::store::route(&stacks) {
        Some((store, rel)) => {
            let known = store.subdirs(&rel).map_err(|e| Error::State(e.into()))?;
            let place = format!("the state database {} ({})", store.url(), store.namespace());
            (known, place)
        }
        None => {
            if dir.is_dir() {
                return Ok(dir);
            }
            let mut known: Vec<String> = std::fs::read_dir(&stacks)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter(|e| e.path().is_dir())
                        .filter_map(|e| e.file_name().to_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            known.sort();
            (known, state_dir.display().to_string())
        }
    };
    if known.iter().any(|k| k == name) {
        crate::util::fs::create_private_dir_all(&dir).map_err(|source| Error::Io {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        return Ok(dir);
    }
    Err(Error::Usage(if known.is_empty() {
        format!("{place} holds no state of stack \"{name}\" (no agent with stack blocks ran there)")
    } else {
        format!(
            "{place} holds no state of stack \"{name}\": the stacks there are {}",
            known.join(", ")
        )
    }))
}

/// The one state dir a command that changes something works in: `--env`'s; else, when the
/// state dir holds exactly one environment, that one's; else the state dir itself. Several
/// environments and no `--env` is refused, naming them.
pub(super) fn one_state_dir(
    state_dir: &std::path::Path,
    env: Option<&str>,
) -> Result<std::path::PathBuf, Error> {
    if let Some(env) = env {
        return Ok(crate::engine::env_state_dir(state_dir, env));
    }
    match envs_with_state(state_dir).as_slice() {
        [] => Ok(state_dir.to_path_buf()),
        [only] => Ok(crate::engine::env_state_dir(state_dir, only)),
        several => Err(Error::Usage(format!(
            "{} holds several environments ({}): name one with --env NAME",
            state_dir.display(),
            several.join(", ")
        ))),
    }
}
