//! strata's top-level error: what failed, and where.

use std::path::PathBuf;

use crate::exit::ExitStatus;
use crate::stack::Diagnostics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stack file has problems; each is printed on its own line.
    #[error("{0}")]
    Invalid(Diagnostics),

    #[error("failed to {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Source(#[from] crate::source::SourceError),

    #[error(transparent)]
    Engine(Box<crate::engine::EngineError>),

    #[error(transparent)]
    State(#[from] crate::state::StateError),

    #[error("{0}")]
    Usage(String),

    #[error(transparent)]
    Writeback(#[from] crate::images::writeback::WritebackError),

    #[error(transparent)]
    Promote(Box<crate::promote::PromoteError>),

    #[error("failed to write output: {0}")]
    Output(#[source] std::io::Error),
}

impl From<crate::promote::PromoteError> for Error {
    fn from(e: crate::promote::PromoteError) -> Error {
        Error::Promote(Box::new(e))
    }
}

impl Error {
    /// The exit status this error ends a command with.
    pub fn status(&self) -> ExitStatus {
        ExitStatus::Failure
    }
}
