//! Which layers a change between two commits affects, and why: the set the engine re-plans.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gix::object::tree::EntryKind;
use serde::Serialize;

use crate::graph::LayerGraph;
use crate::stack::{LayerId, LayerSpec, Stack, STACK_FILE};
use crate::terraform::modules;

/// Why a layer is affected.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// Files under the layer's source changed (the first few, and how many in all).
    ChangedPaths { paths: Vec<String>, count: usize },
    /// A local module the layer calls (directly or through other modules) changed.
    ChangedModule { module: String },
    /// The layer's block in strata.hcl (or its cluster's block) is new or changed.
    StackFile,
    /// A layer it depends on is affected.
    Upstream { layer: LayerId },
    /// Every layer is affected, for the reason given.
    All { why: String },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::ChangedPaths { paths, count } => {
                write!(f, "changed paths: {}", paths.join(", "))?;
                if *count > paths.len() {
                    write!(f, " and {} more", count - paths.len())?;
                }
                Ok(())
            }
            Reason::ChangedModule { module } => write!(f, "changed module {module}"),
            Reason::StackFile => write!(f, "its block in {STACK_FILE} changed"),
            Reason::Upstream { layer } => write!(f, "upstream {layer} is affected"),
            Reason::All { why } => f.write_str(why),
        }
    }
}

/// The affected layers with their reasons, in the stack's declaration order when printed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Affected {
    pub layers: BTreeMap<LayerId, Vec<Reason>>,
}

impl Affected {
    pub fn contains(&self, id: &LayerId) -> bool {
        self.layers.contains_key(id)
    }

    fn add(&mut self, id: &LayerId, reason: Reason) {
        let reasons = self.layers.entry(id.clone()).or_default();
        if !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }

    /// Every layer, for one reason.
    pub fn all(stack: &Stack, why: impl Into<String>) -> Affected {
        let why = why.into();
        let mut a = Affected::default();
        for l in &stack.layers {
            a.add(&l.id, Reason::All { why: why.clone() });
        }
        a
    }
}

/// Blob and symlink entries of a commit's tree: path → (kind, object id).
fn files(
    repo: &gix::Repository,
    commit: gix::ObjectId,
) -> Result<BTreeMap<String, (u16, gix::ObjectId)>, String> {
    let tree = repo
        .find_commit(commit)
        .map_err(|e| e.to_string())?
        .tree()
        .map_err(|e| e.to_string())?;
    let entries = tree
        .traverse()
        .breadthfirst
        .files()
        .map_err(|e| e.to_string())?;
    Ok(entries
        .into_iter()
        .filter(|e| e.mode.kind() != EntryKind::Tree)
        .map(|e| (e.filepath.to_string(), (e.mode.kind() as u16, e.oid)))
        .collect())
}

/// Paths that differ between two commits (added, removed or changed), relative to the repo root.
pub fn changed_paths(
    repo: &gix::Repository,
    old: gix::ObjectId,
    new: gix::ObjectId,
) -> Result<BTreeSet<String>, String> {
    let a = files(repo, old)?;
    let b = files(repo, new)?;
    let mut out = BTreeSet::new();
    for (p, v) in &a {
        if b.get(p) != Some(v) {
            out.insert(p.clone());
        }
    }
    for p in b.keys() {
        if !a.contains_key(p) {
            out.insert(p.clone());
        }
    }
    Ok(out)
}

/// A layer or cluster as JSON without its source locations, to tell "changed" from "moved".
fn shape<T: Serialize>(v: &T) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("location");
                m.remove("cluster_location");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut j = serde_json::to_value(v).unwrap_or_default();
    strip(&mut j);
    j
}

/// The layers affected by the change from `old` to `new`.
///
/// `stack_path` is the stack's directory inside the repository (empty for the root), `stack` and
/// `graph` the stack at `new`, and `root` the materialised stack directory of `new`.
pub fn affected(
    repo: &gix::Repository,
    old: gix::ObjectId,
    new: gix::ObjectId,
    stack_path: &Path,
    stack: &Stack,
    graph: &LayerGraph,
    root: &Path,
) -> Affected {
    if old == new {
        return Affected::default();
    }
    let changed = match changed_paths(repo, old, new) {
        Ok(c) => c,
        Err(e) => {
            return Affected::all(
                stack,
                format!("the previous revision {old} could not be read ({e})"),
            )
        }
    };
    // Paths relative to the stack directory; changes outside it affect nothing.
    let prefix = if stack_path.as_os_str().is_empty() {
        String::new()
    } else {
        format!("{}/", stack_path.display())
    };
    let changed: Vec<PathBuf> = changed
        .iter()
        .filter_map(|p| p.strip_prefix(prefix.as_str()).map(PathBuf::from))
        .collect();
    let mut out = Affected::default();

    if changed.iter().any(|p| p == Path::new(STACK_FILE)) {
        let old_text = old_stack_file(repo, old, &prefix);
        let old_stack = old_text
            .as_deref()
            .and_then(|t| Stack::from_text(t, &stack.file, root).ok().map(|(s, _)| s));
        match old_stack {
            None => {
                return Affected::all(
                    stack,
                    format!("{STACK_FILE} changed and its previous version could not be read"),
                )
            }
            Some(prev) => {
                for layer in &stack.layers {
                    let before = prev.layer(&layer.id).map(shape);
                    let mut differs = before.as_ref() != Some(&shape(layer));
                    if let Some(c) = layer.cluster() {
                        differs |= prev.cluster(c).map(shape) != stack.cluster(c).map(shape);
                    }
                    if differs {
                        out.add(&layer.id, Reason::StackFile);
                    }
                }
            }
        }
    }

    for layer in &stack.layers {
        let under: Vec<String> = changed
            .iter()
            .filter(|p| p.starts_with(&layer.source))
            .map(|p| p.display().to_string())
            .collect();
        if !under.is_empty() {
            let count = under.len();
            out.add(
                &layer.id,
                Reason::ChangedPaths {
                    paths: under.into_iter().take(5).collect(),
                    count,
                },
            );
        }
        if let LayerSpec::Terraform(_) = layer.spec {
            if let Ok(info) = modules::inspect(root, &layer.source) {
                // Each changed path belongs to the deepest module that contains it.
                for p in &changed {
                    let owner = info
                        .local_modules
                        .iter()
                        .filter(|m| p.starts_with(m))
                        .max_by_key(|m| m.components().count());
                    if let Some(m) = owner {
                        out.add(
                            &layer.id,
                            Reason::ChangedModule {
                                module: m.display().to_string(),
                            },
                        );
                    }
                }
            }
        }
    }

    let direct: Vec<LayerId> = out.layers.keys().cloned().collect();
    for id in direct {
        for d in graph.dependents(&id) {
            out.add(&d, Reason::Upstream { layer: id.clone() });
        }
    }
    out
}

fn old_stack_file(repo: &gix::Repository, commit: gix::ObjectId, prefix: &str) -> Option<String> {
    let tree = repo.find_commit(commit).ok()?.tree().ok()?;
    let entry = tree
        .lookup_entry_by_path(format!("{prefix}{STACK_FILE}"))
        .ok()??;
    let blob = repo.find_object(entry.object_id()).ok()?;
    String::from_utf8(blob.data.clone()).ok()
}
