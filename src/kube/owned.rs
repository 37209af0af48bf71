//! Whether a forced server-side apply of an object would change nothing, judged from the live
//! object alone: it holds every field and value strata applies, and strata's apply entry in
//! `metadata.managedFields` owns exactly those fields. kubediff then needs no dry run for it.
//!
//! The judgement is one-sided on purpose: `true` only where the server could not change the
//! object, `false` ("ask the server") wherever the server's schema, defaulting or ownership rules
//! could make a difference — a value the server would normalise (`500m` against `0.5`), a list
//! item matched by a key strata did not set, a field another manager owns alone, a field strata
//! owned before and no longer applies (the apply would remove it).

use serde_json::{Map, Value};

/// Whether applying `desired` (a whole object) as `manager` with force would leave `live` as it
/// is. `false` means only "the server must be asked", never "it differs".
pub fn unchanged_by_apply(desired: &Value, live: &Value, manager: &str) -> bool {
    let Some(owned) = applied_fields(live, manager, &desired["apiVersion"]) else {
        return false;
    };
    let (Some(d), Some(l)) = (desired.as_object(), live.as_object()) else {
        return false;
    };
    if d.get("apiVersion") != l.get("apiVersion") || d.get("kind") != l.get("kind") {
        return false;
    }
    // The fields an apply sets and owns: everything but the object's identity. Other metadata
    // (finalizers, owner references, generateName…) is rare in Git and left to the server.
    let mut body = Map::new();
    for (k, v) in d {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                let Some(md) = v.as_object() else {
                    return false;
                };
                let mut kept = Map::new();
                for (mk, mv) in md {
                    match mk.as_str() {
                        "name" | "namespace" if Some(mv) == l["metadata"].get(mk) => {}
                        "labels" | "annotations" => {
                            kept.insert(mk.clone(), mv.clone());
                        }
                        _ => return false,
                    }
                }
                if !kept.is_empty() {
                    body.insert("metadata".into(), Value::Object(kept));
                }
            }
            _ => {
                body.insert(k.clone(), v.clone());
            }
        }
    }
    map_covered(&body, l, owned)
}

/// strata's apply entry (no subresource) of the object's managed fields, when it is the only one
/// and was written for the same API version (field sets are per version).
fn applied_fields<'a>(
    live: &'a Value,
    manager: &str,
    api: &Value,
) -> Option<&'a Map<String, Value>> {
    let mut entries = live["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .filter(|e| {
            e["manager"].as_str() == Some(manager)
                && e["operation"].as_str() == Some("Apply")
                && e["subresource"].as_str().unwrap_or("").is_empty()
        });
    let entry = entries.next()?;
    if entries.next().is_some()
        || &entry["apiVersion"] != api
        || entry["fieldsType"].as_str() != Some("FieldsV1")
    {
        return None;
    }
    entry["fieldsV1"].as_object()
}

/// A field set's children other than `.` (the node owning itself).
fn children(owned: &Map<String, Value>) -> impl Iterator<Item = (&String, &Value)> {
    owned.iter().filter(|(k, _)| k.as_str() != ".")
}

/// A non-empty map of desired fields: each is in the live map with its value and owned, and
/// nothing else under it is owned.
fn map_covered(
    desired: &Map<String, Value>,
    live: &Map<String, Value>,
    owned: &Map<String, Value>,
) -> bool {
    let extra = children(owned).any(|(k, _)| {
        k.strip_prefix("f:")
            .is_none_or(|name| !desired.contains_key(name))
    });
    if extra {
        return false;
    }
    desired.iter().all(|(k, d)| {
        match (
            live.get(k),
            owned.get(&format!("f:{k}")).and_then(Value::as_object),
        ) {
            (Some(l), Some(o)) => covered(d, l, o),
            _ => false,
        }
    })
}

/// One desired value against the live value at the same place and strata's field set there.
fn covered(desired: &Value, live: &Value, owned: &Map<String, Value>) -> bool {
    match (desired, live) {
        (Value::Null, _) => false,
        // An empty map or list is owned whole: the same when live is the same.
        (Value::Object(d), Value::Object(l)) if !d.is_empty() => map_covered(d, l, owned),
        (Value::Array(d), Value::Array(l)) if !d.is_empty() => list_covered(d, l, owned),
        (d, l) => children(owned).next().is_none() && d == l,
    }
}

/// A list: atomic (owned whole, so equal), or granular (items by key or, for sets, by value):
/// then the live list has the same items in the same order, each covered.
fn list_covered(desired: &[Value], live: &[Value], owned: &Map<String, Value>) -> bool {
    let items: Vec<(&String, &Value)> = children(owned).collect();
    if items.is_empty() {
        return desired == live;
    }
    if items.len() != desired.len() || live.len() != desired.len() {
        return false;
    }
    let mut used = vec![false; items.len()];
    desired.iter().zip(live).all(|(d, l)| {
        let found = items
            .iter()
            .enumerate()
            .find(|(i, (k, _))| !used[*i] && item_matches(k, d) && item_matches(k, l));
        let Some((i, (k, node))) = found else {
            return false;
        };
        used[i] = true;
        match (k.starts_with("v:"), node.as_object()) {
            (true, _) => d == l,
            (false, Some(node)) => covered(d, l, node),
            (false, None) => false,
        }
    })
}

/// Whether a list item is the one a field-set key names: `k:{"name":"web"}` (every key field has
/// that value) or `v:"a"` (the item is that value). Index keys (`i:0`) are never matched.
fn item_matches(key: &str, item: &Value) -> bool {
    if let Some(k) = key.strip_prefix("k:") {
        let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(k) else {
            return false;
        };
        !fields.is_empty() && item.is_object() && fields.iter().all(|(f, v)| item.get(f) == Some(v))
    } else if let Some(v) = key.strip_prefix("v:") {
        serde_json::from_str::<Value>(v).is_ok_and(|v| &v == item)
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live(fields: Value, extra: Value) -> Value {
        let mut o = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "uid": "1", "labels": {"app": "web"},
                "managedFields": [{"manager": "strata", "operation": "Apply", "apiVersion": "apps/v1",
                    "fieldsType": "FieldsV1", "fieldsV1": fields}]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx", "imagePullPolicy": "Always"}]}}},
            "status": {"ready": 1}
        });
        if let (Some(o), Some(e)) = (o["spec"].as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        o
    }

    fn desired() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}}})
    }

    fn owned() -> Value {
        json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}})
    }

    #[test]
    fn contained_and_owned_exactly_needs_no_dry_run() {
        assert!(unchanged_by_apply(
            &desired(),
            &live(owned(), json!({})),
            "strata"
        ));
        // Fields others set (the defaulted pull policy, status) do not matter.
        assert!(unchanged_by_apply(
            &desired(),
            &live(owned(), json!({"paused": false})),
            "strata"
        ));
    }

    #[test]
    fn anything_the_server_could_change_asks_the_server() {
        let d = desired();
        let mut other_value = live(owned(), json!({}));
        other_value["spec"]["replicas"] = json!(3);
        let mut more_owned = owned();
        more_owned["f:spec"]["f:paused"] = json!({});
        let mut not_owned = owned();
        not_owned["f:spec"]
            .as_object_mut()
            .unwrap()
            .remove("f:replicas");
        let mut other_manager = live(owned(), json!({}));
        other_manager["metadata"]["managedFields"][0]["manager"] = json!("kubectl");
        let mut other_version = live(owned(), json!({}));
        other_version["metadata"]["managedFields"][0]["apiVersion"] = json!("apps/v1beta1");
        let mut extra_item = live(owned(), json!({}));
        extra_item["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "sidecar", "image": "envoy"}));
        let mut normalised = d.clone();
        normalised["spec"]["replicas"] = json!(2.0);
        let mut null = d.clone();
        null["spec"]["paused"] = Value::Null;
        let mut finalizers = d.clone();
        finalizers["metadata"]["finalizers"] = json!(["x"]);
        for (what, d, l) in [
            ("another value", &d, other_value),
            (
                "a field strata owned and no longer applies",
                &d,
                live(more_owned, json!({})),
            ),
            (
                "a field strata does not own",
                &d,
                live(not_owned, json!({})),
            ),
            ("no apply entry of strata", &d, other_manager),
            ("an entry of another API version", &d, other_version),
            ("a list item more", &d, extra_item),
            (
                "a number the server would normalise",
                &normalised,
                live(owned(), json!({})),
            ),
            ("a null", &null, live(owned(), json!({}))),
            (
                "metadata beyond labels and annotations",
                &finalizers,
                live(owned(), json!({})),
            ),
        ] {
            assert!(!unchanged_by_apply(d, &l, "strata"), "{what}");
        }
    }

    #[test]
    fn set_lists_match_by_value_in_order() {
        let d = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a"}, "spec": {"s": ["a", "b"]}});
        let l = |items: Value| {
            json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a", "managedFields": [
                {"manager": "strata", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:spec": {"f:s": {"v:\"a\"": {}, "v:\"b\"": {}}}}}]}, "spec": {"s": items}})
        };
        assert!(unchanged_by_apply(&d, &l(json!(["a", "b"])), "strata"));
        assert!(!unchanged_by_apply(&d, &l(json!(["b", "a"])), "strata"));
        assert!(!unchanged_by_apply(
            &d,
            &l(json!(["a", "b", "c"])),
            "strata"
        ));
    }
}
