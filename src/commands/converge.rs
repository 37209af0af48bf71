//! `strata plan`, `strata apply` and `strata diff`: one run of the engine over a stack directory
//! or a commit of a Git repository.

use std::io::IsTerminal;

use super::{engine_err, out, out_json, runtime};
use crate::cli::SourceArgs;
use crate::engine::record::{LayerStatus, RunReport, Verdict};
use crate::engine::{Engine, EngineOptions, Mode, Source};
use crate::error::Error;
use crate::exit::ExitStatus;

/// Where `--stack` / `--repo` flags say the stack is.
pub(super) fn source_of(a: &SourceArgs) -> Source {
    match &a.repo {
        Some(url) => {
            let spec = crate::source::SourceSpec {
                url: url.clone(),
                reference: a.reference.clone(),
                path: a.path.clone(),
            };
            let mut opts = crate::source::SourceOptions::new(&a.state_dir);
            opts.verify = a.verify.clone();
            Source::Repo { spec, opts }
        }
        None => Source::Dir(a.stack.clone().unwrap_or_else(|| ".".into())),
    }
}

pub(super) fn options(a: &SourceArgs) -> EngineOptions {
    let mut o = EngineOptions::new(&a.state_dir);
    o.env = a.env.clone();
    o.progress = true;
    o.age_keys = crate::secrets::AgeKeys::from_flag_or_env(a.age_key_file.as_deref());
    // Ctrl-C and SIGTERM interrupt terraform cleanly instead of killing strata outright.
    super::cancel_on_signal(
        o.cancel.clone(),
        "interrupting: waiting for running steps to stop",
    );
    o
}

/// Whether a plan leaves anything to apply (changes, or layers waiting on upstream outputs).
fn has_changes(report: &RunReport) -> bool {
    report
        .layers
        .iter()
        .any(|l| matches!(l.status, LayerStatus::Changes | LayerStatus::Waiting))
}

fn print_run(report: &RunReport, json: bool) -> Result<(), Error> {
    if json {
        out_json(report)
    } else {
        out(&crate::report::run::text(report))
    }
}

/// The environments a read-only command shows when none is named and the stack declares
/// several (`Some`), from the error opening it gave.
fn every_env(e: &Error) -> Option<Vec<String>> {
    match e {
        Error::Engine(e) => match e.as_ref() {
            crate::engine::EngineError::Env(crate::stack::EnvError::Ambiguous(names)) => {
                Some(names.clone())
            }
            _ => None,
        },
        _ => None,
    }
}

/// Runs `one` for each environment in turn, each under a heading; the most severe exit status
/// wins (interrupted, then failure, then changes).
fn each_env(
    a: &SourceArgs,
    names: Vec<String>,
    one: impl Fn(&SourceArgs) -> Result<ExitStatus, Error>,
) -> Result<ExitStatus, Error> {
    let rank = |s: ExitStatus| match s {
        ExitStatus::Success => 0,
        ExitStatus::Changes => 1,
        ExitStatus::Failure => 2,
        ExitStatus::Interrupted => 3,
    };
    let mut worst = ExitStatus::Success;
    for name in names {
        out(&format!("\n=== environment {name} ===\n"))?;
        let mut args = a.clone();
        args.env = Some(name);
        let status = one(&args)?;
        if rank(status) > rank(worst) {
            worst = status;
        }
        if status == ExitStatus::Interrupted {
            break;
        }
    }
    Ok(worst)
}

/// `strata plan`; with several environments and no `--env`, every one of them (text only: JSON
/// describes one environment).
pub fn plan(
    a: &SourceArgs,
    all: bool,
    force_conflicts: bool,
    json: bool,
) -> Result<ExitStatus, Error> {
    match plan_one(a, all, force_conflicts, json) {
        Err(e) if !json => match every_env(&e) {
            Some(names) => each_env(a, names, |a| plan_one(a, all, force_conflicts, json)),
            None => Err(e),
        },
        other => other,
    }
}

fn plan_one(
    a: &SourceArgs,
    all: bool,
    force_conflicts: bool,
    json: bool,
) -> Result<ExitStatus, Error> {
    runtime()?.block_on(async {
        let mut opts = options(a);
        opts.all = all;
        opts.force_conflicts = force_conflicts;
        let cancel = opts.cancel.clone();
        let engine = Engine::open(source_of(a), opts).await.map_err(engine_err)?;
        let report = engine.run(Mode::Plan).await.map_err(engine_err)?;
        print_run(&report, json)?;
        Ok(if cancel.is_cancelled() {
            ExitStatus::Interrupted
        } else if report.any(LayerStatus::Failed) || report.any(LayerStatus::Interrupted) {
            ExitStatus::Failure
        } else if has_changes(&report) {
            ExitStatus::Changes
        } else {
            ExitStatus::Success
        })
    })
}

/// `strata apply`'s switches.
pub struct ApplyFlags {
    pub auto_approve: bool,
    pub approve: Vec<String>,
    pub reinit: Vec<String>,
    pub all: bool,
    pub adopt: bool,
    /// Force every field-manager conflict of Kubernetes layers, this run only.
    pub force_conflicts: bool,
    pub json: bool,
}

pub fn apply(a: &SourceArgs, flags: ApplyFlags, lock_timeout: &str) -> Result<ExitStatus, Error> {
    let lock_timeout = crate::util::duration::parse_duration(lock_timeout).map_err(Error::Usage)?;
    let ApplyFlags {
        auto_approve,
        approve,
        reinit,
        all,
        adopt,
        force_conflicts,
        json,
    } = flags;
    runtime()?.block_on(async {
        let mut opts = options(a);
        opts.all = all;
        opts.approve = approve;
        opts.reinit = reinit;
        opts.lock_timeout = lock_timeout;
        opts.adopt = adopt;
        opts.force_conflicts = force_conflicts;
        let cancel = opts.cancel.clone();
        let engine = Engine::open(source_of(a), opts).await.map_err(engine_err)?;
        if !auto_approve {
            if !std::io::stdin().is_terminal() {
                return Err(Error::Usage(
                    "no terminal to confirm the apply: pass --auto-approve".into(),
                ));
            }
            let plan = engine.run(Mode::Plan).await.map_err(engine_err)?;
            out(&crate::report::run::text(&plan))?;
            if !has_changes(&plan) {
                out("Nothing to apply.\n")?;
                return Ok(ExitStatus::Success);
            }
            eprint!("Apply these changes? Only 'yes' is accepted: ");
            let mut answer = String::new();
            let _ = std::io::stdin().read_line(&mut answer);
            if answer.trim() != "yes" {
                out("Apply cancelled.\n")?;
                return Ok(ExitStatus::Failure);
            }
        }
        let report = engine.run(Mode::Apply).await.map_err(engine_err)?;
        print_run(&report, json)?;
        // Stopped by SIGTERM or SIGINT after the graceful stop: 130, as documented.
        if cancel.is_cancelled() {
            return Ok(ExitStatus::Interrupted);
        }
        Ok(
            if report.any(LayerStatus::Failed)
                || report.any(LayerStatus::Interrupted)
                || report.any(LayerStatus::Skipped)
                || report
                    .orphaned
                    .iter()
                    .any(|o| o.status == crate::engine::orphans::OrphanStatus::Failed)
            {
                ExitStatus::Failure
            } else if report.any(LayerStatus::AwaitingApproval) || report.any(LayerStatus::Waiting)
            {
                ExitStatus::Changes
            } else {
                ExitStatus::Success
            },
        )
    })
}

/// `strata destroy`: the plan of the teardown, a confirmation (or `--auto-approve`), the
/// teardown. Exit 0 when every layer is destroyed (or was never applied), 1 when one was not,
/// 130 when stopped by a signal.
pub fn destroy(
    a: &SourceArgs,
    auto_approve: bool,
    lock_timeout: &str,
    json: bool,
) -> Result<ExitStatus, Error> {
    let lock_timeout = crate::util::duration::parse_duration(lock_timeout).map_err(Error::Usage)?;
    runtime()?.block_on(async {
        let mut opts = options(a);
        opts.lock_timeout = lock_timeout;
        let cancel = opts.cancel.clone();
        let engine = Engine::open(source_of(a), opts).await.map_err(engine_err)?;
        let plan = engine.destroy(Mode::Plan).await.map_err(engine_err)?;
        if plan
            .layers
            .iter()
            .all(|l| l.status == LayerStatus::NotAffected)
        {
            if json {
                out_json(&plan)?;
            } else {
                out(
                    "Nothing to destroy: no layer of this stack was applied from this state dir.\n",
                )?;
            }
            return Ok(ExitStatus::Success);
        }
        if !json {
            out(&crate::report::run::text(&plan))?;
        }
        if !auto_approve {
            if !std::io::stdin().is_terminal() {
                return Err(Error::Usage(
                    "no terminal to confirm the destroy: pass --auto-approve".into(),
                ));
            }
            eprint!("Destroy all of this? Only 'yes' is accepted: ");
            let mut answer = String::new();
            let _ = std::io::stdin().read_line(&mut answer);
            if answer.trim() != "yes" {
                out("Destroy cancelled.\n")?;
                return Ok(ExitStatus::Failure);
            }
        }
        let report = engine.destroy(Mode::Apply).await.map_err(engine_err)?;
        print_run(&report, json)?;
        if cancel.is_cancelled() {
            return Ok(ExitStatus::Interrupted);
        }
        Ok(
            if report
                .layers
                .iter()
                .all(|l| matches!(l.status, LayerStatus::Destroyed | LayerStatus::NotAffected))
            {
                ExitStatus::Success
            } else {
                ExitStatus::Failure
            },
        )
    })
}

/// `strata diff`; with several environments and no `--env`, every one of them (as text).
pub fn diff(a: &SourceArgs, json: bool, markdown: bool) -> Result<ExitStatus, Error> {
    match diff_one(a, json, markdown) {
        Err(e) if !json && !markdown => match every_env(&e) {
            Some(names) => each_env(a, names, |a| diff_one(a, json, markdown)),
            None => Err(e),
        },
        other => other,
    }
}

fn diff_one(a: &SourceArgs, json: bool, markdown: bool) -> Result<ExitStatus, Error> {
    runtime()?.block_on(async {
        let opts = options(a);
        let cancel = opts.cancel.clone();
        // Each layer against the revision last applied to it; a newer one is pending.
        let report = crate::engine::diff_applied(source_of(a), opts)
            .await
            .map_err(engine_err)?;
        // `strata report` shows the latest check, whoever ran it; failing to keep it is not
        // worth failing the diff that was just printed. An environment's report is its own.
        let report_dir = match &report.env {
            Some(env) => crate::engine::env_state_dir(&a.state_dir, env),
            None => a.state_dir.clone(),
        };
        if let Err(e) =
            crate::state::reports::write(&report_dir, &report, crate::state::reports::KEEP)
        {
            tracing::warn!("failed to keep the drift report: {e}");
        }
        if json {
            out_json(&report)?;
        } else if markdown {
            out(&crate::report::drift::markdown(&report))?;
        } else {
            out(&crate::report::drift::text(
                &report,
                std::io::stdout().is_terminal(),
            ))?;
        }
        if cancel.is_cancelled() {
            return Ok(ExitStatus::Interrupted);
        }
        Ok(match report.verdict() {
            Verdict::Unknown => ExitStatus::Failure,
            Verdict::Diverged => ExitStatus::Changes,
            Verdict::InSync => ExitStatus::Success,
        })
    })
}
