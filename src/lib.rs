//! strata converges a whole system from one Git repository: Terraform layers first, Kubernetes
//! layers second, in the order of a dependency graph.
//!
//! The library is what the `strata` binary is made of. The entry points for embedding:
//! - [`validate`]: read a stack directory into a [`stack::Stack`] and its [`graph::LayerGraph`],
//!   with every problem reported at once.
//! - [`graph::render`]: the graph as text, DOT, Mermaid or JSON.

pub mod agent;
pub mod cli;
pub mod commands;
pub mod coordination;
pub mod engine;
pub mod error;
pub mod exit;
pub mod graph;
pub mod hash;
pub mod images;
pub mod install;
pub mod kube;
pub mod logging;
pub mod notify;
pub mod promote;
pub mod redact;
pub mod report;
pub mod secrets;
pub mod server;
pub mod source;
pub mod stack;
pub mod state;
pub mod store;
pub mod terraform;
pub mod util;
pub mod value;

use std::path::Path;

pub use error::Error;
pub use exit::ExitStatus;

/// The current time as RFC 3339 (`2026-11-21T23:00:00Z`), as records and locks write it.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A stack that passed validation, with its graph.
#[derive(Debug, Clone)]
pub struct Validated {
    pub stack: stack::Stack,
    pub graph: graph::LayerGraph,
    /// The image markers of the stack's files, as they were read for their diagnostics: what
    /// a run that converges records as running is read from the same files, not a second scan.
    pub markers: images::markers::Found,
}

/// Reads the stack in `dir` and builds its graph.
///
/// # Errors
/// Every problem at once, sorted by place: those of [`stack::Stack::load`], every dependency
/// cycle, and the image markers' ([`images::markers::diagnostics`]).
pub fn validate(dir: impl AsRef<Path>) -> Result<Validated, stack::Diagnostics> {
    let dir = dir.as_ref();
    validate_shown(dir, &stack::Shown::file(dir.join(stack::STACK_FILE)))
}

/// Like [`validate`], naming every place as `shown` says (a repository path and a commit for a
/// stack read from Git).
pub fn validate_shown(dir: &Path, shown: &stack::Shown) -> Result<Validated, stack::Diagnostics> {
    let (stack, mut diags) = stack::Stack::load_shown(dir, shown)?;
    let markers = images::markers::scan(dir);
    diags.extend(images::markers::diagnostics(&stack, &markers, shown));
    let graph = match graph::LayerGraph::build(&stack) {
        Ok(g) => Some(g),
        Err(cycles) => {
            diags.extend(cycles);
            None
        }
    };
    diags.sort();
    match graph {
        Some(graph) if diags.is_empty() => Ok(Validated {
            stack,
            graph,
            markers,
        }),
        _ => Err(diags),
    }
}
