//! Field sets, as in server-side apply's `managedFields` (`fieldsV1`): which fields of an object a
//! manager owns, and the structural merge of an applied configuration into a live object.
//!
//! Lists of objects are *associative* (merged by key) when their items have a key: `name` for most
//! lists, `containerPort` or `port` with `protocol` for ports, `mountPath` for volume mounts. Other lists are
//! atomic: owned and replaced whole. This covers the built-in kinds strata applies and is what
//! custom resources without schema hints get.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A set of field paths, as a tree. A node is owned itself when `own` is set (a leaf value, an
/// atomic list, or an item of an associative list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    pub own: bool,
    pub children: BTreeMap<String, Fields>,
}

/// The key fields of a list's items, when the list is associative.
pub fn list_key(field: &str, items: &[Value]) -> Option<Vec<&'static str>> {
    if items.is_empty() || !items.iter().all(Value::is_object) {
        return None;
    }
    let all_have = |k: &str| items.iter().all(|i| i.get(k).is_some());
    // Ports are keyed with their protocol, as in Kubernetes' schemas (`[port, protocol]`,
    // `[containerPort, protocol]`); built-in kinds get the protocol defaulted before keying.
    if field == "ports" {
        for k in ["containerPort", "port"] {
            if all_have(k) {
                return Some(vec![k, "protocol"]);
            }
        }
    }
    let candidates: &[&'static str] = match field {
        "ports" => &["name"],
        "volumeMounts" | "volumeDevices" => &["mountPath", "name"],
        _ => &["name"],
    };
    candidates.iter().find(|k| all_have(k)).map(|k| vec![*k])
}

fn item_key(item: &Value, keys: &[&str]) -> String {
    let mut m = Map::new();
    // A key field the item leaves out is left out of its key (custom resources get no defaults).
    for k in keys {
        if let Some(v) = item.get(*k) {
            m.insert((*k).to_string(), v.clone());
        }
    }
    format!("k:{}", Value::Object(m))
}

impl Fields {
    pub fn is_empty(&self) -> bool {
        !self.own && self.children.is_empty()
    }

    /// The fields set in `v` (an object's content below its root), skipping nothing.
    pub fn of_value(v: &Value) -> Fields {
        let mut f = Fields::default();
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    f.children
                        .insert(format!("f:{k}"), Fields::of_field(k, child));
                }
                if map.is_empty() {
                    f.own = true;
                }
            }
            _ => f.own = true,
        }
        f
    }

    fn of_field(name: &str, v: &Value) -> Fields {
        match v {
            Value::Array(items) => match list_key(name, items) {
                Some(keys) => {
                    let mut f = Fields::default();
                    for item in items {
                        let mut node = Fields::of_value(item);
                        node.own = true;
                        f.children.insert(item_key(item, &keys), node);
                    }
                    f
                }
                None => Fields {
                    own: true,
                    children: BTreeMap::new(),
                },
            },
            other => Fields::of_value(other),
        }
    }

    /// The fields an applied configuration sets: everything but `apiVersion`, `kind`,
    /// `metadata.name`, `metadata.namespace` and server-owned metadata; `status` only when
    /// `with_status`, and only `status` then.
    pub fn of_object(obj: &Value, status_only: bool) -> Fields {
        let mut f = Fields::default();
        let Some(map) = obj.as_object() else {
            return f;
        };
        for (k, v) in map {
            let keep = match k.as_str() {
                "apiVersion" | "kind" => false,
                "status" => status_only,
                _ => !status_only,
            };
            if !keep {
                continue;
            }
            if k == "metadata" {
                let mut meta = Fields::default();
                if let Some(m) = v.as_object() {
                    for (mk, mv) in m {
                        if matches!(
                            mk.as_str(),
                            "labels" | "annotations" | "finalizers" | "ownerReferences"
                        ) {
                            meta.children
                                .insert(format!("f:{mk}"), Fields::of_field(mk, mv));
                        }
                    }
                }
                if !meta.is_empty() {
                    f.children.insert("f:metadata".into(), meta);
                }
                continue;
            }
            f.children.insert(format!("f:{k}"), Fields::of_field(k, v));
        }
        f
    }

    /// Every owned path, as lists of path elements.
    pub fn leaves(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.own {
            out.push(prefix.clone());
        }
        for (k, c) in &self.children {
            prefix.push(k.clone());
            c.collect(prefix, out);
            prefix.pop();
        }
    }

    pub fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => self.own,
            Some((head, rest)) => self.children.get(head).is_some_and(|c| c.contains(rest)),
        }
    }

    /// Adds one owned path.
    pub fn insert(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.own = true,
            Some((head, rest)) => self.children.entry(head.clone()).or_default().insert(rest),
        }
    }

    /// Removes one path and everything under it; prunes emptied parents.
    pub fn remove(&mut self, path: &[String]) {
        match path.split_first() {
            None => {
                self.own = false;
                self.children.clear();
            }
            Some((head, rest)) => {
                if let Some(c) = self.children.get_mut(head) {
                    c.remove(rest);
                    if c.is_empty() {
                        self.children.remove(head);
                    }
                }
            }
        }
    }

    /// `fieldsV1` JSON.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if self.own && !self.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, c) in &self.children {
            m.insert(k.clone(), c.to_json());
        }
        Value::Object(m)
    }

    pub fn from_json(v: &Value) -> Fields {
        let mut f = Fields::default();
        if let Some(m) = v.as_object() {
            if m.is_empty() {
                f.own = true;
            }
            for (k, c) in m {
                if k == "." {
                    f.own = true;
                } else {
                    f.children.insert(k.clone(), Fields::from_json(c));
                }
            }
        }
        f
    }
}

/// A path as Kubernetes prints it in conflicts: `.spec.replicas`, `.spec.containers[name="web"].image`.
pub fn path_text(path: &[String]) -> String {
    let mut s = String::new();
    for p in path {
        if let Some(f) = p.strip_prefix("f:") {
            s.push('.');
            s.push_str(f);
        } else if let Some(k) = p.strip_prefix("k:") {
            let key: Value = serde_json::from_str(k).unwrap_or(Value::Null);
            let parts: Vec<String> = key
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_default();
            s.push_str(&format!("[{}]", parts.join(",")));
        } else {
            s.push_str(&format!("[{p}]"));
        }
    }
    s
}

/// The value at a path, if present.
pub fn get<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let Some((head, rest)) = path.split_first() else {
        return Some(obj);
    };
    let next = if let Some(f) = head.strip_prefix("f:") {
        obj.get(f)?
    } else if let Some(k) = head.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        obj.as_array()?
            .iter()
            .find(|item| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))?
    } else {
        return None;
    };
    get(next, rest)
}

/// Removes the value at a path, if present.
pub fn remove(obj: &mut Value, path: &[String]) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    if let Some(f) = head.strip_prefix("f:") {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        if rest.is_empty() {
            map.remove(f);
        } else if let Some(child) = map.get_mut(f) {
            remove(child, rest);
        }
    } else if let Some(k) = head.strip_prefix("k:") {
        let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
            return;
        };
        let Some(items) = obj.as_array_mut() else {
            return;
        };
        let matches = |item: &Value| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv));
        if rest.is_empty() {
            items.retain(|i| !matches(i));
        } else if let Some(item) = items.iter_mut().find(|i| matches(i)) {
            remove(item, rest);
        }
    }
}

/// Merges `applied` into `live`: maps recursively, associative lists by key (applied items
/// merged into live ones, new ones appended, order of the applied list first), everything
/// else replaced.
pub fn merge(live: &mut Value, applied: &Value, field: &str) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                match l.get_mut(k) {
                    Some(lv) => merge(lv, av, k),
                    None => {
                        l.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(a)) => match (list_key(field, a), list_key(field, l)) {
            (Some(keys), Some(_)) | (Some(keys), None) if l.iter().all(Value::is_object) => {
                let mut out: Vec<Value> = Vec::new();
                for ai in a {
                    let k = item_key(ai, &keys);
                    let mut item = l
                        .iter()
                        .find(|li| item_key(li, &keys) == k)
                        .cloned()
                        .unwrap_or(Value::Object(Map::new()));
                    merge(&mut item, ai, "");
                    out.push(item);
                }
                for li in l.iter() {
                    let k = item_key(li, &keys);
                    if !a.iter().any(|ai| item_key(ai, &keys) == k) {
                        out.push(li.clone());
                    }
                }
                *l = out;
            }
            _ => *l = a.clone(),
        },
        (l, a) => *l = a.clone(),
    }
}

/// Leaf paths whose value differs between `old` and `new` (present in `new`), and those present
/// in `old` only.
pub fn changed(old: &Value, new: &Value) -> (Fields, Fields) {
    let before = Fields::of_object(old, false);
    let after = Fields::of_object(new, false);
    let mut set = Fields::default();
    for path in after.leaves() {
        if get(old, &path) != get(new, &path) || !before.contains(&path) {
            set.insert(&path);
        }
    }
    let mut gone = Fields::default();
    for path in before.leaves() {
        if get(new, &path).is_none() {
            gone.insert(&path);
        }
    }
    (set, gone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_are_keyed_by_name_and_args_are_atomic() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "labels": {"a": "1"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "nginx", "args": ["-x"]}]}}}});
        let f = Fields::of_object(&obj, false);
        let paths: Vec<String> = f.leaves().iter().map(|p| path_text(p)).collect();
        assert!(
            paths.contains(&".metadata.labels.a".to_string()),
            "{paths:?}"
        );
        assert!(paths.contains(&".spec.replicas".to_string()));
        assert!(
            paths.contains(&".spec.template.spec.containers[name=\"web\"].args".to_string()),
            "{paths:?}"
        );
        assert!(!paths.iter().any(|p| p.starts_with(".metadata.name")));
        let back = Fields::from_json(&f.to_json());
        assert_eq!(back, f);
    }

    #[test]
    fn merging_keeps_other_list_items_and_replaces_scalars() {
        let mut live = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}], "args": [1, 2]}});
        merge(
            &mut live,
            &json!({"spec": {"containers": [{"name": "b", "image": "3"}], "args": [3]}}),
            "",
        );
        assert_eq!(
            live,
            json!({"spec": {"containers": [{"name": "b", "image": "3"}, {"name": "a", "image": "1"}], "args": [3]}})
        );
    }

    #[test]
    fn changes_are_found_per_leaf() {
        let old = json!({"data": {"a": "1", "b": "2"}});
        let new = json!({"data": {"a": "1", "b": "3", "c": "4"}});
        let (set, gone) = changed(&old, &new);
        let paths: Vec<String> = set.leaves().iter().map(|p| path_text(p)).collect();
        assert_eq!(paths, [".data.b", ".data.c"]);
        assert!(gone.is_empty());
        let mut v = new.clone();
        remove(&mut v, &["f:data".into(), "f:c".into()]);
        assert_eq!(v, json!({"data": {"a": "1", "b": "3"}}));
    }
}
