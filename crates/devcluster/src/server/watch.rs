//! Watches over HTTP: the backlog, then live events, one JSON object per line, with bookmarks
//! when asked, until `timeoutSeconds` (default 30 minutes).

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::Response;
use serde_json::{json, Value};

use super::path::Target;
use super::query::Query;
use super::Shared;
use crate::api::ApiError;
use crate::selector::Selector;

/// How long a watch that names no `timeoutSeconds` lasts.
const DEFAULT_TIMEOUT: u64 = 1800;

/// Starts streaming a watch of `t`. A resourceVersion older than the history kept is answered
/// with one ERROR event (410 Expired), as a real server does.
pub fn stream(shared: &Arc<Shared>, t: &Target, query: &Query) -> Response {
    let labels = Selector::parse(&query.label_selector).unwrap_or_default();
    let fields = Selector::parse(&query.field_selector).unwrap_or_default();
    let timeout = query.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT);
    let bookmarks = query.allow_watch_bookmarks;
    let rv = query.resource_version;
    let (group, plural) = (t.rt.group.clone(), t.rt.plural.clone());
    let ns = t.namespace.clone();
    let matches = move |g: &str, p: &str, n: &str, obj: &Value| {
        g == group
            && p == plural
            && ns.as_deref().is_none_or(|x| x == n)
            && labels.matches_labels(obj)
            && fields.matches_fields(obj)
    };
    let start = shared
        .store
        .lock()
        .expect("store")
        .watch(&t.rt, rv, &matches);
    let start = match start {
        Ok(s) => s,
        Err(gone) => {
            let line = json!({"type": "ERROR", "object": gone.to_status()});
            return json_lines(Body::from(format!("{line}\n")));
        }
    };
    let (mut rx, backlog, current_rv) = (start.events, start.backlog, start.current_rv);
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
    json_lines(Body::from_stream(out))
}

fn json_lines(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/json".parse().expect("header"),
    );
    r
}
