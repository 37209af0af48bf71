//! HTTP: routing Kubernetes API paths to the verbs, discovery, watches, auth and faults.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::api::{ApiError, WriteOptions};
use super::faults::{Fault, FaultAction, Faults};
use super::registry::ResourceType;
use super::selector::Selector;
use super::store::Store;

/// What every request handler shares.
pub struct Shared {
    pub store: Mutex<Store>,
    pub token: String,
    pub faults: Faults,
}

/// Largest request body accepted.
const MAX_BODY: usize = 16 << 20;

pub async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let authorized = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == shared.token);
    if !authorized {
        return error(&ApiError::new(401, "Unauthorized", "Unauthorized"));
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let headers = req.headers().clone();
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error(&ApiError::new(
                413,
                "RequestEntityTooLarge",
                "request body too large",
            ))
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        // No schemas here to decode protobuf with: clients fall back to JSON on 415.
        return error(&ApiError::new(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/apply-patch+yaml, application/merge-patch+json, application/strategic-merge-patch+json, application/json-patch+json"));
    }
    if path == "/_devcluster/faults" {
        return faults_endpoint(&shared, &method, &body);
    }
    route(&shared, method, &path, &query, &headers, body).await
}

fn faults_endpoint(shared: &Shared, method: &Method, body: &Bytes) -> Response {
    match *method {
        Method::POST => match serde_json::from_slice::<Fault>(body) {
            Ok(f) => {
                shared.faults.inject(f);
                json_response(StatusCode::OK, json!({"status": "ok"}))
            }
            Err(e) => error(&ApiError::bad_request(format!("invalid fault: {e}"))),
        },
        Method::DELETE => {
            shared.faults.clear();
            json_response(StatusCode::OK, json!({"status": "ok"}))
        }
        _ => error(&ApiError::new(
            405,
            "MethodNotAllowed",
            "use POST or DELETE",
        )),
    }
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn json_response(status: StatusCode, v: Value) -> Response {
    let mut r = (status, serde_json::to_vec(&v).unwrap_or_default()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("header"),
    );
    r
}

pub fn error(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json_response(status, e.to_status());
    if e.code == 429 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, "1".parse().expect("header"));
    }
    r
}

/// A parsed resource path.
struct Target {
    rt: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

enum Parsed {
    Resource(Box<Target>),
    Discovery(Value),
    NotFound,
}

fn parse_path(store: &Store, path: &str) -> Parsed {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api"] => {
            return Parsed::Discovery(
                json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
            )
        }
        ["apis"] => return Parsed::Discovery(group_list(store)),
        ["api", v] => return resource_list(store, "", v),
        ["apis", g] => {
            return match store.registry.groups().get(*g) {
                Some(vs) => Parsed::Discovery(group_json(g, vs)),
                None => Parsed::NotFound,
            }
        }
        ["apis", g, v] => return resource_list(store, g, v),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Parsed::NotFound,
    };
    let lookup = |plural: &str| store.registry.by_path(group, version, plural).cloned();
    let target = match rest {
        ["namespaces", ns, plural, tail @ ..] if lookup(plural).is_some_and(|t| t.namespaced) => {
            (lookup(plural), Some(ns.to_string()), tail)
        }
        [plural, tail @ ..] => (lookup(plural), None, tail),
        [] => return Parsed::NotFound,
    };
    let (Some(rt), namespace, tail) = target else {
        return Parsed::NotFound;
    };
    if rt.namespaced && namespace.is_none() && !tail.is_empty() {
        return Parsed::NotFound;
    }
    let (name, subresource) = match tail {
        [] => (None, None),
        [n] => (Some(n.to_string()), None),
        [n, s] if *s == "status" && rt.status_subresource => {
            (Some(n.to_string()), Some(s.to_string()))
        }
        _ => return Parsed::NotFound,
    };
    Parsed::Resource(Box::new(Target {
        rt,
        namespace,
        name,
        subresource,
    }))
}

fn group_json(name: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": vs, "preferredVersion": vs[0]})
}

fn group_list(store: &Store) -> Value {
    let groups: Vec<Value> = store
        .registry
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_list(store: &Store, group: &str, version: &str) -> Parsed {
    let types: Vec<&ResourceType> = store
        .registry
        .all()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if types.is_empty() {
        return Parsed::NotFound;
    }
    let mut resources = Vec::new();
    for t in types {
        resources.push(t.discovery());
        if t.status_subresource {
            resources.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}));
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Parsed::Discovery(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text =
        std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("the body is neither JSON nor YAML: {e}")))
}

fn verb_of(method: &Method, t: &Target, query: &HashMap<String, String>) -> &'static str {
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    match (method.clone(), &t.name) {
        (Method::GET, _) if watching => "watch",
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

async fn route(
    shared: &Arc<Shared>,
    method: Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    match path {
        "/version" => {
            return json_response(
                StatusCode::OK,
                json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-strata-devcluster",
                "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "n/a", "compiler": "rustc", "platform": "linux/amd64"}),
            )
        }
        "/healthz" | "/readyz" | "/livez" => return (StatusCode::OK, "ok").into_response(),
        _ => {}
    }
    if path == "/openapi/v2" {
        return super::openapi::v2(headers);
    }
    if let Some(rest) = path.strip_prefix("/openapi/v3") {
        let store = shared.store.lock().expect("store");
        return match super::openapi::v3(&store.registry, rest.trim_start_matches('/')) {
            Some(v) => json_response(StatusCode::OK, v),
            None => error(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )),
        };
    }
    let parsed = {
        let store = shared.store.lock().expect("store");
        parse_path(&store, path)
    };
    let target = match parsed {
        Parsed::Discovery(v) if method == Method::GET => return json_response(StatusCode::OK, v),
        Parsed::Resource(t) => *t,
        _ => {
            return error(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ))
        }
    };
    let verb = verb_of(&method, &target, query);
    for action in shared.faults.take(verb, &target.rt.plural) {
        match action {
            FaultAction::Status(code) => {
                let reason = match code {
                    429 => "TooManyRequests",
                    409 => "Conflict",
                    503 => "ServiceUnavailable",
                    _ => "InternalError",
                };
                return error(&ApiError::new(
                    code,
                    reason,
                    format!(
                        "injected fault: {verb} {} answered {code}",
                        target.rt.plural
                    ),
                ));
            }
            FaultAction::Hang(d) | FaultAction::Latency(d) => tokio::time::sleep(d).await,
        }
    }
    if verb == "watch" {
        return watch(shared, &target, query);
    }
    let ns = target.namespace.clone().unwrap_or_default();
    let opts = WriteOptions {
        dry_run: query.get("dryRun").is_some_and(|v| v == "All"),
        manager: query
            .get("fieldManager")
            .cloned()
            .unwrap_or_else(|| user_agent_manager(headers)),
        force: query.get("force").is_some_and(|v| v == "true"),
        subresource: target.subresource.clone(),
    };
    let selectors = || -> Result<(Selector, Selector), ApiError> {
        let l = Selector::parse(query.get("labelSelector").map_or("", String::as_str))
            .map_err(ApiError::bad_request)?;
        let f = Selector::parse(query.get("fieldSelector").map_or("", String::as_str))
            .map_err(ApiError::bad_request)?;
        Ok((l, f))
    };
    let mut store = shared.store.lock().expect("store");
    let rt = &target.rt;
    let result = (|| -> Result<(StatusCode, Value), ApiError> {
        match verb {
            "get" => Ok((
                StatusCode::OK,
                store.get(rt, &ns, target.name.as_deref().unwrap_or(""))?,
            )),
            "list" => {
                let (l, f) = selectors()?;
                let limit = query.get("limit").and_then(|v| v.parse().ok());
                let v = store.list(
                    rt,
                    target.namespace.as_deref(),
                    &l,
                    &f,
                    limit,
                    query.get("continue").map(String::as_str),
                )?;
                Ok((StatusCode::OK, v))
            }
            "create" => {
                if target.subresource.is_some() {
                    return Err(ApiError::new(
                        405,
                        "MethodNotAllowed",
                        "create is not allowed on a subresource",
                    ));
                }
                let v = store.create(rt, &ns, parse_body(&body)?, &opts)?;
                Ok((StatusCode::CREATED, v))
            }
            "update" => {
                let name = target.name.clone().unwrap_or_default();
                let v = store.update(rt, &ns, &name, parse_body(&body)?, &opts)?;
                Ok((StatusCode::OK, v))
            }
            "patch" => {
                let name = target.name.clone().unwrap_or_default();
                let ct = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let ct = ct.split(';').next().unwrap_or("").trim();
                let patch = parse_body(&body)?;
                if ct == "application/apply-patch+yaml" {
                    let existed = store.get(rt, &ns, &name).is_ok();
                    let v = store.apply(rt, &ns, &name, patch, &opts)?;
                    return Ok((
                        if existed {
                            StatusCode::OK
                        } else {
                            StatusCode::CREATED
                        },
                        v,
                    ));
                }
                let live = store.get(rt, &ns, &name)?;
                let mut next = live.clone();
                match ct {
                    "application/merge-patch+json" => super::patch::merge_patch(&mut next, &patch),
                    "application/strategic-merge-patch+json" => {
                        super::patch::strategic_merge(&mut next, &patch, "")
                    }
                    "application/json-patch+json" => super::patch::json_patch(&mut next, &patch)
                        .map_err(|e| {
                            ApiError::new(422, "Invalid", format!("the JSON patch failed: {e}"))
                        })?,
                    other => {
                        return Err(ApiError::new(
                            415,
                            "UnsupportedMediaType",
                            format!("the patch type \"{other}\" is not supported"),
                        ))
                    }
                }
                // A patch that doesn't say which version it expects applies to whatever is live.
                if patch["metadata"]["resourceVersion"].is_null() {
                    next["metadata"]["resourceVersion"] =
                        live["metadata"]["resourceVersion"].clone();
                }
                let v = store.update(rt, &ns, &name, next, &opts)?;
                Ok((StatusCode::OK, v))
            }
            "delete" => {
                let name = target.name.clone().unwrap_or_default();
                Ok((StatusCode::OK, store.delete(rt, &ns, &name, opts.dry_run)?))
            }
            "deletecollection" => {
                let (l, f) = selectors()?;
                Ok((
                    StatusCode::OK,
                    store.delete_collection(
                        rt,
                        target.namespace.as_deref(),
                        &l,
                        &f,
                        opts.dry_run,
                    )?,
                ))
            }
            _ => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{method} is not supported here"),
            )),
        }
    })();
    match result {
        Ok((status, v)) => json_response(status, v),
        Err(e) => error(&e),
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

/// A watch: the backlog since the asked-for resourceVersion (or the current objects as ADDED),
/// then live events, one JSON object per line, until `timeoutSeconds`.
fn watch(shared: &Arc<Shared>, t: &Target, query: &HashMap<String, String>) -> Response {
    let labels =
        Selector::parse(query.get("labelSelector").map_or("", String::as_str)).unwrap_or_default();
    let fields =
        Selector::parse(query.get("fieldSelector").map_or("", String::as_str)).unwrap_or_default();
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1800);
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let rv: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (group, plural) = (t.rt.group.clone(), t.rt.plural.clone());
    let ns = t.namespace.clone();
    let matches = move |g: &str, p: &str, n: &str, obj: &Value| {
        g == group
            && p == plural
            && ns.as_deref().is_none_or(|x| x == n)
            && labels.matches_labels(obj)
            && fields.matches_fields(obj)
    };
    let (mut rx, backlog, current_rv) = {
        let store = shared.store.lock().expect("store");
        let rx = store.tx.subscribe();
        if rv != 0 && rv < store.oldest_rv() {
            let gone = ApiError::new(
                410,
                "Expired",
                format!("too old resource version: {rv} ({})", store.oldest_rv()),
            );
            let line = json!({"type": "ERROR", "object": gone.to_status()});
            let mut r = Response::new(Body::from(format!("{line}\n")));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                "application/json".parse().expect("header"),
            );
            return r;
        }
        let backlog: Vec<Value> = if rv == 0 {
            let lo = (
                t.rt.group.clone(),
                t.rt.plural.clone(),
                String::new(),
                String::new(),
            );
            store
                .objects
                .range(lo..)
                .take_while(|(k, _)| k.0 == t.rt.group && k.1 == t.rt.plural)
                .filter(|(k, o)| matches(&k.0, &k.1, &k.2, o))
                .map(|(_, o)| json!({"type": "ADDED", "object": o}))
                .collect()
        } else {
            store
                .events_after(rv)
                .into_iter()
                .filter(|e| matches(&e.group, &e.plural, &e.namespace, &e.object))
                .map(|e| json!({"type": e.kind, "object": e.object}))
                .collect()
        };
        (rx, backlog, store.rv)
    };
    let (mut tx, out) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let kind = t.rt.kind.clone();
    let api = t.rt.api_version();
    tokio::spawn(async move {
        use futures::SinkExt;
        let line = |v: &Value| Ok(Bytes::from(format!("{v}\n")));
        for v in &backlog {
            if tx.send(line(v)).await.is_err() {
                return;
            }
        }
        let mut last = current_rv;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tick.tick(), if bookmarks => {
                    let b = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api, "metadata": {"resourceVersion": last.to_string()}}});
                    if tx.send(line(&b)).await.is_err() { return; }
                }
                e = rx.recv() => match e {
                    Ok(e) => {
                        if e.rv <= current_rv && rv == 0 { continue; }
                        last = e.rv;
                        if matches(&e.group, &e.plural, &e.namespace, &e.object) {
                            let v = json!({"type": e.kind, "object": e.object});
                            if tx.send(line(&v)).await.is_err() { return; }
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let gone = ApiError::new(410, "Expired", "the watch fell behind; list again");
                        let _ = tx.send(line(&json!({"type": "ERROR", "object": gone.to_status()}))).await;
                        return;
                    }
                    Err(_) => return,
                }
            }
        }
    });
    let mut r = Response::new(Body::from_stream(out));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("header"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_percent_decoded() {
        let q = parse_query("labelSelector=app%3Dweb%2Ctier+in+(a)&dryRun=All&x");
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["dryRun"], "All");
        assert_eq!(q["x"], "");
        assert_eq!(decode("100%"), "100%");
    }
}
