//! Responses: JSON bodies, and failures as Kubernetes `Status` objects.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::api::ApiError;

pub fn json(status: StatusCode, v: Value) -> Response {
    let mut r = (status, serde_json::to_vec(&v).unwrap_or_default()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("header"),
    );
    r
}

pub fn error(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json(status, e.to_status());
    if e.code == 429 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, "1".parse().expect("header"));
    }
    r
}

/// The 404 a real server answers for a path it doesn't serve.
pub fn not_found() -> Response {
    error(&ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    ))
}
