//! How every state file is read and written: private dirs and files, atomic replacement, a kernel
//! lock beside each file that is read, modified and written back, whole-line appends, and errors
//! that name the file and the way out.
//!
//! A path under a dir mounted on a [`crate::store::Store`] (`--state postgres://…`) is a row of
//! the state database instead, with the same guarantees: a write replaces the document in one
//! statement, the lock is an advisory lock that dies with its holder, an append and its retention
//! are one transaction.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use super::retention::Retention;

/// A state file that could not be read, understood or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file exists but does not hold what strata wrote there.
    #[error("{} is corrupt ({reason}); {recovery}", path.display())]
    Corrupt {
        path: PathBuf,
        /// What is wrong, with serde's line and column when it is JSON.
        reason: String,
        /// What the operator can do about it.
        recovery: &'static str,
    },
    /// A namespace of the state database already holds another stack's state.
    #[error("{} holds the state of stack \"{holds}\", not of stack \"{this}\": give each stack its own --state-namespace (after renaming a stack, delete that document)", at.display())]
    OtherStack {
        at: PathBuf,
        holds: String,
        this: String,
    },
    /// The state database (`--state postgres://…`) could not be read or written. Boxed: it is
    /// rare, and large next to the other variants.
    #[error(transparent)]
    Store(Box<crate::store::StoreError>),
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<crate::store::StoreError> for StateError {
    fn from(e: crate::store::StoreError) -> StateError {
        StateError::Store(Box::new(e))
    }
}

impl StateError {
    pub(super) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| StateError::Io {
            action,
            path,
            source,
        }
    }
}

/// Makes sure the state dir exists and only its owner can enter it: it holds Terraform state,
/// kubeconfigs and outputs that may be secret.
///
/// # Guarantees
/// A state dir this creates has mode 0700 from the start; an existing one of ours readable by
/// others is narrowed to 0700. One owned by another user (a shared dir) is left as it is, with a
/// warning: strata must not fail on a dir it may write but not chmod.
///
/// # Errors
/// [`StateError::Io`] when the dir cannot be created or its mode read or changed.
pub fn ensure_state_dir(state_dir: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::MetadataExt;
    let io = StateError::io("create the state dir", state_dir);
    crate::util::fs::create_private_dir_all(state_dir).map_err(io)?;
    let meta =
        std::fs::metadata(state_dir).map_err(StateError::io("read the mode of", state_dir))?;
    if meta.permissions().mode() & 0o077 == 0 {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if meta.uid() != unsafe { libc::geteuid() } {
        tracing::warn!(
            "the state dir {} is readable by others and owned by another user: it holds Terraform state and kubeconfigs; make it 0700",
            state_dir.display()
        );
        return Ok(());
    }
    std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700))
        .map_err(StateError::io("narrow the mode of", state_dir))
}

/// Creates `dir` (inside the state dir) 0700 when it is missing.
///
/// # Errors
/// [`StateError::Io`] naming the dir.
pub fn ensure_dir(dir: &Path) -> Result<(), StateError> {
    crate::util::fs::create_private_dir_all(dir).map_err(StateError::io("create", dir))
}

/// Replaces `path` with `bytes`: a reader, or the next run after a crash, sees the old content or
/// the new, never a mix.
///
/// # Guarantees
/// Temporary file in the same dir, fsync, rename, fsync of the dir; mode 0600 throughout. The
/// parent dir is created 0700 when missing.
///
/// # Errors
/// [`StateError::Io`] naming `path`; the old file is then untouched.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    if let Some((store, rel)) = crate::store::route(path) {
        return Ok(store.put(&rel, bytes)?);
    }
    if let Some(dir) = path.parent() {
        ensure_dir(dir)?;
    }
    crate::util::fs::write_atomic_private(path, bytes).map_err(StateError::io("write", path))
}

/// Reads a JSON state file; `None` when it does not exist.
///
/// # Errors
/// [`StateError::Corrupt`] when it is not the JSON strata writes (empty, truncated, edited),
/// naming the file, serde's line and column, and `recovery`; [`StateError::Io`] when it cannot be
/// read.
pub fn read_json<T: DeserializeOwned>(
    path: &Path,
    recovery: &'static str,
) -> Result<Option<T>, StateError> {
    let Some(bytes) = read(path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StateError::Corrupt {
            path: shown(path),
            reason: if bytes.is_empty() {
                "the file is empty".into()
            } else {
                e.to_string()
            },
            recovery,
        })
}

/// How `path` is named in messages: the file, or the database (password masked) and key.
pub(super) fn shown(path: &Path) -> PathBuf {
    match crate::store::route(path) {
        Some((store, rel)) => store.describe(&rel),
        None => path.to_path_buf(),
    }
}

/// Whether `path` lives in the state database (shared, readable by whoever may read it) rather
/// than in a private local file.
pub fn is_shared(path: &Path) -> bool {
    crate::store::route(path).is_some()
}

/// The bytes of a state file; `None` when it does not exist.
///
/// # Errors
/// [`StateError::Io`] (or [`StateError::Store`]) when it exists but cannot be read.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>, StateError> {
    if let Some((store, rel)) = crate::store::route(path) {
        return Ok(store.get(&rel)?);
    }
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateError::io("read", path)(e)),
    }
}

/// Whether the state file exists.
///
/// # Errors
/// As [`read`].
pub fn exists(path: &Path) -> Result<bool, StateError> {
    Ok(read(path)?.is_some())
}

/// Removes a state file; a missing one is fine. Whether there was one.
///
/// # Errors
/// [`StateError::Io`] (or [`StateError::Store`]) naming the file.
pub fn remove(path: &Path) -> Result<bool, StateError> {
    if let Some((store, rel)) = crate::store::route(path) {
        return Ok(store.delete(&rel)?);
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StateError::io("remove", path)(e)),
    }
}

/// The names of the files directly in `dir`, sorted; `[]` when it does not exist. Names of
/// temporary files (a leading `.`) are left out.
///
/// # Errors
/// [`StateError::Io`] (or [`StateError::Store`]) when the dir exists but cannot be listed.
pub fn list(dir: &Path) -> Result<Vec<String>, StateError> {
    let mut names = if let Some((store, rel)) = crate::store::route(dir) {
        store.list(&rel)?
    } else {
        match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StateError::io("list", dir)(e)),
        }
    };
    names.retain(|n| !n.starts_with('.'));
    names.sort();
    Ok(names)
}

/// An exclusive kernel lock on `<file>.lock` beside a state file, held while it is read, modified
/// and written back. Released when dropped, or by the kernel when the holder dies.
pub struct FileLock {
    /// Never deleted: a waiter may have the path open already; a new file at the same path would
    /// give a third process a lock of its own.
    _file: Option<File>,
    /// The advisory lock of a document in the state database.
    _doc: Option<crate::store::DocLock>,
}

impl FileLock {
    /// Waits for the lock beside `path`; holders keep it only for a read and a write.
    ///
    /// # Errors
    /// [`StateError::Io`] when the lock file cannot be created or locked.
    pub fn beside(path: &Path) -> Result<FileLock, StateError> {
        if let Some((store, rel)) = crate::store::route(path) {
            return Ok(FileLock {
                _file: None,
                _doc: Some(store.lock_doc(&rel)?),
            });
        }
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let lock = PathBuf::from(name);
        if let Some(dir) = lock.parent() {
            ensure_dir(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock)
            .map_err(StateError::io("open the lock", &lock))?;
        file.lock().map_err(StateError::io("lock", &lock))?;
        Ok(FileLock {
            _file: Some(file),
            _doc: None,
        })
    }
}

/// Appends `line` (one JSON record, no newline) to a log file, under the lock beside it, then
/// applies the log's retention.
///
/// # Guarantees
/// The record lands as one complete line, even with other writers: the lock orders them. A torn
/// last line left by a crash is ended first, so it cannot swallow this record; readers skip it.
/// The file is 0600 and its data synced before this returns. A log past its cap is compacted
/// under the same lock (see [`Retention::compact`]); the record just appended is always kept.
///
/// # Errors
/// [`StateError::Io`] naming the file.
pub fn append_line(path: &Path, line: &str, keep: Retention) -> Result<(), StateError> {
    if let Some((store, rel)) = crate::store::route(path) {
        return Ok(store.append(&rel, line, keep.max_bytes)?);
    }
    let _lock = FileLock::beside(path)?;
    let io = || StateError::io("append to", path);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(io())?;
    let mut record = String::with_capacity(line.len() + 2);
    let len = f.metadata().map_err(io())?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1)).map_err(io())?;
        f.read_exact(&mut last).map_err(io())?;
        if last[0] != b'\n' {
            record.push('\n');
        }
    }
    record.push_str(line);
    record.push('\n');
    // One write of the whole record: with O_APPEND it lands at the end in one piece.
    f.write_all(record.as_bytes()).map_err(io())?;
    f.sync_data().map_err(io())?;
    drop(f);
    keep.compact(path, len + record.len() as u64)?;
    Ok(())
}

/// The records of a JSON-lines log, oldest first; `[]` when it does not exist. A line that does
/// not parse (a record torn by a crash, or from a newer version) is skipped with a warning naming
/// the file and line, never failing the whole read.
///
/// # Errors
/// [`StateError::Io`] when the file exists but cannot be read.
pub fn read_lines<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, StateError> {
    let text = match crate::store::route(path) {
        Some((store, rel)) => store.lines(&rel)?.join("\n"),
        None => match std::fs::read(path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StateError::io("read", path)(e)),
        },
    };
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .filter_map(|(i, l)| match serde_json::from_str(l) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(
                    "skipping line {} of {}: not a complete record ({e})",
                    i + 1,
                    shown(path).display()
                );
                None
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_skipped_and_never_swallows_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("history.jsonl");
        append_line(&log, r#"{"n":1}"#, crate::state::retention::HISTORY).unwrap();
        // A crash half-way through a record (as a writer without whole-line appends could leave).
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(br#"{"n":2, "pad"#).unwrap();
        append_line(&log, r#"{"n":3}"#, crate::state::retention::HISTORY).unwrap();
        let read: Vec<serde_json::Value> = read_lines(&log).unwrap();
        assert_eq!(
            read,
            [serde_json::json!({"n": 1}), serde_json::json!({"n": 3})]
        );
    }

    #[test]
    fn an_empty_or_truncated_json_file_is_corrupt_naming_the_file_and_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        std::fs::write(&path, b"").unwrap();
        let err = read_json::<serde_json::Value>(&path, "move it aside").unwrap_err();
        assert!(
            err.to_string()
                .ends_with("status.json is corrupt (the file is empty); move it aside"),
            "{err}"
        );
        std::fs::write(&path, b"{\n  \"stack\": \"de").unwrap();
        let err = read_json::<serde_json::Value>(&path, "move it aside").unwrap_err();
        assert!(err.to_string().contains("line 2 column"), "{err}");
        assert!(
            read_json::<serde_json::Value>(&dir.path().join("none"), "-")
                .unwrap()
                .is_none()
        );
    }
}
