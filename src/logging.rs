//! Logs go to stderr through tracing; `-v` raises the level, `STRATA_LOG` overrides it.

use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// How much a command logs before any `-v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// One-shot commands print their result; the log says only what went wrong.
    Warnings,
    /// Long-running commands (the agent) log their lifecycle: what they fetch, apply and alert.
    Lifecycle,
}

/// Installs the global subscriber. `verbosity` raises the level from `baseline` (warnings or
/// info) one step each: debug, then trace. Colours only when stderr is a terminal and `NO_COLOR`
/// is unset, so log files and journals get plain text.
/// Calling it twice is harmless (the second call changes nothing).
pub fn init(verbosity: u8, format: LogFormat, baseline: Baseline) {
    let start = match baseline {
        Baseline::Warnings => 0,
        Baseline::Lifecycle => 1,
    };
    let level = match verbosity.saturating_add(start) {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let filter = EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("strata={level},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(verbosity >= 2);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
