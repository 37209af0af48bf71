//! One writer per stack: an exclusive file lock on `lock` in the state dir, and the holder's
//! pid, host, command and start time written inside it for messages. A second writer waits up
//! to its lock timeout, then fails naming the holder.
//!
//! The kernel owns the lock (`flock`, through `std::fs::File::try_lock`): it is released when
//! the holder's file is closed, including when the holder dies, even by SIGKILL, so a lock is
//! never stale and never needs taking over.
//!
//! With the state in PostgreSQL (a state dir mounted on a [`crate::store::Store`]) the lock is an
//! advisory lock on a connection the holder keeps open, with the same release on death, and the
//! holder's name is the document `lock`: the lock holds across machines.

use std::fs::{File, TryLockError};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::util::duration::format_duration;

/// How often a waiting writer tries the lock again.
const POLL: Duration = Duration::from_millis(200);
/// How long past its timeout a waiter keeps trying to read the holder's name, in case the
/// holder locked the file but has not written its name yet.
const NAME_GRACE: Duration = Duration::from_secs(1);

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
    #[error("the stack is locked, and its lock file {} does not name the holder (waited {waited}); try again later or raise --lock-timeout", path.display())]
    HeldUnnamed { path: PathBuf, waited: String },
    #[error("the stack is locked, and the state database does not name the holder (waited {waited}); try again later or raise --lock-timeout")]
    HeldUnnamedShared { waited: String },
    #[error("failed to take the stack lock: {0}")]
    Store(#[from] crate::state::StateError),
    #[error("failed to take the lock {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (the file is closed, the kernel drops the lock).
#[derive(Debug)]
pub struct Lock {
    /// Never removed, on release or otherwise: a second writer may already have the path open
    /// and be waiting on it; if the file were deleted, a third could create a new file at the
    /// same path and lock that one, and two writers would each hold "the" lock.
    _file: Option<File>,
    /// The advisory lock, with the state in PostgreSQL.
    _shared: Option<crate::store::StackLock>,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

fn holder(command: &str) -> Holder {
    Holder {
        pid: std::process::id(),
        host: hostname(),
        command: command.to_string(),
        since: crate::now_rfc3339(),
    }
}

fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("lock")
}

impl Lock {
    /// Takes the lock of the stack whose state lives in `state_dir` if it is free.
    ///
    /// # Guarantees
    /// At most one [`Lock`] per state dir exists at a time, across threads and processes of this
    /// host. On success the lock file names this process, `command` and the time.
    ///
    /// # Errors
    /// [`LockError::Io`] when the state dir or the lock file cannot be created, locked or written.
    pub fn try_acquire(state_dir: &Path, command: &str) -> Result<Option<Lock>, LockError> {
        let path = lock_path(state_dir);
        if let Some((store, rel)) = crate::store::route(&path) {
            let to_state = |e: crate::store::StoreError| LockError::Store(e.into());
            let Some(held) = store.try_lock_stack(&rel).map_err(to_state)? else {
                return Ok(None);
            };
            let text = serde_json::to_string_pretty(&holder(command)).expect("json");
            store.put(&rel, text.as_bytes()).map_err(to_state)?;
            return Ok(Some(Lock {
                _file: None,
                _shared: Some(held),
            }));
        }
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        crate::util::fs::create_private_dir_all(state_dir).map_err(io)?;
        // Not truncated on open: the file holds the current holder's name until we hold it.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let text = serde_json::to_string_pretty(&holder(command)).expect("json");
        file.set_len(0).map_err(io)?;
        file.write_all_at(text.as_bytes(), 0).map_err(io)?;
        Ok(Some(Lock {
            _file: Some(file),
            _shared: None,
        }))
    }

    /// Takes the lock of the stack whose state lives in `state_dir`, waiting up to `timeout`.
    ///
    /// # Guarantees
    /// As [`Lock::try_acquire`]; tries again every 200 ms while another writer holds the lock.
    ///
    /// # Errors
    /// [`LockError::Held`] naming the holder when the lock is still held after `timeout`
    /// ([`LockError::HeldUnnamed`] if the lock file does not say who); [`LockError::Io`] as
    /// [`Lock::try_acquire`].
    pub async fn acquire(
        state_dir: &Path,
        command: &str,
        timeout: Duration,
    ) -> Result<Lock, LockError> {
        let started = Instant::now();
        loop {
            if let Some(lock) = Lock::try_acquire(state_dir, command)? {
                return Ok(lock);
            }
            if started.elapsed() >= timeout {
                let path = lock_path(state_dir);
                let shared = crate::store::route(&path).is_some();
                let holder: Option<Holder> = super::file::read(&path)
                    .ok()
                    .flatten()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                let waited = format_duration(timeout);
                match holder {
                    Some(holder) => return Err(LockError::Held { holder, waited }),
                    None if started.elapsed() >= timeout + NAME_GRACE && shared => {
                        return Err(LockError::HeldUnnamedShared { waited })
                    }
                    None if started.elapsed() >= timeout + NAME_GRACE => {
                        return Err(LockError::HeldUnnamed { path, waited })
                    }
                    None => {}
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    #[test]
    fn eight_threads_racing_never_hold_the_lock_together() {
        let dir = tempfile::tempdir().unwrap();
        let holders = Arc::new(AtomicUsize::new(0));
        let taken = Arc::new(AtomicUsize::new(0));
        for _round in 0..50 {
            let start = Arc::new(Barrier::new(8));
            let threads: Vec<_> = (0..8)
                .map(|i| {
                    let (dir, holders, taken, start) = (
                        dir.path().to_path_buf(),
                        holders.clone(),
                        taken.clone(),
                        start.clone(),
                    );
                    std::thread::spawn(move || {
                        start.wait();
                        loop {
                            let Some(lock) =
                                Lock::try_acquire(&dir, &format!("racer {i}")).unwrap()
                            else {
                                std::thread::yield_now();
                                continue;
                            };
                            assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                            let named: Holder =
                                serde_json::from_slice(&std::fs::read(lock_path(&dir)).unwrap())
                                    .unwrap();
                            assert_eq!(named.command, format!("racer {i}"));
                            std::thread::yield_now();
                            holders.fetch_sub(1, Ordering::SeqCst);
                            taken.fetch_add(1, Ordering::SeqCst);
                            drop(lock);
                            return;
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
        }
        assert_eq!(taken.load(Ordering::SeqCst), 8 * 50);
        assert!(lock_path(dir.path()).exists(), "the lock file is kept");
    }

    /// When set, this test is the child that holds the lock in the directory it names.
    const CHILD: &str = "STRATA_LOCK_TEST_HOLD";
    /// What the child prints once it holds the lock (the test harness may print on the same line).
    const HELD: &str = "strata-lock-test: held";

    /// The child process, killed if the test fails half-way.
    struct Child(std::process::Child);

    impl Drop for Child {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[tokio::test]
    async fn a_lock_held_by_a_process_killed_with_sigkill_is_free_afterwards() {
        if let Some(dir) = std::env::var_os(CHILD) {
            let _lock = Lock::try_acquire(Path::new(&dir), "the child")
                .unwrap()
                .expect("the parent does not hold it");
            println!("\n{HELD}");
            std::thread::sleep(Duration::from_secs(600));
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut child = Child(
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "state::lock::tests::a_lock_held_by_a_process_killed_with_sigkill_is_free_afterwards",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let out = std::io::BufReader::new(child.0.stdout.take().unwrap());
        let held = std::io::BufRead::lines(out).any(|l| l.is_ok_and(|l| l.contains(HELD)));
        assert!(held, "the child took the lock");

        let err = Lock::acquire(dir.path(), "the parent", Duration::ZERO)
            .await
            .unwrap_err();
        match &err {
            LockError::Held { holder, .. } => {
                assert_eq!(holder.pid, child.0.id());
                assert_eq!(holder.command, "the child");
            }
            other => panic!("expected the child to be named: {other}"),
        }
        assert!(
            err.to_string().contains("the stack is locked by pid"),
            "{err}"
        );

        // `Child::kill` sends SIGKILL: the child gets no chance to release anything itself.
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        Lock::acquire(dir.path(), "the parent", Duration::ZERO)
            .await
            .expect("free once its holder is gone");
    }
}
