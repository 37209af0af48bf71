//! Alerts: `change_committed`, `diff`, `converged`, `failed`, `degraded`, `recovered`,
//! `image_update_proposed`, delivered to the sinks configured on
//! the agent (never in the repository: sinks hold secrets). Delivery is retried in the
//! background; a failing sink never blocks reconciliation. Which alerts are raised, and how
//! often, is the agent's memory of conditions ([`memory`]).

pub mod memory;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::redact::Redacted;
use crate::util::retry::{retry, Backoff};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// A new revision was seen.
    ChangeCommitted,
    /// A layer stayed divergent longer than `alert_after`.
    Diff,
    /// Every layer was observed in sync with the revision applied to it.
    Converged,
    Failed,
    /// The source or a cluster has been unreachable longer than the configured time.
    Degraded,
    /// A `degraded` condition cleared: the source or cluster answers again.
    Recovered,
    /// New image tags were committed to a review branch (`push_branch`), not the tracked one.
    ImageUpdateProposed,
}

impl EventType {
    /// The name in JSON and metric labels: `change_committed`, `diff`, ...
    pub fn key(self) -> &'static str {
        match self {
            EventType::ChangeCommitted => "change_committed",
            EventType::Diff => "diff",
            EventType::Converged => "converged",
            EventType::Failed => "failed",
            EventType::Degraded => "degraded",
            EventType::Recovered => "recovered",
            EventType::ImageUpdateProposed => "image_update_proposed",
        }
    }
}

/// One alert, as the webhook sink posts it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    pub stack: String,
    /// The environment it is about; absent for a stack without `environment` blocks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    pub revision: String,
    pub layers: Vec<String>,
    /// What the alert is about (`source`, `sync`, `cluster main`, `diff kubernetes.app`,
    /// `revision`): one alert per condition until it changes.
    pub condition: String,
    /// Complete: a long reason is shortened in the middle, never cut off.
    pub summary: String,
    /// RFC 3339.
    pub time: String,
}

/// A function called with every event, for embedding strata in your own program.
pub type Callback = Arc<dyn Fn(&Event) + Send + Sync>;

/// Where alerts go.
#[derive(Clone)]
pub enum Sink {
    /// POSTs the event as JSON.
    Webhook { name: String, url: Redacted<String> },
    /// POSTs `{"text": "..."}` (Slack-compatible).
    Slack { name: String, url: Redacted<String> },
    /// Calls a function in this process.
    Callback { name: String, f: Callback },
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Sink::Webhook { .. } => "webhook",
            Sink::Slack { .. } => "slack",
            Sink::Callback { .. } => "callback",
        };
        write!(f, "Sink({kind} \"{}\")", self.name())
    }
}

impl Sink {
    pub fn name(&self) -> &str {
        match self {
            Sink::Webhook { name, .. } | Sink::Slack { name, .. } | Sink::Callback { name, .. } => {
                name
            }
        }
    }
}

/// The agent's configuration file (`--config FILE`).
#[derive(Debug, Clone, Default)]
pub struct AgentConfig {
    pub sinks: Vec<Sink>,
    /// Write a git note on each converged commit (`refs/notes/strata`) and push it.
    pub writeback_notes: bool,
}

/// Reads an agent config:
///
/// ```hcl
/// alert "webhook" "ops"  { url = "http://127.0.0.1:8088/hook" }
/// alert "slack"   "team" { url_file = "/etc/strata/slack-url" }
/// writeback { notes = true }
/// ```
pub fn load_config(path: &Path) -> Result<AgentConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("failed to read {}: {e}", path.display()))?;
    let body: hcl::Body = hcl::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut cfg = AgentConfig::default();
    for block in body.blocks() {
        match block.identifier() {
            "alert" => {
                let labels: Vec<&str> = block.labels().iter().map(|l| l.as_str()).collect();
                let [kind, name] = labels.as_slice() else {
                    return Err(format!("{}: alert blocks take a kind and a name: alert \"webhook\" \"ops\" {{ ... }}", path.display()));
                };
                let attr = |k: &str| {
                    block
                        .body()
                        .attributes()
                        .find(|a| a.key() == k)
                        .and_then(|a| match a.expr() {
                            hcl::Expression::String(s) => Some(s.clone()),
                            _ => None,
                        })
                };
                let url = match (attr("url"), attr("url_file")) {
                    (Some(u), _) => u,
                    (None, Some(f)) => std::fs::read_to_string(&f)
                        .map_err(|e| format!("alert \"{name}\": failed to read url_file {f}: {e}"))?
                        .trim()
                        .to_string(),
                    (None, None) => {
                        return Err(format!(
                            "{}: alert \"{name}\" needs url or url_file",
                            path.display()
                        ))
                    }
                };
                let url = Redacted::new(url);
                let name = name.to_string();
                cfg.sinks.push(match *kind {
                    "webhook" => Sink::Webhook { name, url },
                    "slack" => Sink::Slack { name, url },
                    other => {
                        return Err(format!(
                            "{}: unknown alert kind \"{other}\" (webhook or slack)",
                            path.display()
                        ))
                    }
                });
            }
            "writeback" => {
                cfg.writeback_notes = block
                    .body()
                    .attributes()
                    .any(|a| a.key() == "notes" && matches!(a.expr(), hcl::Expression::Bool(true)));
            }
            // The stacks the agent converges: read by `crate::agent::stacks`.
            "stack" => {}
            other => {
                return Err(format!(
                    "{}: unknown block \"{other}\" (alert, writeback or stack)",
                    path.display()
                ))
            }
        }
    }
    Ok(cfg)
}

/// Sends alerts to every sink, in the background, with retries.
#[derive(Clone)]
pub struct Notifier {
    sinks: Vec<Sink>,
    client: reqwest::Client,
    /// Every event raised, newest last (for the status API and tests).
    pub sent: Arc<Mutex<Vec<Event>>>,
    /// The state dir whose alert log records every event.
    state_dir: Option<PathBuf>,
}

impl Notifier {
    pub fn new(sinks: Vec<Sink>, state_dir: Option<PathBuf>) -> Notifier {
        Notifier {
            sinks,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("http client"),
            sent: Arc::new(Mutex::new(Vec::new())),
            state_dir,
        }
    }

    /// Raises an event: recorded at once, delivered in the background.
    pub fn notify(&self, event: Event) {
        tracing::info!(kind = ?event.kind, revision = %event.revision, "{}", event.summary);
        if let Some(state_dir) = &self.state_dir {
            // The alert still goes out: a log that cannot be written must not silence it.
            if let Err(e) = crate::state::alerts::append(state_dir, &event) {
                tracing::error!("alert not logged: {e}");
            }
        }
        self.sent.lock().expect("sent").push(event.clone());
        for sink in self.sinks.clone() {
            if let Sink::Callback { f, .. } = &sink {
                f(&event);
                continue;
            }
            let client = self.client.clone();
            let event = event.clone();
            tokio::spawn(async move { deliver(&client, &sink, &event).await });
        }
    }
}

async fn deliver(client: &reqwest::Client, sink: &Sink, event: &Event) {
    let (url, body) = match sink {
        Sink::Callback { .. } => return,
        Sink::Webhook { url, .. } => (url, serde_json::to_value(event).expect("json")),
        Sink::Slack { url, .. } => {
            let env = event
                .env
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            let text = format!(
                "strata {}{env}: {} at {} — {}",
                event.stack,
                event.kind.key(),
                crate::report::run::short(&event.revision),
                event.summary
            );
            (url, serde_json::json!({ "text": text }))
        }
    };
    let body = &body;
    let mut attempt = 0;
    let sent = retry(
        DELIVERY,
        || {
            attempt += 1;
            let attempt = attempt;
            async move {
                let failure = match client.post(url.expose()).json(&body).send().await {
                    Ok(r) if r.status().is_success() => return Ok(()),
                    Ok(r) => DeliveryFailure::Answered(r.status()),
                    Err(_) => DeliveryFailure::Unreachable,
                };
                tracing::warn!(sink = sink.name(), "{failure} (attempt {attempt})");
                Err(failure)
            }
        },
        |_| true,
    )
    .await;
    if sent.is_err() {
        tracing::warn!(
            sink = sink.name(),
            "alert dropped after {} attempts",
            DELIVERY.attempts
        );
    }
}

/// Alert delivery: 500 ms doubling to at most 30 s, 5 tries. A sink that is down for longer
/// misses the alert; the alert log and the status API still have it.
const DELIVERY: Backoff = Backoff {
    first: Duration::from_millis(500),
    max: Duration::from_secs(30),
    attempts: 5,
};

/// Why one delivery attempt failed. Every failure is worth another try: a sink that answers
/// 4xx may be mid-deploy or briefly misconfigured, and the retries are few.
#[derive(Debug, thiserror::Error)]
enum DeliveryFailure {
    #[error("alert delivery answered {0}")]
    Answered(reqwest::StatusCode),
    // The transport error may quote the URL (a secret for Slack): it is left out.
    #[error("alert delivery failed")]
    Unreachable,
}
