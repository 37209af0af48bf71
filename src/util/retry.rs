//! Retrying with capped exponential backoff and jitter, on `backon`.
//!
//! Each wait is drawn at random between half of its step and the whole step ("equal jitter"),
//! and the steps double from [`Backoff::first`] up to [`Backoff::max`]. Drawing below the step
//! rather than above keeps `max` a true bound on every wait, and the random half spreads out
//! many clients that failed at the same moment, so they do not all come back at once.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};

/// How to space out tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first step: the first wait lies between half of it and all of it. Default 200 ms.
    pub first: Duration,
    /// The largest step: the doubling stops here, and no wait is ever longer. Default 5 s.
    pub max: Duration,
    /// Tries in all, the first one included; [`retry`] gives up after the last. Default 6.
    pub attempts: u32,
}

impl Default for Backoff {
    /// Suits calls to an API server: 200 ms doubling to at most 5 s, 6 tries (about 10 s at most
    /// spent waiting).
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(200),
            max: Duration::from_secs(5),
            attempts: 6,
        }
    }
}

impl Backoff {
    /// `backon` adds a random part of the step on top of it; starting it from half the step
    /// gives waits between half the step and the whole step.
    fn builder(&self) -> ExponentialBuilder {
        ExponentialBuilder::new()
            .with_min_delay(self.first / 2)
            .with_max_delay(self.max / 2)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
    }

    /// Every wait, without end. `backon` computes in `f32`, so a wait may come out a few
    /// nanoseconds past `max`; clamping keeps the documented bound exact.
    fn waits(&self) -> impl Iterator<Item = Duration> + Send + Sync + Unpin {
        let max = self.max;
        self.builder().build().map(move |d| d.min(max))
    }

    /// The waits between tries, freshly drawn: one fewer than [`Backoff::attempts`].
    pub fn delays(&self) -> impl Iterator<Item = Duration> + Send + Sync + Unpin {
        let retries = self.attempts.saturating_sub(1) as usize;
        self.waits().take(retries)
    }

    /// The wait after `failures` failures in a row (1 for the first), for loops that keep their
    /// own schedule instead of calling [`retry`]; `attempts` does not limit it.
    pub fn delay_after(&self, failures: u32) -> Duration {
        // Past 64 doublings every step is `max` whatever `first` was; stopping there keeps the
        // walk short however long the failures go on.
        let index = failures.clamp(1, 64) - 1;
        self.waits()
            .nth(index as usize)
            .expect("the waits never end")
    }
}

/// Runs `f` until it succeeds, fails with an error `transient` calls final, or has been tried
/// [`Backoff::attempts`] times; sleeps a jittered wait between tries.
///
/// # Errors
/// The last error `f` returned: the first one `transient` rejects, or the one of the last try.
pub async fn retry<T, E, F, Fut>(
    backoff: Backoff,
    f: F,
    transient: impl FnMut(&E) -> bool,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    f.retry(backoff.delays())
        .sleep(tokio::time::sleep)
        .when(transient)
        .notify(|e, wait| tracing::debug!("retrying in {wait:?} after {e}"))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn steps(b: &Backoff) -> impl Iterator<Item = Duration> + '_ {
        std::iter::successors(Some(b.first), |s| Some((*s * 2).min(b.max)))
    }

    /// `backon` computes in `f32`: a wait may land a hair off its bounds below `max`.
    const SLACK: Duration = Duration::from_micros(1);

    #[test]
    fn every_wait_lies_between_half_its_step_and_the_step() {
        let b = Backoff::default();
        for _ in 0..200 {
            let delays: Vec<Duration> = b.delays().collect();
            assert_eq!(delays.len(), 5, "six tries, five waits");
            for (d, step) in delays.iter().zip(steps(&b)) {
                assert!(*d + SLACK >= step / 2, "{d:?} below half of {step:?}");
                assert!(*d <= step + SLACK, "{d:?} above {step:?}");
            }
        }
    }

    #[test]
    fn the_doubling_stops_at_max_and_no_wait_exceeds_it() {
        let b = Backoff {
            first: Duration::from_secs(20),
            max: Duration::from_secs(300),
            attempts: 1,
        };
        for failures in [5, 6, 10, 100, u32::MAX] {
            for _ in 0..50 {
                let d = b.delay_after(failures);
                assert!(d <= b.max, "{d:?} after {failures} failures");
                assert!(d + SLACK >= b.max / 2, "{d:?} after {failures} failures");
            }
        }
        let odd = Backoff {
            first: Duration::from_secs(10),
            max: Duration::from_secs(1),
            attempts: 3,
        };
        assert!(odd.delays().all(|d| d <= odd.max), "first above max");
    }

    #[test]
    fn the_first_failure_waits_about_the_first_step() {
        let b = Backoff {
            first: Duration::from_secs(20),
            max: Duration::from_secs(300),
            attempts: 1,
        };
        for failures in [0, 1] {
            let d = b.delay_after(failures);
            assert!(d + SLACK >= Duration::from_secs(10) && d <= Duration::from_secs(20));
        }
        assert_eq!(b.delays().count(), 0, "one try, no wait");
    }

    #[test]
    fn waits_are_jittered() {
        let b = Backoff::default();
        let a: Vec<Duration> = b.delays().collect();
        let spread: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| b.delays().next().unwrap()).collect();
        assert!(
            spread.len() > 10,
            "50 first waits took {} distinct values",
            spread.len()
        );
        assert!(
            (0..20).any(|_| b.delays().collect::<Vec<_>>() != a),
            "every sequence drawn was the same"
        );
    }

    #[tokio::test]
    async fn transient_errors_are_retried_up_to_the_attempts_and_final_ones_are_not() {
        let b = Backoff {
            first: Duration::from_millis(2),
            max: Duration::from_millis(10),
            attempts: 4,
        };
        let calls = AtomicU32::new(0);
        let r: Result<(), String> = retry(
            b,
            || async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err("503".to_string())
            },
            |e: &String| e.starts_with('5'),
        )
        .await;
        assert_eq!(r.unwrap_err(), "503");
        assert_eq!(calls.load(Ordering::Relaxed), b.attempts);

        calls.store(0, Ordering::Relaxed);
        let r: Result<(), String> = retry(
            b,
            || async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err("404".to_string())
            },
            |e: &String| e.starts_with('5'),
        )
        .await;
        assert_eq!(r.unwrap_err(), "404");
        assert_eq!(
            calls.load(Ordering::Relaxed),
            1,
            "a final error is not retried"
        );

        calls.store(0, Ordering::Relaxed);
        let r = retry(
            b,
            || async {
                match calls.fetch_add(1, Ordering::Relaxed) {
                    0 | 1 => Err("503".to_string()),
                    n => Ok(n),
                }
            },
            |e: &String| e.starts_with('5'),
        )
        .await;
        assert_eq!(r, Ok(2), "succeeds on the third try");
    }
}
