//! The step every write ends in: validation, the metadata the server owns (uid, generation,
//! timestamps, resourceVersion), no-op detection, and storing plus the watch event.

use serde_json::{json, Value};

use super::{comparable, meta, name_of, spec_part, ApiError, ApiResult};
use crate::registry::{self, ResourceType};
use crate::store::{self, now_rfc3339, Store};
use crate::validate;

impl Store {
    /// Fills server-populated fields and checks the result; then stores it unless `dry_run`.
    /// `old` is the live object for updates.
    pub(super) fn commit(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> ApiResult {
        let name = name_of(&obj);
        let mut causes = validate::validate(rt, &obj);
        if let Some(o) = old {
            causes.extend(validate::immutable(rt, o, &obj));
        }
        let mut crd_type = None;
        if rt.kind == "CustomResourceDefinition" {
            match registry::from_crd(&obj) {
                Ok(t) => {
                    let taken = self
                        .registry
                        .by_kind(&t.group, &t.kind)
                        .filter(|x| x.crd.as_deref() != t.crd.as_deref());
                    if taken.is_some() {
                        causes.push(validate::Cause {
                            field: "spec.names.kind".into(),
                            message: format!(
                                "Invalid value: \"{}\": already served in group {}",
                                t.kind, t.group
                            ),
                        });
                    }
                    crd_type = Some(t);
                }
                Err(m) => {
                    let (field, message) = m.split_once(": ").unwrap_or(("spec", &m));
                    causes.push(validate::Cause {
                        field: field.into(),
                        message: message.into(),
                    });
                }
            }
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(rt, &name, causes));
        }
        self.defaults(rt, &mut obj, old);
        // Metadata the server owns.
        let bump = old.is_some_and(|o| spec_part(o) != spec_part(&obj));
        // Like a real API server, only kinds with a spec (and custom resources) have a generation.
        let has_generation = obj.get("spec").is_some() || rt.crd.is_some();
        let md = obj["metadata"].as_object_mut().expect("metadata");
        match old {
            Some(o) => {
                for k in ["uid", "creationTimestamp", "deletionTimestamp"] {
                    match meta(o).get(k) {
                        Some(v) => md.insert(k.into(), v.clone()),
                        None => md.remove(k),
                    };
                }
                let gen = meta(o)["generation"].as_i64().unwrap_or(1);
                if has_generation {
                    md.insert("generation".into(), json!(if bump { gen + 1 } else { gen }));
                } else {
                    md.remove("generation");
                }
            }
            None => {
                md.insert("uid".into(), Value::String(self.uid()));
                md.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
                if has_generation {
                    md.insert("generation".into(), json!(1));
                } else {
                    md.remove("generation");
                }
                md.remove("deletionTimestamp");
            }
        }
        if ns.is_empty() {
            md.remove("namespace");
        } else {
            md.insert("namespace".into(), Value::String(ns.into()));
        }
        if let Some(o) = old {
            if comparable(o) == comparable(&obj)
                && meta(o)["managedFields"] == meta(&obj)["managedFields"]
            {
                return Ok(o.clone());
            }
        }
        // An object being deleted goes once its last finalizer is removed.
        let finalizers_done = meta(&obj)["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
        if old.is_some() && !meta(&obj)["deletionTimestamp"].is_null() && finalizers_done {
            if dry_run {
                return Ok(obj);
            }
            let rv = self.next_rv();
            obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
            self.remove_object(rt, ns, &name, obj.clone(), rv);
            return Ok(obj);
        }
        if dry_run {
            if let Some(o) = old {
                obj["metadata"]["resourceVersion"] = meta(o)["resourceVersion"].clone();
            }
            return Ok(obj);
        }
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let k = store::key(rt, ns, &name);
        if old.is_none()
            || meta(&obj)["generation"]
                != old
                    .map(|o| meta(o)["generation"].clone())
                    .unwrap_or_default()
        {
            self.changed_at.insert(k.clone(), std::time::Instant::now());
        }
        if let Some(t) = crd_type {
            self.registry.insert(t);
        }
        self.put(k, obj.clone());
        self.emit(
            if old.is_some() { "MODIFIED" } else { "ADDED" },
            rt,
            ns,
            obj.clone(),
            rv,
        );
        Ok(obj)
    }
}
