//! One commit made in a scratch clone and pushed without force: the machinery the image
//! writeback and `strata promote` share. The caller's edit is made on the branch's head; a push
//! refused because the branch moved is retried with the edit made again on the new head.

use std::path::{Path, PathBuf};

use super::git::{Git, GitError};
use super::writeback::{redact_url, WritebackError, WritebackOptions};
use crate::stack::images::Author;

/// How often a push refused because the branch moved is retried on the new head.
pub const PUSH_ATTEMPTS: u32 = 5;

/// Where the commit goes and who makes it.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The branch the commit is based on; default: the ref the source tracks (else the
    /// remote's HEAD).
    pub branch: Option<String>,
    /// Push here instead of `branch`, for review.
    pub push_branch: Option<String>,
    pub author: Author,
}

/// What the caller's edit did in the checkout.
#[derive(Debug)]
pub struct Edited<T> {
    /// What was changed, for the caller's outcome.
    pub made: T,
    /// The files written, relative to the repository; empty: nothing to commit.
    pub files: Vec<String>,
    pub message: String,
}

/// The commit pushed, or none.
#[derive(Debug)]
pub struct Pushed<T> {
    /// `None` when the edit changed nothing (nothing committed).
    pub commit: Option<String>,
    pub branch: String,
    pub pushed_to: String,
    pub proposed: bool,
    /// What the last edit made.
    pub made: T,
    /// Pushes tried (more than one when the branch moved meanwhile).
    pub attempts: u32,
}

pub(super) fn scrub(e: GitError, url: &str) -> GitError {
    let shown = redact_url(url);
    if shown == url {
        return e;
    }
    match e {
        GitError::Failed { args, stderr } => GitError::Failed {
            args: args.replace(url, &shown),
            stderr: stderr.replace(url, &shown),
        },
        GitError::Timeout { args, timeout } => GitError::Timeout {
            args: args.replace(url, &shown),
            timeout,
        },
        other => other,
    }
}

/// Clones the branch, calls `edit(stack_dir, repo, branch)` in the checkout, commits the files
/// it wrote and pushes.
///
/// # Guarantees
/// Only the files `edit` names are committed, in one commit; nothing is committed when it names
/// none. The push never forces: when the branch moved, the checkout is reset to its new head,
/// `edit` is called again there and the result pushed again (up to [`PUSH_ATTEMPTS`] times).
/// With `push_branch`, the commit is based on that branch when it exists (a proposal already
/// pushed is built on), else on the branch, and the branch is left alone. The scratch clone is
/// removed when this returns. URLs in errors carry no password.
///
/// # Errors
/// git fails or times out (clone, commit, push), `edit` fails, the tracked ref is no branch,
/// or the branch kept moving.
pub fn commit_and_push<T, E: From<WritebackError>>(
    opts: &WritebackOptions,
    dest: &Destination,
    mut edit: impl FnMut(&Path, &Path, &str) -> Result<Edited<T>, E>,
) -> Result<Pushed<T>, E> {
    let url = opts.url.as_str();
    let scratch_err = |source| WritebackError::Scratch {
        dir: opts.work_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&opts.work_dir).map_err(scratch_err)?;
    let scratch = tempfile::Builder::new()
        .prefix("image-update-")
        .tempdir_in(&opts.work_dir)
        .map_err(scratch_err)?;
    let git_err = |e: GitError| E::from(WritebackError::Git(scrub(e, url)));
    let outside = Git::new(scratch.path(), opts.timeout).map_err(git_err)?;
    let run = |git: &Git, args: &[&str]| git.run(args).map_err(git_err);
    let branch = match dest.branch.clone() {
        Some(b) => b,
        None => match &opts.tracked {
            Some(r) => {
                let b = r.strip_prefix("refs/heads/").unwrap_or(r).to_string();
                let heads = run(
                    &outside,
                    &[
                        "ls-remote",
                        "--heads",
                        "--",
                        url,
                        &format!("refs/heads/{b}"),
                    ],
                )?;
                if heads.is_empty() {
                    return Err(WritebackError::NotABranch(r.clone()).into());
                }
                b
            }
            None => {
                // The remote's HEAD: `ref: refs/heads/main	HEAD`.
                let out = run(&outside, &["ls-remote", "--symref", "--", url, "HEAD"])?;
                out.lines()
                    .find_map(|l| l.strip_prefix("ref: refs/heads/"))
                    .and_then(|l| l.split_whitespace().next())
                    .map(str::to_string)
                    .ok_or_else(|| WritebackError::NotABranch("HEAD".into()))?
            }
        },
    };
    let target = dest.push_branch.clone().unwrap_or_else(|| branch.clone());
    // A proposal already pushed is built on: its branch holds the earlier edits.
    let start = if target != branch
        && !run(
            &outside,
            &[
                "ls-remote",
                "--heads",
                "--",
                url,
                &format!("refs/heads/{target}"),
            ],
        )?
        .is_empty()
    {
        target.clone()
    } else {
        branch.clone()
    };
    run(
        &outside,
        &[
            "clone",
            "--quiet",
            "--no-tags",
            "--single-branch",
            "--branch",
            &start,
            "--",
            url,
            "repo",
        ],
    )?;
    let repo: PathBuf = scratch.path().join("repo");
    let git = Git::new(&repo, opts.timeout)
        .map_err(git_err)?
        .identity(&dest.author.name, &dest.author.email);
    let stack_dir = match &opts.path {
        Some(p) => repo.join(p),
        None => repo.clone(),
    };
    let proposed = dest.push_branch.is_some();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let edited = edit(&stack_dir, &repo, &branch)?;
        if edited.files.is_empty() {
            return Ok(Pushed {
                commit: None,
                branch,
                pushed_to: target,
                proposed,
                made: edited.made,
                attempts: attempts - 1,
            });
        }
        let mut add = vec!["add", "--"];
        add.extend(edited.files.iter().map(String::as_str));
        run(&git, &add)?;
        run(
            &git,
            &[
                "-c",
                "commit.gpgsign=false",
                "commit",
                "--quiet",
                "--no-verify",
                "-m",
                &edited.message,
            ],
        )?;
        match git.run(&[
            "push",
            "--quiet",
            "origin",
            &format!("HEAD:refs/heads/{target}"),
        ]) {
            Ok(_) => {
                let commit = run(&git, &["rev-parse", "HEAD"])?;
                return Ok(Pushed {
                    commit: Some(commit),
                    branch,
                    pushed_to: target,
                    proposed,
                    made: edited.made,
                    attempts,
                });
            }
            Err(e) if e.is_rejected_push() && attempts < PUSH_ATTEMPTS => {
                tracing::info!(
                    "branch {target} moved while pushing; making the edit again on its new head"
                );
                run(
                    &git,
                    &[
                        "fetch",
                        "--quiet",
                        "origin",
                        &format!("refs/heads/{target}"),
                    ],
                )?;
                run(&git, &["reset", "--quiet", "--hard", "FETCH_HEAD"])?;
            }
            Err(e) if e.is_rejected_push() => {
                return Err(WritebackError::KeptMoving { branch: target }.into());
            }
            Err(e) => return Err(git_err(e)),
        }
    }
}
