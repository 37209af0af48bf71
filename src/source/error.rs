//! What can go wrong reading a source. Messages name the URL, ref, commit or path involved.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("failed to fetch {url}: {message}")]
    Fetch { url: String, message: String },

    #[error("failed to open the mirror of {url} at {}: {message}", path.display())]
    Mirror {
        url: String,
        path: PathBuf,
        message: String,
    },

    #[error("ref \"{reference}\" not found in {url}{known}")]
    UnknownRef {
        url: String,
        reference: String,
        /// `" (branches: main, dev; tags: v1)"`, or empty.
        known: String,
    },

    #[error("short commit id \"{reference}\" is ambiguous in {url}: it starts {candidates}; give more digits")]
    AmbiguousRef {
        url: String,
        reference: String,
        candidates: String,
    },

    #[error("{url} advertises no HEAD: pass --ref to choose a branch")]
    NoHead { url: String },

    #[error("failed to read commit {commit}: {message}")]
    Read { commit: String, message: String },

    #[error("commit {commit} refused: {reason}")]
    Verification { commit: String, reason: String },

    #[error("commit {commit} refused: {path}: {reason}")]
    Unsafe {
        commit: String,
        path: String,
        reason: String,
    },

    #[error("--path {path} is not a directory in commit {commit}")]
    NoSuchPath { commit: String, path: String },

    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> SourceError {
    let path = path.into();
    move |source| SourceError::Io {
        action,
        path,
        source,
    }
}
