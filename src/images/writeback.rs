//! The commit of new image tags: the marked values replaced byte for byte in a scratch clone of
//! the branch, committed and pushed by [`super::commit`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::commit::{commit_and_push, Destination, Edited, PUSH_ATTEMPTS};
use super::git::GitError;
use super::markers;
use crate::stack::images::Writeback;

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
    #[error("branch {branch} moved during each of {PUSH_ATTEMPTS} pushes; nothing was forced; try again")]
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
    let dest = Destination {
        branch: writeback.branch.clone(),
        push_branch: writeback.push_branch.clone(),
        author: writeback.author.clone(),
    };
    let pushed = commit_and_push(opts, &dest, |stack_dir, repo, branch| {
        let changes = edit(stack_dir, repo, branch, selected)?;
        let mut files: Vec<String> = changes
            .iter()
            .flat_map(|c| c.lines.iter().map(|l| l.file.clone()))
            .collect();
        files.sort();
        files.dedup();
        let message = message(&writeback.message, &changes, selected);
        Ok::<_, WritebackError>(Edited {
            made: changes,
            files,
            message,
        })
    })?;
    Ok(Outcome {
        commit: pushed.commit,
        branch: pushed.branch,
        pushed_to: pushed.pushed_to,
        proposed: pushed.proposed,
        changes: pushed.made,
        attempts: pushed.attempts,
    })
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
