//! What can go wrong in a Kubernetes layer. Every message names the object (`Kind/ns/name`) or
//! the file and line.

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The desired set could not be read; nothing was sent to the cluster.
    #[error("failed to load manifests:\n  {}", problems.join("\n  "))]
    Load { problems: Vec<String> },

    #[error("failed to connect to the cluster: {0}")]
    Connect(String),

    /// A server-side dry run refused objects; nothing was applied.
    #[error("dry-run failed, nothing applied:\n  {}", failures.join("\n  "))]
    DryRun { failures: Vec<String> },

    #[error("failed to apply {object}: {message}")]
    Apply { object: String, message: String },

    #[error("failed to read {what}: {message}")]
    Read { what: String, message: String },

    #[error("failed to prune {object}: {message}")]
    Prune { object: String, message: String },

    #[error("timed out after {after} waiting for:\n  {}", pending.join("\n  "))]
    WaitTimeout { after: String, pending: Vec<String> },

    #[error("{0}")]
    Invalid(String),
}
