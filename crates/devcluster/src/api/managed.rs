//! `metadata.managedFields`: which manager owns which fields, read from and written back to an
//! object.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::meta;
use crate::fields::Fields;
use crate::store::now_rfc3339;

/// The managed-fields entries of an object, by (manager, operation, subresource).
pub(super) type Managers = BTreeMap<(String, String, String), (String, Fields)>;

pub(super) fn managers(obj: &Value) -> Managers {
    let mut m = Managers::new();
    for e in meta(obj)["managedFields"].as_array().into_iter().flatten() {
        let key = (
            e["manager"].as_str().unwrap_or("").to_string(),
            e["operation"].as_str().unwrap_or("Update").to_string(),
            e["subresource"].as_str().unwrap_or("").to_string(),
        );
        let api = e["apiVersion"].as_str().unwrap_or("").to_string();
        m.insert(key, (api, Fields::from_json(&e["fieldsV1"])));
    }
    m
}

pub(super) fn set_managers(obj: &mut Value, m: &Managers, old: Option<&Value>) {
    let old_times: BTreeMap<(String, String, String), (Value, Fields)> = old
        .map(|o| {
            meta(o)["managedFields"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        (
                            e["manager"].as_str().unwrap_or("").to_string(),
                            e["operation"].as_str().unwrap_or("").to_string(),
                            e["subresource"].as_str().unwrap_or("").to_string(),
                        ),
                        (e["time"].clone(), Fields::from_json(&e["fieldsV1"])),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let entries: Vec<Value> = m
        .iter()
        .filter(|(_, (_, f))| !f.is_empty())
        .map(|((manager, op, sub), (api, f))| {
            // Keep the time of an entry whose fields did not change, so a no-op stays a no-op.
            let time = match old_times.get(&(manager.clone(), op.clone(), sub.clone())) {
                Some((t, of)) if of == f => t.clone(),
                _ => Value::String(now_rfc3339()),
            };
            let mut e = json!({
                "manager": manager, "operation": op, "apiVersion": api, "time": time,
                "fieldsType": "FieldsV1", "fieldsV1": f.to_json(),
            });
            if !sub.is_empty() {
                e["subresource"] = Value::String(sub.clone());
            }
            e
        })
        .collect();
    let md = obj["metadata"].as_object_mut().expect("metadata");
    if entries.is_empty() {
        md.remove("managedFields");
    } else {
        md.insert("managedFields".into(), Value::Array(entries));
    }
}
