//! Pruning: deleting what a layer applied before and no longer declares. Custom resources go
//! before their CRDs, namespaced objects before their namespaces. Objects annotated
//! `strata.dev/prune: disabled` are kept, and so are objects another layer has taken over.

use ::kube::api::{Api, DeleteParams, DynamicObject};

use super::changeset::{Action, ChangeSet};
use super::error::KubeError;
use super::object::ObjRef;
use super::order;
use super::resolve::Resources;
use super::retry::retry;
use crate::util::retry::Backoff;

pub const ANNOTATION_PRUNE: &str = "strata.dev/prune";

/// Deletes `previous` minus `desired`.
///
/// # Guarantees
/// Callers run this only after a successful apply with a successfully read inventory: strata
/// never prunes after a failed load, apply, inventory read or listing. An object that can't be
/// read is not deleted.
///
/// # Errors
/// The first deletion that failed (after retries); objects before it were deleted.
pub async fn prune(
    client: &::kube::Client,
    previous: &[ObjRef],
    desired: &[ObjRef],
    resources: &Resources,
    layer: &str,
    backoff: Backoff,
    cs: &mut ChangeSet,
) -> Result<Vec<ObjRef>, KubeError> {
    let keep: std::collections::BTreeSet<_> = desired.iter().map(ObjRef::key).collect();
    let mut gone: Vec<ObjRef> = previous
        .iter()
        .filter(|r| !keep.contains(&r.key()))
        .cloned()
        .collect();
    gone.sort_by_key(order::key);
    gone.reverse();
    let mut kept = Vec::new();
    for r in gone {
        let Some(resolved) = resources.get(&r.group, &r.version, &r.kind) else {
            // Its kind is gone (its CRD was pruned or removed): so is the object.
            continue;
        };
        let api: Api<DynamicObject> = if resolved.namespaced {
            Api::namespaced_with(client.clone(), &r.namespace, &resolved.resource)
        } else {
            Api::all_with(client.clone(), &resolved.resource)
        };
        let live = retry(backoff, || api.get_opt(&r.name))
            .await
            .map_err(|e| KubeError::Read {
                what: r.to_string(),
                message: e.to_string(),
            })?;
        let Some(obj) = live else { continue };
        let annotations = obj.metadata.annotations.clone().unwrap_or_default();
        if annotations.get(ANNOTATION_PRUNE).map(String::as_str) == Some("disabled") {
            cs.push(
                r.clone(),
                Action::Skipped,
                Some(format!(
                    "not pruned: annotated {ANNOTATION_PRUNE}: disabled"
                )),
            );
            kept.push(r);
            continue;
        }
        let owner = obj.metadata.labels.clone().unwrap_or_default();
        if owner
            .get(super::apply::LABEL_LAYER)
            .is_some_and(|l| l != layer)
        {
            cs.push(
                r.clone(),
                Action::Skipped,
                Some("not pruned: another layer applies it now".into()),
            );
            continue;
        }
        if cs.dry_run {
            cs.push(r.clone(), Action::Deleted, Some("no longer in Git".into()));
            continue;
        }
        let dp = DeleteParams::background();
        retry(backoff, || api.delete(&r.name, &dp))
            .await
            .map_err(|e| KubeError::Prune {
                object: r.to_string(),
                message: e.to_string(),
            })?;
        cs.push(r.clone(), Action::Deleted, Some("no longer in Git".into()));
    }
    Ok(kept)
}
