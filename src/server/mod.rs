//! The agent's HTTP side (loopback by default): health, readiness, Prometheus metrics, the status
//! API, the Git webhook (HMAC-signed), approvals, and the dashboard with the JSON it draws from.

pub mod api;
mod approve;
mod dashboard;
pub mod environments;
pub mod hub;
pub mod layer_page;
mod metrics;
pub mod overview;
pub mod running;
pub mod serve;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub use hub::Hub;
pub use metrics::{EnvMetrics, Metrics};

/// What the agent asks of its loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Fetch now (a webhook that arrived at this instant: a fetch started since serves it).
    Fetch(std::time::Instant),
    /// A layer was approved.
    Approve(String),
}

/// Shared between one environment's agent loop and the HTTP handlers.
pub struct AgentHttp {
    /// The stack's name on an agent converging several (`?stack=NAME`); `None`: the only one.
    pub stack: Option<String>,
    /// The environment; `None` for a stack without `environment` blocks.
    pub env: Option<String>,
    pub metrics: EnvMetrics,
    pub status: Mutex<serde_json::Value>,
    pub ready: std::sync::atomic::AtomicBool,
    /// Why the agent is not ready, for `/readyz`.
    pub not_ready: Mutex<Option<String>>,
    pub trigger: tokio::sync::mpsc::Sender<Trigger>,
    /// The environment's own state dir.
    pub state_dir: std::path::PathBuf,
    /// The state dir the source's revisions are materialised in (shared by environments).
    pub source_state_dir: std::path::PathBuf,
    /// Where the dashboard reads the stack's graph from.
    pub graph: api::GraphSource,
    /// The layers the agent is running now (in memory only: after a restart nothing runs).
    pub running: Arc<running::Running>,
}

/// HMAC-SHA256, as GitHub signs webhooks (`X-Hub-Signature-256: sha256=<hex>`).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Whether `header` (the `X-Hub-Signature-256` value, `sha256=<hex>`) signs `body` with `key`.
/// The comparison takes the same time wherever the first wrong digit is, so a caller cannot
/// find the signature one digit at a time by timing the answers.
pub fn signature_matches(key: &[u8], body: &[u8], header: Option<&str>) -> bool {
    let Some(given) = header.and_then(|v| v.strip_prefix("sha256=")) else {
        return false;
    };
    let expected = crate::hash::hex(&hmac_sha256(key, body));
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

pub fn router(shared: Arc<Hub>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/hooks/git", post(hook))
        .route("/api/v1/approve/{layer}", post(approve::approve))
        .route("/api/v1/overview", get(api::get_overview))
        .route("/api/v1/layers/{layer}", get(api::get_layer))
        .route("/api/v1/history", get(api::get_history))
        .route("/api/v1/environments", get(environments::get_environments))
        .merge(dashboard::routes())
        .with_state(shared)
}

/// Ready when every environment is.
async fn readyz(State(s): State<Arc<Hub>>) -> Response {
    match s.not_ready() {
        None => (StatusCode::OK, "ready").into_response(),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")).into_response(),
    }
}

async fn metrics(State(s): State<Arc<Hub>>) -> Response {
    let mut r = s.metrics.encode().into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
            .parse()
            .expect("header"),
    );
    r
}

/// One environment's status (`?env=NAME`, or a stack without environments); every
/// environment's, by name, otherwise.
async fn status(State(hub): State<Arc<Hub>>, uri: axum::http::Uri) -> Response {
    let env = uri.query().and_then(hub::env_of);
    let stack = uri.query().and_then(hub::stack_of);
    // Every stack's, by name, for an agent of several stacks asked about none.
    let stacks = hub.stacks();
    if stack.is_none() && stacks.len() > 1 {
        let mut by_stack = serde_json::Map::new();
        for name in stacks {
            let envs: Vec<Arc<AgentHttp>> = hub
                .envs()
                .into_iter()
                .filter(|e| e.stack.as_deref() == Some(name.as_str()))
                .collect();
            let v = match envs.as_slice() {
                [one] if one.env.is_none() => env_status(one),
                _ => serde_json::json!({
                    "environments": envs
                        .iter()
                        .map(|e| (e.env.clone().unwrap_or_default(), env_status(e)))
                        .collect::<serde_json::Map<_, _>>(),
                }),
            };
            by_stack.insert(name, v);
        }
        let not_ready = hub.not_ready();
        return axum::Json(serde_json::json!({
            "ready": not_ready.is_none(),
            "not_ready": not_ready,
            "stacks": by_stack,
        }))
        .into_response();
    }
    let of_stack: Vec<Arc<AgentHttp>> = hub
        .envs()
        .into_iter()
        .filter(|e| stack.is_none() || e.stack == stack)
        .collect();
    if env.is_none() && hub.by_env() && of_stack.iter().any(|e| e.env.is_some()) {
        let envs: serde_json::Map<String, serde_json::Value> = of_stack
            .iter()
            .map(|e| (e.env.clone().unwrap_or_default(), env_status(e)))
            .collect();
        let not_ready = hub.not_ready_of(&of_stack);
        return axum::Json(serde_json::json!({
            "ready": not_ready.is_none(),
            "not_ready": not_ready,
            "environments": envs,
        }))
        .into_response();
    }
    match hub.pick(stack.as_deref(), env.as_deref()) {
        Ok(s) => axum::Json(env_status(&s)).into_response(),
        Err(r) => r.into_response(),
    }
}

/// What `/api/v1/status` shows of one environment: the agent's status with each layer's.
fn env_status(s: &AgentHttp) -> serde_json::Value {
    let mut v = s.status.lock().expect("status").clone();
    // What runs now: kept in memory, never in `agent.json` (after a restart nothing runs).
    let now = s.running.snapshot();
    v["applying"] = serde_json::to_value(&now.layers).unwrap_or_default();
    if !now.layers.is_empty() {
        v["applying_revision"] = now.revision.into();
    }
    match crate::state::stack_status::StackState::load(&s.state_dir) {
        // Each layer with what the agent observed and why it is not converged.
        Ok(stack) => {
            let agent = serde_json::from_value(v.clone()).ok();
            v["stack"] = stack.to_json(agent.as_ref());
        }
        Err(e) => v["stack_error"] = e.to_string().into(),
    }
    v
}

async fn hook(State(s): State<Arc<Hub>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = &s.webhook_secret else {
        return (
            StatusCode::NOT_FOUND,
            "webhooks are off: start the agent with --webhook-secret-file",
        )
            .into_response();
    };
    let given = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if signature_matches(secret.expose(), &body, given) {
        s.trigger_all(&Trigger::Fetch(std::time::Instant::now()));
        (StatusCode::ACCEPTED, "fetching").into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            "bad or missing X-Hub-Signature-256",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            crate::hash::hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_matches_rfc_4231_case_6_with_a_key_longer_than_a_block() {
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            crate::hash::hex(&mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn only_the_exact_signature_of_the_body_matches() {
        let sig = format!("sha256={}", crate::hash::hex(&hmac_sha256(b"k", b"body")));
        assert!(signature_matches(b"k", b"body", Some(&sig)));
        assert!(!signature_matches(b"k", b"body!", Some(&sig)), "other body");
        assert!(
            !signature_matches(b"other", b"body", Some(&sig)),
            "other key"
        );
        assert!(!signature_matches(b"k", b"body", None), "no header");
        let bare = sig.trim_start_matches("sha256=");
        assert!(!signature_matches(b"k", b"body", Some(bare)), "no prefix");
        assert!(
            !signature_matches(b"k", b"body", Some(&sig[..sig.len() - 1])),
            "truncated"
        );
        assert!(
            !signature_matches(
                b"k",
                b"body",
                Some(&format!("sha256={}", bare.to_uppercase()))
            ),
            "not the hex GitHub sends"
        );
    }
}
