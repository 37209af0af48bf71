//! The agent's loop: wakes for a poll, a webhook, a retry or a drift check, runs one at a time,
//! and stops on shutdown, interrupting running work after the grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Agent, Ended};

/// How often the agent looks whether `strata rollback` or `strata resume` changed the pin.
const PIN_CHECK: Duration = Duration::from_secs(1);

impl Agent {
    /// Runs until `shutdown` (or, with `once`, until the first sync ends).
    pub async fn run(mut self, shutdown: CancellationToken) -> Ended {
        if let Some(addr) = self.opts.listen {
            let hub = crate::server::Hub::new(
                self.http.metrics.all_shared(),
                self.opts.webhook_secret.clone(),
                self.opts.api_token.clone(),
            );
            hub.add(self.http.clone());
            listen(addr, Arc::new(hub), &shutdown).await;
        }
        // Polls fall on the feed's ticks, shared with the other environments' agents.
        let mut next_poll = Instant::now();
        let mut next_drift: Option<Instant> = None;
        loop {
            // Once a stop is asked for, no new work starts, whatever else is due.
            if shutdown.is_cancelled() {
                return Ended::Clean;
            }
            enum Work {
                /// A sync reading the source as fetched since then.
                Sync(Instant),
                Drift,
                Images,
                Stop,
                Idle,
            }
            // Besides its schedule, the agent looks at the pin and the approvals every second:
            // `strata rollback`, `strata resume` and `strata approve --state-dir` take effect at
            // once, not at the next poll.
            let pin_check = Instant::now() + PIN_CHECK;
            let next_images = self.next_image_check();
            let wake = [
                Some(next_poll),
                next_drift,
                self.next_retry,
                Some(pin_check),
                next_images,
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(next_poll);
            let work = tokio::select! {
                // Polled first: a stop wins over a poll, retry or webhook that is due as well.
                biased;
                _ = shutdown.cancelled() => Work::Stop,
                _ = tokio::time::sleep_until(wake.into()) => {
                    let now = Instant::now();
                    if next_drift.is_some_and(|d| d <= now) {
                        Work::Drift
                    } else if next_poll <= now {
                        // The tick's fetch, whichever environment made it.
                        Work::Sync(next_poll)
                    } else if self.next_retry.is_some_and(|r| r <= now)
                        || self.pin_changed()
                        || self.approval_given()
                    {
                        Work::Sync(now)
                    } else if next_images.is_some_and(|t| t <= now) {
                        Work::Images
                    } else {
                        Work::Idle
                    }
                }
                t = self.triggers.recv() => match t {
                    Some(crate::server::Trigger::Fetch(at)) => Work::Sync(at),
                    Some(crate::server::Trigger::Approve(_)) => Work::Sync(Instant::now()),
                    None => Work::Stop,
                },
            };
            let ended = match work {
                Work::Stop => return Ended::Clean,
                Work::Idle => continue,
                Work::Sync(since) => {
                    let interrupted = self.guarded(&shutdown, Some(since)).await;
                    self.schedule_images();
                    let (poll, drift) = self.intervals();
                    next_poll = self.feed.next_tick(Instant::now(), poll);
                    if next_drift.is_none() && self.status.revision.is_some() {
                        next_drift = Some(Instant::now() + drift);
                    }
                    interrupted
                }
                // A stop does not wait for a registry or a push: the commit is pushed or not,
                // never half made (the scratch clone is the only thing written).
                Work::Images => {
                    let pushed = tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => return Ended::Clean,
                        pushed = self.images() => pushed,
                    };
                    if pushed {
                        // A fetch after the push: the tick's would not hold the new commit.
                        next_poll = Instant::now();
                    }
                    false
                }
                Work::Drift => {
                    let interrupted = self.guarded(&shutdown, None).await;
                    next_drift = Some(Instant::now() + self.intervals().1);
                    interrupted
                }
            };
            if ended {
                return Ended::Interrupted;
            }
            if self.opts.once {
                return if self.status.ready
                    && self.status.failures == 0
                    && self.status.refused.is_none()
                {
                    Ended::Clean
                } else {
                    Ended::NotConverged
                };
            }
        }
    }

    /// Whether the pin file says something else than the last sync saw. An unreadable pin is
    /// left to the next scheduled sync, which reports it.
    fn pin_changed(&self) -> bool {
        self.status.last_sync.is_some()
            && crate::state::pin::read(&self.opts.state_dir)
                .is_ok_and(|pin| pin != self.status.pinned)
    }

    /// Whether an approval on disk approves a plan a layer waits with now (given by `strata
    /// approve --state-dir`, or over HTTP): worth a sync at once.
    pub(super) fn approval_given(&self) -> bool {
        if self.status.awaiting_approval.is_empty() {
            return false;
        }
        crate::state::approvals::list(&self.opts.state_dir)
            .iter()
            .any(|(id, a)| {
                self.status
                    .awaiting_approval
                    .iter()
                    .any(|w| w.layer == id.to_string() && w.plan == a.plan)
            })
    }

    /// The poll and drift intervals: the flags', else the stack's (as of the last revision
    /// opened), else the defaults.
    fn intervals(&self) -> (Duration, Duration) {
        let settings = self.settings.clone().unwrap_or_default();
        (
            self.opts.poll_interval.unwrap_or(settings.poll_interval),
            self.opts.drift_interval.unwrap_or(settings.drift_interval),
        )
    }

    /// Runs a sync (reading the source as fetched since `sync`) or, for `None`, a drift check;
    /// on shutdown lets it finish within the grace period, then interrupts it. Returns whether
    /// something had to be interrupted.
    async fn guarded(&mut self, shutdown: &CancellationToken, sync: Option<Instant>) -> bool {
        let grace = self.opts.shutdown_grace;
        let interrupt = self.interrupt.clone();
        // At most --max-concurrent-stacks stacks converge at once: wait for a turn (a stop
        // while waiting starts nothing).
        let slots = self.opts.slots.clone();
        let _permit = match slots {
            Some(s) => tokio::select! {
                biased;
                _ = shutdown.cancelled() => return false,
                p = s.acquire_owned() => p.ok(),
            },
            None => None,
        };
        // The stack's Lease must outlast the start of this work by a margin; a replica that
        // could not renew it starts nothing, before another replica may take the stack.
        // A stack given back waits for the work entered here to end before it stops.
        let _entered = match &self.opts.fence {
            Some(fence) => match fence.enter() {
                Some(e) => Some(e),
                None => {
                    tracing::warn!(
                        "not starting a {}: the stack's Lease is being given back or may lapse first",
                        if sync.is_some() { "sync" } else { "drift check" }
                    );
                    return false;
                }
            },
            None => None,
        };
        // Each sync or drift check is a run: a cluster found unreachable in the last one is
        // tried again.
        self.clusters.begin_run().await;
        // However the work ends, no layer is shown running after it.
        let _running = self.http.running.until_done();
        let work = async {
            match sync {
                Some(since) => self.sync(since).await,
                None => self.drift().await,
            }
        };
        tokio::pin!(work);
        tokio::select! {
            _ = &mut work => false,
            _ = shutdown.cancelled() => {
                tracing::warn!("stopping: letting the running step finish (up to {}s)", grace.as_secs());
                match tokio::time::timeout(grace, &mut work).await {
                    Ok(()) => false,
                    Err(_) => {
                        tracing::warn!("interrupting the running step");
                        interrupt.cancel();
                        work.await;
                        true
                    }
                }
            }
        }
    }
}

/// Serves `hub` on `addr` until `shutdown`; an address that cannot be bound is logged and the
/// agent runs without HTTP.
pub(super) async fn listen(
    addr: SocketAddr,
    hub: Arc<crate::server::Hub>,
    shutdown: &CancellationToken,
) {
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            let bound = l.local_addr().unwrap_or(addr);
            let app = crate::server::router(hub);
            let stop = shutdown.clone();
            let limits = crate::server::serve::Limits::default();
            tokio::spawn(crate::server::serve::serve(l, app, limits, stop));
            tracing::info!("agent listening on http://{bound}");
        }
        Err(e) => tracing::warn!("failed to listen on {addr}: {e}; running without HTTP"),
    }
}
