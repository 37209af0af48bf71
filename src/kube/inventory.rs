//! A layer's inventory: the objects it applied, kept in the cluster as a ConfigMap in
//! `strata-system`, so the next run knows what left Git.

use ::kube::api::{Api, DynamicObject, Patch, PatchParams};
use ::kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use super::error::KubeError;
use super::object::ObjRef;
use super::retry::retry;
use crate::util::retry::Backoff;

pub const NAMESPACE: &str = "strata-system";

fn name(stack: &str, layer: &str) -> String {
    format!("inventory.{stack}.{layer}")
}

fn cm_api(client: &::kube::Client) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("", "v1", "ConfigMap"),
        "configmaps",
    );
    Api::namespaced_with(client.clone(), NAMESPACE, &ar)
}

/// The objects the last successful apply of the layer recorded; empty when there is none yet.
///
/// # Errors
/// When the inventory exists but can't be read or parsed: callers must not prune then.
pub async fn read(
    client: &::kube::Client,
    stack: &str,
    layer: &str,
    backoff: Backoff,
) -> Result<Vec<ObjRef>, KubeError> {
    let api = cm_api(client);
    let n = name(stack, layer);
    let fail = |m: String| KubeError::Read {
        what: format!("the inventory ConfigMap/{NAMESPACE}/{n}"),
        message: m,
    };
    let found = retry(backoff, || api.get_opt(&n)).await;
    let obj = match found {
        Ok(Some(o)) => o,
        Ok(None) => return Ok(Vec::new()),
        // Its namespace not existing yet means no inventory yet.
        Err(::kube::Error::Api(s)) if s.code == 404 => return Ok(Vec::new()),
        Err(e) => return Err(fail(e.to_string())),
    };
    let text = obj.data["data"]["entries"].as_str().unwrap_or("[]");
    serde_json::from_str(text).map_err(|e| fail(format!("its entries are not valid JSON: {e}")))
}

/// Records the layer's objects.
pub async fn write(
    client: &::kube::Client,
    stack: &str,
    layer: &str,
    entries: &[ObjRef],
    backoff: Backoff,
) -> Result<(), KubeError> {
    let fail = |e: ::kube::Error| KubeError::Apply {
        object: format!("ConfigMap/{NAMESPACE}/{}", name(stack, layer)),
        message: e.to_string(),
    };
    let ns_ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("", "v1", "Namespace"),
        "namespaces",
    );
    let nss: Api<DynamicObject> = Api::all_with(client.clone(), &ns_ar);
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
    let pp = PatchParams::apply("strata");
    let patch = Patch::Apply(&ns);
    retry(backoff, || nss.patch(NAMESPACE, &pp, &patch))
        .await
        .map_err(fail)?;
    let mut sorted = entries.to_vec();
    sorted.sort();
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name(stack, layer), "namespace": NAMESPACE,
                     "labels": {super::apply::LABEL_STACK: stack, super::apply::LABEL_LAYER: layer}},
        "data": {"entries": serde_json::to_string(&sorted).expect("json")},
    });
    let api = cm_api(client);
    let patch = Patch::Apply(&cm);
    let n = name(stack, layer);
    retry(backoff, || api.patch(&n, &pp, &patch))
        .await
        .map_err(fail)?;
    Ok(())
}
