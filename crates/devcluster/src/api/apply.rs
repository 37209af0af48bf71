//! Server-side apply: field ownership per manager, conflicts (409 unless forced), removal of
//! fields a manager stops applying, and creation of missing objects.

use serde_json::{json, Value};

use super::managed::{managers, set_managers};
use super::{check_body, meta, name_of, ApiError, ApiResult, WriteOptions};
use crate::fields::{self, Fields};
use crate::registry::ResourceType;
use crate::store::Store;

impl Store {
    /// Server-side apply.
    pub fn apply(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> ApiResult {
        if opts.manager.is_empty() {
            return Err(ApiError::bad_request(
                "PATCH with apply requires a fieldManager",
            ));
        }
        let mut applied = check_body(rt, ns, body)?;
        super::defaults::default_list_keys(rt, &mut applied);
        if name_of(&applied) != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                name_of(&applied)
            )));
        }
        let status_only = opts.subresource.as_deref() == Some("status");
        let live = self.lookup(rt, ns, name).cloned();
        if live.is_none() {
            self.check_namespace(rt, ns, true)?;
        }
        let base = live.clone().unwrap_or_else(
            || json!({"apiVersion": rt.api_version(), "kind": rt.kind, "metadata": {"name": name}}),
        );
        let mut m = managers(&base);
        let sub = opts.subresource.clone().unwrap_or_default();
        let me = (opts.manager.clone(), "Apply".to_string(), sub);
        let fields = Fields::of_object(&applied, status_only);

        // Conflicts: fields another manager owns with a different value.
        let mut conflicts: Vec<(Vec<String>, String, String)> = Vec::new();
        for path in fields.leaves() {
            // Owning a list item (`k:{...}`) is owning its existence, which managers share; only
            // field values conflict, as in Kubernetes.
            if path.last().is_some_and(|p| p.starts_with("k:")) {
                continue;
            }
            for (key, (api, f)) in &m {
                if *key == me || !f.contains(&path) {
                    continue;
                }
                if fields::get(&base, &path) != fields::get(&applied, &path) {
                    conflicts.push((path.clone(), key.0.clone(), print_manager(key, api)));
                }
            }
        }
        if !conflicts.is_empty() {
            if !opts.force {
                let mut e = ApiError::new(409, "Conflict", conflict_message(&conflicts));
                e.details = Some(json!({
                    "name": name, "group": rt.group, "kind": rt.plural,
                    "causes": conflicts.iter().map(|(p, _, printed)| json!({
                        "reason": "FieldManagerConflict",
                        "message": format!("conflict with {printed}"),
                        "field": fields::path_text(p),
                    })).collect::<Vec<_>>(),
                }));
                return Err(e);
            }
            for (path, mgr, _) in &conflicts {
                for (key, (_, f)) in m.iter_mut() {
                    if &key.0 == mgr {
                        f.remove(path);
                    }
                }
            }
        }

        let mut obj = base.clone();
        let mut content = applied.clone();
        if let Some(c) = content.as_object_mut() {
            c.remove("apiVersion");
            c.remove("kind");
            if let Some(md) = c.get_mut("metadata").and_then(Value::as_object_mut) {
                for k in [
                    "resourceVersion",
                    "managedFields",
                    "uid",
                    "creationTimestamp",
                    "generation",
                    "deletionTimestamp",
                ] {
                    md.remove(k);
                }
            }
            if status_only {
                c.retain(|k, _| k == "status");
            } else if rt.status_subresource && rt.kind != "CustomResourceDefinition" {
                c.remove("status");
            }
        }
        fields::merge(&mut obj, &content, "");
        // Fields this manager applied before and no longer does go, unless someone else owns them.
        if let Some((_, previous)) = m.get(&me) {
            for path in previous.leaves() {
                if fields.contains(&path) {
                    continue;
                }
                let owned_elsewhere = m.iter().any(|(k, (_, f))| *k != me && f.contains(&path));
                if !owned_elsewhere {
                    fields::remove(&mut obj, &path);
                }
            }
        }
        m.insert(me, (rt.api_version(), fields));
        if obj["metadata"]["namespace"].is_null() && !ns.is_empty() {
            obj["metadata"]["namespace"] = Value::String(ns.into());
        }
        set_managers(&mut obj, &m, live.as_ref());
        if let (Some(rv), Some(l)) = (meta(&applied)["resourceVersion"].as_str(), &live) {
            if Some(rv) != meta(l)["resourceVersion"].as_str() {
                return Err(ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", rt.qualified())));
            }
        }
        match &live {
            Some(l) => self.commit(rt, ns, obj, Some(l), opts.dry_run),
            None => {
                if rt.status_subresource && rt.kind != "CustomResourceDefinition" && !status_only {
                    obj.as_object_mut().map(|m| m.remove("status"));
                }
                self.commit(rt, ns, obj, None, opts.dry_run)
            }
        }
    }
}

/// A manager as the API server names it in conflicts: `"other"` for an applier,
/// `"kubectl-set" using apps/v1` for an updater, `... with subresource "status"`.
fn print_manager(key: &(String, String, String), api: &str) -> String {
    let (manager, operation, subresource) = key;
    let mut s = serde_json::to_string(manager).expect("a string");
    if !subresource.is_empty() {
        s.push_str(&format!(
            " with subresource {}",
            serde_json::to_string(subresource).expect("a string")
        ));
    }
    if operation == "Update" {
        s.push_str(&format!(" using {api}"));
    }
    s
}

/// The message of a conflict answer, worded as the API server words it: one conflict on one
/// line, several grouped by manager (managers sorted).
fn conflict_message(conflicts: &[(Vec<String>, String, String)]) -> String {
    if let [(path, _, printed)] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {printed}: {}",
            fields::path_text(path)
        );
    }
    let mut by: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    for (path, _, printed) in conflicts {
        by.entry(printed).or_default().push(fields::path_text(path));
    }
    let mut lines = Vec::new();
    for (printed, paths) in by {
        lines.push(format!("conflicts with {printed}:"));
        lines.extend(paths.into_iter().map(|p| format!("- {p}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}
