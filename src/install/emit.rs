//! Manifests as YAML for people to read and pipe to `kubectl apply -f -`: block style, keys as
//! they are, every string double-quoted (JSON's escaping is valid YAML), so that nothing is read
//! back as another type (`"0755"`, `"yes"`, `"1.10"` stay strings).

use std::fmt::Write;

use serde_json::Value;

/// `docs` as one YAML stream, `---` between documents.
pub fn stream(docs: &[Value]) -> String {
    let mut out = String::new();
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        node(&mut out, d, 0);
    }
    out
}

/// `notes` as `#` comment lines, then `docs` as [`stream`] renders them.
pub fn commented(notes: &[String], docs: &[Value]) -> String {
    let mut out = String::new();
    for n in notes {
        for line in n.lines() {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(&stream(docs));
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => Value::String(s.clone()).to_string(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        other => other.to_string(),
    }
}

/// A key as it is when YAML reads it back as that string, else double-quoted (`"on"`, `"yes"`
/// and `"1"` would be read as a bool or a number by YAML 1.1 readers such as kubectl's).
fn key(k: &str) -> String {
    const WORDS: &[&str] = &[
        "y", "yes", "n", "no", "on", "off", "true", "false", "null", "~",
    ];
    let plain = k
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c))
        && !WORDS.contains(&k.to_ascii_lowercase().as_str());
    if plain {
        k.to_string()
    } else {
        Value::String(k.to_string()).to_string()
    }
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Array(a) if !a.is_empty()) || matches!(v, Value::Object(o) if !o.is_empty())
}

/// Writes `v` (an object or array) at `indent` spaces.
fn node(out: &mut String, v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, val) in map {
                let k = key(k);
                if is_block(val) {
                    let _ = writeln!(out, "{pad}{k}:");
                    let inner = if val.is_array() { indent } else { indent + 2 };
                    node(out, val, inner);
                } else {
                    let _ = writeln!(out, "{pad}{k}: {}", scalar(val));
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(map) if !map.is_empty() => {
                        // The first key on the dash's line, the rest under it.
                        let mut first = String::new();
                        node(&mut first, item, indent + 2);
                        let trimmed = &first[indent + 2..];
                        let _ = write!(out, "{pad}- {trimmed}");
                    }
                    // A list in a list: JSON's flow style, which YAML reads as it is.
                    Value::Array(_) => {
                        let _ = writeln!(out, "{pad}- {item}");
                    }
                    other => {
                        let _ = writeln!(out, "{pad}- {}", scalar(other));
                    }
                }
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{}", scalar(other));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_stream_reads_back_as_the_same_objects() {
        let docs = vec![
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {}},
                   "data": {"mode": "0755", "on": "yes", "n": "1.10", "quote": "a \"b\"\nc"}}),
            json!({"kind": "Role", "rules": [{"apiGroups": [""], "resources": ["configmaps", "secrets"],
                   "verbs": ["get"]}, {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": []}],
                   "spec": {"replicas": 1, "enabled": true, "nested": [[1, 2], []]}}),
        ];
        let text = stream(&docs);
        let back: Vec<Value> = text
            .split("---\n")
            .map(|d| crate::kube::yaml::parse(d, &Default::default()).expect("valid YAML"))
            .collect();
        assert_eq!(back, docs, "{text}");
    }
}
