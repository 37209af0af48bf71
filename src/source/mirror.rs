//! One bare mirror per source URL, fetched incrementally with gix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::remote::Direction;
use serde::{Deserialize, Serialize};

use super::error::{io, SourceError};

/// What strata remembers about a mirror between runs (`strata-source.json` inside it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MirrorState {
    pub url: String,
    /// The branch the remote's HEAD pointed at in the last successful fetch.
    pub remote_head: Option<String>,
    /// For each ref asked for (`HEAD` for the default), the commit it resolved to last time.
    pub resolved: BTreeMap<String, Resolved>,
    /// Unix seconds of the last successful fetch.
    pub fetched_at: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Resolved {
    pub commit: String,
    /// The full ref name it came from (`refs/heads/main`), or the commit id itself.
    pub ref_name: String,
    pub at: u64,
}

const STATE_FILE: &str = "strata-source.json";

/// The mirror directory of `url` in the state dir.
pub fn mirror_dir(state_dir: &Path, url: &str) -> PathBuf {
    let hash = crate::hash::sha256(url.as_bytes());
    state_dir.join("mirrors").join(&hash[..16])
}

pub fn load_state(dir: &Path) -> MirrorState {
    std::fs::read(dir.join(STATE_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn save_state(dir: &Path, state: &MirrorState) -> Result<(), SourceError> {
    let path = dir.join(STATE_FILE);
    crate::util::fs::write_atomic(&path, &serde_json::to_vec_pretty(state).expect("json"))
        .map_err(io("write", &path))
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Opens the mirror, creating an empty bare repository the first time.
pub fn open_or_init(dir: &Path, url: &str) -> Result<gix::Repository, SourceError> {
    let mirror_err = |e: &dyn std::fmt::Display| SourceError::Mirror {
        url: url.to_string(),
        path: dir.to_path_buf(),
        message: e.to_string(),
    };
    if dir.join("HEAD").exists() {
        gix::open(dir).map_err(|e| mirror_err(&e))
    } else {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        gix::init_bare(dir).map_err(|e| mirror_err(&e))
    }
}

/// Fetches every branch and tag of `url` into the mirror (branches as `refs/remotes/origin/*`,
/// tags as `refs/tags/*`, force-updated so a rewritten branch is followed) and returns the branch
/// the remote's HEAD points at.
///
/// Blocking: call it from `spawn_blocking` in async code. Local paths and `file://` URLs run
/// `git upload-pack`, so they need `git` on PATH; `https://` does not.
pub fn fetch(repo: &gix::Repository, url: &str) -> Result<Option<String>, SourceError> {
    let fail = |e: &dyn std::fmt::Display| SourceError::Fetch {
        url: url.to_string(),
        message: e.to_string(),
    };
    let remote = repo
        .remote_at(url)
        .map_err(|e| fail(&e))?
        .with_refspecs(
            [
                "+refs/heads/*:refs/remotes/origin/*",
                "+refs/tags/*:refs/tags/*",
            ],
            Direction::Fetch,
        )
        .map_err(|e| fail(&e))?
        .with_fetch_tags(gix::remote::fetch::Tags::None);
    let connection = remote.connect(Direction::Fetch).map_err(|e| fail(&e))?;
    let head_spec = gix::refspec::parse("HEAD".into(), gix::refspec::parse::Operation::Fetch)
        .map_err(|e| fail(&e))?
        .to_owned();
    let options = gix::remote::ref_map::Options {
        extra_refspecs: vec![head_spec],
        ..Default::default()
    };
    let prepare = connection
        .prepare_fetch(gix::progress::Discard, options)
        .map_err(|e| fail(&e))?;
    static NEVER: AtomicBool = AtomicBool::new(false);
    let outcome = prepare
        .receive(gix::progress::Discard, &NEVER)
        .map_err(|e| fail(&e))?;
    let head = outcome.ref_map.remote_refs.iter().find_map(|r| match r {
        gix::protocol::handshake::Ref::Symbolic {
            full_ref_name,
            target,
            ..
        } if full_ref_name == "HEAD" => Some(target.to_string()),
        gix::protocol::handshake::Ref::Unborn {
            full_ref_name,
            target,
        } if full_ref_name == "HEAD" => Some(target.to_string()),
        _ => None,
    });
    Ok(head)
}

/// Takes the mirror's writer lock (`STATE/mirror-locks/<hash>.lock`, outside `mirrors/`, which a
/// re-clone replaces), waiting for another process's fetch to end. Dropping the file releases it.
///
/// # Errors
/// The lock file cannot be created or locked.
pub fn lock(dir: &Path) -> Result<std::fs::File, SourceError> {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let locks = dir
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."))
        .join("mirror-locks");
    let path = locks.join(format!("{name}.lock"));
    if let Some(parent) = path.parent() {
        crate::util::fs::create_private_dir_all(parent).map_err(io("create", parent))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("open", &path))?;
    f.lock().map_err(io("lock", &path))?;
    Ok(f)
}

/// How many pack files a mirror may hold before it is repacked: each fetch that brings commits
/// adds one, so an agent polling a busy repository would otherwise gain one per commit, forever.
pub const PACK_LIMIT: usize = 16;

fn packs(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("objects").join("pack"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .count()
        })
        .unwrap_or(0)
}

/// Repacks the mirror into one pack when it holds more than [`PACK_LIMIT`] packs.
///
/// # Guarantees
/// No object is dropped: commits no branch reaches any more (a force-pushed branch's old tip, a
/// revision to roll back to) are kept in the new pack (`--keep-unreachable`). git writes the new
/// pack before it removes the old ones, so a crash in between leaves duplicates, never a gap.
/// Best effort: without a `git` binary, or when git fails, the mirror stays as it is and a
/// warning says why; fetching goes on either way.
pub fn compact(dir: &Path) {
    let n = packs(dir);
    if n <= PACK_LIMIT {
        return;
    }
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "gc.autoDetach=false", "repack", "-a", "-d", "-q"])
        .arg("--keep-unreachable")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            tracing::debug!(mirror = %dir.display(), "repacked {n} packs into one");
        }
        Ok(o) => tracing::warn!(
            mirror = %dir.display(),
            "failed to repack the mirror's {n} packs: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => tracing::warn!(
            mirror = %dir.display(),
            "failed to run git to repack the mirror's {n} packs: {e}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let ok = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }

    #[test]
    fn fetch_brings_branches_tags_and_the_remote_head() {
        let d = tempfile::tempdir().unwrap();
        let up = d.path().join("up");
        std::fs::create_dir(&up).unwrap();
        git(&up, &["init", "-q", "-b", "trunk"]);
        std::fs::write(up.join("a"), "1").unwrap();
        git(&up, &["add", "a"]);
        git(&up, &["commit", "-qm", "one"]);
        git(&up, &["tag", "-a", "v1", "-m", "v1"]);
        let m = d.path().join("mirror");
        let repo = open_or_init(&m, up.to_str().unwrap()).unwrap();
        let head = fetch(&repo, up.to_str().unwrap()).unwrap();
        assert_eq!(head.as_deref(), Some("refs/heads/trunk"));
        let repo = gix::open(&m).unwrap();
        assert!(repo.find_reference("refs/remotes/origin/trunk").is_ok());
        assert!(repo.find_reference("refs/tags/v1").is_ok());
    }

    #[test]
    fn one_writer_at_a_time_holds_a_mirror() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let d = tempfile::tempdir().unwrap();
        let m = d.path().join("mirrors").join("abc");
        let inside = std::sync::Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (m, inside) = (m.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..25 {
                        let _held = lock(&m).unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two writers");
                        std::thread::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(d.path().join("mirror-locks/abc.lock").exists());
        assert!(
            !m.exists(),
            "the lock lives outside the mirror a re-clone replaces"
        );
    }

    #[test]
    fn a_mirror_fetched_after_every_commit_is_repacked_and_keeps_every_commit() {
        let d = tempfile::tempdir().unwrap();
        let up = d.path().join("up");
        std::fs::create_dir(&up).unwrap();
        git(&up, &["init", "-q", "-b", "main"]);
        let m = d.path().join("mirror");
        let url = up.to_str().unwrap();
        let mut ids = Vec::new();
        for i in 0..(PACK_LIMIT + 8) {
            if i == 4 {
                // A force push leaves commit 3, fetched already, reachable from no branch.
                git(&up, &["reset", "-q", "--hard", "HEAD~1"]);
            }
            std::fs::write(up.join("a"), i.to_string()).unwrap();
            git(&up, &["add", "a"]);
            git(&up, &["commit", "-qm", &format!("c{i}")]);
            let out = std::process::Command::new("git")
                .args(["rev-parse", "HEAD"])
                .current_dir(&up)
                .output()
                .unwrap();
            ids.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
            compact(&m);
            let repo = open_or_init(&m, url).unwrap();
            fetch(&repo, url).unwrap();
            assert!(packs(&m) <= PACK_LIMIT + 1, "{} packs", packs(&m));
        }
        compact(&m);
        assert!(packs(&m) <= PACK_LIMIT, "{} packs", packs(&m));
        let repo = gix::open(&m).unwrap();
        for id in &ids {
            let oid = gix::ObjectId::from_hex(id.as_bytes()).unwrap();
            assert!(repo.find_commit(oid).is_ok(), "commit {id} kept");
        }
    }
}
