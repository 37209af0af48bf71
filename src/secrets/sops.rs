//! SOPS-encrypted files, decrypted through the real `sops` binary with age keys.
//!
//! strata does not reimplement SOPS: it finds `sops` on `PATH` (or `STRATA_SOPS`), runs
//! `sops --decrypt` with the age key file in `SOPS_AGE_KEY_FILE`, and reads the plaintext from
//! its stdout into memory. The plaintext never touches disk here and is never logged.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::redact::Redacted;

/// The age identities the agent decrypts with (`--age-key-file`, or `SOPS_AGE_KEY_FILE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgeKeys {
    pub file: PathBuf,
}

impl AgeKeys {
    /// The key file named by `flag`, else by `SOPS_AGE_KEY_FILE`; `None` when neither is set.
    pub fn from_flag_or_env(flag: Option<&Path>) -> Option<AgeKeys> {
        flag.map(Path::to_path_buf)
            .or_else(|| std::env::var_os("SOPS_AGE_KEY_FILE").map(PathBuf::from))
            .filter(|p| !p.as_os_str().is_empty())
            .map(|file| AgeKeys { file })
    }
}

/// How an encrypted file is read and how its plaintext is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    fn as_sops(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SopsError {
    #[error("{file} is encrypted with SOPS, but no age key is configured: pass --age-key-file or set SOPS_AGE_KEY_FILE")]
    NoKeys { file: PathBuf },

    #[error("{file} is encrypted with SOPS, but no sops binary was found ({reason}); install sops 3.x or set STRATA_SOPS")]
    NoBinary { file: PathBuf, reason: String },

    #[error("failed to decrypt {file} with the age key in {keys}: {message}")]
    Decrypt {
        file: PathBuf,
        keys: PathBuf,
        /// sops's own first error line; it names keys and files, never plaintext.
        message: String,
    },
}

/// Whether a parsed YAML or JSON document is SOPS-encrypted: SOPS adds a top-level `sops` map
/// with its `mac` and `version`.
pub fn is_encrypted(doc: &serde_json::Value) -> bool {
    doc.get("sops")
        .and_then(|s| s.as_object())
        .is_some_and(|s| s.contains_key("mac") && s.contains_key("version"))
}

/// How long one decryption may take before sops is killed: age decryption takes milliseconds;
/// only a key source that hangs (an unreachable KMS) comes near it.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

fn binary() -> Result<PathBuf, String> {
    match std::env::var_os("STRATA_SOPS").filter(|v| !v.is_empty()) {
        Some(p) => Ok(PathBuf::from(p)),
        None => which::which("sops").map_err(|e| e.to_string()),
    }
}

/// Decrypts `file` (read as `format`) and returns its plaintext in the same format.
///
/// # Guarantees
/// The plaintext exists only in the returned value (sops writes it to a pipe, not a file) and is
/// never logged; errors carry sops's message, which names keys and files but no plaintext.
///
/// # Errors
/// No key configured, no `sops` binary, or sops failing (a file encrypted to another key, a
/// tampered file whose MAC does not match, a malformed file), each naming the file.
pub fn decrypt(
    file: &Path,
    format: Format,
    keys: Option<&AgeKeys>,
) -> Result<Redacted<Vec<u8>>, SopsError> {
    let keys = keys.ok_or_else(|| SopsError::NoKeys {
        file: file.to_path_buf(),
    })?;
    let bin = binary().map_err(|reason| SopsError::NoBinary {
        file: file.to_path_buf(),
        reason,
    })?;
    // Only the age key: an empty GnuPG home (no PGP key, no pinentry prompt) and no age key from
    // elsewhere. Key groups of other kinds (a cloud KMS) may still be tried by sops; the deadline
    // bounds that.
    let gnupg = tempfile::tempdir().map_err(|e| SopsError::NoBinary {
        file: file.to_path_buf(),
        reason: format!("no temporary directory for an empty GnuPG home: {e}"),
    })?;
    let child = std::process::Command::new(&bin)
        .args(["--decrypt", "--input-type", format.as_sops()])
        .args(["--output-type", format.as_sops()])
        .arg(file)
        .env("SOPS_AGE_KEY_FILE", &keys.file)
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_CMD")
        .env("GNUPGHOME", gnupg.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| SopsError::NoBinary {
            file: file.to_path_buf(),
            reason: format!("{}: {e}", bin.display()),
        })?;
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(DEADLINE).is_err() {
            // SAFETY: kill only sends a signal. The pid is this sops process until
            // wait_with_output reaps it, and the watchdog is stopped right after that; only a
            // reap and a reuse of the pid at the very instant of the deadline could misdirect it.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    });
    let out = child.wait_with_output();
    let _ = done_tx.send(());
    let _ = watchdog.join();
    let out = out.map_err(|e| SopsError::NoBinary {
        file: file.to_path_buf(),
        reason: format!("{}: {e}", bin.display()),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("sops exited without a message")
            .to_string();
        return Err(SopsError::Decrypt {
            file: file.to_path_buf(),
            keys: keys.file.clone(),
            message,
        });
    }
    Ok(Redacted::new(out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_with_a_sops_map_is_encrypted_and_a_plain_one_is_not() {
        let enc = serde_json::json!({"data": {"a": "ENC[AES256_GCM,data:x]"}, "sops": {"mac": "m", "version": "3.11.0"}});
        assert!(is_encrypted(&enc));
        assert!(!is_encrypted(&serde_json::json!({"data": {"sops": "x"}})));
        assert!(!is_encrypted(&serde_json::json!({"sops": "not a map"})));
    }

    #[test]
    fn no_key_is_a_clear_error_naming_the_file() {
        let e = decrypt(Path::new("k8s/secret.yaml"), Format::Yaml, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "k8s/secret.yaml is encrypted with SOPS, but no age key is configured: pass --age-key-file or set SOPS_AGE_KEY_FILE"
        );
    }
}
