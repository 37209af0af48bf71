//! The kubeconfig a devcluster hands out: its URL, its CA and its bearer token, in a file only its
//! owner can read.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A kubeconfig with one cluster, user and context, all named `devcluster`.
pub fn render(url: &str, ca_pem: &str, token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: devcluster\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\ncontexts:\n- name: devcluster\n  context:\n    cluster: devcluster\n    user: devcluster\ncurrent-context: devcluster\nusers:\n- name: devcluster\n  user:\n    token: {token}\n"
    )
}

/// Writes `bytes` to `path`, created with mode 0600 because it holds a bearer token.
///
/// # Guarantees
/// A new file is never readable by others, not even briefly; the bytes are synced to disk before
/// returning. An existing file is truncated and keeps its mode.
///
/// # Errors
/// When the file can't be opened, written or synced.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
