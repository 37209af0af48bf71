//! Retrying API calls that failed for reasons that pass: 5xx, 429, connection errors. Capped
//! exponential backoff with jitter ([`crate::util::retry`]); 4xx answers are final.

use std::future::Future;

use crate::util::retry::Backoff;

/// Whether an error is worth another try.
pub fn transient(e: &::kube::Error) -> bool {
    match e {
        ::kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        ::kube::Error::HyperError(_) => true,
        // The cluster's guard retried already, with the budget the whole cluster shares.
        ::kube::Error::Service(e) => super::breaker::halted(&**e).is_none(),
        _ => false,
    }
}

/// Runs `f` until it succeeds, fails for good, or runs out of attempts; `backoff` defaults to
/// 200 ms doubling to at most 5 s, 6 tries.
///
/// # Errors
/// The first error that is not [`transient`], or the last one when every try failed.
pub async fn retry<T, F, Fut>(backoff: Backoff, f: F) -> Result<T, ::kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ::kube::Error>>,
{
    crate::util::retry::retry(backoff, f, transient).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    fn answer(code: u16) -> ::kube::Error {
        ::kube::Error::Api(
            ::kube::core::Status::failure(&format!("answered {code}"), "Test")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn server_errors_and_throttling_pass_client_errors_are_final() {
        for code in [500, 502, 503, 504, 429] {
            assert!(transient(&answer(code)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 422] {
            assert!(!transient(&answer(code)), "{code}");
        }
    }

    #[tokio::test]
    async fn a_4xx_answer_is_not_retried_a_5xx_is() {
        let fast = Backoff {
            first: Duration::from_millis(2),
            max: Duration::from_millis(10),
            attempts: 3,
        };
        for (code, tries) in [(404, 1), (409, 1), (503, 3), (429, 3)] {
            let calls = AtomicU32::new(0);
            let r: Result<(), _> = retry(fast, || async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err(answer(code))
            })
            .await;
            assert!(matches!(r, Err(::kube::Error::Api(s)) if s.code == code));
            assert_eq!(calls.load(Ordering::Relaxed), tries, "{code}");
        }
    }
}
