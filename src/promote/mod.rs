//! `strata promote FROM TO`: a commit that copies `vars` values from one environment block to
//! another in the stack file, pushed like the image writeback (directly, or to a branch for
//! review). `edit.rs` makes the edit to the text; this file commits it.

pub mod edit;

use std::path::Path;

use serde::Serialize;

use crate::images::commit::{commit_and_push, Destination, Edited};
use crate::images::writeback::{WritebackError, WritebackOptions};
use crate::stack::{Shown, STACK_FILE};
pub use edit::{EditError, VarChange};

/// What a promotion did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Promotion {
    pub from: String,
    pub to: String,
    /// The commit pushed; `None` when `to` already held every value (nothing committed).
    pub commit: Option<String>,
    /// The branch the commit is based on.
    pub branch: String,
    /// The branch pushed to: `branch`, or the push branch for review.
    pub pushed_to: String,
    /// Whether it went to a push branch (a proposal, not converged until merged).
    pub proposed: bool,
    /// The stack file, relative to the repository.
    pub file: String,
    pub changes: Vec<VarChange>,
    /// Pushes tried (more than one when the branch moved meanwhile).
    pub attempts: u32,
}

/// Why a promotion failed; nothing was pushed.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error(transparent)]
    Writeback(#[from] WritebackError),
    #[error("promote {from} → {to}: {source}")]
    Edit {
        from: String,
        to: String,
        #[source]
        source: Box<EditError>,
    },
    #[error(
        "promote {from} → {to} would leave the stack invalid, nothing committed: {diagnostics}"
    )]
    Breaks {
        from: String,
        to: String,
        diagnostics: crate::stack::Diagnostics,
    },
}

/// `web_image registry.example.com/shop/web:1.4.0, replicas 3`.
pub fn summary(changes: &[VarChange]) -> String {
    changes
        .iter()
        .map(|c| format!("{} {}", c.var, c.to.trim_matches('"')))
        .collect::<Vec<_>>()
        .join(", ")
}

fn message(from: &str, to: &str, changes: &[VarChange]) -> String {
    let mut m = format!("promote {from} → {to}: {}\n\n", summary(changes));
    for c in changes {
        m.push_str(&format!(
            "Strata-Promote: {from} → {to} {} {} → {}\n",
            c.var,
            c.from.trim_matches('"'),
            c.to.trim_matches('"')
        ));
    }
    m
}

/// Copies `vars` (default: the values carrying a `# strata:image` marker) from environment
/// `from` to `to` in the stack file at the head of the branch, commits and pushes.
///
/// # Guarantees
/// Only the bytes of `to`'s chosen values change, each becoming `from`'s value as written;
/// nothing else in any file does. Nothing is committed when `to` already holds every value.
/// The stack is validated before and after the edit, and an edit that would leave it invalid
/// is not committed. The push never forces; when the branch moved, the edit is made again on
/// its new head (see [`commit_and_push`]).
///
/// # Errors
/// git fails or times out; the stack at the branch's head is invalid; an environment or var is
/// unknown (naming the known ones); the result would be invalid; the branch kept moving.
pub fn promote(
    opts: &WritebackOptions,
    dest: &Destination,
    from: &str,
    to: &str,
    vars: Option<&[String]>,
) -> Result<Promotion, PromoteError> {
    let rel = opts
        .path
        .as_deref()
        .unwrap_or(Path::new(""))
        .join(STACK_FILE);
    let file = rel.display().to_string();
    let pushed = commit_and_push(
        opts,
        dest,
        |stack_dir, _repo, branch| -> Result<_, PromoteError> {
            let shown = Shown {
                file: rel.clone(),
                revision: Some(branch.to_string()),
            };
            crate::validate_shown(stack_dir, &shown).map_err(|diagnostics| {
                WritebackError::Invalid {
                    branch: branch.to_string(),
                    diagnostics,
                }
            })?;
            let path = stack_dir.join(STACK_FILE);
            let write_err = |source| WritebackError::Write {
                file: rel.clone(),
                source,
            };
            let text = std::fs::read_to_string(&path).map_err(write_err)?;
            let (edited, changes) =
                edit::promote_text(&text, from, to, vars).map_err(|source| PromoteError::Edit {
                    from: from.to_string(),
                    to: to.to_string(),
                    source: Box::new(source),
                })?;
            if changes.is_empty() {
                return Ok(Edited {
                    made: changes,
                    files: Vec::new(),
                    message: String::new(),
                });
            }
            // A scratch clone: the file's mode is kept by writing it in place.
            std::fs::write(&path, &edited).map_err(write_err)?;
            crate::validate_shown(stack_dir, &shown).map_err(|diagnostics| {
                PromoteError::Breaks {
                    from: from.to_string(),
                    to: to.to_string(),
                    diagnostics,
                }
            })?;
            Ok(Edited {
                message: message(from, to, &changes),
                made: changes,
                files: vec![file.clone()],
            })
        },
    )?;
    Ok(Promotion {
        from: from.to_string(),
        to: to.to_string(),
        commit: pushed.commit,
        branch: pushed.branch,
        pushed_to: pushed.pushed_to,
        proposed: pushed.proposed,
        file,
        changes: pushed.made,
        attempts: pushed.attempts,
    })
}
