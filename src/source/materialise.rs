//! Writing a commit's tree into `revisions/<commit>/`, once, treating its content as untrusted.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use gix::object::tree::EntryKind;
use serde::Serialize;

use super::error::{io, SourceError};

/// Caps on what one revision may hold. A revision over any cap is refused whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Largest single file. Default 16 MiB.
    pub max_file_bytes: u64,
    /// Most files (and symlinks). Default 100,000.
    pub max_files: u64,
    /// Most bytes in all files together. Default 1 GiB.
    pub max_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 16 << 20,
            max_files: 100_000,
            max_total_bytes: 1 << 30,
        }
    }
}

/// Revisions kept by [`gc`] besides those in use.
pub const KEEP_REVISIONS: usize = 5;

/// The directory of a materialised commit.
pub fn revision_dir(state_dir: &Path, commit: &str) -> PathBuf {
    state_dir.join("revisions").join(commit)
}

/// Writes the tree of `commit` into `revisions/<commit>/` unless it is there already, and returns
/// the directory.
///
/// # Guarantees
/// - Atomic: the tree is written into a temporary directory and renamed into place only when
///   every entry passed the checks; a refused revision leaves nothing behind.
/// - Read-only after: files 0444 (0555 executable), directories 0555.
/// - Refused: symlinks that are absolute or resolve outside the tree, entry names that are `.`,
///   `..` or `.git`, submodules, and anything over `limits`. Each error names the path and the
///   limit.
pub fn materialise(
    repo: &gix::Repository,
    commit: gix::ObjectId,
    state_dir: &Path,
    limits: &Limits,
) -> Result<PathBuf, SourceError> {
    let hex = commit.to_string();
    let dest = revision_dir(state_dir, &hex);
    if dest.is_dir() {
        touch(&dest);
        return Ok(dest);
    }
    let parent = dest.parent().expect("revisions dir").to_path_buf();
    std::fs::create_dir_all(&parent).map_err(io("create", &parent))?;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tmp = parent.join(format!(
        ".tmp-{hex}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_tree(repo, commit, &tmp, limits);
    if let Err(e) = result {
        remove_tree(&tmp);
        return Err(e);
    }
    seal(&tmp).map_err(io("seal", &tmp))?;
    if let Err(e) = std::fs::rename(&tmp, &dest) {
        remove_tree(&tmp);
        if !dest.is_dir() {
            return Err(io("rename into", &dest)(e));
        }
    }
    Ok(dest)
}

fn unsafe_entry(commit: &str, path: &str, reason: impl Into<String>) -> SourceError {
    SourceError::Unsafe {
        commit: commit.to_string(),
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn write_tree(
    repo: &gix::Repository,
    commit: gix::ObjectId,
    root: &Path,
    limits: &Limits,
) -> Result<(), SourceError> {
    let hex = commit.to_string();
    let read = |e: &dyn std::fmt::Display| SourceError::Read {
        commit: hex.clone(),
        message: e.to_string(),
    };
    let tree = repo
        .find_commit(commit)
        .map_err(|e| read(&e))?
        .tree()
        .map_err(|e| read(&e))?;
    let entries = tree.traverse().breadthfirst.files().map_err(|e| read(&e))?;
    std::fs::create_dir_all(root).map_err(io("create", root))?;
    let (mut files, mut total) = (0u64, 0u64);
    for entry in entries {
        let path = entry.filepath.to_string();
        let rel = checked_path(&hex, &path)?;
        let target = root.join(&rel);
        match entry.mode.kind() {
            EntryKind::Tree => {
                std::fs::create_dir_all(&target).map_err(io("create", &target))?;
            }
            EntryKind::Commit => {
                return Err(unsafe_entry(&hex, &path, "submodules are not supported"));
            }
            kind @ (EntryKind::Blob | EntryKind::BlobExecutable | EntryKind::Link) => {
                files += 1;
                if files > limits.max_files {
                    return Err(unsafe_entry(
                        &hex,
                        &path,
                        format!(
                            "more than {} files (the file-count limit)",
                            limits.max_files
                        ),
                    ));
                }
                let header = repo.find_header(entry.oid).map_err(|e| read(&e))?;
                let size = header.size();
                if size > limits.max_file_bytes {
                    return Err(unsafe_entry(
                        &hex,
                        &path,
                        format!(
                            "{size} bytes is over the file-size limit of {} bytes",
                            limits.max_file_bytes
                        ),
                    ));
                }
                total += size;
                if total > limits.max_total_bytes {
                    return Err(unsafe_entry(
                        &hex,
                        &path,
                        format!(
                            "the revision is over the total-size limit of {} bytes",
                            limits.max_total_bytes
                        ),
                    ));
                }
                let blob = repo.find_object(entry.oid).map_err(|e| read(&e))?;
                if let Some(dir) = target.parent() {
                    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
                }
                if kind == EntryKind::Link {
                    let link = String::from_utf8_lossy(&blob.data).to_string();
                    check_symlink(&hex, &rel, &link)?;
                    std::os::unix::fs::symlink(&link, &target).map_err(io("create", &target))?;
                } else {
                    std::fs::write(&target, &blob.data).map_err(io("write", &target))?;
                    let mode = if kind == EntryKind::BlobExecutable {
                        0o555
                    } else {
                        0o444
                    };
                    set_mode(&target, mode).map_err(io("chmod", &target))?;
                }
            }
        }
    }
    Ok(())
}

/// A tree path as a relative path of normal components, or an error.
fn checked_path(commit: &str, path: &str) -> Result<PathBuf, SourceError> {
    let mut out = PathBuf::new();
    for part in path.split('/') {
        if part.is_empty()
            || part == "."
            || part == ".."
            || part.eq_ignore_ascii_case(".git")
            || part.contains('\0')
        {
            return Err(unsafe_entry(
                commit,
                path,
                format!("invalid path component \"{part}\""),
            ));
        }
        out.push(part);
    }
    match out.components().all(|c| matches!(c, Component::Normal(_))) {
        true => Ok(out),
        false => Err(unsafe_entry(commit, path, "not a relative path")),
    }
}

/// A symlink target must be relative, and lead `..` components only at its start (so that no
/// other symlink can change where they go), never climbing above the tree's root.
fn check_symlink(commit: &str, link: &Path, target: &str) -> Result<(), SourceError> {
    let path = link.display().to_string();
    let t = Path::new(target);
    if t.is_absolute() {
        return Err(unsafe_entry(
            commit,
            &path,
            format!("symlink to absolute path \"{target}\""),
        ));
    }
    let depth = link.components().count() - 1;
    let mut ups = 0usize;
    let mut seen_normal = false;
    for c in t.components() {
        match c {
            Component::ParentDir if !seen_normal => ups += 1,
            Component::ParentDir => {
                return Err(unsafe_entry(
                    commit,
                    &path,
                    format!("symlink target \"{target}\" has \"..\" after a name"),
                ))
            }
            Component::CurDir => {}
            Component::Normal(_) => seen_normal = true,
            _ => {
                return Err(unsafe_entry(
                    commit,
                    &path,
                    format!("symlink target \"{target}\" is not relative"),
                ))
            }
        }
    }
    if ups > depth {
        return Err(unsafe_entry(
            commit,
            &path,
            format!("symlink target \"{target}\" resolves outside the tree"),
        ));
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Makes every directory read-only, deepest first.
fn seal(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            seal(&entry.path())?;
        }
    }
    set_mode(dir, 0o555)
}

/// Removes a tree even when it was made read-only.
pub fn remove_tree(dir: &Path) {
    fn unseal(dir: &Path) {
        let _ = set_mode(dir, 0o755);
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    unseal(&e.path());
                }
            }
        }
    }
    unseal(dir);
    let _ = std::fs::remove_dir_all(dir);
}

/// Marks a revision as recently used (its directory's modification time), for [`gc`].
fn touch(dir: &Path) {
    let _ = std::fs::File::open(dir).and_then(|f| f.set_modified(std::time::SystemTime::now()));
}

/// Removes old revisions: keeps the `keep` most recently used and every one in `in_use`.
/// Returns the commits removed.
pub fn gc(state_dir: &Path, keep: usize, in_use: &[&str]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("revisions")) else {
        return Vec::new();
    };
    let mut revs: Vec<(std::time::SystemTime, String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let modified = e.metadata().ok()?.modified().ok()?;
            Some((modified, name, e.path()))
        })
        .collect();
    revs.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut removed = Vec::new();
    for (i, (_, name, path)) in revs.into_iter().enumerate() {
        let stale_tmp = name.starts_with(".tmp-");
        if (i >= keep || stale_tmp) && !in_use.contains(&name.as_str()) {
            remove_tree(&path);
            removed.push(name);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_may_climb_only_to_the_root_and_only_at_the_start() {
        let ok = |link: &str, t: &str| check_symlink("c", Path::new(link), t).is_ok();
        assert!(ok("a/b/l", "../x"));
        assert!(ok("a/b/l", "../../x"));
        assert!(!ok("a/b/l", "../../../x"));
        assert!(!ok("l", "/etc/passwd"));
        assert!(!ok("a/l", "x/../../y"));
        assert!(ok("a/l", "./x/y"));
    }

    #[test]
    fn tree_paths_must_be_plain() {
        assert!(checked_path("c", "a/b.txt").is_ok());
        for bad in ["a/../b", ".git/config", "a//b", "./a", "A/.GIT/x"] {
            assert!(checked_path("c", bad).is_err(), "{bad}");
        }
    }
}
