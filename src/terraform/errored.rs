//! `errored.tfstate`: the state terraform could not write to its backend (the backend went away
//! mid-apply). terraform leaves it in its working directory, which is a run dir strata removes,
//! so strata moves it into the layer's state dir, where it blocks the layer until
//! `strata state push` has pushed it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The file terraform writes when it cannot save state to the backend.
pub const ERRORED_STATE: &str = "errored.tfstate";
/// What a pushed file's name gets, followed by the time it was pushed.
const PUSHED: &str = ".pushed-";

/// Moves `file` (an `errored.tfstate`) into `layer_dir`, as `errored.tfstate`, or, when one is
/// already there, as `errored.tfstate.<time>`: an earlier file is never overwritten.
///
/// # Guarantees
/// The file is 0600 before it moves; it is linked into `layer_dir` under a name nothing else
/// has (no-clobber), then unlinked from its old place, and `layer_dir` is synced: at every
/// instant the content exists under at least one of the two names, and after a crash it is
/// found again (in the run dir, which is not removed while it holds one, or in `layer_dir`).
///
/// # Errors
/// Any error from changing the mode, linking, unlinking or syncing; the file stays where it
/// was unless the link was made.
pub fn rescue(file: &Path, layer_dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
    std::fs::File::open(file)?.sync_all()?;
    let stamp = stamp();
    let mut n = 0;
    let target = loop {
        let name = match n {
            0 => ERRORED_STATE.to_string(),
            1 => format!("{ERRORED_STATE}.{stamp}"),
            n => format!("{ERRORED_STATE}.{stamp}-{n:04}"),
        };
        let target = layer_dir.join(name);
        match std::fs::hard_link(file, &target) {
            Ok(()) => break target,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(e),
        }
    };
    std::fs::File::open(layer_dir)?.sync_all()?;
    std::fs::remove_file(file)?;
    if let Some(dir) = file.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(target)
}

/// Moves every `errored.tfstate` under `dir` (a run dir) into `layer_dir`.
///
/// # Errors
/// The first file that could not be moved; the files before it are moved.
pub fn rescue_all(dir: &Path, layer_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut moved = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ty) = e.file_type() else { continue };
            if ty.is_dir() {
                stack.push(e.path());
            } else if ty.is_file() && e.file_name() == ERRORED_STATE {
                moved.push(rescue(&e.path(), layer_dir)?);
            }
        }
    }
    Ok(moved)
}

/// The unsaved state files in `layer_dir` that still have to be pushed, oldest first.
pub fn pending(layer_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(layer_dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            (name == ERRORED_STATE || name.starts_with(&format!("{ERRORED_STATE}.")))
                && !name.contains(PUSHED)
                && !name.starts_with(".")
        })
        .map(|e| e.path())
        .collect();
    // `errored.tfstate` sorts before `errored.tfstate.<time>`, and times sort as they run.
    files.sort();
    files
}

/// Renames a pushed file to `<name>.pushed-<time>`, so it no longer blocks the layer but is
/// still there to look at.
///
/// # Errors
/// Any error from renaming or syncing; the file then still blocks the layer.
pub fn set_aside(file: &Path) -> std::io::Result<PathBuf> {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(format!("{PUSHED}{}", stamp()));
    let target = file.with_file_name(name);
    std::fs::rename(file, &target)?;
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(target)
}

/// A time for file names, sorting as it runs: `20261121T230000Z`.
fn stamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_rescued_state_never_overwrites_an_earlier_one_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("layer");
        let run = dir.path().join("run/tree/net");
        std::fs::create_dir_all(&layer).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        for content in ["first", "second", "third"] {
            std::fs::write(run.join(ERRORED_STATE), content).unwrap();
            let moved = rescue_all(&dir.path().join("run"), &layer).unwrap();
            assert_eq!(moved.len(), 1);
            assert_eq!(std::fs::metadata(&moved[0]).unwrap().mode() & 0o777, 0o600);
            assert!(!run.join(ERRORED_STATE).exists());
        }
        let files = pending(&layer);
        let contents: Vec<String> = files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        assert_eq!(contents, ["first", "second", "third"], "oldest first");
        let aside = set_aside(&files[0]).unwrap();
        assert_eq!(std::fs::read_to_string(aside).unwrap(), "first");
        assert_eq!(pending(&layer).len(), 2, "a pushed file no longer blocks");
    }
}
