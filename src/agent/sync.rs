//! One sync: fetch the source (or the pinned revision), converge a new, failed or newly approved
//! revision, and record the outcome — converged, failed (with backoff) or refused.

use std::time::{Duration, Instant};

use crate::engine::record::{LayerStatus, RunReport};
use crate::engine::{Engine, EngineError, Mode, Source};
use crate::notify::EventType;
use crate::util::retry::Backoff;

use super::{Agent, Refused};

/// The wait before retrying after failed syncs in a row: 10 s doubling to 5 min, with jitter
/// (docs/operations.md). The first wait lies between 10 and 20 s, the longest between 2.5 and
/// 5 min; the random part keeps agents that failed together from retrying together.
const FAILED_SYNC: Backoff = Backoff {
    first: Duration::from_secs(20),
    max: Duration::from_secs(300),
    // Unused: the agent retries for as long as it runs.
    attempts: 1,
};

impl Agent {
    /// Fetches, and converges a new (or failed, or newly approved) revision.
    pub async fn sync(&mut self) {
        self.status.last_sync = Some(crate::now_rfc3339());
        let pin = crate::state::pin::read(&self.opts.state_dir);
        self.status.pinned = pin.clone();
        // Always fetch the branch itself, so new commits are seen (and reported) while pinned.
        let (spec, sopts) = (self.opts.spec.clone(), self.opts.source.clone());
        let latest = tokio::task::spawn_blocking(move || crate::source::resolve(&spec, &sopts))
            .await
            .expect("source task");
        let rev = match (latest, &pin) {
            (Ok(rev), None) => rev,
            (Ok(rev), Some(p)) => {
                self.status.latest_seen = Some(rev.commit.clone());
                let mut spec = self.opts.spec.clone();
                spec.reference = Some(p.clone());
                let sopts = self.opts.source.clone();
                match tokio::task::spawn_blocking(move || crate::source::resolve(&spec, &sopts))
                    .await
                    .expect("source task")
                {
                    Ok(r) => r,
                    Err(e) => return self.source_failed(e),
                }
            }
            (Err(e), _) => return self.source_failed(e),
        };
        if pin.is_none() {
            self.status.latest_seen = Some(rev.commit.clone());
        }
        match &rev.stale {
            Some(s) => {
                self.http.metrics.fetch_errors.inc();
                if self.status.stale_since.is_none() {
                    let since = jiff::Timestamp::from_second(s.since as i64)
                        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                        .unwrap_or_default();
                    self.status.stale_since = Some(since);
                }
            }
            None => self.status.stale_since = None,
        }
        let commit = rev.commit.clone();
        if self
            .status
            .refused
            .as_ref()
            .is_some_and(|r| r.revision == commit)
        {
            self.save();
            return;
        }
        let is_new = self.status.revision.as_deref() != Some(commit.as_str());
        let retry_due =
            self.status.failures > 0 && self.next_retry.is_none_or(|t| t <= Instant::now());
        let approvals = !crate::state::approvals::list(&self.opts.state_dir).is_empty()
            && !self.status.awaiting_approval.is_empty();
        if !is_new && !retry_due && !approvals && self.synced_once {
            self.save();
            return;
        }
        let mut opts = self.engine_options();
        opts.all = self.opts.all_first && !self.synced_once;
        let source = Source::Repo {
            spec: self.opts.spec.clone(),
            opts: self.opts.source.clone(),
        };
        let engine = match Engine::open_revision(source, Some(rev), opts).await {
            Ok(e) => e,
            Err(EngineError::Invalid(diags)) => {
                let reason = format!(
                    "invalid stack: {}",
                    diags
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                self.refuse(&commit, reason);
                return;
            }
            Err(e) => {
                self.refuse(&commit, e.to_string());
                return;
            }
        };
        self.settings = Some(engine.stack.settings.clone());
        if is_new {
            let summary = engine
                .commit
                .as_ref()
                .map(|c| format!("new revision: \"{}\" by {}", c.summary, c.author))
                .unwrap_or_default();
            self.event(EventType::ChangeCommitted, &commit, vec![], summary);
        }
        self.status.refused = None;
        let report = match engine.run(Mode::Apply).await {
            Ok(r) => r,
            Err(e) => {
                self.failed(&commit, vec![], e.to_string());
                return;
            }
        };
        self.synced_once = true;
        self.http.metrics.record_run(&report);
        self.after_apply(&engine, &report);
    }

    fn after_apply(&mut self, engine: &Engine, report: &RunReport) {
        let commit = report.revision.clone();
        self.status.revision = Some(commit.clone());
        let failed: Vec<String> = report
            .layers
            .iter()
            .filter(|l| {
                matches!(
                    l.status,
                    LayerStatus::Failed | LayerStatus::Interrupted | LayerStatus::Skipped
                )
            })
            .map(|l| l.layer.to_string())
            .collect();
        self.status.awaiting_approval = report
            .layers
            .iter()
            .filter(|l| l.status == LayerStatus::AwaitingApproval)
            .map(|l| l.layer.to_string())
            .collect();
        for l in report
            .layers
            .iter()
            .filter(|l| l.status == LayerStatus::Applied)
        {
            crate::state::approvals::consume(&self.opts.state_dir, &l.layer.name);
        }
        if failed.is_empty() {
            self.status.failures = 0;
            self.next_retry = None;
            self.status.ready = true;
            let summary = if self.status.awaiting_approval.is_empty() {
                "every layer converged".to_string()
            } else {
                format!(
                    "converged, except layers awaiting approval: {}",
                    self.status.awaiting_approval.join(", ")
                )
            };
            let changed: Vec<String> = report
                .layers
                .iter()
                .filter(|l| l.status == LayerStatus::Applied)
                .map(|l| l.layer.to_string())
                .collect();
            self.event(EventType::Converged, &commit, changed, summary);
            if self.opts.config.writeback_notes {
                super::writeback::note(engine, &self.opts, report);
            }
        } else {
            let details: Vec<String> = report
                .layers
                .iter()
                .filter(|l| matches!(l.status, LayerStatus::Failed | LayerStatus::Interrupted))
                .map(|l| {
                    format!(
                        "{}: {}",
                        l.layer,
                        l.detail
                            .clone()
                            .unwrap_or_default()
                            .lines()
                            .next()
                            .unwrap_or("")
                    )
                })
                .collect();
            self.failed(&commit, failed, details.join("; "));
            return;
        }
        self.save();
    }

    pub(super) fn failed(&mut self, commit: &str, layers: Vec<String>, summary: String) {
        self.status.failures += 1;
        self.next_retry = Some(Instant::now() + FAILED_SYNC.delay_after(self.status.failures));
        self.event(EventType::Failed, commit, layers, summary);
        self.save();
    }

    pub(super) fn refuse(&mut self, commit: &str, reason: String) {
        tracing::warn!(
            "revision {commit} refused: {reason}; staying on {}",
            self.status.revision.as_deref().unwrap_or("nothing")
        );
        self.status.refused = Some(Refused {
            revision: commit.to_string(),
            reason: reason.clone(),
        });
        self.event(
            EventType::Failed,
            commit,
            vec![],
            format!("revision refused, staying on the last good revision: {reason}"),
        );
        self.save();
    }

    pub(super) fn source_failed(&mut self, e: crate::source::SourceError) {
        self.http.metrics.fetch_errors.inc();
        if let crate::source::SourceError::Verification { commit, reason } = &e {
            if self.status.refused.as_ref().map(|r| &r.revision) != Some(commit) {
                self.refuse(commit, reason.clone());
            }
            return;
        }
        if self.status.stale_since.is_none() {
            self.status.stale_since = Some(crate::now_rfc3339());
            self.event(
                EventType::Failed,
                self.status.revision.as_deref().unwrap_or(""),
                vec![],
                format!("the source can't be fetched: {e}"),
            );
        }
        self.save();
    }
}
