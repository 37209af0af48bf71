//! What deleting an object would take with it. Kubernetes deletes everything in a Namespace with
//! it, and every custom resource of a CRD with it: before strata prunes either, it lists what
//! they hold, so that pruning never destroys an object Git still declares or strata does not own.

use std::collections::BTreeSet;

use ::kube::api::{Api, DynamicObject, ListParams};
use serde_json::Value;

use super::error::KubeError;
use super::object::ObjRef;
use super::owner::{owner_of, Owner};
use super::prune::{Stackwide, ANNOTATION_PRUNE};
use super::resolve::{Resolved, Resources};
use super::retry::retry;
use crate::util::retry::Backoff;

/// Whether deleting `r` deletes other objects with it.
pub fn cascades(r: &ObjRef) -> bool {
    matches!(
        (r.group.as_str(), r.kind.as_str()),
        ("", "Namespace") | ("apiextensions.k8s.io", "CustomResourceDefinition")
    )
}

/// Objects the cluster creates by itself (in every namespace, or for a Service), or that another
/// object owns: they go with what made them, and never keep a namespace alive. `services` are
/// the names of the Services beside `obj`.
fn incidental(obj: &Value, services: &BTreeSet<String>) -> bool {
    let md = &obj["metadata"];
    let group = obj["apiVersion"]
        .as_str()
        .unwrap_or("")
        .split('/')
        .rev()
        .nth(1);
    let kind = obj["kind"].as_str().unwrap_or("");
    let name = md["name"].as_str().unwrap_or("");
    md["ownerReferences"]
        .as_array()
        .is_some_and(|o| !o.is_empty())
        || kind == "Event"
        // Live readings, not stored objects.
        || group == Some("metrics.k8s.io")
        || (kind == "ServiceAccount" && name == "default")
        || (kind == "ConfigMap" && name == "kube-root-ca.crt")
        || (kind == "Endpoints" && group.is_none() && services.contains(name))
        || (obj["type"] == "kubernetes.io/service-account-token"
            && md["annotations"]["kubernetes.io/service-account.name"] == "default")
}

async fn list(
    client: &::kube::Client,
    res: &Resolved,
    namespace: Option<&str>,
    backoff: Backoff,
) -> Result<Vec<Value>, KubeError> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &res.resource),
        None => Api::all_with(client.clone(), &res.resource),
    };
    let lp = ListParams::default();
    let items = retry(backoff, || api.list(&lp))
        .await
        .map_err(|e| KubeError::Read {
            what: format!(
                "{} {}",
                res.resource.kind,
                namespace.map_or("in every namespace".to_string(), |n| format!(
                    "in namespace {n}"
                ))
            ),
            message: super::error::describe(&e),
        })?;
    Ok(items
        .items
        .into_iter()
        .map(|o| {
            let mut v = serde_json::to_value(&o).unwrap_or_default();
            // Lists leave apiVersion and kind out of their items.
            v["apiVersion"] = Value::String(res.resource.api_version.clone());
            v["kind"] = Value::String(res.resource.kind.clone());
            v
        })
        .collect())
}

/// Why an object held by a Namespace or CRD stops it being pruned; `None` when it is pruned too
/// (or goes with its owner anyway).
fn blocks(
    obj: &Value,
    services: &BTreeSet<String>,
    stack: &Stackwide,
    name: &str,
    id: &str,
) -> Option<String> {
    if incidental(obj, services) {
        return None;
    }
    let r = ObjRef::of(obj);
    let key = r.key();
    if let Some(layer) = stack.declared.get(&key) {
        return Some(format!("{r} (declared by {layer})"));
    }
    if obj["metadata"]["annotations"][ANNOTATION_PRUNE].as_str() == Some("disabled") {
        return Some(format!("{r} (annotated {ANNOTATION_PRUNE}: disabled)"));
    }
    match owner_of(obj, name, id) {
        Owner::Ours if stack.pruning.contains(&key) => None,
        Owner::Ours => Some(format!("{r} (in no inventory of this stack)")),
        other => Some(format!("{r} ({other})")),
    }
}

/// What keeps `r` (a Namespace or a CRD) from being deleted: objects it holds that this prune
/// does not delete as well. Empty when deleting it takes nothing else with it.
///
/// # Errors
/// A listing failed: callers must not delete `r` then.
pub async fn held(
    client: &::kube::Client,
    r: &ObjRef,
    live: &Value,
    served: &Resources,
    stack: &Stackwide,
    (name, id): (&str, &str),
    backoff: Backoff,
) -> Result<Vec<String>, KubeError> {
    let mut objects = Vec::new();
    if r.kind == "Namespace" {
        for res in served.listable_kinds().into_iter().filter(|r| r.namespaced) {
            objects.extend(list(client, res, Some(&r.name), backoff).await?);
        }
    } else {
        let spec = &live["spec"];
        let group = spec["group"].as_str().unwrap_or("");
        let kind = spec["names"]["kind"].as_str().unwrap_or("");
        if let Some(res) = served.any_version(group, kind) {
            objects.extend(list(client, res, None, backoff).await?);
        }
    }
    let services: BTreeSet<String> = objects
        .iter()
        .filter(|o| o["kind"] == "Service" && o["apiVersion"] == "v1")
        .filter_map(|o| o["metadata"]["name"].as_str().map(String::from))
        .collect();
    let mut held: Vec<String> = objects
        .iter()
        .filter_map(|o| blocks(o, &services, stack, name, id))
        .collect();
    held.sort();
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn what_the_cluster_makes_or_an_owner_holds_never_blocks() {
        let stack = Stackwide::default();
        let none = BTreeSet::new();
        let web = BTreeSet::from(["web".to_string()]);
        let endpoints = json!({"apiVersion": "v1", "kind": "Endpoints",
                               "metadata": {"name": "web", "namespace": "shop"}});
        assert_eq!(blocks(&endpoints, &web, &stack, "demo", "aa"), None);
        assert!(blocks(&endpoints, &none, &stack, "demo", "aa").is_some());
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": "default", "namespace": "shop"}});
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "metadata": {"name": "web-1", "namespace": "shop",
                                     "ownerReferences": [{"kind": "Deployment", "name": "web"}]}});
        let by_hand = json!({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "notes", "namespace": "shop"}});
        assert_eq!(blocks(&sa, &none, &stack, "demo", "aa"), None);
        assert_eq!(blocks(&rs, &none, &stack, "demo", "aa"), None);
        assert_eq!(
            blocks(&by_hand, &none, &stack, "demo", "aa").unwrap(),
            "ConfigMap/shop/notes (created outside strata)"
        );
    }
}
