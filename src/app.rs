//! Runs a parsed command line and turns its outcome into an exit status.

use std::io::Write;

use crate::cli::{Cli, Command, DevclusterArgs, RepoArgs, SourceCommand, StackArgs};
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
        Error::Invalid(diags) => {
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
        other => {
            let _ = writeln!(stderr, "error: {other}");
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                let _ = writeln!(stderr, "  caused by: {s}");
                source = s.source();
            }
        }
    }
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
pub fn source_of(args: &RepoArgs) -> (crate::source::SourceSpec, crate::source::SourceOptions) {
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
    let rt = tokio::runtime::Runtime::new().map_err(|e| Error::Io {
        action: "start",
        path: "the async runtime".into(),
        source: e,
    })?;
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
