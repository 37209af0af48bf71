//! The read-only JSON the dashboard draws from: `GET /api/v1/overview`,
//! `GET /api/v1/layers/{kind}.{name}` and `GET /api/v1/history`. Open like `/api/v1/status`
//! (the listener is loopback unless the operator chose otherwise): they show what `strata status`
//! and `strata history` show, with every value masked as the CLI masks it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::hub::One;
use super::layer_page::{self, History, LayerPage};
use super::overview::{Graph, Overview};
use super::AgentHttp;
use crate::agent::AgentStatus;
use crate::state::stack_status::StackState;
use crate::state::StateError;

/// Runs kept in memory for a layer's page and the history page.
const RUNS: usize = 200;
/// Alerts on the history page.
const ALERTS: usize = 100;

/// Where the dashboard finds the stack's graph: the revision the agent last opened, as
/// materialised in the state dir, read once per revision.
pub struct GraphSource {
    /// The stack's directory inside the source (`--path`), `None` for its root.
    stack_path: Option<PathBuf>,
    cached: Mutex<Option<(String, Result<Graph, String>)>>,
}

impl GraphSource {
    pub fn new(stack_path: Option<PathBuf>) -> GraphSource {
        GraphSource {
            stack_path,
            cached: Mutex::new(None),
        }
    }

    /// The graph of `revision`, or why there is none.
    fn graph(&self, state_dir: &Path, revision: Option<&str>) -> Result<Graph, String> {
        let Some(revision) = revision else {
            return Err("no revision opened yet".into());
        };
        if let Some((r, g)) = &*self.cached.lock().expect("graph cache") {
            if r == revision {
                return g.clone();
            }
        }
        let root = crate::source::materialise::revision_dir(state_dir, revision);
        let dir = self
            .stack_path
            .as_ref()
            .map_or(root.clone(), |p| root.join(p));
        let graph = crate::stack::Stack::load(&dir)
            .map_err(|d| format!("the stack of revision {revision} cannot be read: {d}"))
            .map(|stack| {
                let g = crate::graph::LayerGraph::from_stack(&stack);
                Graph::from(&crate::graph::GraphView::new(&stack, &g))
            });
        *self.cached.lock().expect("graph cache") = Some((revision.to_string(), graph.clone()));
        graph
    }
}

fn agent_status(s: &AgentHttp) -> AgentStatus {
    serde_json::from_value(s.status.lock().expect("status").clone()).unwrap_or_default()
}

fn state_error(e: &StateError) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(serde_json::json!({ "message": e.to_string() })),
    )
        .into_response()
}

/// Runs a blocking read of the state dir off the async threads.
async fn blocking<T: Send + 'static>(
    s: Arc<AgentHttp>,
    f: impl FnOnce(&AgentHttp) -> T + Send + 'static,
) -> T {
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .expect("dashboard read")
}

/// The overview, read from the agent's status, `status.json`, the graph and `history.jsonl`.
///
/// # Errors
/// `status.json` or `history.jsonl` cannot be read.
pub fn overview(s: &AgentHttp) -> Result<Overview, StateError> {
    let agent = agent_status(s);
    let stack = StackState::load(&s.state_dir)?;
    let now = s.running.snapshot();
    // While a revision is being applied, its graph: the layers running are that revision's.
    let applying = (!now.layers.is_empty()).then_some(now.revision).flatten();
    let graph = s.graph.graph(
        &s.source_state_dir,
        applying.as_deref().or(agent.revision.as_deref()),
    );
    let runs = crate::state::history::read(&s.state_dir, RUNS)?;
    let commit = agent
        .revision
        .as_deref()
        .and_then(|r| layer_page::commit_of(&runs, r));
    let mut o = Overview::build(&agent, &stack, &now.layers, graph, commit);
    o.applying_revision = applying;
    Ok(o)
}

/// The page of `layer`; `None` when the stack has no such layer.
///
/// # Errors
/// A state file cannot be read or is corrupt.
pub fn layer(s: &AgentHttp, layer: &str) -> Result<Option<LayerPage>, StateError> {
    let overview = overview(s)?;
    let Some(card) = overview.layers.into_iter().find(|c| c.layer == layer) else {
        return Ok(None);
    };
    let agent = agent_status(s);
    let stack = StackState::load(&s.state_dir)?;
    let runs = crate::state::history::read(&s.state_dir, RUNS)?;
    let last = crate::state::layer_runs::load(&s.state_dir)?;
    let drift = crate::state::reports::read_latest(&s.state_dir)?;
    Ok(Some(layer_page::layer_page(
        card,
        &agent,
        &stack,
        last.get(layer),
        drift.as_ref(),
        &runs,
    )))
}

pub(super) async fn get_overview(One(s): One) -> Response {
    match blocking(s, overview).await {
        Ok(o) => axum::Json(o).into_response(),
        Err(e) => state_error(&e),
    }
}

pub(super) async fn get_layer(One(s): One, UrlPath(id): UrlPath<String>) -> Response {
    let name = id.clone();
    match blocking(s, move |s| layer(s, &name)).await {
        Ok(Some(page)) => axum::Json(page).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({
                "message": format!("the stack has no layer {id}: name it as terraform.NAME or kubernetes.NAME")
            })),
        )
            .into_response(),
        Err(e) => state_error(&e),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct HistoryQuery {
    runs: Option<usize>,
    alerts: Option<usize>,
}

pub(super) async fn get_history(One(s): One, Query(q): Query<HistoryQuery>) -> Response {
    let runs = q.runs.unwrap_or(50).min(RUNS);
    let alerts = q.alerts.unwrap_or(50).min(ALERTS);
    let read = blocking(s, move |s| {
        Ok::<_, StateError>(History::newest_first(
            crate::state::history::read(&s.state_dir, runs)?,
            crate::state::alerts::read(&s.state_dir, alerts)?,
        ))
    })
    .await;
    match read {
        Ok(h) => axum::Json(h).into_response(),
        Err(e) => state_error(&e),
    }
}
