//! The verbs, with the API server's semantics: metadata, resourceVersion and generation,
//! optimistic concurrency, field ownership, server-side apply, dry runs, status subresources,
//! finalizers, namespaces and CRDs.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::fields::{self, Fields};
use super::registry::{self, ResourceType};
use super::selector::Selector;
use super::store::{self, now_rfc3339, ObjKey, Store};
use super::validate;

/// A failed request, as a Kubernetes `Status`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> ApiError {
        let mut e = ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.qualified()),
        );
        e.details = Some(json!({"name": name, "group": rt.group, "kind": rt.plural}));
        e
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    fn invalid(rt: &ResourceType, name: &str, causes: Vec<validate::Cause>) -> ApiError {
        let list: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let what = if rt.group.is_empty() {
            rt.kind.clone()
        } else {
            format!("{}.{}", rt.kind, rt.group)
        };
        let message = if list.len() == 1 {
            format!("{what} \"{name}\" is invalid: {}", list[0])
        } else {
            format!("{what} \"{name}\" is invalid: [{}]", list.join(", "))
        };
        let mut e = ApiError::new(422, "Invalid", message);
        e.details = Some(json!({
            "name": name, "group": rt.group, "kind": rt.kind,
            "causes": causes.iter().map(|c| json!({"reason": "FieldValueInvalid", "message": c.message, "field": c.field})).collect::<Vec<_>>(),
        }));
        e
    }

    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

pub type ApiResult = Result<Value, ApiError>;

/// Options every write takes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub manager: String,
    pub force: bool,
    /// `Some("status")` for the status subresource.
    pub subresource: Option<String>,
}

fn meta(obj: &Value) -> &Value {
    &obj["metadata"]
}

fn name_of(obj: &Value) -> String {
    meta(obj)["name"].as_str().unwrap_or("").to_string()
}

/// The managed-fields entries of an object, by (manager, operation, subresource).
type Managers = BTreeMap<(String, String, String), (String, Fields)>;

fn managers(obj: &Value) -> Managers {
    let mut m = Managers::new();
    for e in meta(obj)["managedFields"].as_array().into_iter().flatten() {
        let key = (
            e["manager"].as_str().unwrap_or("").to_string(),
            e["operation"].as_str().unwrap_or("Update").to_string(),
            e["subresource"].as_str().unwrap_or("").to_string(),
        );
        let api = e["apiVersion"].as_str().unwrap_or("").to_string();
        m.insert(key, (api, Fields::from_json(&e["fieldsV1"])));
    }
    m
}

fn set_managers(obj: &mut Value, m: &Managers, old: Option<&Value>) {
    let old_times: BTreeMap<(String, String, String), (Value, Fields)> = old
        .map(|o| {
            meta(o)["managedFields"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    (
                        (
                            e["manager"].as_str().unwrap_or("").to_string(),
                            e["operation"].as_str().unwrap_or("").to_string(),
                            e["subresource"].as_str().unwrap_or("").to_string(),
                        ),
                        (e["time"].clone(), Fields::from_json(&e["fieldsV1"])),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let entries: Vec<Value> = m
        .iter()
        .filter(|(_, (_, f))| !f.is_empty())
        .map(|((manager, op, sub), (api, f))| {
            // Keep the time of an entry whose fields did not change, so a no-op stays a no-op.
            let time = match old_times.get(&(manager.clone(), op.clone(), sub.clone())) {
                Some((t, of)) if of == f => t.clone(),
                _ => Value::String(now_rfc3339()),
            };
            let mut e = json!({
                "manager": manager, "operation": op, "apiVersion": api, "time": time,
                "fieldsType": "FieldsV1", "fieldsV1": f.to_json(),
            });
            if !sub.is_empty() {
                e["subresource"] = Value::String(sub.clone());
            }
            e
        })
        .collect();
    let md = obj["metadata"].as_object_mut().expect("metadata");
    if entries.is_empty() {
        md.remove("managedFields");
    } else {
        md.insert("managedFields".into(), Value::Array(entries));
    }
}

/// Top-level content that counts for `generation`: everything but metadata and status.
fn spec_part(obj: &Value) -> Value {
    let mut m = obj.as_object().cloned().unwrap_or_default();
    for k in ["metadata", "status", "apiVersion", "kind"] {
        m.remove(k);
    }
    Value::Object(m)
}

/// The object without what changes on every write, to tell a no-op.
fn comparable(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    o
}

impl Store {
    fn lookup(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&store::key(rt, ns, name))
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult {
        self.lookup(rt, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// Lists objects of a type, in a namespace or all, filtered and paged.
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &Selector,
        fields: &Selector,
        limit: Option<usize>,
        cont: Option<&str>,
    ) -> ApiResult {
        let start: Option<ObjKey> = match cont {
            Some(c) if !c.is_empty() => {
                let bytes =
                    decode_hex(c).ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
                let k: (String, String) = serde_json::from_slice(&bytes)
                    .map_err(|_| ApiError::bad_request("invalid continue token"))?;
                Some((rt.group.clone(), rt.plural.clone(), k.0, k.1))
            }
            _ => None,
        };
        let lo = (
            rt.group.clone(),
            rt.plural.clone(),
            String::new(),
            String::new(),
        );
        let mut items = Vec::new();
        let mut next = None;
        for (k, obj) in self.objects.range(lo..) {
            if k.0 != rt.group || k.1 != rt.plural {
                break;
            }
            if start.as_ref().is_some_and(|s| k <= s) {
                continue;
            }
            if ns.is_some_and(|n| k.2 != n) {
                continue;
            }
            if !labels.matches_labels(obj) || !fields.matches_fields(obj) {
                continue;
            }
            if limit.is_some_and(|l| l > 0 && items.len() >= l) {
                next = Some(hex(serde_json::to_vec(&(items_last_key(&items)))
                    .unwrap_or_default()
                    .as_slice()));
                break;
            }
            items.push(obj.clone());
        }
        let mut md = json!({"resourceVersion": self.rv.to_string()});
        if let Some(n) = next {
            md["continue"] = Value::String(n);
        }
        Ok(json!({
            "kind": format!("{}List", rt.kind),
            "apiVersion": rt.api_version(),
            "metadata": md,
            "items": items,
        }))
    }

    fn check_namespace(&self, rt: &ResourceType, ns: &str, creating: bool) -> Result<(), ApiError> {
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

    /// Fills server-populated fields and checks the result; then stores it unless `dry_run`.
    /// `old` is the live object for updates.
    fn commit(
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

    /// Server-populated fields a real cluster sets.
    fn defaults(&mut self, rt: &ResourceType, obj: &mut Value, old: Option<&Value>) {
        match (rt.group.as_str(), rt.kind.as_str()) {
            ("", "Namespace") if obj["status"]["phase"].is_null() => {
                obj["status"] = json!({"phase": "Active"});
            }
            ("", "Service") => {
                let spec = obj["spec"].as_object_mut();
                if let Some(spec) = spec {
                    spec.entry("type").or_insert(json!("ClusterIP"));
                    if !spec.contains_key("clusterIP") {
                        let ip = old
                            .and_then(|o| o["spec"]["clusterIP"].as_str().map(str::to_string))
                            .unwrap_or_else(|| self.cluster_ip());
                        spec.insert("clusterIP".into(), json!(ip.clone()));
                        spec.insert("clusterIPs".into(), json!([ip]));
                    }
                    for p in spec
                        .get_mut("ports")
                        .and_then(Value::as_array_mut)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(pm) = p.as_object_mut() {
                            pm.entry("protocol").or_insert(json!("TCP"));
                            let port = pm.get("port").cloned().unwrap_or(Value::Null);
                            pm.entry("targetPort").or_insert(port);
                        }
                    }
                }
            }
            ("apps", "Deployment" | "StatefulSet" | "ReplicaSet") => {
                if let Some(spec) = obj["spec"].as_object_mut() {
                    spec.entry("replicas").or_insert(json!(1));
                }
            }
            ("", "Secret") => {
                use base64::Engine;
                if let Some(sd) = obj.as_object_mut().and_then(|o| o.remove("stringData")) {
                    let data = obj["data"].as_object().cloned().unwrap_or_default();
                    let mut data = data;
                    for (k, v) in sd.as_object().into_iter().flatten() {
                        let text = v.as_str().unwrap_or_default();
                        data.insert(
                            k.clone(),
                            json!(base64::engine::general_purpose::STANDARD.encode(text)),
                        );
                    }
                    obj["data"] = Value::Object(data);
                }
                if let Some(m) = obj.as_object_mut() {
                    m.entry("type").or_insert(json!("Opaque"));
                }
            }
            ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                let names = obj["spec"]["names"].clone();
                let versions: Vec<Value> = obj["spec"]["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|v| v["storage"] == true)
                    .map(|v| v["name"].clone())
                    .collect();
                let t = now_rfc3339();
                obj["status"] = json!({
                    "acceptedNames": names,
                    "storedVersions": versions,
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": t},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": t},
                    ],
                });
                if let Some(o) = old {
                    // Keep transition times of a CRD whose status did not change otherwise.
                    if o["status"]["acceptedNames"] == obj["status"]["acceptedNames"] {
                        obj["status"]["conditions"] = o["status"]["conditions"].clone();
                    }
                }
            }
            _ => {}
        }
    }

    fn remove_object(&mut self, rt: &ResourceType, ns: &str, name: &str, last: Value, rv: u64) {
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
        let applied = check_body(rt, ns, body)?;
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
            for (key, (api, f)) in &m {
                if *key == me || !f.contains(&path) {
                    continue;
                }
                if fields::get(&base, &path) != fields::get(&applied, &path) {
                    conflicts.push((path.clone(), key.0.clone(), api.clone()));
                }
            }
        }
        if !conflicts.is_empty() {
            if !opts.force {
                let texts: Vec<String> = conflicts
                    .iter()
                    .map(|(p, mgr, api)| {
                        format!(
                            "conflict with \"{mgr}\" using {api}: {}",
                            fields::path_text(p)
                        )
                    })
                    .collect();
                let message = if texts.len() == 1 {
                    format!("Apply failed with 1 conflict: {}", texts[0])
                } else {
                    format!(
                        "Apply failed with {} conflicts: {}",
                        texts.len(),
                        texts.join("\n")
                    )
                };
                let mut e = ApiError::new(409, "Conflict", message);
                e.details = Some(json!({
                    "name": name, "group": rt.group, "kind": rt.plural,
                    "causes": conflicts.iter().map(|(p, mgr, api)| json!({
                        "type": "FieldManagerConflict",
                        "message": format!("conflict with \"{mgr}\" using {api}"),
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
}

fn items_last_key(items: &[Value]) -> (String, String) {
    let last = items.last().cloned().unwrap_or_default();
    (
        meta(&last)["namespace"].as_str().unwrap_or("").to_string(),
        name_of(&last),
    )
}

/// Checks a request body against its URL: kind, apiVersion and namespace.
fn check_body(rt: &ResourceType, ns: &str, body: Value) -> ApiResult {
    let Value::Object(mut m) = body else {
        return Err(ApiError::bad_request("the body must be an object"));
    };
    let kind = m.get("kind").and_then(Value::as_str).unwrap_or("");
    let api = m.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if (!kind.is_empty() && kind != rt.kind) || (!api.is_empty() && api != rt.api_version()) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api}) and kind ({kind}) do not match the URL ({} {})",
            rt.api_version(),
            rt.kind
        )));
    }
    m.insert("apiVersion".into(), Value::String(rt.api_version()));
    m.insert("kind".into(), Value::String(rt.kind.clone()));
    let md = m
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !md.is_object() {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    let body_ns = md["namespace"].as_str().unwrap_or("");
    if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
        return Err(ApiError::bad_request(format!(
            "the namespace of the provided object ({body_ns}) does not match the namespace sent on the request ({ns})"
        )));
    }
    Ok(Value::Object(m))
}

pub fn hex(bytes: &[u8]) -> String {
    crate::hash::hex(bytes)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}
