//! The source as every environment's agent sees it: one fetch per poll, shared.
//!
//! The environments of one agent poll on one schedule (ticks of the poll interval since the
//! feed was made), and a fetch that started at or after the moment a sync asks about serves it:
//! the first environment to wake fetches, the others read what it fetched. A webhook's syncs
//! ask from the moment the hook arrived, so each sees a fetch made after it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::source::{Revision, SourceError, SourceOptions, SourceSpec};

/// One fetch's outcome, as every environment reads it.
pub type Fetched = Result<Revision, Arc<SourceError>>;

/// The shared fetch of the source's tracked reference.
pub struct SourceFeed {
    spec: SourceSpec,
    opts: SourceOptions,
    /// Where the poll ticks are counted from.
    epoch: Instant,
    /// The last fetch: when it started, and what it found. Held across a fetch, so a second
    /// environment asking meanwhile waits for it instead of fetching too.
    last: tokio::sync::Mutex<Option<(Instant, Fetched)>>,
}

impl SourceFeed {
    pub fn new(spec: SourceSpec, opts: SourceOptions) -> SourceFeed {
        SourceFeed {
            spec,
            opts,
            epoch: Instant::now(),
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The first poll tick after `now`: every environment polling every `interval` wakes at
    /// the same instants, so one fetch serves them all.
    pub fn next_tick(&self, now: Instant, interval: Duration) -> Instant {
        let interval = interval.max(Duration::from_millis(1));
        let elapsed = now.saturating_duration_since(self.epoch);
        let ticks = elapsed.as_nanos() / interval.as_nanos() + 1;
        let ticks = u32::try_from(ticks).unwrap_or(u32::MAX);
        self.epoch + interval.saturating_mul(ticks)
    }

    /// The tracked reference's newest revision, as fetched at or after `since`: the last
    /// fetch's when it started then or later, a new fetch's otherwise.
    ///
    /// # Errors
    /// The fetch's (shared with every environment that reads it).
    pub async fn latest(&self, since: Instant) -> Fetched {
        let mut last = self.last.lock().await;
        if let Some((started, fetched)) = &*last {
            if *started >= since {
                return fetched.clone();
            }
        }
        let started = Instant::now();
        let (spec, opts) = (self.spec.clone(), self.opts.clone());
        let fetched = tokio::task::spawn_blocking(move || crate::source::resolve(&spec, &opts))
            .await
            .expect("source task")
            .map_err(Arc::new);
        *last = Some((started, fetched.clone()));
        fetched
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_shared_instants_after_now() {
        let feed = SourceFeed::new(
            SourceSpec {
                url: "file:///nowhere".into(),
                reference: None,
                path: None,
            },
            SourceOptions::new(std::path::Path::new("/nonexistent")),
        );
        let every = Duration::from_secs(30);
        let a = feed.next_tick(feed.epoch + Duration::from_secs(1), every);
        let b = feed.next_tick(feed.epoch + Duration::from_secs(29), every);
        assert_eq!(
            a, b,
            "two environments waking in one interval share its tick"
        );
        assert_eq!(a, feed.epoch + every);
        let c = feed.next_tick(feed.epoch + every, every);
        assert_eq!(c, feed.epoch + every * 2, "strictly after now");
    }
}
