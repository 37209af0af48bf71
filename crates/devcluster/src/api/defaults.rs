//! Server-populated fields a real API server fills in on write: Service type, clusterIP and
//! ports, workload replicas, Secret `stringData` and type, Namespace phase, CRD status.

use serde_json::{json, Value};

use crate::registry::ResourceType;
use crate::store::{now_rfc3339, Store};

/// Defaults of the key fields of associative lists, as the API server applies them to built-in
/// kinds before computing field ownership: every port's `protocol` is `TCP` unless given (Service
/// and container ports, EndpointSlice and NetworkPolicy ports). Without this, a port applied
/// without `protocol` would be a different list item from the same port applied by kubectl.
pub(crate) fn default_list_keys(rt: &ResourceType, obj: &mut Value) {
    if rt.crd.is_some() {
        return;
    }
    match obj {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if k == "ports" {
                    for p in v.as_array_mut().into_iter().flatten() {
                        if let Some(pm) = p.as_object_mut() {
                            pm.entry("protocol").or_insert(json!("TCP"));
                        }
                    }
                }
                default_list_keys(rt, v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| default_list_keys(rt, i)),
        _ => {}
    }
}

impl Store {
    /// Server-populated fields a real cluster sets.
    pub(super) fn defaults(&mut self, rt: &ResourceType, obj: &mut Value, old: Option<&Value>) {
        default_list_keys(rt, obj);
        match (rt.group.as_str(), rt.kind.as_str()) {
            ("", "Namespace") if obj["status"]["phase"].is_null() => {
                obj["status"] = json!({"phase": "Active"});
            }
            ("", "Service") => {
                let spec = obj["spec"].as_object_mut();
                if let Some(spec) = spec {
                    spec.entry("type").or_insert(json!("ClusterIP"));
                    if !spec.contains_key("clusterIP") {
                        let ip = old
                            .and_then(|o| o["spec"]["clusterIP"].as_str().map(str::to_string))
                            .unwrap_or_else(|| self.cluster_ip());
                        spec.insert("clusterIP".into(), json!(ip.clone()));
                        spec.insert("clusterIPs".into(), json!([ip]));
                    }
                    for p in spec
                        .get_mut("ports")
                        .and_then(Value::as_array_mut)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(pm) = p.as_object_mut() {
                            let port = pm.get("port").cloned().unwrap_or(Value::Null);
                            pm.entry("targetPort").or_insert(port);
                        }
                    }
                }
            }
            ("apps", "Deployment" | "StatefulSet" | "ReplicaSet") => {
                if let Some(spec) = obj["spec"].as_object_mut() {
                    spec.entry("replicas").or_insert(json!(1));
                }
            }
            ("", "Secret") => {
                use base64::Engine;
                if let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
                    let data = obj["data"].as_object().cloned().unwrap_or_default();
                    let mut data = data;
                    for (k, v) in sd.as_object().into_iter().flatten() {
                        let text = v.as_str().unwrap_or_default();
                        data.insert(
                            k.clone(),
                            json!(base64::engine::general_purpose::STANDARD.encode(text)),
                        );
                    }
                    obj["data"] = Value::Object(data);
                }
                if let Some(m) = obj.as_object_mut() {
                    m.entry("type").or_insert(json!("Opaque"));
                }
            }
            ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                let names = obj["spec"]["names"].clone();
                let versions: Vec<Value> = obj["spec"]["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|v| v["storage"] == true)
                    .map(|v| v["name"].clone())
                    .collect();
                let t = now_rfc3339();
                obj["status"] = json!({
                    "acceptedNames": names,
                    "storedVersions": versions,
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": t},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": t},
                    ],
                });
                if let Some(o) = old {
                    // Keep transition times of a CRD whose status did not change otherwise.
                    if o["status"]["acceptedNames"] == obj["status"]["acceptedNames"] {
                        obj["status"]["conditions"] = o["status"]["conditions"].clone();
                    }
                }
            }
            _ => {}
        }
    }
}
