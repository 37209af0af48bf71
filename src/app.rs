//! Runs a parsed command line and turns its outcome into an exit status.

use std::io::Write;

use crate::cli::{
    AgentArgs, Cli, Command, DevclusterArgs, RepoArgs, ReportFormat, SourceArgs, SourceCommand,
    StackArgs,
};
use crate::error::Error;
use crate::exit::ExitStatus;
use crate::graph::{self, GraphFormat};

/// Runs `cli`, printing results to stdout and errors to stderr.
pub fn run(cli: Cli) -> ExitStatus {
    crate::logging::init(cli.verbose, cli.log_format);
    let result = match cli.command {
        Command::Validate(args) => validate(&args),
        Command::Graph { stack, format } => graph(&stack, format),
        Command::Devcluster(args) => devcluster(&args),
        Command::Run(args) => agent::run(&args, false, true),
        Command::Bootstrap { agent: args, watch } => agent::run(&args, true, watch),
        Command::Approve {
            layer,
            state_dir,
            agent,
        } => agent::approve(&layer, &state_dir, agent.as_deref()),
        Command::Rollback { repo, to, json } => agent::rollback(&repo, &to, json),
        Command::Resume { state_dir } => agent::resume(&state_dir),
        Command::Report { state_dir, format } => agent::report(&state_dir, format),
        Command::Plan { source, all, json } => converge::plan(&source, all, json),
        Command::Apply {
            source,
            auto_approve,
            approve,
            all,
            lock_timeout,
            json,
        } => converge::apply(&source, auto_approve, approve, all, &lock_timeout, json),
        Command::Diff {
            source,
            json,
            markdown,
        } => converge::diff(&source, json, markdown),
        Command::Status { state_dir, json } => converge::status(&state_dir, json),
        Command::History {
            state_dir,
            limit,
            json,
        } => converge::history(&state_dir, limit, json),
        Command::Source(SourceCommand::Show { repo, since, json }) => {
            source_show(&repo, since.as_deref(), json)
        }
    };
    match result {
        Ok(status) => status,
        Err(err) => {
            report(&err);
            err.status()
        }
    }
}

fn report(err: &Error) {
    let mut stderr = std::io::stderr().lock();
    match err {
        Error::Invalid(diags) => report_invalid(&mut stderr, diags),
        Error::Engine(e) => match &**e {
            crate::engine::EngineError::Invalid(diags) => report_invalid(&mut stderr, diags),
            other => report_chain(&mut stderr, other),
        },
        other => report_chain(&mut stderr, other),
    }
}

/// `error: <message>`, then each distinct cause.
fn report_chain(stderr: &mut impl Write, err: &dyn std::error::Error) {
    let _ = writeln!(stderr, "error: {err}");
    let mut shown = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !shown.contains(&text) {
            let _ = writeln!(stderr, "  caused by: {text}");
        }
        shown = text;
        source = s.source();
    }
}

fn report_invalid(stderr: &mut impl Write, diags: &crate::stack::Diagnostics) {
    for d in diags.iter() {
        let _ = writeln!(stderr, "error: {d}");
    }
    let n = diags.len();
    let _ = writeln!(
        stderr,
        "validation failed: {n} error{}",
        if n == 1 { "" } else { "s" }
    );
}

fn out(text: &str) -> Result<(), Error> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
        .map_err(Error::Output)
}

fn validate(args: &StackArgs) -> Result<ExitStatus, Error> {
    let v = crate::validate(&args.stack).map_err(Error::Invalid)?;
    let waves = v.graph.waves().len();
    out(&format!(
        "stack \"{}\" is valid: {}\n",
        v.stack.name,
        graph::render::summary(v.stack.layers.len(), waves)
    ))?;
    Ok(ExitStatus::Success)
}

fn graph(args: &StackArgs, format: GraphFormat) -> Result<ExitStatus, Error> {
    let v = crate::validate(&args.stack).map_err(Error::Invalid)?;
    out(&graph::render(&v.stack, &v.graph, format))?;
    Ok(ExitStatus::Success)
}

/// The source spec and options of `--repo` flags.
pub(crate) fn source_of(
    args: &RepoArgs,
) -> (crate::source::SourceSpec, crate::source::SourceOptions) {
    let spec = crate::source::SourceSpec {
        url: args.repo.clone(),
        reference: args.reference.clone(),
        path: args.path.clone(),
    };
    let mut opts = crate::source::SourceOptions::new(&args.state_dir);
    opts.verify = args.verify.clone();
    (spec, opts)
}

#[derive(serde::Serialize)]
struct SourceShow {
    revision: crate::source::Revision,
    /// The commit the affected layers are computed from, when there is one.
    since: Option<String>,
    affected: Option<Vec<AffectedLayer>>,
}

#[derive(serde::Serialize)]
struct AffectedLayer {
    layer: crate::stack::LayerId,
    reasons: Vec<crate::source::Reason>,
}

fn source_show(args: &RepoArgs, since: Option<&str>, json: bool) -> Result<ExitStatus, Error> {
    let (spec, opts) = source_of(args);
    let rev = crate::source::resolve(&spec, &opts).map_err(Error::Source)?;
    let mut affected = None;
    let mut since_commit = None;
    if let Some(since) = since {
        let repo = crate::source::open_mirror(&opts.state_dir, &spec.url).map_err(Error::Source)?;
        let old = crate::source::rev_parse(&repo, since, &rev.ref_name).ok_or_else(|| {
            Error::Source(crate::source::SourceError::UnknownRef {
                url: spec.url.clone(),
                reference: since.to_string(),
                known: String::new(),
            })
        })?;
        let new = gix::ObjectId::from_hex(rev.commit.as_bytes()).expect("resolved commit id");
        let v = crate::validate(&rev.stack_dir).map_err(Error::Invalid)?;
        let a = crate::source::affected::affected(
            &repo,
            old,
            new,
            &rev.path,
            &v.stack,
            &v.graph,
            &rev.stack_dir,
        );
        let ordered = v
            .graph
            .layers()
            .iter()
            .filter_map(|id| {
                a.layers.get(id).map(|r| AffectedLayer {
                    layer: id.clone(),
                    reasons: r.clone(),
                })
            })
            .collect();
        affected = Some(ordered);
        since_commit = Some(old.to_string());
    }
    let show = SourceShow {
        revision: rev,
        since: since_commit,
        affected,
    };
    if json {
        out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&show).expect("json")
        ))?;
    } else {
        out(&source_text(&show))?;
    }
    Ok(ExitStatus::Success)
}

fn source_text(s: &SourceShow) -> String {
    use std::fmt::Write as _;
    let r = &s.revision;
    let mut t = String::new();
    let _ = writeln!(t, "source     {}", r.url);
    let _ = writeln!(t, "ref        {} → {}", r.reference, r.ref_name);
    let _ = writeln!(t, "commit     {}", r.commit);
    let _ = writeln!(t, "author     {}", r.author);
    let _ = writeln!(t, "date       {}", r.date);
    let _ = writeln!(t, "message    {}", r.summary);
    let _ = writeln!(t, "signature  {}", r.signature);
    let _ = writeln!(t, "stack      {}", r.stack_dir.display());
    if let Some(stale) = &r.stale {
        let _ = writeln!(
            t,
            "stale      the last fetch failed ({}); this revision was fetched {} ago",
            stale.error,
            crate::stack::duration::format_duration(std::time::Duration::from_secs(stale.age_secs))
        );
    }
    if r.history_rewritten {
        let _ = writeln!(
            t,
            "history    rewritten: the ref no longer descends from the commit it had"
        );
    }
    match (&s.since, &s.affected) {
        (Some(since), Some(layers)) if layers.is_empty() => {
            let _ = writeln!(t, "affected   no layer since {}", &since[..12]);
        }
        (Some(since), Some(layers)) => {
            let _ = writeln!(t, "affected   since {}:", &since[..12]);
            let width = layers
                .iter()
                .map(|l| l.layer.to_string().len())
                .max()
                .unwrap_or(0);
            for l in layers {
                let reasons: Vec<String> = l.reasons.iter().map(ToString::to_string).collect();
                let _ = writeln!(
                    t,
                    "  {:width$}  {}",
                    l.layer.to_string(),
                    reasons.join("; ")
                );
            }
        }
        _ => {}
    }
    t
}

fn devcluster(args: &DevclusterArgs) -> Result<ExitStatus, Error> {
    let simulate_ready = match args.simulate_ready.as_str() {
        "never" => None,
        d => Some(crate::stack::duration::parse_duration(d).map_err(Error::Usage)?),
    };
    let opts = crate::devcluster::DevClusterOptions {
        listen: args.listen,
        data: args.data.clone(),
        simulate_ready,
        token: None,
    };
    let rt = runtime()?;
    rt.block_on(async {
        let cluster = crate::devcluster::DevCluster::start(opts)
            .await
            .map_err(|e| Error::Io {
                action: "listen on",
                path: args.listen.to_string().into(),
                source: e,
            })?;
        cluster
            .write_kubeconfig(&args.kubeconfig_out)
            .map_err(|e| Error::Io {
                action: "write",
                path: args.kubeconfig_out.clone(),
                source: e,
            })?;
        out(&format!(
            "devcluster serving at {}\nkubeconfig: {}\n",
            cluster.url(),
            args.kubeconfig_out.display()
        ))?;
        wait_for_shutdown().await;
        cluster.stop().await;
        Ok(ExitStatus::Success)
    })
}

/// Cancels `token` on SIGTERM or SIGINT, saying `message` on stderr.
fn cancel_on_signal(token: tokio_util::sync::CancellationToken, message: &'static str) {
    tokio::spawn(async move {
        wait_for_shutdown().await;
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

/// Resolves on SIGTERM or SIGINT.
async fn wait_for_shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// plan, apply, diff, status, history.
mod converge {
    use std::io::IsTerminal;

    use super::{out, runtime, Error, ExitStatus, SourceArgs};
    use crate::engine::record::LayerStatus;
    use crate::engine::{Engine, EngineOptions, Mode, Source};

    pub fn source_of(a: &SourceArgs) -> Source {
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

    fn options(a: &SourceArgs) -> EngineOptions {
        let mut o = EngineOptions::new(&a.state_dir);
        o.progress = true;
        // Ctrl-C and SIGTERM interrupt terraform cleanly instead of killing strata outright.
        super::cancel_on_signal(
            o.cancel.clone(),
            "interrupting: waiting for running steps to stop",
        );
        o
    }

    fn engine_err(e: crate::engine::EngineError) -> Error {
        Error::Engine(Box::new(e))
    }

    pub fn plan(a: &SourceArgs, all: bool, json: bool) -> Result<ExitStatus, Error> {
        runtime()?.block_on(async {
            let mut opts = options(a);
            opts.all = all;
            let engine = Engine::open(source_of(a), opts).await.map_err(engine_err)?;
            let report = engine.run(Mode::Plan).await.map_err(engine_err)?;
            if json {
                out(&crate::report::json(&report))?;
            } else {
                out(&crate::report::run::text(&report))?;
            }
            Ok(
                if report.any(LayerStatus::Failed) || report.any(LayerStatus::Interrupted) {
                    ExitStatus::Failure
                } else if report
                    .layers
                    .iter()
                    .any(|l| matches!(l.status, LayerStatus::Changes | LayerStatus::Waiting))
                {
                    ExitStatus::Changes
                } else {
                    ExitStatus::Success
                },
            )
        })
    }

    pub fn apply(
        a: &SourceArgs,
        auto_approve: bool,
        approve: Vec<String>,
        all: bool,
        lock_timeout: &str,
        json: bool,
    ) -> Result<ExitStatus, Error> {
        let lock_timeout =
            crate::stack::duration::parse_duration(lock_timeout).map_err(Error::Usage)?;
        runtime()?.block_on(async {
            let mut opts = options(a);
            opts.all = all;
            opts.approve = approve;
            opts.lock_timeout = lock_timeout;
            let engine = Engine::open(source_of(a), opts).await.map_err(engine_err)?;
            if !auto_approve {
                if !std::io::stdin().is_terminal() {
                    return Err(Error::Usage(
                        "no terminal to confirm the apply: pass --auto-approve".into(),
                    ));
                }
                let plan = engine.run(Mode::Plan).await.map_err(engine_err)?;
                out(&crate::report::run::text(&plan))?;
                if !plan
                    .layers
                    .iter()
                    .any(|l| matches!(l.status, LayerStatus::Changes | LayerStatus::Waiting))
                {
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
            if json {
                out(&crate::report::json(&report))?;
            } else {
                out(&crate::report::run::text(&report))?;
            }
            Ok(
                if report.any(LayerStatus::Failed)
                    || report.any(LayerStatus::Interrupted)
                    || report.any(LayerStatus::Skipped)
                {
                    ExitStatus::Failure
                } else if report.any(LayerStatus::AwaitingApproval)
                    || report.any(LayerStatus::Waiting)
                {
                    ExitStatus::Changes
                } else {
                    ExitStatus::Success
                },
            )
        })
    }

    pub fn diff(a: &SourceArgs, json: bool, markdown: bool) -> Result<ExitStatus, Error> {
        runtime()?.block_on(async {
            let source = source_of(a);
            let mut engine = Engine::open(source.clone(), options(a))
                .await
                .map_err(engine_err)?;
            // Drift is measured against the last converged revision; a newer commit is pending.
            let mut pending = None;
            if let (Source::Repo { spec, opts }, Some(converged)) =
                (&source, engine.state().converged_revision)
            {
                if converged != engine.revision {
                    pending = Some(engine.revision.clone());
                    let mut pinned = spec.clone();
                    pinned.reference = Some(converged);
                    let source = Source::Repo {
                        spec: pinned,
                        opts: opts.clone(),
                    };
                    engine = Engine::open(source, options(a)).await.map_err(engine_err)?;
                }
            }
            let report = engine.diff(pending).await.map_err(engine_err)?;
            if json {
                out(&crate::report::json(&report))?;
            } else if markdown {
                out(&crate::report::drift::markdown(&report))?;
            } else {
                out(&crate::report::drift::text(
                    &report,
                    std::io::stdout().is_terminal(),
                ))?;
            }
            Ok(if report.errors() {
                ExitStatus::Failure
            } else if report.drifted() {
                ExitStatus::Changes
            } else {
                ExitStatus::Success
            })
        })
    }

    pub fn status(state_dir: &std::path::Path, json: bool) -> Result<ExitStatus, Error> {
        let state = crate::engine::state::StackState::load(state_dir);
        if json {
            out(&crate::report::json(&state))?;
            return Ok(ExitStatus::Success);
        }
        if state.layers.is_empty() {
            out(&crate::report::status::text(&state, state_dir, ""))?;
            return Ok(ExitStatus::Success);
        }
        let terraform = tokio::runtime::Runtime::new()
            .ok()
            .and_then(|rt| {
                rt.block_on(crate::terraform::TerraformBinary::find(None))
                    .ok()
            })
            .map(|b| format!("{:?} {} ({})", b.flavour, b.version, b.path.display()))
            .unwrap_or_else(|| "not found on PATH".into());
        out(&crate::report::status::text(&state, state_dir, &terraform))?;
        Ok(ExitStatus::Success)
    }

    pub fn history(
        state_dir: &std::path::Path,
        limit: usize,
        json: bool,
    ) -> Result<ExitStatus, Error> {
        let records = crate::engine::record::history(state_dir, limit);
        if json {
            out(&crate::report::json(&records))?;
            return Ok(ExitStatus::Success);
        }
        out(&crate::report::history::text(&records, state_dir))?;
        Ok(ExitStatus::Success)
    }
}

/// run, bootstrap, approve, rollback, resume, report.
mod agent {
    use std::io::IsTerminal;

    use super::{out, source_of, AgentArgs, Error, ExitStatus, RepoArgs, ReportFormat};
    use crate::engine::record::LayerStatus;
    use crate::engine::{Engine, EngineOptions, Mode, Source};
    use crate::reconcile::{Agent, AgentOptions, Ended};

    fn duration(s: &Option<String>) -> Result<Option<std::time::Duration>, Error> {
        s.as_deref()
            .map(crate::stack::duration::parse_duration)
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
            crate::stack::duration::parse_duration(&a.shutdown_grace).map_err(Error::Usage)?;
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
        let rt = super::runtime()?;
        rt.block_on(async {
            let shutdown = tokio_util::sync::CancellationToken::new();
            super::cancel_on_signal(shutdown.clone(), "strata: stopping");
            let agent = Agent::new(opts);
            match agent.run(shutdown).await {
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
        crate::reconcile::approve(state_dir, layer).map_err(Error::Usage)?;
        if let Some(url) = agent {
            let rt = super::runtime()?;
            let url = format!(
                "{}/api/v1/approve/{}",
                url.trim_end_matches('/'),
                layer.rsplit('.').next().unwrap_or(layer)
            );
            let sent = rt.block_on(async {
                reqwest::Client::new()
                    .post(&url)
                    .send()
                    .await
                    .map(|r| r.status())
            });
            match sent {
                Ok(s) if s.is_success() => {
                    out(&format!("approved {layer}; the agent applies it now\n"))?
                }
                Ok(s) => return Err(Error::Usage(format!("the agent at {url} answered {s}"))),
                Err(e) => {
                    return Err(Error::Usage(format!(
                        "failed to reach the agent at {url}: {e}"
                    )))
                }
            }
        } else {
            out(&format!(
                "approved {layer}; the agent applies it on its next sync\n"
            ))?;
        }
        Ok(ExitStatus::Success)
    }

    pub fn rollback(r: &RepoArgs, to: &str, json: bool) -> Result<ExitStatus, Error> {
        let (mut spec, sopts) = source_of(r);
        spec.reference = Some(to.to_string());
        let rt = super::runtime()?;
        rt.block_on(async {
            let mut opts = EngineOptions::new(&r.state_dir);
            opts.progress = true;
            let engine = Engine::open(Source::Repo { spec, opts: sopts }, opts).await.map_err(|e| Error::Engine(Box::new(e)))?;
            crate::reconcile::pin(&r.state_dir, &engine.revision).map_err(|e| Error::Io { action: "write", path: r.state_dir.join("pin"), source: e })?;
            let report = engine.run(Mode::Apply).await.map_err(|e| Error::Engine(Box::new(e)))?;
            if json {
                out(&crate::report::json(&report))?;
            } else {
                out(&crate::report::run::text(&report))?;
                out(&format!("pinned at {}: new commits are fetched and reported, not applied, until `strata resume`\n", engine.revision))?;
            }
            Ok(if report.any(LayerStatus::Failed) || report.any(LayerStatus::Interrupted) { ExitStatus::Failure } else { ExitStatus::Success })
        })
    }

    pub fn resume(state_dir: &std::path::Path) -> Result<ExitStatus, Error> {
        let was = crate::reconcile::pinned(state_dir);
        crate::reconcile::unpin(state_dir).map_err(|e| Error::Io {
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
        let dir = crate::report::store::dir(state_dir);
        let file = match format {
            ReportFormat::Text => "latest.txt",
            ReportFormat::Json => "latest.json",
            ReportFormat::Markdown => "latest.md",
        };
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Io {
            action: "read",
            path: path.clone(),
            source: e,
        })?;
        out(&text)?;
        Ok(ExitStatus::Success)
    }
}
