//! The lock on the provider plugin cache, shared by every strata process using the same state
//! dir: `terraform init` fills the cache and holds it exclusively; every other command only
//! reads providers from it and shares it.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Which kind of hold on the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// For `init`, which writes into the cache.
    Exclusive,
    /// For commands that only read it.
    Shared,
}

/// A lock on the plugin cache, held until dropped (closing the file releases it, and the
/// kernel releases it too if the process dies).
///
/// Best effort: when the lock file cannot be opened or locked, the command runs without it;
/// the in-process lock still orders this process's own runs, and terraform only risks a
/// half-copied provider, which the next init repairs.
#[derive(Debug)]
pub struct CacheLock {
    _file: Option<File>,
}

impl CacheLock {
    /// Waits for the lock on `path` (created if missing; never deleted, since deleting a locked
    /// path lets the next locker lock a new file at that path while this one is still held).
    ///
    /// # Guarantees
    /// While an [`Access::Exclusive`] lock is held, no other lock on `path` is; any number of
    /// [`Access::Shared`] locks can be held together. The wait runs off the async threads.
    ///
    /// # Errors
    /// None: failures are logged at debug level and yield an empty lock (see [`CacheLock`]).
    pub async fn acquire(path: &Path, access: Access) -> CacheLock {
        if let Some(dir) = path.parent() {
            let _ = crate::util::fs::create_private_dir_all(dir);
        }
        let path = path.to_path_buf();
        let locked = tokio::task::spawn_blocking(move || {
            let f = std::fs::OpenOptions::new()
                .mode(0o600)
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            match access {
                Access::Exclusive => f.lock()?,
                Access::Shared => f.lock_shared()?,
            }
            Ok::<_, std::io::Error>(f)
        })
        .await;
        let file = match locked {
            Ok(Ok(f)) => Some(f),
            Ok(Err(e)) => {
                tracing::debug!("running without the plugin cache lock: {e}");
                None
            }
            Err(e) => {
                tracing::debug!("running without the plugin cache lock: {e}");
                None
            }
        };
        CacheLock { _file: file }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::TryLockError;

    fn try_exclusive(path: &Path) -> bool {
        match File::options().write(true).open(path).unwrap().try_lock() {
            Ok(()) => true,
            Err(TryLockError::WouldBlock) => false,
            Err(TryLockError::Error(e)) => panic!("{e}"),
        }
    }

    fn try_shared(path: &Path) -> bool {
        match File::options()
            .write(true)
            .open(path)
            .unwrap()
            .try_lock_shared()
        {
            Ok(()) => true,
            Err(TryLockError::WouldBlock) => false,
            Err(TryLockError::Error(e)) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn init_excludes_everyone_other_commands_share() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache/.lock");

        let shared = CacheLock::acquire(&path, Access::Shared).await;
        assert!(shared._file.is_some());
        assert!(try_shared(&path), "readers share");
        assert!(!try_exclusive(&path), "init waits for readers");
        drop(shared);

        let exclusive = CacheLock::acquire(&path, Access::Exclusive).await;
        assert!(!try_shared(&path), "readers wait for init");
        drop(exclusive);
        assert!(try_exclusive(&path), "released when dropped");
        assert!(path.exists(), "the lock file is kept");
    }
}
