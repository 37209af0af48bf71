//! Retrying API calls that failed for reasons that pass: 5xx, 429, connection errors. Capped
//! exponential backoff with jitter; 4xx answers are final.

use std::future::Future;
use std::time::Duration;

/// Whether an error is worth another try.
pub fn transient(e: &::kube::Error) -> bool {
    match e {
        ::kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        ::kube::Error::HyperError(_) | ::kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Backoff: 200 ms doubling to at most 5 s, with up to 25% jitter; at most `attempts` tries.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(200),
            max: Duration::from_secs(5),
            attempts: 6,
        }
    }
}

fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d + d.mul_f64(f64::from(nanos % 250) / 1000.0)
}

/// Runs `f` until it succeeds, fails for good, or runs out of attempts.
pub async fn retry<T, F, Fut>(backoff: Backoff, mut f: F) -> Result<T, ::kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ::kube::Error>>,
{
    let mut delay = backoff.first;
    let mut attempt = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if transient(&e) && attempt < backoff.attempts => {
                tracing::debug!("retrying after {e} (attempt {attempt})");
                tokio::time::sleep(jitter(delay)).await;
                delay = (delay * 2).min(backoff.max);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
