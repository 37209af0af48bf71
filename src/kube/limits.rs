//! The bounds on what a Kubernetes layer's manifests may be: one set, used by the loader, the
//! YAML decoder and kustomize, and documented in docs/security.md with the same numbers.

/// Bounds on a layer's manifests. The defaults accept every real install file we know of (the
/// largest, kube-prometheus' CRD bundle, is about 9 MB, and kubectl applies it) while refusing
/// YAML bombs; a library user can pass other bounds to [`super::manifest::load_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestLimits {
    /// Largest manifest file read, and largest `kustomize build` output.
    pub max_file_bytes: usize,
    /// Most YAML documents in one file.
    pub max_documents: usize,
    /// Deepest nesting of maps and lists in one document.
    pub max_depth: usize,
    /// Most aliases (`*name`) in one document.
    pub max_aliases: usize,
    /// Most values one document may decode to, aliases expanded: what stops an alias bomb.
    pub max_nodes: usize,
}

impl Default for ManifestLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_documents: 10_000,
            max_depth: 128,
            max_aliases: 1_000,
            max_nodes: 1_000_000,
        }
    }
}

/// The default largest manifest file: 16 MiB, the same bound as any file of a revision.
pub const DEFAULT_MAX_FILE_BYTES: usize = 16 << 20;
