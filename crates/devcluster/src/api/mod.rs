//! The verbs, with the API server's semantics: metadata, resourceVersion and generation,
//! optimistic concurrency, field ownership, server-side apply, dry runs, status subresources,
//! finalizers, namespaces and CRDs. Each verb is a `Store` method in the file named for it.

mod apply;
mod commit;
mod defaults;
mod delete;
mod error;
mod managed;
mod read;
mod watch;
mod write;

use serde_json::{Map, Value};

pub use error::ApiError;

use crate::registry::ResourceType;

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
