//! Running the `git` binary (gix cannot push), bounded by a timeout. Blocking: the agent calls
//! it from `spawn_blocking`, never on the async runtime.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Why a git command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("no git binary on PATH: {0} (image updates push with git; install it)")]
    NoBinary(String),
    #[error("git {args} did not finish within {}s and was stopped", .timeout.as_secs())]
    Timeout { args: String, timeout: Duration },
    #[error("git {args} failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("failed to run git {args}: {source}")]
    Spawn {
        args: String,
        #[source]
        source: std::io::Error,
    },
}

impl GitError {
    /// Whether git refused a push because the branch moved (to be retried on the new head).
    pub fn is_rejected_push(&self) -> bool {
        match self {
            GitError::Failed { stderr, .. } => {
                stderr.contains("[rejected]")
                    || stderr.contains("non-fast-forward")
                    || stderr.contains("fetch first")
                    || stderr.contains("[remote rejected]") && stderr.contains("cannot lock ref")
            }
            _ => false,
        }
    }
}

/// A `git` with a working directory, an identity and a timeout per command.
#[derive(Debug, Clone)]
pub struct Git {
    bin: PathBuf,
    pub dir: PathBuf,
    pub timeout: Duration,
    env: Vec<(String, String)>,
}

impl Git {
    /// # Errors
    /// No `git` binary on PATH.
    pub fn new(dir: &Path, timeout: Duration) -> Result<Git, GitError> {
        let bin = which::which("git").map_err(|e| GitError::NoBinary(e.to_string()))?;
        Ok(Git {
            bin,
            dir: dir.to_path_buf(),
            timeout,
            // Never wait for a password on a terminal, never read the system's config.
            env: vec![
                ("GIT_TERMINAL_PROMPT".into(), "0".into()),
                ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
                ("LC_ALL".into(), "C".into()),
            ],
        })
    }

    /// Commits made by this git are by `name <email>`.
    pub fn identity(mut self, name: &str, email: &str) -> Git {
        for (k, v) in [
            ("GIT_AUTHOR_NAME", name),
            ("GIT_AUTHOR_EMAIL", email),
            ("GIT_COMMITTER_NAME", name),
            ("GIT_COMMITTER_EMAIL", email),
        ] {
            self.env.push((k.into(), v.into()));
        }
        self
    }

    /// Runs `git ARGS` in the directory; its stdout, trimmed.
    ///
    /// # Guarantees
    /// Returns within the timeout (plus the time to reap): git and whatever it started (a
    /// remote helper, ssh) are killed as a process group when it runs out.
    ///
    /// # Errors
    /// git cannot be started, exits non-zero (its stderr is in the error), or runs out of time.
    pub fn run(&self, args: &[&str]) -> Result<String, GitError> {
        use std::os::unix::process::CommandExt;
        let shown = args.join(" ");
        let child = Command::new(&self.bin)
            .args(args)
            .current_dir(&self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|source| GitError::Spawn {
                args: shown.clone(),
                source,
            })?;
        let pid = child.id() as libc::pid_t;
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let timeout = self.timeout;
        let watchdog = std::thread::spawn(move || {
            let expired = done_rx.recv_timeout(timeout).is_err();
            if expired {
                // SAFETY: kill only sends a signal, to the group git leads (its own, from
                // process_group(0)); the group lives until git is reaped, which happens after
                // this thread is told it is done or has fired.
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
            }
            expired
        });
        let out = child.wait_with_output();
        let _ = done_tx.send(());
        let expired = watchdog.join().unwrap_or(false);
        let out = out.map_err(|source| GitError::Spawn {
            args: shown.clone(),
            source,
        })?;
        if expired && !out.status.success() {
            return Err(GitError::Timeout {
                args: shown,
                timeout,
            });
        }
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(GitError::Failed {
                args: shown,
                stderr: crate::notify::memory::shorten(&stderr, 2000),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_git_that_hangs_is_stopped_at_its_timeout() {
        let d = tempfile::tempdir().unwrap();
        // A remote helper that never answers stands for a server that never does.
        let helper = d.path().join("git-remote-hang");
        std::fs::write(&helper, "#!/bin/sh\nsleep 600\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut git = Git::new(d.path(), Duration::from_millis(500)).unwrap();
        let path = format!(
            "{}:{}",
            d.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        git.env.push(("PATH".into(), path));
        // Timeout is only returned when the watchdog killed the group; reaching it at all means
        // the helper did not keep git's pipes open.
        let e = git.run(&["ls-remote", "hang::x"]).unwrap_err();
        assert!(matches!(e, GitError::Timeout { .. }), "{e}");
    }
}
