//! Dispatch: from a request's path and method to a verb on the store, through injected faults,
//! and its result back to a response.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::path::{self, Parsed, Target};
use super::query::Query;
use super::{discovery, openapi, response, watch, Shared};
use crate::api::{ApiError, WriteOptions};
use crate::faults::FaultAction;
use crate::patch;
use crate::registry::ResourceType;
use crate::selector::Selector;
use crate::store::Store;

pub async fn route(
    shared: &Arc<Shared>,
    method: Method,
    path: &str,
    query: &Query,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    // Discovery, /version and OpenAPI are reads of no resource: a fault that names no resource
    // (an API server that is down) reaches them too.
    if path == "/version" || path.starts_with("/openapi/") {
        if let Some(stop) = faulted(shared, "get", "", false).await {
            return stop;
        }
    }
    match path {
        "/version" => return response::json(StatusCode::OK, discovery::version()),
        "/healthz" | "/readyz" | "/livez" => return (StatusCode::OK, "ok").into_response(),
        "/openapi/v2" => return openapi::v2(headers),
        _ => {}
    }
    if let Some(rest) = path.strip_prefix("/openapi/v3") {
        let store = shared.store.lock().expect("store");
        return match openapi::v3(&store.registry, rest.trim_start_matches('/')) {
            Some(v) => response::json(StatusCode::OK, v),
            None => response::not_found(),
        };
    }
    let parsed = {
        let store = shared.store.lock().expect("store");
        path::parse(&store, path)
    };
    let target = match parsed {
        Parsed::Discovery(v) if method == Method::GET => {
            return match faulted(shared, "get", "", false).await {
                Some(stop) => stop,
                None => response::json(StatusCode::OK, v),
            }
        }
        Parsed::Resource(t) => *t,
        _ => return response::not_found(),
    };
    let verb = verb_of(&method, &target, query);
    if let Some(stop) = faulted(shared, verb, &target.rt.plural, query.dry_run).await {
        return stop;
    }
    if verb == "watch" {
        return watch::stream(shared, &target, query);
    }
    let opts = WriteOptions {
        dry_run: query.dry_run,
        manager: query
            .field_manager
            .clone()
            .unwrap_or_else(|| user_agent_manager(headers)),
        force: query.force,
        subresource: target.subresource.clone(),
    };
    let mut store = shared.store.lock().expect("store");
    let request = Request {
        target: &target,
        query,
        headers,
        body: &body,
        opts: &opts,
    };
    match serve(&mut store, verb, &method, &request) {
        Ok((status, v)) => response::json(status, v),
        Err(e) => response::error(&e),
    }
}

/// Applies the injected faults matching a request: the error response that answers it, or
/// `None` once any delay has passed and it is to be served. `resource` is empty for discovery,
/// `/version` and OpenAPI.
async fn faulted(shared: &Shared, verb: &str, resource: &str, dry_run: bool) -> Option<Response> {
    for action in shared.faults.take(verb, resource, dry_run) {
        match action {
            FaultAction::Status(code) => {
                let reason = match code {
                    429 => "TooManyRequests",
                    409 => "Conflict",
                    503 => "ServiceUnavailable",
                    _ => "InternalError",
                };
                let what = if resource.is_empty() {
                    "discovery"
                } else {
                    resource
                };
                return Some(response::error(&ApiError::new(
                    code,
                    reason,
                    format!("injected fault: {verb} {what} answered {code}"),
                )));
            }
            FaultAction::Hang(d) | FaultAction::Latency(d) => tokio::time::sleep(d).await,
        }
    }
    None
}

/// What a verb reads from its request.
struct Request<'a> {
    target: &'a Target,
    query: &'a Query,
    headers: &'a HeaderMap,
    body: &'a Bytes,
    opts: &'a WriteOptions,
}

impl Request<'_> {
    fn namespace(&self) -> &str {
        self.target.namespace.as_deref().unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.target.name.as_deref().unwrap_or_default()
    }

    fn selectors(&self) -> Result<(Selector, Selector), ApiError> {
        let l = Selector::parse(&self.query.label_selector).map_err(ApiError::bad_request)?;
        let f = Selector::parse(&self.query.field_selector).map_err(ApiError::bad_request)?;
        Ok((l, f))
    }
}

fn serve(
    store: &mut Store,
    verb: &str,
    method: &Method,
    req: &Request,
) -> Result<(StatusCode, Value), ApiError> {
    let rt = &req.target.rt;
    let (ns, name) = (req.namespace(), req.name());
    match verb {
        "get" => Ok((StatusCode::OK, store.get(rt, ns, name)?)),
        "list" => {
            let (l, f) = req.selectors()?;
            let v = store.list(
                rt,
                req.target.namespace.as_deref(),
                &l,
                &f,
                req.query.limit,
                req.query.continue_token.as_deref(),
            )?;
            Ok((StatusCode::OK, v))
        }
        "create" => {
            if req.target.subresource.is_some() {
                return Err(ApiError::new(
                    405,
                    "MethodNotAllowed",
                    "create is not allowed on a subresource",
                ));
            }
            let v = store.create(rt, ns, parse_body(req.body)?, req.opts)?;
            Ok((StatusCode::CREATED, v))
        }
        "update" => {
            let v = store.update(rt, ns, name, parse_body(req.body)?, req.opts)?;
            Ok((StatusCode::OK, v))
        }
        "patch" => patch(store, rt, req),
        "delete" => Ok((
            StatusCode::OK,
            store.delete(rt, ns, name, req.opts.dry_run)?,
        )),
        "deletecollection" => {
            let (l, f) = req.selectors()?;
            let v = store.delete_collection(
                rt,
                req.target.namespace.as_deref(),
                &l,
                &f,
                req.opts.dry_run,
            )?;
            Ok((StatusCode::OK, v))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported here"),
        )),
    }
}

/// A PATCH, by content type: server-side apply, or a merge, strategic merge or JSON patch of the
/// live object written back as an update.
fn patch(
    store: &mut Store,
    rt: &ResourceType,
    req: &Request,
) -> Result<(StatusCode, Value), ApiError> {
    let (ns, name) = (req.namespace(), req.name());
    let ct = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ct = ct.split(';').next().unwrap_or("").trim();
    let body = parse_body(req.body)?;
    if ct == "application/apply-patch+yaml" {
        let existed = store.get(rt, ns, name).is_ok();
        let v = store.apply(rt, ns, name, body, req.opts)?;
        let status = if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        return Ok((status, v));
    }
    let live = store.get(rt, ns, name)?;
    let mut next = live.clone();
    match ct {
        "application/merge-patch+json" => patch::merge_patch(&mut next, &body),
        "application/strategic-merge-patch+json" => patch::strategic_merge(&mut next, &body, ""),
        "application/json-patch+json" => patch::json_patch(&mut next, &body)
            .map_err(|e| ApiError::new(422, "Invalid", format!("the JSON patch failed: {e}")))?,
        other => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!("the patch type \"{other}\" is not supported"),
            ))
        }
    }
    // A patch that doesn't say which version it expects applies to whatever is live.
    if body["metadata"]["resourceVersion"].is_null() {
        next["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"].clone();
    }
    let v = store.update(rt, ns, name, next, req.opts)?;
    Ok((StatusCode::OK, v))
}

/// A body as JSON, or else as YAML (server-side apply sends YAML).
fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("the body is neither JSON nor YAML: {e}")))
}

fn verb_of(method: &Method, t: &Target, query: &Query) -> &'static str {
    match (method.clone(), &t.name) {
        (Method::GET, _) if query.watch => "watch",
        (Method::GET, None) => "list",
        (Method::GET, Some(_)) => "get",
        (Method::POST, _) => "create",
        (Method::PUT, _) => "update",
        (Method::PATCH, _) => "patch",
        (Method::DELETE, None) => "deletecollection",
        (Method::DELETE, Some(_)) => "delete",
        _ => "unknown",
    }
}

/// The manager name Kubernetes derives from a client's User-Agent (`kubectl/v1.33 ...` → `kubectl`).
fn user_agent_manager(headers: &HeaderMap) -> String {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}
