//! Runs a parsed command line and turns its outcome into an exit status.

use std::io::Write;

use crate::cli::{Cli, Command, StackArgs};
use crate::error::Error;
use crate::exit::ExitStatus;
use crate::graph::{self, GraphFormat};

/// Runs `cli`, printing results to stdout and errors to stderr.
pub fn run(cli: Cli) -> ExitStatus {
    crate::logging::init(cli.verbose, cli.log_format);
    let result = match cli.command {
        Command::Validate(args) => validate(&args),
        Command::Graph { stack, format } => graph(&stack, format),
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
