//! Whether the agent reaches what it depends on: the source and each cluster. A `degraded`
//! alert once one has been unreachable longer than `unreachable_after`, a `recovered` when it
//! answers again, and `/readyz` failing in between.

use std::time::Instant;

use crate::notify::EventType;

use super::{Agent, Reach};

const SOURCE: &str = "source";

fn cluster_key(name: &str) -> String {
    format!("cluster {name}")
}

impl Agent {
    /// The source answered.
    pub(super) fn source_up(&mut self) {
        self.source_down = None;
        self.status.stale_since = None;
        self.status.source = Reach::default();
        self.http.metrics.source_up(true);
        if self.memory.clear(SOURCE) {
            self.event(
                EventType::Recovered,
                &self.current(),
                vec![],
                SOURCE,
                "the source answers again".into(),
            );
        }
    }

    /// The source did not answer (or only an earlier fetch can be used).
    pub(super) fn source_unreachable(&mut self, reason: String) {
        self.http.metrics.fetch_error();
        self.http.metrics.source_up(false);
        let since = *self.source_down.get_or_insert_with(Instant::now);
        let stale = self
            .status
            .stale_since
            .get_or_insert_with(crate::now_rfc3339)
            .clone();
        self.status.source = Reach {
            up: false,
            down_since: Some(stale.clone()),
            reason: Some(reason.clone()),
        };
        if since.elapsed() >= self.opts.unreachable_after
            && self.memory.raise(SOURCE, "unreachable")
        {
            self.event(
                EventType::Degraded,
                &self.current(),
                vec![],
                SOURCE,
                format!("the source has been unreachable since {stale}: {reason}"),
            );
        }
    }

    /// A cluster answered (`reason` is `None`) or did not, as the last drift check found.
    pub(super) fn cluster_seen(&mut self, name: &str, reason: Option<String>) {
        let key = cluster_key(name);
        self.http.metrics.cluster_up(name, reason.is_none());
        let Some(reason) = reason else {
            self.clusters_down.remove(name);
            self.status
                .clusters
                .insert(name.to_string(), Reach::default());
            if self.memory.clear(&key) {
                self.event(
                    EventType::Recovered,
                    &self.current(),
                    vec![],
                    &key,
                    format!("cluster {name} answers again"),
                );
            }
            return;
        };
        let since = *self
            .clusters_down
            .entry(name.to_string())
            .or_insert_with(Instant::now);
        let down_since = self
            .status
            .clusters
            .get(name)
            .and_then(|r| r.down_since.clone())
            .unwrap_or_else(crate::now_rfc3339);
        self.status.clusters.insert(
            name.to_string(),
            Reach {
                up: false,
                down_since: Some(down_since.clone()),
                reason: Some(reason.clone()),
            },
        );
        if since.elapsed() >= self.opts.unreachable_after && self.memory.raise(&key, "unreachable")
        {
            self.event(
                EventType::Degraded,
                &self.current(),
                vec![],
                &key,
                format!("cluster {name} has been unreachable since {down_since}: {reason}"),
            );
        }
    }

    /// Why the agent is not ready, or `None` when it is: no successful sync yet, or the source
    /// or a cluster unreachable for longer than `unreachable_after`.
    pub(super) fn not_ready(&self) -> Option<String> {
        let after = self.opts.unreachable_after;
        if !self.status.ready {
            return Some("no successful sync yet".into());
        }
        if self.source_down.is_some_and(|s| s.elapsed() >= after) {
            return Some(format!(
                "the source has been unreachable since {}",
                self.status.stale_since.as_deref().unwrap_or("?")
            ));
        }
        let down: Vec<&String> = self
            .clusters_down
            .iter()
            .filter(|(_, s)| s.elapsed() >= after)
            .map(|(n, _)| n)
            .collect();
        if !down.is_empty() {
            let names: Vec<&str> = down.iter().map(|s| s.as_str()).collect();
            return Some(format!("unreachable cluster: {}", names.join(", ")));
        }
        None
    }

    /// The revision alerts name: the last attempted, else the newest seen.
    pub(super) fn current(&self) -> String {
        self.status
            .revision
            .clone()
            .or_else(|| self.status.latest_seen.clone())
            .unwrap_or_default()
    }
}
