//! Content hashes: of files, trees and inputs, to tell "unchanged" without running anything.

use std::path::Path;

use sha2::{Digest, Sha256};

/// A running SHA-256 over labelled parts, so that `("a", "bc")` and `("ab", "c")` differ.
#[derive(Default, Clone)]
pub struct Hasher(Sha256);

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    pub fn part(&mut self, label: &str, bytes: &[u8]) -> &mut Hasher {
        self.0.update((label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// Every regular file under `dir`, by path relative to `dir`, in sorted order. Directories
    /// named in `skip` (like `.terraform`) are left out. Symlinks are hashed as their target text.
    pub fn tree(&mut self, label: &str, dir: &Path, skip: &[&str]) -> std::io::Result<&mut Hasher> {
        let mut files = Vec::new();
        collect(dir, dir, skip, &mut files)?;
        files.sort();
        for rel in files {
            let full = dir.join(&rel);
            let meta = std::fs::symlink_metadata(&full)?;
            let name = format!("{label}/{}", rel.display());
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&full)?;
                self.part(&name, target.as_os_str().as_encoded_bytes());
            } else {
                self.part(&name, &std::fs::read(&full)?);
            }
        }
        Ok(self)
    }

    /// The hash as 64 hex digits.
    pub fn finish(&self) -> String {
        hex(&self.0.clone().finalize())
    }
}

/// A plan's digest as approvals name it: the first 16 hex digits (64 bits) of the SHA-256 of its
/// changes. Enough to tell two plans of one layer apart; an approval is also bound to the layer.
pub fn plan_digest(h: &Hasher) -> String {
    h.finish()[..16].to_string()
}

fn collect(
    root: &Path,
    dir: &Path,
    skip: &[&str],
    out: &mut Vec<std::path::PathBuf>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        let ty = entry.file_type()?;
        let path = entry.path();
        if ty.is_dir() {
            collect(root, &path, skip, out)?;
        } else {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

/// Lowercase hex of some bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of one byte string, as hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labelled_parts_do_not_run_together() {
        let a = Hasher::new().part("a", b"bc").finish();
        let b = Hasher::new().part("ab", b"c").finish();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn tree_hashes_follow_content_and_names_but_skip_listed_dirs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("main.tf"), "x").unwrap();
        std::fs::create_dir(d.path().join(".terraform")).unwrap();
        let h1 = Hasher::new()
            .tree("t", d.path(), &[".terraform"])
            .unwrap()
            .finish();
        std::fs::write(d.path().join(".terraform/junk"), "y").unwrap();
        let h2 = Hasher::new()
            .tree("t", d.path(), &[".terraform"])
            .unwrap()
            .finish();
        assert_eq!(h1, h2);
        std::fs::write(d.path().join("main.tf"), "z").unwrap();
        let h3 = Hasher::new()
            .tree("t", d.path(), &[".terraform"])
            .unwrap()
            .finish();
        assert_ne!(h1, h3);
    }
}
