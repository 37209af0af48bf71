//! Writing: create (POST), update (PUT, and the result of non-apply patches) and the status
//! subresource's scope. Both end in [`Store::commit`](super::commit).

use serde_json::{json, Value};

use super::managed::{managers, set_managers, Managers};
use super::{check_body, meta, name_of, ApiError, ApiResult, WriteOptions};
use crate::fields::{self, Fields};
use crate::registry::ResourceType;
use crate::store::Store;

impl Store {
    pub(super) fn check_namespace(
        &self,
        rt: &ResourceType,
        ns: &str,
        creating: bool,
    ) -> Result<(), ApiError> {
        if !rt.namespaced {
            return Ok(());
        }
        match self.namespace_exists(ns) {
            None => {
                let mut e =
                    ApiError::new(404, "NotFound", format!("namespaces \"{ns}\" not found"));
                e.details = Some(json!({"name": ns, "kind": "namespaces"}));
                Err(e)
            }
            Some(n) if creating && !meta(n)["deletionTimestamp"].is_null() => Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> ApiResult {
        let mut obj = check_body(rt, ns, body)?;
        if name_of(&obj).is_empty() {
            if let Some(prefix) = meta(&obj)["generateName"].as_str() {
                let suffix: String = self
                    .uid()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric())
                    .take(5)
                    .collect();
                obj["metadata"]["name"] = Value::String(format!("{prefix}{suffix}"));
            }
        }
        let name = name_of(&obj);
        self.check_namespace(rt, ns, true)?;
        if self.lookup(rt, ns, &name).is_some() {
            let mut e = ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", rt.qualified()),
            );
            e.details = Some(json!({"name": name, "group": rt.group, "kind": rt.plural}));
            return Err(e);
        }
        if rt.status_subresource && rt.kind != "CustomResourceDefinition" {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
        let mut m = Managers::new();
        m.insert(
            (opts.manager.clone(), "Update".into(), String::new()),
            (rt.api_version(), Fields::of_object(&obj, false)),
        );
        set_managers(&mut obj, &m, None);
        self.commit(rt, ns, obj, None, opts.dry_run)
    }

    /// A whole-object write (PUT), or the result of a non-apply patch.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> ApiResult {
        let mut obj = check_body(rt, ns, body)?;
        if name_of(&obj) != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                name_of(&obj)
            )));
        }
        let Some(old) = self.lookup(rt, ns, name).cloned() else {
            return Err(ApiError::not_found(rt, name));
        };
        if let Some(rv) = meta(&obj)["resourceVersion"].as_str() {
            if !rv.is_empty() && Some(rv) != meta(&old)["resourceVersion"].as_str() {
                let mut e = ApiError::new(
                    409,
                    "Conflict",
                    format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", rt.qualified()),
                );
                e.details = Some(json!({"name": name, "group": rt.group, "kind": rt.plural}));
                return Err(e);
            }
        }
        obj = self.scope_to_subresource(rt, &old, obj, opts);
        // Managed fields in the body are the client's to set only as a whole; keep ours.
        obj["metadata"]["managedFields"] = meta(&old)["managedFields"].clone();
        let mut m = managers(&old);
        let (set, gone) = fields::changed(&old, &obj);
        let sub = opts.subresource.clone().unwrap_or_default();
        for (_, (_, f)) in m.iter_mut() {
            for p in set.leaves().iter().chain(gone.leaves().iter()) {
                f.remove(p);
            }
        }
        if !set.is_empty() {
            let entry = m
                .entry((opts.manager.clone(), "Update".into(), sub))
                .or_insert((rt.api_version(), Fields::default()));
            for p in set.leaves() {
                entry.1.insert(&p);
            }
        }
        set_managers(&mut obj, &m, Some(&old));
        self.commit(rt, ns, obj, Some(&old), opts.dry_run)
    }

    /// For a status write keep everything but status from `old`; for a main-resource write of a
    /// type with a status subresource, keep `old`'s status.
    fn scope_to_subresource(
        &self,
        rt: &ResourceType,
        old: &Value,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Value {
        match opts.subresource.as_deref() {
            Some("status") => {
                let status = obj.get("status").cloned();
                let mut o = old.clone();
                match status {
                    Some(s) => o["status"] = s,
                    None => {
                        o.as_object_mut().map(|m| m.remove("status"));
                    }
                }
                o["metadata"]["resourceVersion"] = meta(&obj)["resourceVersion"].clone();
                o
            }
            _ if rt.status_subresource && rt.kind != "CustomResourceDefinition" => {
                match old.get("status") {
                    Some(s) => obj["status"] = s.clone(),
                    None => {
                        obj.as_object_mut().map(|m| m.remove("status"));
                    }
                }
                obj
            }
            _ => obj,
        }
    }
}
