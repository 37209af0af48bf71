//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::graph::GraphFormat;
use crate::logging::LogFormat;

/// strata converges a whole system from one Git repository: Terraform layers first, Kubernetes
/// layers second, in the order of a dependency graph.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None)]
pub struct Cli {
    /// More log output: -v info, -vv debug, -vvv trace (STRATA_LOG overrides).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a stack: every problem at once, each with file:line:col.
    Validate(StackArgs),
    /// Show the layers' waves and the edges between them.
    Graph {
        #[command(flatten)]
        stack: StackArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct StackArgs {
    /// The stack directory (holding strata.hcl).
    #[arg(long, default_value = ".")]
    pub stack: PathBuf,
}
