//! The stack file, `strata.hcl`: parsing, checking and the model of layers it declares.
//!
//! [`Stack::load`] reads a stack directory and reports *every* problem it finds, each with its
//! `file:line:col`; the layer graph (and its cycles) is [`crate::graph`]'s business.

pub mod diag;
pub mod duration;
pub mod expr;
pub mod model;
mod parse;

use std::path::{Component, Path};

pub use diag::{Diagnostic, Diagnostics, Location};
pub use expr::{EvalError, Expr};
pub use model::*;

/// The stack file's name inside a stack directory.
pub const STACK_FILE: &str = "strata.hcl";

impl Stack {
    /// Reads and checks the stack in `dir`.
    ///
    /// # Errors
    /// Every problem found, in file order: syntax, unknown blocks and attributes, wrong types,
    /// duplicate names, references to layers or clusters that don't exist, and source directories
    /// that are missing or escape the stack root. Cycles are reported by
    /// [`crate::graph::LayerGraph::build`]; [`crate::validate`] runs both.
    pub fn load(dir: impl AsRef<Path>) -> Result<Stack, Diagnostics> {
        match Stack::load_partial(dir.as_ref()) {
            Ok((stack, diags)) if diags.is_empty() => Ok(stack),
            Ok((_, diags)) | Err(diags) => Err(diags),
        }
    }

    /// Like [`Stack::load`], but returns what could be read beside the problems, so that later
    /// checks (the graph's cycles) can still run and be reported together. `Err` only when there
    /// is nothing to go on (no file, or not HCL).
    pub fn load_partial(dir: &Path) -> Result<(Stack, Diagnostics), Diagnostics> {
        let file = dir.join(STACK_FILE);
        let text = std::fs::read_to_string(&file).map_err(|e| {
            let message = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "no {STACK_FILE} in {}: not a stack directory",
                    dir.display()
                )
            } else {
                format!("failed to read {}: {e}", file.display())
            };
            Diagnostics(vec![Diagnostic::new(
                Location {
                    file: file.clone(),
                    line: 1,
                    col: 1,
                },
                message,
            )])
        })?;
        Stack::from_text(&text, &file, dir)
    }

    /// Parses stack-file text as if it were `file` in the stack directory `root`.
    pub fn from_text(
        text: &str,
        file: &Path,
        root: &Path,
    ) -> Result<(Stack, Diagnostics), Diagnostics> {
        let (stack, mut diags, _) = parse::parse_text(text, file, root);
        let Some(stack) = stack else {
            return Err(diags);
        };
        check_references(&stack, &mut diags);
        check_sources(&stack, &mut diags);
        diags.sort();
        Ok((stack, diags))
    }
}

/// Every reference must name a declared layer or cluster of the right kind.
fn check_references(stack: &Stack, diags: &mut Diagnostics) {
    let names = |kind: LayerKind| -> Vec<&str> {
        stack
            .layers
            .iter()
            .filter(|l| l.id.kind == kind)
            .map(|l| l.id.name.as_str())
            .collect()
    };
    let unknown_layer = |target: &LayerId| -> String {
        let same = names(target.kind);
        let mut msg = format!(
            "unknown layer \"{}\"{}",
            target.name,
            diag::hint(&target.name, same.iter().copied())
        );
        if diag::did_you_mean(&target.name, same).is_none() {
            let other = LayerId::new(
                match target.kind {
                    LayerKind::Terraform => LayerKind::Kubernetes,
                    LayerKind::Kubernetes => LayerKind::Terraform,
                },
                target.name.clone(),
            );
            if stack.layer(&other).is_some() {
                msg = format!("unknown layer {target} (there is a layer {other})");
            } else {
                msg = format!("unknown layer {target}");
            }
        }
        msg
    };
    let refs = stack
        .layers
        .iter()
        .flat_map(|l| l.references())
        .chain(stack.clusters.iter().flat_map(|c| c.references()));
    for r in refs {
        if stack.layer(&r.target).is_none() {
            diags.push(r.location.clone(), unknown_layer(&r.target));
        }
    }
    for layer in &stack.layers {
        for d in &layer.depends_on {
            if stack.layer(&d.target).is_none() {
                diags.push(d.location.clone(), unknown_layer(&d.target));
            }
        }
        if let LayerSpec::Kubernetes(k) = &layer.spec {
            if stack.cluster(&k.cluster).is_none() {
                let names: Vec<&str> = stack.clusters.iter().map(|c| c.name.as_str()).collect();
                diags.push(
                    k.cluster_location.clone(),
                    format!(
                        "unknown cluster \"{}\"{}",
                        k.cluster,
                        diag::hint(&k.cluster, names)
                    ),
                );
            }
        }
    }
}

/// A layer's source must be a directory inside the stack root, also after symlinks.
fn check_sources(stack: &Stack, diags: &mut Diagnostics) {
    let root = stack.root.canonicalize().ok();
    for layer in &stack.layers {
        let at = layer.location.clone();
        let src = &layer.source;
        let shown = src.display();
        if src.is_absolute() || src.has_root() {
            diags.push(
                at,
                format!(
                    "{}: source \"{shown}\" must be relative to the stack root",
                    layer.id
                ),
            );
            continue;
        }
        if escapes(src) {
            diags.push(
                at,
                format!("{}: source \"{shown}\" escapes the stack root", layer.id),
            );
            continue;
        }
        let full = stack.root.join(src);
        match std::fs::metadata(&full) {
            Err(_) => {
                let hint = sibling_hint(&full, src);
                diags.push(
                    at,
                    format!(
                        "{}: source directory \"{shown}\" does not exist{hint}",
                        layer.id
                    ),
                );
            }
            Ok(m) if !m.is_dir() => diags.push(
                at,
                format!("{}: source \"{shown}\" is not a directory", layer.id),
            ),
            Ok(_) => {
                let inside = match (&root, full.canonicalize()) {
                    (Some(root), Ok(real)) => real.starts_with(root),
                    _ => false,
                };
                if !inside {
                    diags.push(
                        at,
                        format!(
                            "{}: source \"{shown}\" resolves outside the stack root (through a symlink)",
                            layer.id
                        ),
                    );
                }
            }
        }
    }
}

/// Whether a relative path climbs above its starting directory at any point.
fn escapes(path: &Path) -> bool {
    let mut depth: i64 = 0;
    for c in path.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

/// `" (did you mean \"infra/network\"?)"` when a sibling directory's name is close.
fn sibling_hint(full: &Path, src: &Path) -> String {
    let (Some(parent), Some(name)) = (full.parent(), full.file_name()) else {
        return String::new();
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return String::new();
    };
    let dirs: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    let name = name.to_string_lossy();
    diag::did_you_mean(&name, dirs.iter().map(String::as_str))
        .map(|m| format!(" (did you mean \"{}\"?)", src.with_file_name(m).display()))
        .unwrap_or_default()
}
