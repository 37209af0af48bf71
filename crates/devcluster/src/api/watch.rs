//! Where a watch starts: what it replays first (the current objects as ADDED, or the history
//! since the asked-for resourceVersion) and the live events it follows from there.

use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::ApiError;
use crate::registry::ResourceType;
use crate::store::{Event, Store};

/// A watch, ready to stream: replay `backlog`, then follow `events`.
pub struct WatchStart {
    pub events: broadcast::Receiver<Event>,
    /// `{"type": ..., "object": ...}` lines to send first.
    pub backlog: Vec<Value>,
    /// The resourceVersion the backlog is current at.
    pub current_rv: u64,
}

impl Store {
    /// Starts a watch of `rt` from resourceVersion `rv` (0: from the current objects), keeping
    /// what `matches(group, plural, namespace, object)` accepts.
    ///
    /// # Errors
    /// 410 Expired when `rv` is older than the history kept.
    pub fn watch(
        &self,
        rt: &ResourceType,
        rv: u64,
        matches: impl Fn(&str, &str, &str, &Value) -> bool,
    ) -> Result<WatchStart, ApiError> {
        // Subscribe before reading the backlog, under the same lock: no event falls in between.
        let events = self.tx.subscribe();
        if rv != 0 && rv < self.oldest_rv() {
            return Err(ApiError::new(
                410,
                "Expired",
                format!("too old resource version: {rv} ({})", self.oldest_rv()),
            ));
        }
        let backlog: Vec<Value> = if rv == 0 {
            let lo = (
                rt.group.clone(),
                rt.plural.clone(),
                String::new(),
                String::new(),
            );
            self.objects
                .range(lo..)
                .take_while(|(k, _)| k.0 == rt.group && k.1 == rt.plural)
                .filter(|(k, o)| matches(&k.0, &k.1, &k.2, o))
                .map(|(_, o)| json!({"type": "ADDED", "object": o}))
                .collect()
        } else {
            self.events_after(rv)
                .into_iter()
                .filter(|e| matches(&e.group, &e.plural, &e.namespace, &e.object))
                .map(|e| json!({"type": e.kind, "object": e.object}))
                .collect()
        };
        Ok(WatchStart {
            events,
            backlog,
            current_rv: self.rv,
        })
    }
}
