//! What to ignore when comparing desired and live objects: fields the server owns.

use serde_json::Value;

/// The object without server-populated metadata and without `status`.
pub fn comparable(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("status");
    }
    if let Some(md) = o["metadata"].as_object_mut() {
        for k in [
            "managedFields",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "uid",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            md.remove(k);
        }
        if md
            .get("annotations")
            .and_then(Value::as_object)
            .is_some_and(|a| a.is_empty())
        {
            md.remove("annotations");
        }
    }
    o
}

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldDiff {
    /// `.spec.replicas`, `.data.color`, `.spec.template.spec.containers[0].image`.
    pub path: String,
    /// `None` when the field is absent on that side.
    pub live: Option<Value>,
    pub desired: Option<Value>,
}

/// Field-level differences between two (sanitised) objects.
pub fn field_diffs(live: &Value, desired: &Value) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    walk(live, desired, &mut String::new(), &mut out);
    out
}

fn walk(live: &Value, desired: &Value, path: &mut String, out: &mut Vec<FieldDiff>) {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => {
            let mut keys: Vec<&String> = l.keys().chain(d.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                match (l.get(k), d.get(k)) {
                    (Some(a), Some(b)) => walk(a, b, path, out),
                    (a, b) => out.push(FieldDiff {
                        path: path.clone(),
                        live: a.cloned(),
                        desired: b.cloned(),
                    }),
                }
                path.truncate(len);
            }
        }
        (Value::Array(l), Value::Array(d)) if l.len() == d.len() => {
            for (i, (a, b)) in l.iter().zip(d).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(a, b, path, out);
                path.truncate(len);
            }
        }
        (a, b) if a != b => out.push(FieldDiff {
            path: path.clone(),
            live: Some(a.clone()),
            desired: Some(b.clone()),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn differences_are_listed_per_field() {
        let live = comparable(
            &json!({"metadata": {"name": "a", "resourceVersion": "3"}, "data": {"a": "1", "b": "2"}, "status": {"x": 1}}),
        );
        let desired = comparable(
            &json!({"metadata": {"name": "a", "resourceVersion": "4"}, "data": {"a": "1", "b": "3", "c": "4"}}),
        );
        let d = field_diffs(&live, &desired);
        assert_eq!(d.len(), 2);
        assert_eq!(
            d[0],
            FieldDiff {
                path: ".data.b".into(),
                live: Some(json!("2")),
                desired: Some(json!("3"))
            }
        );
        assert_eq!(d[1].path, ".data.c");
        assert_eq!(d[1].live, None);
    }
}
