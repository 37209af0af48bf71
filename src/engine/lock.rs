//! One writer per stack: a lock file in the state dir naming its holder. A second writer waits
//! up to its lock timeout, then fails naming the holder; a lock whose process is gone is taken
//! over with a warning.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Who holds the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub command: String,
    /// RFC 3339.
    pub since: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {} running `{}` since {}",
            self.pid, self.host, self.command, self.since
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the stack is locked by {holder} (waited {waited}); try again later or raise --lock-timeout")]
    Held { holder: Holder, waited: String },
    #[error("failed to take the lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The held lock; released (file removed) when dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl Lock {
    /// Takes the lock of the stack whose state lives in `state_dir`, waiting up to `timeout`.
    pub async fn acquire(
        state_dir: &Path,
        command: &str,
        timeout: Duration,
    ) -> Result<Lock, LockError> {
        let path = state_dir.join("lock");
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let me = Holder {
            pid: std::process::id(),
            host: hostname(),
            command: command.to_string(),
            since: crate::now_rfc3339(),
        };
        let started = Instant::now();
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(serde_json::to_string_pretty(&me).expect("json").as_bytes())
                        .map_err(io)?;
                    return Ok(Lock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder: Option<Holder> = std::fs::read(&path)
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok());
                    match holder {
                        Some(h) if h.host == me.host && !alive(h.pid) => {
                            tracing::warn!("taking over the lock of {h}: that process is gone");
                            let _ = std::fs::remove_file(&path);
                            continue;
                        }
                        None => {
                            // Half-written by a holder that is starting: give it a moment.
                            if started.elapsed() > Duration::from_secs(2) {
                                tracing::warn!(
                                    "taking over an unreadable lock file {}",
                                    path.display()
                                );
                                let _ = std::fs::remove_file(&path);
                                continue;
                            }
                        }
                        Some(h) if started.elapsed() >= timeout => {
                            return Err(LockError::Held {
                                holder: h,
                                waited: crate::util::duration::format_duration(timeout),
                            })
                        }
                        Some(_) => {}
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(io(e)),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
