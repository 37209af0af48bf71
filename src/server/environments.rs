//! The environments the agent converges, for the dashboard's tabs (`GET /api/v1/environments`):
//! each with its readiness and its layers' states counted, in words. A stack without
//! `environment` blocks lists none, and the page then shows no tabs.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::overview::Shown;
use super::{AgentHttp, Hub};

/// How many of an environment's layers are in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    pub state: Shown,
    pub words: &'static str,
    pub layers: usize,
}

/// One environment's tab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tab {
    pub name: String,
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ready: Option<String>,
    /// The most pressing state among its layers (the order of [`Shown`]); `unknown` while it
    /// has none or they cannot be read.
    pub state: Shown,
    /// Every state its layers are in, most pressing first: `1 awaiting approval, 2 in sync`.
    pub words: String,
    pub counts: Vec<Count>,
    /// Why its layers cannot be read (its `status.json` or `history.jsonl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer of `GET /api/v1/environments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Environments {
    /// By name; empty for a stack without environments.
    pub environments: Vec<Tab>,
}

/// The tab of one environment, from its overview; a state file that cannot be read is
/// reported in the tab's `error`, not as a failed request (the other tabs stay usable).
pub fn tab(s: &AgentHttp) -> Tab {
    let ready = s.ready.load(std::sync::atomic::Ordering::Relaxed);
    let not_ready = s.not_ready.lock().expect("not ready").clone();
    let (counts, error) = match super::api::overview(s) {
        Ok(o) => {
            let mut states: Vec<Shown> = o.layers.iter().map(|c| c.state).collect();
            states.sort();
            let mut counts: Vec<Count> = Vec::new();
            for state in states {
                match counts.last_mut() {
                    Some(c) if c.state == state => c.layers += 1,
                    _ => counts.push(Count {
                        state,
                        words: state.words(),
                        layers: 1,
                    }),
                }
            }
            (counts, None)
        }
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let words = if let Some(e) = &error {
        format!("unknown: {e}")
    } else if counts.is_empty() {
        "no layers yet".to_string()
    } else {
        counts
            .iter()
            .map(|c| format!("{} {}", c.layers, c.words))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Tab {
        name: s.env.clone().unwrap_or_default(),
        ready,
        not_ready: (!ready).then(|| not_ready.unwrap_or_else(|| "no successful sync yet".into())),
        state: counts.first().map_or(Shown::Unknown, |c| c.state),
        words,
        counts,
        error,
    }
}

pub(super) async fn get_environments(State(hub): State<Arc<Hub>>) -> Response {
    let envs: Vec<Arc<AgentHttp>> = hub.envs().into_iter().filter(|e| e.env.is_some()).collect();
    let tabs = tokio::task::spawn_blocking(move || envs.iter().map(|e| tab(e)).collect())
        .await
        .expect("environment tabs");
    axum::Json(Environments { environments: tabs }).into_response()
}
