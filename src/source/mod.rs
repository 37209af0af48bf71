//! Git sources: fetch, pin a commit, materialise it safely, find affected layers, verify
//! signatures.
//!
//! strata never reads a repository's working tree when it converges from Git: [`resolve`] fetches
//! the source into a bare mirror in the state dir, pins the ref to a commit, checks the commit's
//! signature when the agent asks for it, and materialises the commit's tree (read-only) into
//! `revisions/<commit>/`. Everything downstream works from that directory.

pub mod affected;
pub mod error;
pub mod materialise;
pub mod mirror;
pub mod verify;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use affected::{Affected, Reason};
pub use error::SourceError;
pub use materialise::Limits;
pub use verify::{SignatureStatus, VerifyPolicy};

/// Where the desired state comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceSpec {
    /// A local path, `file://`, `https://`, `ssh://` or scp-like `user@host:path`.
    pub url: String,
    /// A branch, tag or full commit id; the remote's HEAD when `None`.
    pub reference: Option<String>,
    /// The stack's directory inside the repository.
    pub path: Option<PathBuf>,
}

/// How sources are read.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub state_dir: PathBuf,
    pub limits: Limits,
    /// Configured on the agent, never in the repository.
    pub verify: Option<VerifyPolicy>,
}

impl SourceOptions {
    pub fn new(state_dir: impl Into<PathBuf>) -> SourceOptions {
        SourceOptions {
            state_dir: state_dir.into(),
            limits: Limits::default(),
            verify: None,
        }
    }
}

/// The last fetch failed; the revision is the one fetched before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stale {
    /// Unix seconds of the last successful fetch.
    pub since: u64,
    pub age_secs: u64,
    /// Why the fetch failed.
    pub error: String,
}

/// A pinned, verified, materialised commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revision {
    pub url: String,
    /// The ref asked for, `HEAD` for the remote's default branch.
    pub reference: String,
    /// What it resolved to: `refs/heads/main`, `refs/tags/v1`, or the commit id.
    pub ref_name: String,
    pub commit: String,
    pub author: String,
    pub date: String,
    /// The commit message's first line.
    pub summary: String,
    pub signature: SignatureStatus,
    /// The materialised tree of the whole commit.
    pub dir: PathBuf,
    /// The stack directory: `dir` joined with the source's `path`.
    pub stack_dir: PathBuf,
    pub path: PathBuf,
    /// Set when the fetch failed and an earlier revision is used.
    pub stale: Option<Stale>,
    /// The ref moved to a commit that does not descend from the one it had (a force push).
    pub history_rewritten: bool,
}

impl Revision {
    /// How the commit's stack file is named in messages: its path in the repository and the
    /// short commit (`envs/prod/strata.hcl:5:13 (at e8d049b)`), not the materialised copy.
    pub fn shown(&self) -> crate::stack::Shown {
        crate::stack::Shown {
            file: self.path.join(crate::stack::STACK_FILE),
            revision: Some(self.commit.chars().take(7).collect()),
        }
    }
}

/// Fetches `spec`, pins it to a commit, verifies and materialises it.
///
/// Blocking (network and disk): call it from `spawn_blocking` in async code.
///
/// # Guarantees
/// - Fetches are incremental into one bare mirror per URL (`mirrors/` in the state dir).
/// - An unreachable remote is not an error when the ref was resolved before: the earlier
///   revision is returned, marked [`Stale`] with its age.
/// - A mirror that can't be read or fetched into while the remote is reachable is deleted and
///   cloned again, once.
/// - A commit refused by verification or by the content checks is never materialised.
///
/// # Errors
/// Unknown refs (listing what exists), unreachable remotes with no earlier revision, refused
/// signatures (naming commit, signer and reason), unsafe content (naming path and limit).
pub fn resolve(spec: &SourceSpec, opts: &SourceOptions) -> Result<Revision, SourceError> {
    let dir = mirror::mirror_dir(&opts.state_dir, &spec.url);
    let key = spec.reference.clone().unwrap_or_else(|| "HEAD".into());
    let mut state = mirror::load_state(&dir);
    let previous = state.resolved.get(&key).cloned();

    let (repo, stale) = match fetch_into(&dir, &spec.url) {
        Ok((repo, head)) => {
            state.url = spec.url.clone();
            state.remote_head = head;
            state.fetched_at = Some(mirror::now());
            (repo, None)
        }
        Err(err) => {
            let usable = previous.is_some() && dir.join("HEAD").exists();
            match (usable, gix::open(&dir)) {
                (true, Ok(repo)) => {
                    let since = state.fetched_at.unwrap_or(0);
                    tracing::warn!(url = %spec.url, "{err}; using the last fetched revision");
                    let stale = Stale {
                        since,
                        age_secs: mirror::now().saturating_sub(since),
                        error: err.to_string(),
                    };
                    (repo, Some(stale))
                }
                _ => return Err(err),
            }
        }
    };

    let (ref_name, commit_id) = match (&stale, &previous) {
        (Some(_), Some(prev)) => (
            prev.ref_name.clone(),
            gix::ObjectId::from_hex(prev.commit.as_bytes()).map_err(|e| SourceError::Read {
                commit: prev.commit.clone(),
                message: e.to_string(),
            })?,
        ),
        _ => resolve_ref(&repo, spec, &state)?,
    };
    let hex = commit_id.to_string();
    let read = |e: &dyn std::fmt::Display| SourceError::Read {
        commit: hex.clone(),
        message: e.to_string(),
    };
    let commit = repo.find_commit(commit_id).map_err(|e| read(&e))?;

    let history_rewritten = match &previous {
        Some(prev) if prev.commit != hex => !descends_from(&commit, &prev.commit),
        _ => false,
    };
    if history_rewritten {
        tracing::warn!(
            url = %spec.url,
            reference = %key,
            "history was rewritten: {} no longer descends from {}; following the new commit",
            short(&hex),
            short(&previous.as_ref().map(|p| p.commit.clone()).unwrap_or_default())
        );
    }

    let signature = verify::check(&commit, opts.verify.as_ref()).map_err(|reason| {
        SourceError::Verification {
            commit: hex.clone(),
            reason,
        }
    })?;
    if opts.verify.is_some() {
        if let Some(reason) = signature.refusal() {
            return Err(SourceError::Verification {
                commit: hex,
                reason,
            });
        }
    }

    let author = commit.author().map_err(|e| read(&e))?;
    let author_text = format!("{} <{}>", author.name, author.email);
    let date = commit
        .time()
        .ok()
        .and_then(|t| t.format(gix::date::time::format::ISO8601).ok())
        .unwrap_or_default();
    let summary = commit
        .message()
        .map(|m| m.summary().to_string())
        .unwrap_or_default();
    drop(commit);

    let root = materialise::materialise(&repo, commit_id, &opts.state_dir, &opts.limits)?;
    let path = spec.path.clone().unwrap_or_default();
    let stack_dir = if path.as_os_str().is_empty() {
        root.clone()
    } else {
        root.join(&path)
    };
    let escapes =
        path.is_absolute() || crate::terraform::modules::normalize(&path).starts_with("..");
    if escapes || !stack_dir.is_dir() {
        return Err(SourceError::NoSuchPath {
            commit: hex,
            path: path.display().to_string(),
        });
    }
    if stale.is_none() {
        state.resolved.insert(
            key.clone(),
            mirror::Resolved {
                commit: hex.clone(),
                ref_name: ref_name.clone(),
                at: mirror::now(),
            },
        );
        mirror::save_state(&dir, &state)?;
    }
    materialise::gc(
        &opts.state_dir,
        materialise::KEEP_REVISIONS,
        &[hex.as_str()],
    );
    Ok(Revision {
        url: spec.url.clone(),
        reference: key,
        ref_name,
        commit: hex,
        author: author_text,
        date,
        summary,
        signature,
        dir: root,
        stack_dir,
        path,
        stale,
        history_rewritten,
    })
}

/// Opens (or creates) the mirror and fetches; a mirror that fails while a fresh clone succeeds
/// was corrupt, and is replaced, once.
fn fetch_into(dir: &Path, url: &str) -> Result<(gix::Repository, Option<String>), SourceError> {
    // One writer per mirror (an agent and a CLI command on the same state dir): a repack or a
    // re-clone must never run under another process's fetch. The kernel drops the lock if the
    // holder dies; the lock file is never deleted.
    let _writer = mirror::lock(dir)?;
    mirror::compact(dir);
    let first = mirror::open_or_init(dir, url).and_then(|repo| {
        let head = mirror::fetch(&repo, url)?;
        Ok((repo, head))
    });
    let err = match first {
        Ok(ok) => return Ok(ok),
        Err(e) => e,
    };
    // Try a fresh mirror beside it: if that works, the remote is fine and the old mirror is not.
    let fresh = dir.with_extension("reclone");
    let _ = std::fs::remove_dir_all(&fresh);
    let retry = mirror::open_or_init(&fresh, url).and_then(|repo| {
        let head = mirror::fetch(&repo, url)?;
        Ok((repo, head))
    });
    match retry {
        Ok((repo, head)) => {
            drop(repo);
            tracing::warn!(
                url,
                "the mirror at {} was unusable ({err}); cloned it again",
                dir.display()
            );
            let state = mirror::load_state(dir);
            let _ = std::fs::remove_dir_all(dir);
            std::fs::rename(&fresh, dir).map_err(error::io("replace", dir))?;
            mirror::save_state(dir, &state)?;
            let repo = gix::open(dir).map_err(|e| SourceError::Mirror {
                url: url.to_string(),
                path: dir.to_path_buf(),
                message: e.to_string(),
            })?;
            Ok((repo, head))
        }
        Err(_) => {
            let _ = std::fs::remove_dir_all(&fresh);
            Err(err)
        }
    }
}

/// Resolves the asked-for ref to a full ref name and commit id.
fn resolve_ref(
    repo: &gix::Repository,
    spec: &SourceSpec,
    state: &mirror::MirrorState,
) -> Result<(String, gix::ObjectId), SourceError> {
    let peel = |name: &str| -> Option<gix::ObjectId> {
        let mut r = repo.find_reference(name).ok()?;
        let id = r.peel_to_id().ok()?.detach();
        let commit = repo.find_object(id).ok()?.peel_to_commit().ok()?;
        Some(commit.id)
    };
    let reference = match &spec.reference {
        Some(r) => r.clone(),
        None => {
            let head = state
                .remote_head
                .clone()
                .ok_or_else(|| SourceError::NoHead {
                    url: spec.url.clone(),
                })?;
            head.strip_prefix("refs/heads/")
                .unwrap_or(&head)
                .to_string()
        }
    };
    if reference.len() == 40 && reference.chars().all(|c| c.is_ascii_hexdigit()) {
        if let Ok(id) = gix::ObjectId::from_hex(reference.as_bytes()) {
            if repo.find_commit(id).is_ok() {
                return Ok((reference.clone(), id));
            }
        }
    }
    let branch = reference.strip_prefix("refs/heads/").unwrap_or(&reference);
    let tag = reference.strip_prefix("refs/tags/").unwrap_or(&reference);
    for (name, shown) in [
        (
            format!("refs/remotes/origin/{branch}"),
            format!("refs/heads/{branch}"),
        ),
        (format!("refs/tags/{tag}"), format!("refs/tags/{tag}")),
    ] {
        if let Some(id) = peel(&name) {
            return Ok((shown, id));
        }
    }
    // Like git, a ref wins over a short commit id that happens to spell the same.
    if let Some(id) = short_commit(repo, &spec.url, &reference)? {
        return Ok((id.to_string(), id));
    }
    Err(SourceError::UnknownRef {
        url: spec.url.clone(),
        reference,
        known: known_refs(repo),
    })
}

/// The commit a short id (4 to 39 hex digits) names, when exactly one commit starts with it.
///
/// # Errors
/// `AmbiguousRef` naming every commit that starts with it.
fn short_commit(
    repo: &gix::Repository,
    url: &str,
    short: &str,
) -> Result<Option<gix::ObjectId>, SourceError> {
    if !(4..40).contains(&short.len()) || !short.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let Ok(prefix) = gix::hash::Prefix::from_hex(&short.to_ascii_lowercase()) else {
        return Ok(None);
    };
    let mut found = std::collections::HashSet::new();
    if repo
        .objects
        .lookup_prefix(prefix, Some(&mut found))
        .is_err()
    {
        return Ok(None);
    }
    // Trees and blobs may share the prefix; only commits can be converged to.
    let mut commits: Vec<gix::ObjectId> = found
        .into_iter()
        .filter(|id| repo.find_commit(*id).is_ok())
        .collect();
    commits.sort();
    match commits.len() {
        0 => Ok(None),
        1 => Ok(commits.pop()),
        _ => Err(SourceError::AmbiguousRef {
            url: url.to_string(),
            reference: short.to_string(),
            candidates: commits
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn known_refs(repo: &gix::Repository) -> String {
    let names = |prefix: &str| -> Vec<String> {
        repo.references()
            .ok()
            .and_then(|refs| {
                refs.prefixed(prefix).ok().map(|it| {
                    it.filter_map(Result::ok)
                        .map(|r| {
                            r.name()
                                .as_bstr()
                                .to_string()
                                .trim_start_matches(prefix)
                                .to_string()
                        })
                        .take(10)
                        .collect()
                })
            })
            .unwrap_or_default()
    };
    let branches = names("refs/remotes/origin/");
    let tags = names("refs/tags/");
    if branches.is_empty() && tags.is_empty() {
        return String::new();
    }
    format!(
        " (branches: {}; tags: {})",
        or_none(&branches),
        or_none(&tags)
    )
}

fn or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Whether `commit` has `ancestor` in its history.
fn descends_from(commit: &gix::Commit<'_>, ancestor: &str) -> bool {
    let (Ok(walk), Ok(ancestor)) = (
        commit.ancestors().all(),
        gix::ObjectId::from_hex(ancestor.as_bytes()),
    ) else {
        return false;
    };
    walk.filter_map(Result::ok).any(|info| info.id == ancestor)
}

fn short(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}

/// Opens the mirror of `url` (after [`resolve`] fetched it), for tree diffs.
pub fn open_mirror(state_dir: &Path, url: &str) -> Result<gix::Repository, SourceError> {
    let dir = mirror::mirror_dir(state_dir, url);
    gix::open(&dir).map_err(|e| SourceError::Mirror {
        url: url.to_string(),
        path: dir,
        message: e.to_string(),
    })
}

/// Resolves a revision expression (`abc123`, `main~1`, `v1.2`, `HEAD^`) in the mirror, for
/// `--since`. `HEAD` means `head_ref`, the branch the source resolved to (`refs/heads/main`).
pub fn rev_parse(repo: &gix::Repository, rev: &str, head_ref: &str) -> Option<gix::ObjectId> {
    let mut candidates = vec![
        rev.to_string(),
        format!("refs/remotes/origin/{rev}"),
        format!("refs/tags/{rev}"),
    ];
    if let (Some(rest), Some(branch)) = (
        rev.strip_prefix("HEAD"),
        head_ref.strip_prefix("refs/heads/"),
    ) {
        candidates.push(format!("refs/remotes/origin/{branch}{rest}"));
    }
    candidates.iter().find_map(|c| {
        let obj = repo.rev_parse_single(c.as_str()).ok()?.object().ok()?;
        Some(obj.peel_to_commit().ok()?.id)
    })
}
