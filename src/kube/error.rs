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

impl KubeError {
    /// The error with every value `sensitive` knows masked: the API server quotes rejected
    /// values in its messages.
    pub fn redact(self, sensitive: &crate::redact::Redactor) -> KubeError {
        let r = |s: String| sensitive.redact(&s);
        let all = |v: Vec<String>| v.into_iter().map(r).collect();
        match self {
            KubeError::Load { problems } => KubeError::Load {
                problems: all(problems),
            },
            KubeError::Connect(m) => KubeError::Connect(r(m)),
            KubeError::DryRun { failures } => KubeError::DryRun {
                failures: all(failures),
            },
            KubeError::Apply { object, message } => KubeError::Apply {
                object,
                message: r(message),
            },
            KubeError::Read { what, message } => KubeError::Read {
                what,
                message: r(message),
            },
            KubeError::Prune { object, message } => KubeError::Prune {
                object,
                message: r(message),
            },
            KubeError::WaitTimeout { after, pending } => KubeError::WaitTimeout {
                after,
                pending: all(pending),
            },
            KubeError::Invalid(m) => KubeError::Invalid(r(m)),
        }
    }
}

/// An error and each distinct cause, `: `-joined: kube-rs says `ServiceError: client error
/// (Connect)` and keeps the reason (`invalid peer certificate: UnknownIssuer`, `Connection
/// refused`) in its sources, which a person needs to see.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    // The cluster's guard gave up: its verdict names the cluster, its server and the cause.
    if let Some(h) = super::breaker::halted(e) {
        return h.to_string();
    }
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
