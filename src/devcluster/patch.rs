//! Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and strategic merge patch
//! as far as kubectl uses it (merge by key for associative lists, `$patch: delete|replace`,
//! `$retainKeys` ignored).

use serde_json::{Map, Value};

use super::fields::list_key;

/// RFC 7386.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
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
                if k.starts_with('$') {
                    continue;
                }
                if let Some(stripped) = k.strip_prefix("$setElementOrder/") {
                    let _ = stripped;
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

/// RFC 6902: add, remove, replace, move, copy, test.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be a list of operations")?;
    for op in ops {
        let kind = op["op"].as_str().ok_or("operation without \"op\"")?;
        let path = op["path"].as_str().ok_or("operation without \"path\"")?;
        match kind {
            "add" => add(target, path, op["value"].clone())?,
            "remove" => {
                take(target, path)?;
            }
            "replace" => {
                take(target, path)?;
                add(target, path, op["value"].clone())?;
            }
            "move" => {
                let from = op["from"].as_str().ok_or("move without \"from\"")?;
                let v = take(target, from)?;
                add(target, path, v)?;
            }
            "copy" => {
                let from = op["from"].as_str().ok_or("copy without \"from\"")?;
                let v = target
                    .pointer(from)
                    .cloned()
                    .ok_or(format!("path {from} not found"))?;
                add(target, path, v)?;
            }
            "test" => {
                if target.pointer(path) != Some(&op["value"]) {
                    return Err(format!("test failed at {path}"));
                }
            }
            other => return Err(format!("unknown operation \"{other}\"")),
        }
    }
    Ok(())
}

fn split(path: &str) -> Result<(String, String), String> {
    let i = path.rfind('/').ok_or(format!("invalid path \"{path}\""))?;
    let last = path[i + 1..].replace("~1", "/").replace("~0", "~");
    Ok((path[..i].to_string(), last))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    let p = target
        .pointer_mut(&parent)
        .ok_or(format!("path {parent} not found"))?;
    match p {
        Value::Object(m) => {
            m.insert(last, value);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value);
            } else {
                let i: usize = last.parse().map_err(|_| format!("invalid index {last}"))?;
                if i > a.len() {
                    return Err(format!("index {i} out of range"));
                }
                a.insert(i, value);
            }
        }
        _ => return Err(format!("path {parent} is not a container")),
    }
    Ok(())
}

fn take(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split(path)?;
    let p = target
        .pointer_mut(&parent)
        .ok_or(format!("path {parent} not found"))?;
    match p {
        Value::Object(m) => m.remove(&last).ok_or(format!("path {path} not found")),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| format!("invalid index {last}"))?;
            (i < a.len())
                .then(|| a.remove(i))
                .ok_or(format!("index {i} out of range"))
        }
        _ => Err(format!("path {parent} is not a container")),
    }
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
