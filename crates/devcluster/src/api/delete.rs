//! Deleting: one object or a collection, finalizers (an object stays, marked, until they are
//! gone), namespace cascade (a namespace empties itself, then goes), and CRD removal taking its
//! objects and its served kind along.

use serde_json::{json, Value};

use super::{meta, name_of, ApiError, ApiResult};
use crate::registry::ResourceType;
use crate::selector::Selector;
use crate::store::{self, now_rfc3339, ObjKey, Store};

impl Store {
    pub fn delete(&mut self, rt: &ResourceType, ns: &str, name: &str, dry_run: bool) -> ApiResult {
        let Some(obj) = self.lookup(rt, ns, name).cloned() else {
            return Err(ApiError::not_found(rt, name));
        };
        let has_finalizers = meta(&obj)["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        let is_ns = rt.kind == "Namespace" && rt.group.is_empty();
        if dry_run {
            return Ok(obj);
        }
        if has_finalizers || is_ns {
            let mut o = obj.clone();
            if meta(&o)["deletionTimestamp"].is_null() {
                o["metadata"]["deletionTimestamp"] = Value::String(now_rfc3339());
                if is_ns {
                    o["status"] = json!({"phase": "Terminating"});
                }
                let rv = self.next_rv();
                o["metadata"]["resourceVersion"] = Value::String(rv.to_string());
                self.put(store::key(rt, ns, name), o.clone());
                self.emit("MODIFIED", rt, ns, o.clone(), rv);
            }
            if is_ns {
                self.empty_namespace(name);
                if has_finalizers {
                    return Ok(self.lookup(rt, ns, name).cloned().unwrap_or(o));
                }
                self.finish_namespace(name);
                return Ok(self.lookup(rt, ns, name).cloned().unwrap_or(o));
            }
            return Ok(o);
        }
        let rv = self.next_rv();
        let mut last = obj;
        last["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        self.remove_object(rt, ns, name, last.clone(), rv);
        Ok(last)
    }

    /// Deletes everything in a namespace (objects with finalizers wait for them).
    fn empty_namespace(&mut self, ns: &str) {
        let keys: Vec<ObjKey> = self.objects.keys().filter(|k| k.2 == ns).cloned().collect();
        for k in keys {
            let Some(rt) = self
                .registry
                .all()
                .find(|t| t.group == k.0 && t.plural == k.1)
                .cloned()
            else {
                continue;
            };
            let _ = self.delete(&rt, &k.2, &k.3, false);
        }
    }

    pub fn delete_collection(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &Selector,
        fields_sel: &Selector,
        dry_run: bool,
    ) -> ApiResult {
        let list = self.list(rt, ns, labels, fields_sel, None, None)?;
        let mut items = Vec::new();
        for item in list["items"].as_array().cloned().unwrap_or_default() {
            let n = name_of(&item);
            let ins = meta(&item)["namespace"].as_str().unwrap_or("").to_string();
            if let Ok(o) = self.delete(rt, &ins, &n, dry_run) {
                items.push(o);
            }
        }
        Ok(
            json!({"kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(), "metadata": {"resourceVersion": self.rv.to_string()}, "items": items}),
        )
    }

    pub(super) fn remove_object(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        last: Value,
        rv: u64,
    ) {
        let k = store::key(rt, ns, name);
        self.objects.remove(&k);
        self.changed_at.remove(&k);
        self.emit("DELETED", rt, ns, last, rv);
        if rt.kind == "CustomResourceDefinition" && rt.group == "apiextensions.k8s.io" {
            if let Some(t) = self.registry.remove_crd(name) {
                let keys: Vec<ObjKey> = self
                    .objects
                    .keys()
                    .filter(|k| k.0 == t.group && k.1 == t.plural)
                    .cloned()
                    .collect();
                for k in keys {
                    if let Some(obj) = self.objects.remove(&k) {
                        let rv = self.next_rv();
                        self.emit("DELETED", &t, &k.2, obj, rv);
                    }
                }
            }
        }
        if !ns.is_empty() {
            self.finish_namespace(ns);
        }
    }

    /// A terminating namespace goes once it is empty.
    fn finish_namespace(&mut self, ns: &str) {
        let Some(n) = self.namespace_exists(ns).cloned() else {
            return;
        };
        if meta(&n)["deletionTimestamp"].is_null() || self.objects.keys().any(|k| k.2 == ns) {
            return;
        }
        let rt = self
            .registry
            .by_kind("", "Namespace")
            .expect("namespaces")
            .clone();
        let rv = self.next_rv();
        let mut last = n;
        last["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let k = store::key(&rt, "", ns);
        self.objects.remove(&k);
        self.emit("DELETED", &rt, "", last, rv);
    }
}
