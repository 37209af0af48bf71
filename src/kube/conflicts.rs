//! Field-manager conflicts of a server-side apply, and what strata does about each: a field
//! whose desired value changed in Git since strata last applied the object is taken (forced); a
//! field Git did not change is left to the manager that changed it out of band (it shows as
//! drift), by applying the object without it.
//!
//! Conflicts are read from the API server's answer (`details.causes`, one
//! `FieldManagerConflict` per field, `field` in structured-merge-diff's path syntax:
//! `.spec.template.spec.containers[name="web"].image`, `.spec.ports[port=443,protocol="TCP"]`,
//! `.metadata.finalizers[="x"]`, `.spec.items[2]`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One field another manager holds with another value than Git's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// As the server names it: `.spec.template.spec.containers[name="web"].image`.
    pub path: String,
    /// The other field manager (`kubectl-set`, `other`).
    pub manager: String,
}

/// The conflicts of a 409 answer to an apply; empty when it names none (another kind of 409).
pub fn of_status(s: &::kube::core::Status) -> Vec<Conflict> {
    let Some(details) = &s.details else {
        return Vec::new();
    };
    details
        .causes
        .iter()
        .filter(|c| c.reason == "FieldManagerConflict" && !c.field.is_empty())
        .map(|c| Conflict {
            path: c.field.clone(),
            manager: manager_of(&c.message),
        })
        .collect()
}

/// `kubectl-set` from `conflict with "kubectl-set" using apps/v1` (or `conflict with "other"`).
fn manager_of(message: &str) -> String {
    let rest = message.strip_prefix("conflict with ").unwrap_or(message);
    let mut de = serde_json::Deserializer::from_str(rest).into_iter::<String>();
    match de.next() {
        Some(Ok(name)) => name,
        _ => rest.to_string(),
    }
}

/// Why a conflicting field is left to the other manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeptBecause {
    /// Git declares the same value as when strata last applied the object: the other value is
    /// an out-of-band edit, which `drift = "report"` does not revert.
    UnchangedInGit,
    /// strata has no record of what it last applied to this object (applied by an older strata,
    /// or the record was lost): it cannot tell a Git change from an out-of-band edit, and does
    /// not revert what it can't tell.
    NoRecord,
}

/// A field left to another manager: it keeps its value, and shows as drift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub path: String,
    pub manager: String,
    pub because: KeptBecause,
}

/// A field taken from another manager because Git changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taken {
    pub path: String,
    pub manager: String,
}

/// What to do about an object's conflicts.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The object to apply: the desired object without the kept fields.
    pub object: Value,
    /// Force: some conflicting field changed in Git.
    pub force: bool,
    pub kept: Vec<Kept>,
    pub taken: Vec<Taken>,
}

/// Why conflicts can't be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    pub path: String,
}

/// Decides each conflict of `desired` against `last` (the object as Git declared it when strata
/// last applied it; `None` when there is no record).
///
/// # Errors
/// A conflict path that can't be found in the desired object (the server named a field strata
/// did not send): nothing can be decided about it.
pub fn resolve(
    desired: &Value,
    last: Option<&Value>,
    conflicts: &[Conflict],
) -> Result<Resolution, Unresolved> {
    let mut object = desired.clone();
    let (mut kept, mut taken) = (Vec::new(), Vec::new());
    for c in conflicts {
        let now = get(desired, &c.path).ok_or_else(|| Unresolved {
            path: c.path.clone(),
        })?;
        let because = match last {
            None => Some(KeptBecause::NoRecord),
            Some(old) if get(old, &c.path) == Some(now) => Some(KeptBecause::UnchangedInGit),
            Some(_) => None,
        };
        match because {
            Some(because) => {
                if !remove(&mut object, &c.path) {
                    return Err(Unresolved {
                        path: c.path.clone(),
                    });
                }
                kept.push(Kept {
                    path: c.path.clone(),
                    manager: c.manager.clone(),
                    because,
                });
            }
            None => taken.push(Taken {
                path: c.path.clone(),
                manager: c.manager.clone(),
            }),
        }
    }
    Ok(Resolution {
        object,
        force: !taken.is_empty(),
        kept,
        taken,
    })
}

/// One element of a path.
#[derive(Debug, Clone, PartialEq)]
enum Elem {
    /// `.name`; a field name may itself hold dots (`.data.config.yaml`), so it is matched against
    /// the keys of the map it is looked up in.
    Field,
    /// `[name="web"]`, `[port=443,protocol="TCP"]`: the item of an associative list.
    Key(Map<String, Value>),
    /// `[="x"]`: the item of a set.
    Set(Value),
    /// `[2]`.
    Index(usize),
}

/// Where one step leads: a map key or a list index.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    At(usize),
}

/// The value a key of a list item has when it is not written: the API server defaults ports'
/// `protocol` to `TCP` before it keys the item, so a desired port without one is that item.
fn defaulted_key(name: &str, v: &Value) -> bool {
    name == "protocol" && v == "TCP"
}

fn item_matches(item: &Value, key: &Map<String, Value>) -> bool {
    key.iter().all(|(k, v)| match item.get(k) {
        Some(iv) => iv == v,
        None => defaulted_key(k, v),
    })
}

/// The steps `path` takes through `v`, if it leads somewhere.
fn steps(v: &Value, path: &str) -> Option<Vec<Step>> {
    if path.is_empty() {
        return Some(Vec::new());
    }
    let (elem, rest) = next_elem(path)?;
    match elem {
        Elem::Field => {
            let map = v.as_object()?;
            let text = &path[1..];
            // The longest key first: `.data.config.yaml` is key `config.yaml` when the map has it.
            let mut keys: Vec<&String> = map
                .keys()
                .filter(|k| {
                    text.starts_with(k.as_str())
                        && matches!(text.as_bytes().get(k.len()), None | Some(b'.' | b'['))
                })
                .collect();
            keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
            keys.into_iter().find_map(|k| {
                let mut s = steps(&map[k], &text[k.len()..])?;
                s.insert(0, Step::Key(k.clone()));
                Some(s)
            })
        }
        Elem::Key(key) => {
            let items = v.as_array()?;
            let exact = items.iter().position(|i| {
                key.iter()
                    .all(|(k, kv)| i.get(k).is_some_and(|iv| iv == kv))
            });
            let at = exact.or_else(|| items.iter().position(|i| item_matches(i, &key)))?;
            let mut s = steps(&items[at], rest)?;
            s.insert(0, Step::At(at));
            Some(s)
        }
        Elem::Set(value) => {
            let at = v.as_array()?.iter().position(|i| *i == value)?;
            let mut s = steps(&v[at], rest)?;
            s.insert(0, Step::At(at));
            Some(s)
        }
        Elem::Index(at) => {
            let mut s = steps(v.as_array()?.get(at)?, rest)?;
            s.insert(0, Step::At(at));
            Some(s)
        }
    }
}

/// The first element of `path` and what follows it; for a field, the rest is the whole text
/// after the dot (its name's end is decided against the object).
fn next_elem(path: &str) -> Option<(Elem, &str)> {
    if path.starts_with('.') {
        return Some((Elem::Field, path));
    }
    let inner_start = path.strip_prefix('[')?;
    let end = closing_bracket(inner_start)?;
    let inner = &inner_start[..end];
    let rest = &inner_start[end + 1..];
    if let Some(v) = inner.strip_prefix('=') {
        return Some((Elem::Set(literal(v)), rest));
    }
    if let Ok(i) = inner.parse::<usize>() {
        return Some((Elem::Index(i), rest));
    }
    let mut key = Map::new();
    for part in split_outside_quotes(inner, ',') {
        let (k, v) = part.split_once('=')?;
        key.insert(k.to_string(), literal(v));
    }
    Some((Elem::Key(key), rest))
}

/// A key value as the server prints it: a quoted string, a number, a boolean.
fn literal(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| {
        Value::String(
            s.strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(s)
                .to_string(),
        )
    })
}

/// The index of the `]` that closes a bracket, quotes respected.
fn closing_bracket(s: &str) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ']' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let (mut out, mut start) = (Vec::new(), 0);
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// The value at a conflict path, if the object has it.
pub fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut at = v;
    for s in steps(v, path)? {
        at = match s {
            Step::Key(k) => at.get(&k)?,
            Step::At(i) => at.get(i)?,
        };
    }
    Some(at)
}

/// Removes the value at a conflict path; false when the object has none.
pub fn remove(v: &mut Value, path: &str) -> bool {
    let Some(mut s) = steps(v, path) else {
        return false;
    };
    let Some(last) = s.pop() else {
        return false;
    };
    let mut at = v;
    for step in s {
        at = match step {
            Step::Key(k) => match at.get_mut(&k) {
                Some(x) => x,
                None => return false,
            },
            Step::At(i) => match at.get_mut(i) {
                Some(x) => x,
                None => return false,
            },
        };
    }
    match (last, at) {
        (Step::Key(k), Value::Object(m)) => m.remove(&k).is_some(),
        (Step::At(i), Value::Array(items)) if i < items.len() => {
            items.remove(i);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(image: &str, replicas: u32) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web",
            "labels": {"strata.dev/layer": "apps"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "side", "image": "busybox"},
                {"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}}},
            "data": {"config.yaml": "a", "config": {"yaml": "b"}}})
    }

    fn conflict(path: &str) -> Conflict {
        Conflict {
            path: path.into(),
            manager: "kubectl-set".into(),
        }
    }

    #[test]
    fn paths_find_fields_list_items_defaulted_keys_and_dotted_names() {
        let d = deployment("nginx:1.27", 2);
        let image = ".spec.template.spec.containers[name=\"web\"].image";
        assert_eq!(get(&d, image), Some(&json!("nginx:1.27")));
        assert_eq!(get(&d, ".spec.replicas"), Some(&json!(2)));
        assert_eq!(
            get(&d, ".metadata.labels.strata.dev/layer"),
            Some(&json!("apps"))
        );
        assert_eq!(get(&d, ".data.config.yaml"), Some(&json!("a")));
        let port = ".spec.template.spec.containers[name=\"web\"].ports[containerPort=80,protocol=\"TCP\"].containerPort";
        assert_eq!(get(&d, port), Some(&json!(80)));
        assert_eq!(
            get(&json!({"f": ["a", "b"]}), ".f[=\"b\"]"),
            Some(&json!("b"))
        );
        assert_eq!(get(&json!({"f": [1, 2]}), ".f[1]"), Some(&json!(2)));
        assert_eq!(get(&d, ".spec.template.spec.containers[name=\"x\"]"), None);
        let mut m = d.clone();
        assert!(remove(&mut m, image));
        assert_eq!(get(&m, image), None);
        assert_eq!(
            get(&m, ".spec.template.spec.containers[name=\"side\"].image"),
            Some(&json!("busybox"))
        );
    }

    #[test]
    fn a_field_git_changed_is_taken_and_one_it_did_not_is_kept_in_the_same_object() {
        let last = deployment("nginx:1.27", 2);
        let now = deployment("nginx:1.28", 2);
        let image = ".spec.template.spec.containers[name=\"web\"].image";
        let r = resolve(
            &now,
            Some(&last),
            &[conflict(image), conflict(".spec.replicas")],
        )
        .unwrap();
        assert!(r.force);
        assert_eq!(r.taken.len(), 1);
        assert_eq!(r.taken[0].path, image);
        assert_eq!(
            r.kept,
            vec![Kept {
                path: ".spec.replicas".into(),
                manager: "kubectl-set".into(),
                because: KeptBecause::UnchangedInGit
            }]
        );
        assert_eq!(get(&r.object, ".spec.replicas"), None);
        assert_eq!(get(&r.object, image), Some(&json!("nginx:1.28")));

        // Only unchanged fields conflict: not forced, nothing taken.
        let r = resolve(&now, Some(&now), &[conflict(image)]).unwrap();
        assert!(!r.force && r.taken.is_empty());
        assert_eq!(get(&r.object, image), None);

        // No record: nothing is taken.
        let r = resolve(&now, None, &[conflict(image)]).unwrap();
        assert!(!r.force);
        assert_eq!(r.kept[0].because, KeptBecause::NoRecord);

        assert!(resolve(&now, Some(&last), &[conflict(".spec.paused")]).is_err());
    }

    #[test]
    fn managers_are_read_from_update_and_apply_causes() {
        assert_eq!(
            manager_of("conflict with \"kubectl-set\" using apps/v1"),
            "kubectl-set"
        );
        assert_eq!(manager_of("conflict with \"other\""), "other");
        assert_eq!(
            manager_of("conflict with \"a \\\"b\\\"\" with subresource \"status\""),
            "a \"b\""
        );
    }
}
