//! HTTP: authentication, request bodies and the fault endpoint here; paths, discovery, OpenAPI,
//! query strings, dispatch to the verbs and watches in the files named for them.

mod discovery;
mod dispatch;
mod openapi;
mod path;
mod query;
mod response;
mod watch;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::Response;
use serde_json::json;

use crate::api::ApiError;
use crate::faults::{Fault, Faults};
use crate::store::Store;
use query::Query;

/// What every request handler shares.
pub struct Shared {
    pub store: Mutex<Store>,
    pub token: String,
    pub faults: Faults,
    /// Requests served, by method and path (`GET /apis`), the `/_devcluster/` endpoints aside.
    pub requests: Mutex<BTreeMap<String, u64>>,
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
        return response::error(&ApiError::new(401, "Unauthorized", "Unauthorized"));
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = Query::parse(req.uri().query().unwrap_or(""));
    let headers = req.headers().clone();
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return response::error(&ApiError::new(
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
        return response::error(&ApiError::new(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/apply-patch+yaml, application/merge-patch+json, application/strategic-merge-patch+json, application/json-patch+json"));
    }
    if path == "/_devcluster/faults" {
        return faults_endpoint(&shared, &method, &body);
    }
    if path == "/_devcluster/requests" {
        return requests_endpoint(&shared, &method);
    }
    *shared
        .requests
        .lock()
        .expect("requests")
        .entry(format!("{method} {path}"))
        .or_default() += 1;
    dispatch::route(&shared, method, &path, &query, &headers, body).await
}

/// `GET` answers the requests counted so far (`{"GET /apis": 3, ...}`); `DELETE` starts over.
fn requests_endpoint(shared: &Shared, method: &Method) -> Response {
    let mut counts = shared.requests.lock().expect("requests");
    match *method {
        Method::GET => response::json(StatusCode::OK, json!(*counts)),
        Method::DELETE => {
            counts.clear();
            response::json(StatusCode::OK, json!({"status": "ok"}))
        }
        _ => response::error(&ApiError::new(405, "MethodNotAllowed", "use GET or DELETE")),
    }
}

fn faults_endpoint(shared: &Shared, method: &Method, body: &Bytes) -> Response {
    match *method {
        Method::POST => match serde_json::from_slice::<Fault>(body) {
            Ok(f) => {
                shared.faults.inject(f);
                response::json(StatusCode::OK, json!({"status": "ok"}))
            }
            Err(e) => response::error(&ApiError::bad_request(format!("invalid fault: {e}"))),
        },
        Method::DELETE => {
            shared.faults.clear();
            response::json(StatusCode::OK, json!({"status": "ok"}))
        }
        _ => response::error(&ApiError::new(
            405,
            "MethodNotAllowed",
            "use POST or DELETE",
        )),
    }
}
