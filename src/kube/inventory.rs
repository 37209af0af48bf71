//! A layer's inventory: the objects it applied, kept in the cluster as a ConfigMap in
//! `strata-system`, so the next run knows what left Git. It is named by the stack's id, not its
//! name, so two stacks that share a name never share an inventory; an inventory named by the
//! stack name alone (written before stack ids existed) is taken over on the next write.
//!
//! An apply records the inventory ahead of its first write (everything it had plus everything it
//! is about to apply) and narrows it once pruning is done: whenever strata stops, every object it
//! created is in an inventory.

use ::kube::api::{Api, DynamicObject, Patch, PatchParams};
use ::kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use super::error::KubeError;
use super::object::ObjRef;
use super::retry::retry;
use super::snapshot::Record;
use crate::util::retry::Backoff;

pub const NAMESPACE: &str = "strata-system";

fn name(stack_id: &str, layer: &str) -> String {
    format!("inventory.{stack_id}.{layer}")
}

/// What a layer's inventory holds, and where it was found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub entries: Vec<ObjRef>,
    /// It was found under the stack name only (written before stack ids): the next write moves it.
    pub legacy: bool,
}

fn cm_api(client: &::kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("", "v1", "ConfigMap"),
        "configmaps",
    );
    Api::namespaced_with(client.clone(), NAMESPACE, &ar)
}

/// The objects the layer's applies recorded; empty when there is none yet. Read from the run's
/// snapshot where there is one ([`super::snapshot`]).
///
/// # Errors
/// When the inventory exists but can't be read or parsed: callers must not prune then.
pub async fn read(
    client: &::kube::Client,
    opts: &super::ApplyOptions,
) -> Result<Inventory, KubeError> {
    let (stack, stack_id, layer) = (&opts.stack, &opts.stack_id, &opts.layer);
    let entries = read_named(client, &name(stack_id, layer), opts).await?;
    if let Some(entries) = entries {
        return Ok(Inventory {
            entries,
            legacy: false,
        });
    }
    let old = name(stack, layer);
    if old == name(stack_id, layer) {
        return Ok(Inventory::default());
    }
    Ok(match read_named(client, &old, opts).await? {
        Some(entries) => Inventory {
            entries,
            legacy: true,
        },
        None => Inventory::default(),
    })
}

/// The entries of the inventory ConfigMap `n`, `None` when there is none.
async fn read_named(
    client: &::kube::Client,
    n: &str,
    opts: &super::ApplyOptions,
) -> Result<Option<Vec<ObjRef>>, KubeError> {
    let fail = |m: String| KubeError::Read {
        what: format!("the inventory ConfigMap/{NAMESPACE}/{n}"),
        message: m,
    };
    let snapshot = match &opts.reads {
        Some(r) => {
            r.snapshot
                .record(client, Record::Inventory, n, opts.backoff)
                .await
        }
        None => None,
    };
    let data = match snapshot {
        Some(Some(data)) => data,
        Some(None) => return Ok(None),
        None => {
            let api = cm_api(client);
            match retry(opts.backoff, || api.get_opt(n)).await {
                Ok(Some(o)) => o.data["data"].clone(),
                Ok(None) => return Ok(None),
                // Its namespace not existing yet means no inventory yet.
                Err(::kube::Error::Api(s)) if s.code == 404 => return Ok(None),
                Err(e) => return Err(fail(super::error::describe(&e))),
            }
        }
    };
    let text = data["entries"].as_str().unwrap_or("[]");
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| fail(format!("its entries are not valid JSON: {e}")))
}

/// Applies the namespace strata keeps its records in (see [`in_records_namespace`]).
///
/// # Errors
/// The API error, after retries.
async fn ensure_namespace(client: &::kube::Client, backoff: Backoff) -> Result<(), ::kube::Error> {
    let ns_ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("", "v1", "Namespace"),
        "namespaces",
    );
    let nss: Api<DynamicObject> = Api::all_with(client.clone(), &ns_ar);
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    let pp = PatchParams::apply("strata");
    let patch = Patch::Apply(&ns);
    retry(backoff, || nss.patch(NAMESPACE, &pp, &patch)).await?;
    Ok(())
}

/// Runs `write` (an apply of a record in the namespace strata keeps its records in), creating
/// that namespace first only when the write finds it missing: once per cluster, not once per
/// record written.
///
/// With the run's snapshot, the run's first record write goes alone: the layers that start
/// together wait for it instead of each finding the namespace missing (16 layers at once made
/// 16 namespace applies and 16 writes again).
///
/// # Guarantees
/// The record is written whether or not the namespace existed (or was deleted since the last
/// record): a 404 from the apply (the only thing an apply can not find is its namespace) applies
/// the namespace and writes again.
///
/// # Errors
/// The API error of the write, or of the namespace's, after retries.
pub(super) async fn in_records_namespace<T, F, Fut>(
    client: &::kube::Client,
    opts: &super::ApplyOptions,
    write: F,
) -> Result<T, ::kube::Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ::kube::Error>>,
{
    let mut first = match &opts.reads {
        Some(r) => Some(r.snapshot.records_namespace().lock().await),
        None => None,
    };
    if first.as_ref().is_some_and(|written| **written) {
        first = None;
    }
    let result = match write().await {
        Err(::kube::Error::Api(s)) if s.code == 404 => {
            ensure_namespace(client, opts.backoff).await?;
            write().await
        }
        other => other,
    };
    if let (Some(mut written), Ok(_)) = (first, &result) {
        *written = true;
    }
    result
}

/// Records the layer's objects; with `legacy`, then deletes the inventory named by the stack
/// name alone, which this one replaces.
///
/// # Guarantees
/// The new inventory is written before the old one is deleted: a crash in between leaves both,
/// and the next read takes the new one.
///
/// # Errors
/// The namespace or the ConfigMap could not be written (after retries), naming it.
pub async fn write(
    client: &::kube::Client,
    opts: &super::ApplyOptions,
    entries: &[ObjRef],
    legacy: bool,
) -> Result<(), KubeError> {
    let (stack, stack_id, layer, backoff) =
        (&opts.stack, &opts.stack_id, &opts.layer, opts.backoff);
    let fail = |e: ::kube::Error| KubeError::Apply {
        object: format!("ConfigMap/{NAMESPACE}/{}", name(stack_id, layer)),
        message: super::error::describe(&e),
    };
    let pp = PatchParams::apply("strata");
    let mut sorted = entries.to_vec();
    sorted.sort();
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name(stack_id, layer), "namespace": NAMESPACE,
                     "labels": {super::apply::LABEL_STACK: stack,
                                super::owner::LABEL_STACK_ID: stack_id,
                                super::apply::LABEL_LAYER: layer}},
        "data": {"entries": serde_json::to_string(&sorted).expect("json")},
    });
    let api = cm_api(client);
    let patch = Patch::Apply(&cm);
    let n = name(stack_id, layer);
    in_records_namespace(client, opts, || {
        retry(backoff, || api.patch(&n, &pp, &patch))
    })
    .await
    .map_err(fail)?;
    note(opts, &n, Some(cm["data"].clone()));
    let old = name(stack, layer);
    if legacy && old != n {
        let dp = ::kube::api::DeleteParams::default();
        match retry(backoff, || api.delete(&old, &dp)).await {
            Ok(_) => note(opts, &old, None),
            Err(::kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(KubeError::Prune {
                    object: format!("ConfigMap/{NAMESPACE}/{old} (the inventory before stack ids)"),
                    message: super::error::describe(&e),
                })
            }
        }
    }
    Ok(())
}

/// `ConfigMap/strata-system/inventory.<stack id>.<layer>`, as messages name it.
pub fn describe(opts: &super::ApplyOptions) -> String {
    format!(
        "ConfigMap/{NAMESPACE}/{}",
        name(&opts.stack_id, &opts.layer)
    )
}

/// Deletes the layer's inventory (with `legacy`, the one named by the stack name alone, which
/// [`read`] found instead): for a layer gone from the stack once nothing of it is left to manage.
///
/// # Guarantees
/// Deleting an inventory that is not there succeeds: a run killed after the deletion finishes
/// the job on the next run.
///
/// # Errors
/// The deletion failed (after retries), naming the ConfigMap.
pub async fn delete(
    client: &::kube::Client,
    opts: &super::ApplyOptions,
    legacy: bool,
) -> Result<(), KubeError> {
    let api = cm_api(client);
    let dp = ::kube::api::DeleteParams::default();
    let n = if legacy {
        name(&opts.stack, &opts.layer)
    } else {
        name(&opts.stack_id, &opts.layer)
    };
    let deleted = match retry(opts.backoff, || api.delete(&n, &dp)).await {
        Ok(_) => Ok(()),
        Err(::kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(KubeError::Prune {
            object: format!("ConfigMap/{NAMESPACE}/{n} (the inventory of a removed layer)"),
            message: super::error::describe(&e),
        }),
    };
    if deleted.is_ok() {
        note(opts, &n, None);
    }
    deleted
}

/// Notes a write (`None`: a deletion) of inventory `n` in the run's snapshot, if any.
fn note(opts: &super::ApplyOptions, n: &str, data: Option<serde_json::Value>) {
    if let Some(r) = &opts.reads {
        r.snapshot.note_record(Record::Inventory, n, data);
    }
}
