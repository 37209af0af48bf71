//! Whether the state dir is private: it holds Terraform state (sensitive outputs, backend
//! settings such as a Postgres `conn_str`), cached outputs and kubeconfigs, so nothing in it may
//! be readable, writable or enterable by the group or others.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A file or directory of the state dir that others can reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exposed {
    pub path: PathBuf,
    /// Its permission bits (`0o644`).
    pub mode: u32,
}

/// Every file and directory under `state_dir` (itself included) with any group or other
/// permission bit, sorted; symlinks are not followed. A missing state dir exposes nothing.
pub fn exposed(state_dir: &Path) -> Vec<Exposed> {
    let mut out = Vec::new();
    let mut todo = vec![state_dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        // Unreadable entries (gone meanwhile, or not ours to read) can't be judged: skip them.
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if !meta.file_type().is_symlink() && mode & 0o077 != 0 {
            out.push(Exposed {
                path: p.clone(),
                mode,
            });
        }
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p) {
                todo.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_or_other_bits_anywhere_are_exposed() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(state.join("layers/a")).unwrap();
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        std::fs::write(state.join("layers/a/terraform.tfstate"), "{}").unwrap();
        for d in [&state, &state.join("layers"), &state.join("layers/a")] {
            set(d, 0o700);
        }
        set(&state.join("layers/a/terraform.tfstate"), 0o600);
        assert_eq!(exposed(&state), vec![]);
        set(&state.join("layers/a/terraform.tfstate"), 0o640);
        assert_eq!(
            exposed(&state),
            vec![Exposed {
                path: state.join("layers/a/terraform.tfstate"),
                mode: 0o640
            }]
        );
        assert_eq!(exposed(&dir.path().join("missing")), vec![]);
    }
}
