//! One sync: fetch the source (or the pinned revision), converge a new, failed or newly approved
//! revision, and record the outcome — converged, failed (with backoff) or refused.

use std::time::{Duration, Instant};

use crate::engine::orphans::OrphanStatus;
use crate::engine::record::{LayerStatus, RunReport};
use crate::engine::{Engine, EngineError, Mode, Source};
use crate::notify::EventType;
use crate::state::lock::LockError;
use crate::util::retry::Backoff;

use super::{Agent, Awaiting, Refused};

/// The condition of syncing: the last sync failed (and how), or was refused.
const SYNC: &str = "sync";
/// The condition of a new revision having been announced.
const REVISION: &str = "revision";

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
    /// Fetches (or reads the fetch made since `since` by another environment), and converges
    /// a new (or failed, or newly approved) revision.
    pub async fn sync(&mut self, since: Instant) {
        self.status.last_sync = Some(crate::now_rfc3339());
        self.status.syncs += 1;
        let pin = match crate::state::pin::read(&self.opts.state_dir) {
            Ok(pin) => pin,
            Err(e) => {
                // Neither following the branch nor guessing the pin: nothing is applied until an
                // operator resolves it.
                let at = self.status.revision.clone().unwrap_or_default();
                let condition = format!("state: {e}");
                self.failed(&at, vec![], &condition, e.to_string());
                return;
            }
        };
        self.status.pinned = pin.clone();
        // Always fetch the branch itself, so new commits are seen (and reported) while pinned.
        let latest = self.feed.latest(since).await;
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
                    Err(e) => return self.source_failed(&e),
                }
            }
            (Err(e), _) => return self.source_failed(&e),
        };
        if pin.is_none() {
            self.status.latest_seen = Some(rev.commit.clone());
        }
        match &rev.stale {
            Some(s) => {
                if self.status.stale_since.is_none() {
                    let since = jiff::Timestamp::from_second(s.since as i64)
                        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                        .unwrap_or_default();
                    self.status.stale_since = Some(since);
                }
                self.source_unreachable(s.error.clone());
            }
            None => self.source_up(),
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
        // Backoff holds after every failure, new revision or not: a stack locked by another
        // writer, or a broken target, is not tried (and alerted) on every poll.
        let backing_off = self.next_retry.is_some_and(|t| t > Instant::now());
        let retry_due = self.status.failures > 0 && !backing_off;
        let approvals = self.approval_given();
        if (backing_off && !approvals) || (!is_new && !retry_due && !approvals && self.synced_once)
        {
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
            // The state dir's fault, not the revision's: retried, never refused.
            Err(e @ EngineError::State(_)) => {
                let condition = format!("state: {e}");
                self.failed(&commit, vec![], &condition, e.to_string());
                return;
            }
            Err(e) => {
                self.refuse(&commit, e.to_string());
                return;
            }
        };
        self.settings = Some(engine.stack.settings.clone());
        self.status.stack = engine.stack.name.clone();
        // One `change_committed` per revision, however often it is retried.
        if is_new && self.memory.raise(REVISION, &commit) {
            let summary = engine
                .commit
                .as_ref()
                .map(|c| format!("new revision: \"{}\" by {}", c.summary, c.author))
                .unwrap_or_default();
            self.event(
                EventType::ChangeCommitted,
                &commit,
                vec![],
                REVISION,
                summary,
            );
        }
        self.status.refused = None;
        let report = match engine.run(Mode::Apply).await {
            Ok(r) => r,
            Err(e) => {
                let condition = match &e {
                    EngineError::Lock(LockError::Held { .. } | LockError::HeldUnnamed { .. }) => {
                        "the stack is locked by another writer".to_string()
                    }
                    other => other.to_string(),
                };
                self.failed(&commit, vec![], &condition, e.to_string());
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
        let mut failed: Vec<String> = report
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
        // The engine took (or dropped) the approvals it was given; what waits now is listed.
        self.status.awaiting_approval = report
            .layers
            .iter()
            .filter(|l| l.status == LayerStatus::AwaitingApproval)
            .map(|l| Awaiting {
                layer: l.layer.to_string(),
                plan: l.plan.clone().unwrap_or_default(),
                revision: Some(commit.clone()),
            })
            .collect();
        // A layer removed from strata.hcl: one alert when it is first found, whatever this run
        // did about it. A Terraform layer waits for approval like a manual layer (an approval
        // wakes the agent); a Kubernetes layer's objects are pruned without one.
        for o in &report.orphaned {
            let name = o.layer.to_string();
            if o.new {
                let condition = format!("orphaned {name}");
                self.event(
                    EventType::Diff,
                    &commit,
                    vec![name.clone()],
                    &condition,
                    format!("{name} was removed from strata.hcl: {}", o.detail),
                );
            }
            match o.status {
                OrphanStatus::Orphaned if o.layer.kind == crate::stack::LayerKind::Terraform => {
                    self.status.awaiting_approval.push(Awaiting {
                        layer: name,
                        plan: o.plan.clone(),
                        revision: Some(commit.clone()),
                    });
                }
                OrphanStatus::Orphaned | OrphanStatus::Pruned | OrphanStatus::Destroyed => {}
                OrphanStatus::Failed => failed.push(name),
            }
        }
        if failed.is_empty() {
            self.memory.clear(SYNC);
            self.status.failures = 0;
            self.next_retry = None;
            self.status.ready = true;
            let summary = if self.status.awaiting_approval.is_empty() {
                "every layer converged".to_string()
            } else {
                format!(
                    "converged, except layers awaiting approval: {}",
                    Awaiting::names(&self.status.awaiting_approval)
                )
            };
            // An apply whose change list could not be read is still an apply: the alert says
            // so, and why, rather than a converged run that looks complete.
            let unread: Vec<String> = report
                .layers
                .iter()
                .filter_map(|l| {
                    let why = l.changes_unread.as_ref()?;
                    Some(format!(
                        "{} (its change list could not be read: {why})",
                        l.layer
                    ))
                })
                .collect();
            let summary = if unread.is_empty() {
                summary
            } else {
                format!(
                    "{summary}; applied without a change list: {}",
                    unread.join("; ")
                )
            };
            let changed: Vec<String> = report
                .layers
                .iter()
                .filter(|l| l.status == LayerStatus::Applied)
                .map(|l| l.layer.to_string())
                .collect();
            self.event(EventType::Converged, &commit, changed, SYNC, summary);
            if self.opts.config.writeback_notes {
                super::writeback::note(engine, &self.opts, report);
            }
        } else {
            let details: Vec<String> = report
                .layers
                .iter()
                .filter(|l| matches!(l.status, LayerStatus::Failed | LayerStatus::Interrupted))
                .map(|l| format!("{}: {}", l.layer, l.detail.clone().unwrap_or_default()))
                .collect();
            let details = details.join("; ");
            let condition = format!("{} at {commit}: {details}", failed.join(", "));
            self.failed(&commit, failed, &condition, details);
            return;
        }
        self.save();
    }

    /// A failed sync: backoff, and a `failed` alert unless `condition` was already alerted.
    pub(super) fn failed(
        &mut self,
        commit: &str,
        layers: Vec<String>,
        condition: &str,
        summary: String,
    ) {
        self.status.failures += 1;
        self.next_retry = Some(Instant::now() + FAILED_SYNC.delay_after(self.status.failures));
        if self.memory.raise(SYNC, condition) {
            self.event(EventType::Failed, commit, layers, SYNC, summary);
        }
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
        if self
            .memory
            .raise(SYNC, &format!("{commit} refused: {reason}"))
        {
            self.event(
                EventType::Failed,
                commit,
                vec![],
                SYNC,
                format!("revision refused, staying on the last good revision: {reason}"),
            );
        }
        self.save();
    }

    pub(super) fn source_failed(&mut self, e: &crate::source::SourceError) {
        if let crate::source::SourceError::Verification { commit, reason } = e {
            self.http.metrics.fetch_error();
            if self.status.refused.as_ref().map(|r| &r.revision) != Some(commit) {
                self.refuse(commit, reason.clone());
            }
            return;
        }
        self.source_unreachable(e.to_string());
        self.save();
    }
}
