//! `POST /api/v1/approve/{kind}.{name}`: an approval of the plan a layer waits with, over HTTP.
//!
//! A mutating endpoint, so it is guarded three ways besides the loopback default: a bearer token
//! (`strata run --api-token-file`), which a page in the operator's browser does not have; JSON
//! only, so a cross-site form or `text/plain` fetch cannot reach it without a CORS preflight the
//! agent never grants; and a foreign `Origin` is refused outright. The approval itself is
//! [`crate::state::approvals::give`]: taken only for the plan waiting now.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::{Hub, Trigger};
use crate::state::approvals::{self, Refusal};

/// The body: `{"plan": "DIGEST"}`, or `{}` for the plan waiting now.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    plan: Option<String>,
}

fn answer(code: StatusCode, message: impl Into<String>) -> Response {
    let m: String = message.into();
    (code, axum::Json(serde_json::json!({ "message": m }))).into_response()
}

/// Whether `origin` (a browser's `Origin` header) is the agent's own address, as `host` (the
/// `Host` header the same browser sent) names it.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

/// Whether `headers` carry `Authorization: Bearer <token>`. Compared in constant time.
fn bearer_matches(headers: &HeaderMap, token: &[u8]) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| given.trim().as_bytes().ct_eq(token).into())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// 202 taken; 409 nothing waits or the plan differs; 401 no or wrong token (or no token
/// configured); 415 not JSON; 403 a foreign `Origin`; 400 a malformed layer or body, or no
/// `?env=NAME` while the agent converges several environments; 404 an environment it does not
/// converge.
pub(super) async fn approve(
    State(hub): State<Arc<Hub>>,
    Path(layer): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if !origin.to_str().is_ok_and(|o| same_origin(o, host)) {
            return answer(
                StatusCode::FORBIDDEN,
                "a request from another origin cannot approve",
            );
        }
    }
    let Some(token) = &hub.api_token else {
        return answer(
            StatusCode::UNAUTHORIZED,
            "approvals over HTTP need a token: start the agent with --api-token-file",
        );
    };
    if !bearer_matches(&headers, token.expose()) {
        return answer(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer TOKEN)",
        );
    }
    if !is_json(&headers) {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/json with {\"plan\": \"DIGEST\"} or {}",
        );
    }
    // Which environment: `?env=NAME`, needed when the agent converges several.
    let env = uri.query().and_then(super::hub::env_of);
    let stack = uri.query().and_then(super::hub::stack_of);
    let s = match hub.pick(stack.as_deref(), env.as_deref()) {
        Ok(s) => s,
        Err(r) => return r.into_response(),
    };
    let id = match approvals::parse_layer(&layer) {
        Ok(id) => id,
        Err(e) => return answer(StatusCode::BAD_REQUEST, e),
    };
    let body: Body = if body.iter().all(u8::is_ascii_whitespace) {
        Body::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not {{\"plan\": \"DIGEST\"}} or {{}}: {e}"),
                )
            }
        }
    };
    let state_dir = s.state_dir.clone();
    let given = tokio::task::spawn_blocking(move || {
        approvals::give(&state_dir, &id, body.plan.as_deref()).map(|a| (id, a))
    })
    .await
    .expect("approval task");
    match given {
        Ok((id, a)) => {
            tracing::info!(layer = %id, plan = %a.plan, "approved over HTTP");
            let _ = s.trigger.try_send(Trigger::Approve(id.to_string()));
            (
                StatusCode::ACCEPTED,
                axum::Json(serde_json::to_value(&a).unwrap_or_default()),
            )
                .into_response()
        }
        Err(e @ (Refusal::NothingWaits(_) | Refusal::PlanDiffers { .. })) => {
            answer(StatusCode::CONFLICT, e.to_string())
        }
        Err(e @ Refusal::State(_)) => answer(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_agents_own_origin_is_the_same() {
        assert!(same_origin("http://127.0.0.1:9090", Some("127.0.0.1:9090")));
        assert!(!same_origin("https://evil.example", Some("127.0.0.1:9090")));
        assert!(!same_origin(
            "http://127.0.0.1:9091",
            Some("127.0.0.1:9090")
        ));
        assert!(!same_origin("null", Some("127.0.0.1:9090")));
        assert!(!same_origin("http://127.0.0.1:9090", None));
    }

    #[test]
    fn json_with_parameters_is_json_and_text_is_not() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(is_json(&h));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_json(&h));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn the_bearer_token_must_match_exactly() {
        let mut h = HeaderMap::new();
        assert!(!bearer_matches(&h, b"0123456789abcdef"));
        h.insert(
            header::AUTHORIZATION,
            "Bearer 0123456789abcdef".parse().unwrap(),
        );
        assert!(bearer_matches(&h, b"0123456789abcdef"));
        assert!(!bearer_matches(&h, b"0123456789abcdeg"));
        assert!(!bearer_matches(&h, b"0123456789abcde"));
        h.insert(
            header::AUTHORIZATION,
            "Basic 0123456789abcdef".parse().unwrap(),
        );
        assert!(!bearer_matches(&h, b"0123456789abcdef"));
    }
}
