//! The commit of new image tags: a scratch clone of the branch, the marked values replaced byte
//! for byte, one commit, pushed with the `git` binary. A push refused because the branch moved
//! is retried on the new head (the marker edit is made again there), never forced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::git::{Git, GitError};
use super::markers;
use crate::stack::images::Writeback;

/// How often a push refused because the branch moved is retried on the new head.
const PUSH_ATTEMPTS: u32 = 5;

/// The tag selected for one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub image: String,
    /// The block's repository when the tag was selected: markers of a block whose repository
    /// has changed since are left alone.
    pub repository: String,
    pub tag: String,
}

/// Where and how to commit.
#[derive(Debug, Clone)]
pub struct WritebackOptions {
    /// The Git repository (as `--repo` names it).
    pub url: String,
    /// The stack's directory inside it.
    pub path: Option<PathBuf>,
    /// The ref the source tracks, the branch when the stack's writeback names none.
    pub tracked: Option<String>,
    /// Where the scratch clone goes (a directory of the state dir).
    pub work_dir: PathBuf,
    /// Bounds each git command.
    pub timeout: Duration,
}

/// One marked line changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineChange {
    pub file: String,
    pub line: usize,
    pub from: String,
    pub to: String,
}

/// One image moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub image: String,
    /// The tags its markers held (several when they disagreed).
    pub from: Vec<String>,
    pub to: String,
    pub lines: Vec<LineChange>,
}

/// What an update did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// The commit pushed; `None` when every marker was up to date (nothing committed).
    pub commit: Option<String>,
    /// The branch the commit is based on.
    pub branch: String,
    /// The branch pushed to: `branch`, or `push_branch` for review.
    pub pushed_to: String,
    /// Whether it went to `push_branch` (a proposal, not converged until merged).
    pub proposed: bool,
    pub changes: Vec<Change>,
    /// Pushes tried (more than one when the branch moved meanwhile).
    pub attempts: u32,
}

/// Why an update failed.
#[derive(Debug, thiserror::Error)]
pub enum WritebackError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("cannot make a scratch clone under {dir}: {source}")]
    Scratch {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {file} in the scratch clone: {source}")]
    Write {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the stack at {branch} is not valid, nothing committed: {diagnostics}")]
    Invalid {
        branch: String,
        diagnostics: crate::stack::Diagnostics,
    },
    #[error(
        "the source tracks \"{0}\", which is not a branch: set `branch` in the writeback block"
    )]
    NotABranch(String),
    #[error("branch {branch} moved during each of {PUSH_ATTEMPTS} pushes; nothing was forced, the next update tries again")]
    KeptMoving { branch: String },
}

/// Where scratch clones are made, in the state dir.
pub fn work_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("image-updates")
}

/// The tags a scan selected, for the images that have one.
pub fn selections(report: &super::scan::ScanReport) -> Vec<Selected> {
    report
        .images
        .iter()
        .filter_map(|i| {
            i.latest.as_ref().map(|tag| Selected {
                image: i.image.clone(),
                repository: i.repository.clone(),
                tag: tag.clone(),
            })
        })
        .collect()
}

/// `https://user:secret@host/x` → `https://***@host/x`: URLs in messages never carry secrets.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host))
                if !rest.split('/').next().unwrap_or("").is_empty()
                    && rest.find('@') < rest.find('/') =>
            {
                format!("{scheme}://***@{host}")
            }
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

fn scrub(e: GitError, url: &str) -> GitError {
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

/// Commits `selected` into the marked lines of the stack and pushes it.
///
/// # Guarantees
/// Only the bytes of marked values change; a file without a marker that moves is not written.
/// Nothing is committed when every marker already holds its tag. The push never forces: when
/// the branch moved, the edit is made again on its new head and pushed again (up to
/// [`PUSH_ATTEMPTS`] times). Markers whose value does not match their image block are left
/// alone (`strata validate` names them). The scratch clone is removed when this returns.
///
/// # Errors
/// git fails or times out (clone, commit, push), the stack at the branch's head is invalid, the
/// tracked ref is no branch, or the branch kept moving.
pub fn update(
    opts: &WritebackOptions,
    writeback: &Writeback,
    selected: &[Selected],
) -> Result<Outcome, WritebackError> {
    let url = opts.url.as_str();
    std::fs::create_dir_all(&opts.work_dir).map_err(|source| WritebackError::Scratch {
        dir: opts.work_dir.clone(),
        source,
    })?;
    let scratch = tempfile::Builder::new()
        .prefix("image-update-")
        .tempdir_in(&opts.work_dir)
        .map_err(|source| WritebackError::Scratch {
            dir: opts.work_dir.clone(),
            source,
        })?;
    let outside = Git::new(scratch.path(), opts.timeout)?;
    let run = |git: &Git, args: &[&str]| git.run(args).map_err(|e| scrub(e, url));
    let branch = match writeback.branch.clone() {
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
                    return Err(WritebackError::NotABranch(r.clone()));
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
    let target = writeback
        .push_branch
        .clone()
        .unwrap_or_else(|| branch.clone());
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
    let repo = scratch.path().join("repo");
    let git =
        Git::new(&repo, opts.timeout)?.identity(&writeback.author.name, &writeback.author.email);
    let stack_dir = match &opts.path {
        Some(p) => repo.join(p),
        None => repo.clone(),
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let changes = edit(&stack_dir, &repo, &branch, selected)?;
        if changes.is_empty() {
            return Ok(Outcome {
                commit: None,
                branch,
                pushed_to: target.clone(),
                proposed: writeback.push_branch.is_some(),
                changes,
                attempts: attempts - 1,
            });
        }
        let mut files: Vec<String> = changes
            .iter()
            .flat_map(|c| c.lines.iter().map(|l| l.file.clone()))
            .collect();
        files.sort();
        files.dedup();
        let mut add = vec!["add", "--"];
        add.extend(files.iter().map(String::as_str));
        run(&git, &add)?;
        let message = message(&writeback.message, &changes, selected);
        run(
            &git,
            &[
                "-c",
                "commit.gpgsign=false",
                "commit",
                "--quiet",
                "--no-verify",
                "-m",
                &message,
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
                return Ok(Outcome {
                    commit: Some(commit),
                    branch,
                    proposed: writeback.push_branch.is_some(),
                    pushed_to: target,
                    changes,
                    attempts,
                });
            }
            Err(e) if e.is_rejected_push() && attempts < PUSH_ATTEMPTS => {
                tracing::info!("branch {target} moved while pushing image updates; making the edit again on its new head");
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
                return Err(WritebackError::KeptMoving { branch: target });
            }
            Err(e) => return Err(scrub(e, url).into()),
        }
    }
}

/// Makes the edits in the checkout; the changes made (empty when none was needed).
fn edit(
    stack_dir: &Path,
    repo: &Path,
    branch: &str,
    selected: &[Selected],
) -> Result<Vec<Change>, WritebackError> {
    let stack =
        crate::stack::Stack::load(stack_dir).map_err(|diagnostics| WritebackError::Invalid {
            branch: branch.to_string(),
            diagnostics,
        })?;
    let found = markers::scan(stack_dir);
    let bad = markers::check(&found, &stack.images);
    let mut by_file: BTreeMap<PathBuf, Vec<(std::ops::Range<usize>, String)>> = BTreeMap::new();
    let mut changes: BTreeMap<String, Change> = BTreeMap::new();
    for m in &found.markers {
        if bad.iter().any(|p| p.file == m.file && p.line == m.line) {
            continue;
        }
        let Some(image) = stack.images.iter().find(|i| i.name == m.image) else {
            continue;
        };
        let Some(sel) = selected
            .iter()
            .find(|s| s.image == image.name && s.repository == image.repository)
        else {
            continue;
        };
        let wanted = m.wanted(image, &sel.tag);
        if wanted == m.value {
            continue;
        }
        let rel = stack_dir
            .join(&m.file)
            .strip_prefix(repo)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| m.file.clone());
        by_file
            .entry(stack_dir.join(&m.file))
            .or_default()
            .push((m.span.clone(), wanted.clone()));
        let c = changes.entry(image.name.clone()).or_insert_with(|| Change {
            image: image.name.clone(),
            from: Vec::new(),
            to: sel.tag.clone(),
            lines: Vec::new(),
        });
        if let Some(t) = m.tag() {
            if !c.from.iter().any(|f| f == t) {
                c.from.push(t.to_string());
            }
        }
        c.lines.push(LineChange {
            file: rel.display().to_string(),
            line: m.line,
            from: m.value.clone(),
            to: wanted,
        });
    }
    for (file, mut edits) in by_file {
        let write_err = |source| WritebackError::Write {
            file: file.clone(),
            source,
        };
        let mut bytes = std::fs::read(&file).map_err(write_err)?;
        edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
        for (span, value) in edits {
            bytes.splice(span, value.into_bytes());
        }
        // A scratch clone: the file's mode is kept by writing it in place.
        std::fs::write(&file, bytes).map_err(write_err)?;
    }
    Ok(changes.into_values().collect())
}

/// `web 1.0.0 → 1.2.0, api 3 → 4`.
pub fn summary(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|c| {
            let from = if c.from.is_empty() {
                "?".to_string()
            } else {
                c.from.join("/")
            };
            format!("{} {from} → {}", c.image, c.to)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The commit message: the template with `{{changes}}`, and a `Strata-Image:` trailer per
/// image moved, so the history says which images moved whatever the template.
fn message(template: &str, changes: &[Change], selected: &[Selected]) -> String {
    let mut m = template.replace("{{changes}}", &summary(changes));
    m.push_str("\n\n");
    for c in changes {
        let repo = selected
            .iter()
            .find(|s| s.image == c.image)
            .map_or("", |s| s.repository.as_str());
        m.push_str(&format!("Strata-Image: {} {repo}:{}\n", c.image, c.to));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_in_messages_carry_no_secret() {
        assert_eq!(
            redact_url("https://bot:s3cret@git.example.com/a.git"),
            "https://***@git.example.com/a.git"
        );
        assert_eq!(redact_url("/srv/git/a.git"), "/srv/git/a.git");
        assert_eq!(redact_url("ssh://git@host/a.git"), "ssh://***@host/a.git");
    }
}
