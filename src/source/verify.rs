//! Commit signature verification, configured on the agent (never in the repo): SSH signatures
//! with `ssh-keygen -Y verify`, OpenPGP signatures with `gpg --verify`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

/// How commits must be signed. Parsed from `--verify ssh:PATH` or `--verify gpg:PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "lowercase")]
pub enum VerifyPolicy {
    /// An allowed-signers file, as for `gpg.ssh.allowedSignersFile`; namespace `git`.
    Ssh(PathBuf),
    /// A keyring file (`gpg --export > keyring.gpg`).
    Gpg(PathBuf),
}

impl std::str::FromStr for VerifyPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("ssh", p)) if !p.is_empty() => Ok(VerifyPolicy::Ssh(p.into())),
            Some(("gpg", p)) if !p.is_empty() => Ok(VerifyPolicy::Gpg(p.into())),
            _ => Err(format!(
                "expected ssh:PATH_TO_ALLOWED_SIGNERS or gpg:PATH_TO_KEYRING, found \"{s}\""
            )),
        }
    }
}

/// What is known of a commit's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum SignatureStatus {
    Unsigned,
    /// Signed, not checked (no policy).
    Unverified {
        format: String,
    },
    /// Checked and good.
    Good {
        format: String,
        signer: String,
    },
    /// Checked and refused.
    Bad {
        format: String,
        signer: Option<String>,
        reason: String,
    },
}

impl SignatureStatus {
    pub fn is_good(&self) -> bool {
        matches!(self, SignatureStatus::Good { .. })
    }

    /// Why this status fails `policy`, or `None` when it passes.
    pub fn refusal(&self) -> Option<String> {
        match self {
            SignatureStatus::Good { .. } => None,
            SignatureStatus::Unsigned => Some("the commit is not signed".into()),
            SignatureStatus::Unverified { .. } => Some("the signature was not checked".into()),
            SignatureStatus::Bad { signer, reason, .. } => Some(match signer {
                Some(s) => format!("bad signature by {s}: {reason}"),
                None => format!("bad signature: {reason}"),
            }),
        }
    }
}

impl std::fmt::Display for SignatureStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureStatus::Unsigned => f.write_str("unsigned"),
            SignatureStatus::Unverified { format } => write!(f, "signed ({format}), not verified"),
            SignatureStatus::Good { format, signer } => {
                write!(f, "good {format} signature by {signer}")
            }
            SignatureStatus::Bad { .. } => f.write_str(&self.refusal().unwrap_or_default()),
        }
    }
}

/// Checks `commit`'s signature against `policy` (or only reports whether it is signed).
pub fn check(
    commit: &gix::Commit<'_>,
    policy: Option<&VerifyPolicy>,
) -> Result<SignatureStatus, String> {
    let Some((signature, signed)) = commit.signature().map_err(|e| e.to_string())? else {
        return Ok(SignatureStatus::Unsigned);
    };
    let signature = signature.to_vec();
    let data = signed.to_bstring().to_vec();
    let format = if signature.starts_with(b"-----BEGIN SSH SIGNATURE-----") {
        "ssh"
    } else if signature.starts_with(b"-----BEGIN PGP SIGNATURE-----") {
        "gpg"
    } else {
        "unknown"
    };
    let bad = |reason: String, signer: Option<String>| SignatureStatus::Bad {
        format: format.into(),
        signer,
        reason,
    };
    Ok(match policy {
        None => SignatureStatus::Unverified {
            format: format.into(),
        },
        Some(VerifyPolicy::Ssh(_)) if format != "ssh" => bad(
            format!("signed with {format}, but only SSH signatures are accepted"),
            None,
        ),
        Some(VerifyPolicy::Gpg(_)) if format != "gpg" => bad(
            format!("signed with {format}, but only OpenPGP signatures are accepted"),
            None,
        ),
        Some(VerifyPolicy::Ssh(allowed)) => ssh(allowed, &signature, &data)?,
        Some(VerifyPolicy::Gpg(keyring)) => gpg(keyring, &signature, &data)?,
    })
}

fn run(cmd: &mut Command, stdin: &[u8]) -> Result<std::process::Output, String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("failed to run {:?}: {e}", cmd.get_program()))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin)
        .map_err(|e| e.to_string())?;
    child.wait_with_output().map_err(|e| e.to_string())
}

fn ssh(allowed: &Path, signature: &[u8], data: &[u8]) -> Result<SignatureStatus, String> {
    if !allowed.is_file() {
        return Err(format!(
            "allowed signers file {} does not exist",
            allowed.display()
        ));
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let sig = dir.path().join("commit.sig");
    std::fs::write(&sig, signature).map_err(|e| e.to_string())?;
    let bad = |reason: String, signer: Option<String>| SignatureStatus::Bad {
        format: "ssh".into(),
        signer,
        reason,
    };
    let found = run(
        Command::new("ssh-keygen")
            .args(["-Y", "find-principals", "-f"])
            .arg(allowed)
            .arg("-s")
            .arg(&sig),
        b"",
    )?;
    let principals: Vec<String> = String::from_utf8_lossy(&found.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if !found.status.success() || principals.is_empty() {
        return Ok(bad(
            "the signing key is not in the allowed signers file".into(),
            None,
        ));
    }
    let mut last = String::new();
    for principal in &principals {
        let out = run(
            Command::new("ssh-keygen")
                .args(["-Y", "verify", "-n", "git", "-f"])
                .arg(allowed)
                .args(["-I", principal, "-s"])
                .arg(&sig),
            data,
        )?;
        if out.status.success() {
            return Ok(SignatureStatus::Good {
                format: "ssh".into(),
                signer: principal.clone(),
            });
        }
        last = String::from_utf8_lossy(&out.stderr).trim().to_string();
    }
    Ok(bad(
        if last.is_empty() {
            "verification failed".into()
        } else {
            last
        },
        principals.first().cloned(),
    ))
}

fn gpg(keyring: &Path, signature: &[u8], data: &[u8]) -> Result<SignatureStatus, String> {
    let keyring = std::fs::canonicalize(keyring)
        .map_err(|e| format!("keyring {}: {e}", keyring.display()))?;
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let sig = home.path().join("commit.sig");
    std::fs::write(&sig, signature).map_err(|e| e.to_string())?;
    let out = run(
        Command::new("gpg")
            .env("GNUPGHOME", home.path())
            .args([
                "--batch",
                "--no-tty",
                "--no-default-keyring",
                "--trust-model",
                "always",
                "--keyring",
            ])
            .arg(&keyring)
            .args(["--status-fd", "1", "--verify"])
            .arg(&sig)
            .arg("-"),
        data,
    )?;
    let status = String::from_utf8_lossy(&out.stdout);
    let field = |tag: &str| {
        status.lines().find_map(|l| {
            l.strip_prefix("[GNUPG:] ")
                .and_then(|r| r.strip_prefix(tag))
                .map(|r| r.trim().to_string())
        })
    };
    if out.status.success() && field("VALIDSIG").is_some() {
        let signer = field("GOODSIG")
            .map(|g| {
                g.split_once(' ')
                    .map_or(g.clone(), |(_, uid)| uid.to_string())
            })
            .unwrap_or_default();
        return Ok(SignatureStatus::Good {
            format: "gpg".into(),
            signer,
        });
    }
    let reason = if let Some(k) = field("NO_PUBKEY") {
        format!("key {k} is not in the keyring")
    } else if let Some(b) = field("BADSIG") {
        format!("bad signature ({b})")
    } else {
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    };
    Ok(SignatureStatus::Bad {
        format: "gpg".into(),
        signer: field("BADSIG")
            .map(|b| b.split_once(' ').map_or(b.clone(), |(_, u)| u.to_string())),
        reason,
    })
}
