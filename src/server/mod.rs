//! The agent's HTTP side (loopback by default): health, readiness, Prometheus metrics, the status
//! API, the Git webhook (HMAC-signed), approvals, and the dashboard with the JSON it draws from.

pub mod api;
mod approve;
mod dashboard;
pub mod layer_page;
pub mod overview;
pub mod serve;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::engine::record::{DriftReport, LayerStatus, Observation, RunReport};
use crate::notify::EventType;
use crate::redact::Redacted;

type Labels = Vec<(String, String)>;

/// The agent's metrics.
pub struct Metrics {
    registry: Registry,
    drift: Family<Labels, Gauge>,
    last_apply: Family<Labels, Gauge<f64, AtomicU64>>,
    duration: Family<Labels, Histogram>,
    results: Family<Labels, Counter>,
    pub fetch_errors: Counter,
    revision: Family<Labels, Gauge>,
    observed: Family<Labels, Gauge>,
    source_up: Gauge,
    cluster_up: Family<Labels, Gauge>,
    alerts: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let drift = Family::<Labels, Gauge>::default();
        let last_apply = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let duration = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.1, 2.0, 14))
        });
        let results = Family::<Labels, Counter>::default();
        let fetch_errors = Counter::default();
        let revision = Family::<Labels, Gauge>::default();
        let observed = Family::<Labels, Gauge>::default();
        let source_up = Gauge::default();
        // Up until a fetch says otherwise: the agent fetches before anything else.
        source_up.set(1);
        let cluster_up = Family::<Labels, Gauge>::default();
        let alerts = Family::<Labels, Counter>::default();
        registry.register(
            "strata_layer_observed",
            "1 for the state the last drift check observed the layer in (in_sync, drifted, unknown, never_applied, pending)",
            observed.clone(),
        );
        registry.register(
            "strata_source_up",
            "1 when the last fetch of the source succeeded",
            source_up.clone(),
        );
        registry.register(
            "strata_cluster_up",
            "1 when the cluster answered the last drift check",
            cluster_up.clone(),
        );
        registry.register(
            "strata_alerts_sent",
            "Alerts raised, by type",
            alerts.clone(),
        );
        registry.register(
            "strata_layer_drift",
            "1 when the layer differs from its converged revision",
            drift.clone(),
        );
        registry.register(
            "strata_layer_last_apply_timestamp_seconds",
            "Unix time of the layer's last apply",
            last_apply.clone(),
        );
        registry.register(
            "strata_layer_apply_duration_seconds",
            "Duration of layer applies",
            duration.clone(),
        );
        registry.register(
            "strata_layer_results",
            "Layer results by kind",
            results.clone(),
        );
        registry.register(
            "strata_source_fetch_errors",
            "Failed fetches of the source",
            fetch_errors.clone(),
        );
        registry.register(
            "strata_revision_info",
            "The revision the agent converges to",
            revision.clone(),
        );
        Metrics {
            registry,
            drift,
            last_apply,
            duration,
            results,
            fetch_errors,
            revision,
            observed,
            source_up,
            cluster_up,
            alerts,
        }
    }
}

fn layer(l: &impl ToString) -> Labels {
    vec![("layer".into(), l.to_string())]
}

impl Metrics {
    pub fn record_run(&self, report: &RunReport) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        for l in &report.layers {
            let mut labels = layer(&l.layer);
            labels.push(("result".into(), l.status.key().into()));
            self.results.get_or_create(&labels).inc();
            if l.status == LayerStatus::Applied {
                self.last_apply.get_or_create(&layer(&l.layer)).set(now);
                self.duration
                    .get_or_create(&layer(&l.layer))
                    .observe(l.duration_ms as f64 / 1000.0);
            }
        }
        self.revision.clear();
        self.revision
            .get_or_create(&vec![("revision".into(), report.revision.clone())])
            .set(1);
    }

    pub fn record_drift(&self, report: &DriftReport) {
        for l in &report.layers {
            self.drift
                .get_or_create(&layer(&l.layer))
                .set(i64::from(l.state == crate::engine::DriftState::Drifted));
        }
    }

    /// Each layer's observation: 1 for its state, 0 for the others.
    pub fn record_observed(&self, layers: &std::collections::BTreeMap<String, Observation>) {
        for (name, o) in layers {
            for key in Observation::KEYS {
                let labels = vec![
                    ("layer".to_string(), name.clone()),
                    ("state".to_string(), key.to_string()),
                ];
                self.observed
                    .get_or_create(&labels)
                    .set(i64::from(o.key() == key));
            }
        }
    }

    pub fn source_up(&self, up: bool) {
        self.source_up.set(i64::from(up));
    }

    pub fn cluster_up(&self, cluster: &str, up: bool) {
        self.cluster_up
            .get_or_create(&vec![("cluster".into(), cluster.to_string())])
            .set(i64::from(up));
    }

    pub fn alert(&self, kind: EventType) {
        self.alerts
            .get_or_create(&vec![("type".into(), kind.key().to_string())])
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

/// What the agent asks of its loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// Fetch now (a webhook).
    Fetch,
    /// A layer was approved.
    Approve(String),
}

/// Shared between the agent loop and the HTTP handlers.
pub struct AgentHttp {
    pub metrics: Metrics,
    pub status: Mutex<serde_json::Value>,
    pub ready: std::sync::atomic::AtomicBool,
    /// Why the agent is not ready, for `/readyz`.
    pub not_ready: Mutex<Option<String>>,
    pub trigger: tokio::sync::mpsc::Sender<Trigger>,
    pub webhook_secret: Option<Redacted<Vec<u8>>>,
    /// The bearer token mutating endpoints require (`--api-token-file`); none: they refuse all.
    pub api_token: Option<Redacted<Vec<u8>>>,
    pub state_dir: std::path::PathBuf,
    /// Where the dashboard reads the stack's graph from.
    pub graph: api::GraphSource,
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

pub fn router(shared: Arc<AgentHttp>) -> axum::Router {
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
        .merge(dashboard::routes())
        .with_state(shared)
}

async fn readyz(State(s): State<Arc<AgentHttp>>) -> Response {
    if s.ready.load(std::sync::atomic::Ordering::Relaxed) {
        (StatusCode::OK, "ready").into_response()
    } else {
        let why = s
            .not_ready
            .lock()
            .expect("not ready")
            .clone()
            .unwrap_or_else(|| "no successful sync yet".into());
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")).into_response()
    }
}

async fn metrics(State(s): State<Arc<AgentHttp>>) -> Response {
    let mut r = s.metrics.encode().into_response();
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
            .parse()
            .expect("header"),
    );
    r
}

async fn status(State(s): State<Arc<AgentHttp>>) -> Response {
    let mut v = s.status.lock().expect("status").clone();
    match crate::state::stack_status::StackState::load(&s.state_dir) {
        // Each layer with what the agent observed and why it is not converged.
        Ok(stack) => {
            let agent = serde_json::from_value(v.clone()).ok();
            v["stack"] = stack.to_json(agent.as_ref());
        }
        Err(e) => v["stack_error"] = e.to_string().into(),
    }
    axum::Json(v).into_response()
}

async fn hook(State(s): State<Arc<AgentHttp>>, headers: HeaderMap, body: Bytes) -> Response {
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
        let _ = s.trigger.try_send(Trigger::Fetch);
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
