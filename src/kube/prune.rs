//! Pruning: deleting what a layer applied before and that no layer of the stack declares now.
//! Custom resources go before their CRDs, namespaced objects before their namespaces. Pruning is
//! decided for the whole stack at once ([`Stackwide`]): an object that moved to another layer is
//! handed over, never deleted and created again. Kept, with the reason in the change set:
//! objects annotated `strata.dev/prune: disabled`, objects another stack owns, and Namespaces and
//! CRDs that still hold something that is not pruned with them.

use std::collections::{BTreeMap, BTreeSet};

use ::kube::api::{DeleteParams, DynamicObject};

use super::changeset::{Action, ChangeSet};
use super::contents;
use super::error::KubeError;
use super::inventory::{self, Inventory};
use super::object::ObjRef;
use super::order;
use super::owner::{owner_of, Owner};
use super::resolve::Resources;
use super::retry::retry;
use super::ApplyOptions;
use crate::util::retry::Backoff;

pub const ANNOTATION_PRUNE: &str = "strata.dev/prune";

/// An object's identity without its version ([`ObjRef::key`]).
pub type Key = (String, String, String, String);

/// What the whole stack declares and prunes on one cluster in this run.
#[derive(Debug, Clone, Default)]
pub struct Stackwide {
    /// Every object a layer of the stack declares now, with that layer (`kubernetes.apps`).
    pub declared: BTreeMap<Key, String>,
    /// Every object some layer's prune would delete: in its inventory, declared by none.
    pub pruning: BTreeSet<Key>,
    /// Layers whose desired set is unknown in this run, with why (`kubernetes.apps: waiting on
    /// ...`): what they declare might be anything, so nothing is pruned.
    pub unknown: Vec<String>,
}

impl Stackwide {
    /// Records what a layer declares (`desired`) and had applied before (`previous`).
    pub fn add(&mut self, layer: &str, desired: &[ObjRef], previous: &[ObjRef]) {
        for r in desired {
            self.declared.insert(r.key(), layer.to_string());
        }
        self.pruning.extend(previous.iter().map(ObjRef::key));
    }

    /// Once every layer is added: what is pruned is what is in an inventory and declared by none.
    pub fn settle(&mut self) {
        let declared = &self.declared;
        self.pruning.retain(|k| !declared.contains_key(k));
    }

    /// The one layer's view, for a layer synced on its own.
    pub fn of_layer(layer: &str, desired: &[ObjRef], previous: &[ObjRef]) -> Stackwide {
        let mut s = Stackwide::default();
        s.add(layer, desired, previous);
        s.settle();
        s
    }
}

/// Why a live object in the previous inventory is not deleted; `None` to delete it.
enum Verdict {
    Delete,
    /// Left in the cluster and in the inventory, reported with the reason.
    Keep(String),
    /// Left in the cluster and dropped from the inventory: it is someone else's now.
    Release(String),
}

fn verdict(obj: &DynamicObject, opts: &ApplyOptions, stack: &Stackwide) -> Verdict {
    let annotations = obj.metadata.annotations.clone().unwrap_or_default();
    if annotations.get(ANNOTATION_PRUNE).map(String::as_str) == Some("disabled") {
        return Verdict::Keep(format!("annotated {ANNOTATION_PRUNE}: disabled"));
    }
    let live = serde_json::to_value(obj).unwrap_or_default();
    match owner_of(&live, &opts.stack, &opts.stack_id) {
        Owner::Ours => {}
        other => return Verdict::Release(format!("not this stack's any more: {other}")),
    }
    let labels = obj.metadata.labels.clone().unwrap_or_default();
    if labels
        .get(super::apply::LABEL_LAYER)
        .is_some_and(|l| *l != opts.layer)
    {
        return Verdict::Release("another layer applies it now".into());
    }
    if !stack.unknown.is_empty() {
        return Verdict::Keep(format!(
            "what other layers declare is unknown in this run ({})",
            stack.unknown.join("; ")
        ));
    }
    Verdict::Delete
}

/// Deletes the objects of `previous` that no layer of the stack declares, unless kept.
/// Returns the objects kept in the cluster that stay in the inventory.
///
/// # Guarantees
/// - Callers run this only after a successful apply with a successfully read inventory: strata
///   never prunes after a failed load, apply, inventory read or listing. An object that can't be
///   read is not deleted.
/// - Never deletes an object another layer of the stack declares now, an object another stack
///   owns, or a Namespace or CRD that holds anything not pruned with it (its contents are listed
///   first; a failed listing keeps it and fails the prune).
///
/// # Errors
/// The first read, listing or deletion that failed (after retries); objects before it were
/// deleted.
pub async fn prune(
    client: &::kube::Client,
    previous: &[ObjRef],
    stack: &Stackwide,
    resources: &Resources,
    opts: &ApplyOptions,
    cs: &mut ChangeSet,
) -> Result<Vec<ObjRef>, KubeError> {
    let backoff: Backoff = opts.backoff;
    let mut gone: Vec<ObjRef> = previous
        .iter()
        .filter(|r| !stack.declared.contains_key(&r.key()))
        .cloned()
        .collect();
    gone.sort_by_key(order::key);
    gone.reverse();
    let mut kept = Vec::new();
    for r in gone {
        let Some(api) = resources.api_of(client, &r) else {
            // Its kind is gone (its CRD was pruned or removed): so is the object.
            continue;
        };
        let live = retry(backoff, || api.get_opt(&r.name))
            .await
            .map_err(|e| KubeError::Read {
                what: r.to_string(),
                message: super::error::describe(&e),
            })?;
        let Some(obj) = live else { continue };
        let mut verdict = verdict(&obj, opts, stack);
        if matches!(verdict, Verdict::Delete) && contents::cascades(&r) {
            let value = serde_json::to_value(&obj).unwrap_or_default();
            let ids = (opts.stack.as_str(), opts.stack_id.as_str());
            let held = contents::held(client, &r, &value, resources, stack, ids, backoff).await?;
            if let Some(first) = held.first() {
                let more = match held.len() - 1 {
                    0 => String::new(),
                    n => format!(" and {n} more"),
                };
                verdict = Verdict::Keep(format!("still holds {first}{more}"));
            }
        }
        match verdict {
            Verdict::Keep(why) => {
                cs.push(r.clone(), Action::Skipped, Some(why));
                kept.push(r);
            }
            Verdict::Release(why) => cs.push(r.clone(), Action::Skipped, Some(why)),
            Verdict::Delete => {
                if !cs.dry_run {
                    let dp = DeleteParams::background();
                    retry(backoff, || api.delete(&r.name, &dp))
                        .await
                        .map_err(|e| KubeError::Prune {
                            object: r.to_string(),
                            message: super::error::describe(&e),
                        })?;
                }
                cs.push(r.clone(), Action::Deleted, Some("no longer in Git".into()));
            }
        }
    }
    Ok(kept)
}

/// Prunes a layer the stack no longer declares: every object of its inventory `inv` that no
/// layer of `stack` declares is deleted, unless kept ([`prune`]'s rules); then its inventory is
/// deleted, or narrowed to what was kept. With `cs.dry_run`, says what it would do and writes
/// nothing. Returns the objects kept (they stay in its inventory).
///
/// # Guarantees
/// - As [`prune`]: never deletes what another layer declares now (a renamed layer's objects
///   are handed over), what another stack owns, or a Namespace or CRD holding anything else.
/// - The inventory goes last, only once every deletion succeeded and nothing was kept: a run
///   killed at any point leaves it, and the next run prunes what is left.
///
/// # Errors
/// The first read, listing, deletion or inventory write that failed (after retries).
pub async fn removed_layer(
    client: &::kube::Client,
    inv: &Inventory,
    stack: &Stackwide,
    resources: &Resources,
    opts: &ApplyOptions,
    cs: &mut ChangeSet,
) -> Result<Vec<ObjRef>, KubeError> {
    let mut kept = prune(client, &inv.entries, stack, resources, opts, cs).await?;
    kept.sort();
    if cs.dry_run {
        return Ok(kept);
    }
    if kept.is_empty() {
        super::last_applied::delete(client, opts).await?;
        inventory::delete(client, opts, inv.legacy).await?;
    } else {
        let mut before = inv.entries.clone();
        before.sort();
        if kept != before || inv.legacy {
            inventory::write(client, opts, &kept, inv.legacy).await?;
        }
    }
    Ok(kept)
}
