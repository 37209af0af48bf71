//! Patch formats: JSON merge patch (RFC 7386) and JSON patch (RFC 6902) through the `json-patch`
//! crate, and strategic merge patch as far as kubectl uses it (merge by key for associative lists,
//! `$patch: delete|replace`, `$retainKeys` ignored), which no crate implements.

use serde_json::{Map, Value};

use crate::fields::list_key;

/// RFC 7386.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Strategic merge: like a merge patch, but associative lists merge by key, and items or maps
/// marked `$patch: delete` are removed, `$patch: replace` replaces.
pub fn strategic_merge(target: &mut Value, patch: &Value, field: &str) {
    match patch {
        Value::Object(p) => {
            if p.get("$patch").and_then(Value::as_str) == Some("replace") {
                let mut clean = p.clone();
                clean.remove("$patch");
                *target = Value::Object(clean);
                return;
            }
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                // Directives (`$setElementOrder/…`, `$retainKeys`) only order or prune lists
                // kubectl already sent whole: nothing to merge.
                if k.starts_with('$') {
                    continue;
                }
                if v.is_null() {
                    t.remove(k);
                } else {
                    strategic_merge(t.entry(k.clone()).or_insert(Value::Null), v, k);
                }
            }
        }
        Value::Array(items) => {
            let keys = list_key(field, items)
                .or_else(|| target.as_array().and_then(|t| list_key(field, t)));
            match (keys, target.as_array_mut()) {
                (Some(keys), Some(live)) => {
                    for item in items {
                        let same = |l: &Value| keys.iter().all(|k| l.get(*k) == item.get(*k));
                        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                        match live.iter_mut().position(|l| same(l)) {
                            Some(i) if delete => {
                                live.remove(i);
                            }
                            Some(i) => strategic_merge(&mut live[i], item, ""),
                            None if delete => {}
                            None => {
                                let mut fresh = Value::Null;
                                strategic_merge(&mut fresh, item, "");
                                live.push(fresh);
                            }
                        }
                    }
                }
                _ => *target = patch.clone(),
            }
        }
        other => *target = other.clone(),
    }
}

/// RFC 6902: add, remove, replace, move, copy, test. All operations or none are applied.
///
/// # Errors
/// When `ops` is not a list of operations, or an operation fails (a missing path, a failed
/// `test`); the message names the operation and its path.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops: json_patch::Patch =
        serde_json::from_value(ops.clone()).map_err(|e| format!("invalid JSON patch: {e}"))?;
    json_patch::patch(target, &ops).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_three_patch_kinds() {
        let mut v = json!({"a": 1, "b": {"c": 2}});
        merge_patch(&mut v, &json!({"a": null, "b": {"d": 3}}));
        assert_eq!(v, json!({"b": {"c": 2, "d": 3}}));

        let mut v = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}});
        strategic_merge(
            &mut v,
            &json!({"spec": {"containers": [{"name": "b", "image": "3"}, {"name": "a", "$patch": "delete"}]}}),
            "",
        );
        assert_eq!(
            v,
            json!({"spec": {"containers": [{"name": "b", "image": "3"}]}})
        );

        let mut v = json!({"l": [1, 2]});
        json_patch(&mut v, &json!([{"op": "add", "path": "/l/-", "value": 3}, {"op": "replace", "path": "/l/0", "value": 0}, {"op": "test", "path": "/l/1", "value": 2}])).unwrap();
        assert_eq!(v, json!({"l": [0, 2, 3]}));
        assert!(json_patch(&mut v, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }
}
