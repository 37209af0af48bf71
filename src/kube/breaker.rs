//! One cluster's health, shared by every request strata sends it in a run: retries with a budget
//! the whole cluster shares, a circuit breaker, and cancellation that cuts requests and the waits
//! between them at once.
//!
//! Before, every request retried on its own (kube-rs's own retry layer up to 15 times, then
//! strata's up to 6 times around it), so an API server answering 503 to everything cost minutes
//! and a SIGTERM waited for all of it. Now [`Guard`] sits in the cluster's one client:
//!
//! - A request that fails for a reason that passes (5xx, 429, a connection error) is tried again
//!   with capped, jittered backoff ([`Backoff::default`]: 6 tries).
//! - The budget: when a request has used all its tries and no other request to the cluster
//!   succeeded since its first failure, the cluster failed that many requests in a row. It is
//!   then marked unreachable for the rest of the run: every later request fails at once with
//!   [`Halted::Unreachable`], naming the cluster, its server and the last cause.
//! - A request that gets no answer within [`REQUEST_TIMEOUT`] (a hung server) is not tried again
//!   and counts as the whole budget.
//! - Once the run's cancel token fires, requests in flight and waits between tries end at once
//!   with [`Halted::Cancelled`].
//! - Each try holds a place among the cluster's requests in flight ([`super::inflight`]) until
//!   its answer is read; the wait for a place is not part of the try's timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use tokio_util::sync::CancellationToken;
use tower::{BoxError, Service, ServiceExt};

use super::inflight::{Placed, Places};
use crate::util::retry::Backoff;

/// How long one try may wait for its answer. An API server ends its own requests after 60 s
/// (`--request-timeout`), so a server that is silent for longer is hung, not slow.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request to a cluster was not answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Halted {
    #[error(
        "cluster \"{cluster}\" at {url} is unreachable: {failures} requests in a row failed \
         (last: {cause}); nothing more is sent to it in this run"
    )]
    Unreachable {
        cluster: String,
        url: String,
        failures: u64,
        cause: String,
    },
    #[error("cluster \"{cluster}\" at {url}: {cause} ({tries} tries)")]
    Failed {
        cluster: String,
        url: String,
        tries: u32,
        cause: String,
    },
    #[error("cluster \"{cluster}\": the run was cancelled")]
    Cancelled { cluster: String },
}

/// Whether `e` is strata's own verdict on a request, not worth another try: the cluster is
/// unreachable, the request used its tries, or the run is cancelled.
pub fn halted<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Halted> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<Halted>() {
            return Some(h);
        }
        cur = err.source();
    }
    None
}

/// What one cluster's requests share in a run.
#[derive(Debug)]
pub struct Health {
    cluster: String,
    url: String,
    cancel: CancellationToken,
    backoff: Backoff,
    timeout: Duration,
    /// Answers that were not failures, ever: a request compares it before and after its tries.
    answered: AtomicU64,
    /// Failed tries since the last answer.
    failed_in_a_row: AtomicU64,
    /// Tries sent, answered or not (for tests and benchmarks).
    sent: AtomicU64,
    /// Set once the cluster is marked unreachable: the error every request gets.
    down: Mutex<Option<Halted>>,
    /// The bound on requests in flight.
    places: Places,
}

impl Health {
    pub fn new(cluster: &str, url: &str, cancel: CancellationToken) -> Health {
        Health::with(cluster, url, cancel, Backoff::default(), REQUEST_TIMEOUT)
    }

    /// As [`Health::new`], with other tries and timeout (tests use short ones).
    pub fn with(
        cluster: &str,
        url: &str,
        cancel: CancellationToken,
        backoff: Backoff,
        timeout: Duration,
    ) -> Health {
        Health {
            cluster: cluster.to_string(),
            url: url.to_string(),
            cancel,
            backoff,
            timeout,
            answered: AtomicU64::new(0),
            failed_in_a_row: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            down: Mutex::new(None),
            places: Places::default(),
        }
    }

    /// The cluster's requests in flight.
    pub fn places(&self) -> &Places {
        &self.places
    }

    /// Why the cluster gets no more requests in this run, if it does not.
    pub fn down(&self) -> Option<Halted> {
        self.down.lock().expect("health").clone()
    }

    /// Tries sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// A new run gives the cluster another chance.
    pub fn reset(&self) {
        *self.down.lock().expect("health") = None;
        self.failed_in_a_row.store(0, Ordering::Relaxed);
    }

    fn cancelled(&self) -> Halted {
        Halted::Cancelled {
            cluster: self.cluster.clone(),
        }
    }

    /// The error for a request that may not be sent now.
    fn refused(&self) -> Option<Halted> {
        if self.cancel.is_cancelled() {
            return Some(self.cancelled());
        }
        self.down()
    }

    fn answer(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
        self.failed_in_a_row.store(0, Ordering::Relaxed);
    }

    /// A request gave up after `tries`: the cluster is down when nothing was answered since the
    /// request's first failure (`answered_before`).
    fn gave_up(&self, answered_before: u64, tries: u32, cause: String) -> Halted {
        if self.answered.load(Ordering::Relaxed) != answered_before {
            return Halted::Failed {
                cluster: self.cluster.clone(),
                url: self.url.clone(),
                tries,
                cause,
            };
        }
        let mut down = self.down.lock().expect("health");
        let verdict = down.get_or_insert_with(|| Halted::Unreachable {
            cluster: self.cluster.clone(),
            url: self.url.clone(),
            failures: self.failed_in_a_row.load(Ordering::Relaxed),
            cause,
        });
        tracing::warn!("{verdict}");
        verdict.clone()
    }

    /// Sends `req` through `inner` with the cluster's retries, budget, bound on requests in
    /// flight and cancellation.
    pub(super) async fn send<S, B>(
        &self,
        mut inner: S,
        req: Request<Body>,
    ) -> Result<Response<Placed<B>>, BoxError>
    where
        S: Service<Request<Body>, Response = Response<B>, Error = BoxError>,
        B: http_body::Body<Data = bytes::Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let again = Again::of(&req);
        let watch = req.uri().query().is_some_and(|q| q.contains("watch=true"));
        let mut next = Some(req);
        let mut waits = self.backoff.delays();
        let mut answered_before = None;
        let mut tries = 0u32;
        loop {
            if let Some(refused) = self.refused() {
                return Err(refused.into());
            }
            let Some(req) = next.take() else {
                unreachable!("a try is made only with a request to send")
            };
            // Taken before the try's clock starts: a request queued behind others is not hung.
            let place = if watch {
                None
            } else {
                tokio::select! {
                    _ = self.cancel.cancelled() => return Err(self.cancelled().into()),
                    p = self.places.take() => Some(p),
                }
            };
            // Asked again once a place is free: the cluster may have been given up while this
            // request queued (the requests ahead of it hung), and nothing more is sent to it.
            if let Some(refused) = self.refused() {
                return Err(refused.into());
            }
            tries += 1;
            self.sent.fetch_add(1, Ordering::Relaxed);
            let call = inner.ready().await?.call(req);
            let timeout = if watch { Duration::MAX } else { self.timeout };
            let result = tokio::select! {
                _ = self.cancel.cancelled() => return Err(self.cancelled().into()),
                r = tokio::time::timeout(timeout, call) => r,
            };
            let (cause, hung) = match result {
                Ok(Ok(resp)) if !passing(resp.status()) => {
                    self.answer();
                    return Ok(resp.map(|body| Placed::new(body, place)));
                }
                Ok(Ok(resp)) => (Failure::Answer(resp), false),
                Ok(Err(e)) => (Failure::Error(super::error::describe(&*e)), false),
                Err(_) => (
                    Failure::Error(format!("no answer within {}s", timeout.as_secs())),
                    true,
                ),
            };
            self.failed_in_a_row.fetch_add(1, Ordering::Relaxed);
            let before = *answered_before.get_or_insert(self.answered.load(Ordering::Relaxed));
            let retry = if hung { None } else { again.make() };
            match (retry, waits.next()) {
                (Some(req), Some(wait)) => {
                    // The server is done with this try: its place is not held through the wait.
                    drop(place);
                    tracing::debug!("{}: retrying in {wait:?} after {}", self.cluster, cause);
                    tokio::select! {
                        _ = self.cancel.cancelled() => return Err(self.cancelled().into()),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    next = Some(req);
                }
                _ => {
                    // The place is given back only once the verdict is in: a request queued
                    // for it then sees a cluster given up, and sends nothing.
                    let cause = cause.text().await;
                    let verdict = self.gave_up(before, tries, cause);
                    drop(place);
                    return Err(verdict.into());
                }
            }
        }
    }
}

/// Answers worth another try: the server is overloaded or failing, not refusing the request.
fn passing(status: http::StatusCode) -> bool {
    status.as_u16() == 429 || status.is_server_error()
}

/// Why one try failed.
enum Failure<B> {
    Answer(Response<B>),
    Error(String),
}

impl<B> std::fmt::Display for Failure<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Answer(r) => write!(f, "answered {}", r.status()),
            Failure::Error(e) => f.write_str(e),
        }
    }
}

impl<B> Failure<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    /// The cause in words: an answer with the server's own message (`answered 503 Service
    /// Unavailable: etcd is down`).
    async fn text(self) -> String {
        use http_body_util::BodyExt;
        let Failure::Answer(resp) = self else {
            return self.to_string();
        };
        let status = resp.status();
        // The message of a Status body; a proxy's HTML page or a cut body says nothing useful.
        let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect()).await;
        let message = body
            .ok()
            .and_then(|b| b.ok())
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b.to_bytes()).ok())
            .and_then(|v| v["message"].as_str().map(str::to_string));
        match message {
            Some(m) => format!("answered {status}: {m}"),
            None => format!("answered {status}"),
        }
    }
}

/// What it takes to send a request again: its parts and a body that can be copied (the bodies
/// kube-rs sends are all in memory; a streamed one is sent once).
struct Again {
    parts: Option<(http::request::Parts, Body)>,
}

impl Again {
    fn of(req: &Request<Body>) -> Again {
        let parts = req.body().try_clone().map(|body| {
            let mut b = Request::builder()
                .method(req.method().clone())
                .uri(req.uri().clone())
                .version(req.version());
            if let Some(h) = b.headers_mut() {
                h.extend(req.headers().clone());
            }
            let (mut parts, ()) = b.body(()).expect("parts of a valid request").into_parts();
            parts.extensions = req.extensions().clone();
            (parts, body)
        });
        Again { parts }
    }

    fn make(&self) -> Option<Request<Body>> {
        let (parts, body) = self.parts.as_ref()?;
        Some(Request::from_parts(parts.clone(), body.try_clone()?))
    }
}

/// The layer that puts a cluster's [`Health`] in front of its client.
#[derive(Clone)]
pub struct Guard(pub Arc<Health>);

impl<S> tower::Layer<S> for Guard
where
    S: Service<Request<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + Sync,
    S::Response: Send + 'static,
{
    type Service = Guarded<tower::buffer::Buffer<Request<Body>, S::Future>>;

    fn layer(&self, inner: S) -> Self::Service {
        // Retries send a request again from inside its own future: the service below must be
        // shareable, which a buffer makes it.
        Guarded {
            inner: tower::buffer::Buffer::new(inner, 1024),
            health: self.0.clone(),
        }
    }
}

/// A client's service behind a cluster's [`Health`].
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    health: Arc<Health>,
}

impl<S, B> Service<Request<Body>> for Guarded<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
    B: http_body::Body<Data = bytes::Bytes> + Unpin + Send + 'static,
    B::Error: std::fmt::Display,
{
    type Response = Response<Placed<B>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Placed<B>>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Each request waits for the service below in its own future, try by try.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let (inner, health) = (self.inner.clone(), self.health.clone());
        Box::pin(async move { health.send(inner, req).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// A server that answers every request with `status` (or never, with `None`), counting them.
    #[derive(Clone)]
    struct Fake {
        status: Option<u16>,
        calls: Arc<AtomicU32>,
    }

    impl Service<Request<Body>> for Fake {
        type Response = Response<http_body_util::Full<bytes::Bytes>>;
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<Body>) -> Self::Future {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let status = self.status;
            Box::pin(async move {
                let Some(code) = status else {
                    std::future::pending::<()>().await;
                    unreachable!()
                };
                let body = serde_json::json!({"kind": "Status", "message": format!("fake {code}")});
                Ok(Response::builder()
                    .status(code)
                    .body(http_body_util::Full::new(body.to_string().into()))
                    .unwrap())
            })
        }
    }

    fn fast(cancel: CancellationToken) -> Arc<Health> {
        let backoff = Backoff {
            first: Duration::from_millis(2),
            max: Duration::from_millis(4),
            attempts: 4,
        };
        Arc::new(Health::with(
            "main",
            "https://10.0.0.1:6443",
            cancel,
            backoff,
            Duration::from_millis(50),
        ))
    }

    fn get() -> Request<Body> {
        Request::get("/api/v1/namespaces/a/configmaps/b")
            .body(Body::empty())
            .unwrap()
    }

    async fn send(h: &Arc<Health>, f: &Fake) -> Result<u16, BoxError> {
        h.send(f.clone(), get()).await.map(|r| r.status().as_u16())
    }

    fn fake(status: Option<u16>) -> Fake {
        Fake {
            status,
            calls: Arc::new(AtomicU32::new(0)),
        }
    }

    #[tokio::test]
    async fn a_cluster_answering_503_is_down_after_one_requests_tries_and_gets_nothing_more() {
        let h = fast(CancellationToken::new());
        let f = fake(Some(503));
        let err = send(&h, &f).await.unwrap_err();
        assert_eq!(
            f.calls.load(Ordering::Relaxed),
            4,
            "the tries of one request"
        );
        let text = err.to_string();
        assert!(
            text.contains("cluster \"main\" at https://10.0.0.1:6443"),
            "{text}"
        );
        assert!(text.contains("fake 503"), "the last cause: {text}");
        assert!(matches!(
            h.down(),
            Some(Halted::Unreachable { failures: 4, .. })
        ));
        for _ in 0..10 {
            let again = send(&h, &f).await.unwrap_err();
            assert!(halted(&*again).is_some(), "{again}");
        }
        assert_eq!(f.calls.load(Ordering::Relaxed), 4, "nothing more is sent");
        h.reset();
        send(&h, &fake(Some(200))).await.unwrap();
        assert!(h.down().is_none(), "a new run tries again");
    }

    #[tokio::test]
    async fn answers_in_between_keep_the_cluster_up_and_a_4xx_is_an_answer() {
        let h = fast(CancellationToken::new());
        let (bad, ok, refused) = (fake(Some(500)), fake(Some(200)), fake(Some(404)));
        // One failing object among answering ones: the request fails, the cluster stays up.
        let b = h.clone();
        let failing = tokio::spawn({
            let bad = bad.clone();
            async move { b.send(bad, get()).await.map(|_| ()) }
        });
        while bad.calls.load(Ordering::Relaxed) < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(send(&h, &refused).await.unwrap(), 404, "not retried");
        assert_eq!(refused.calls.load(Ordering::Relaxed), 1);
        assert_eq!(send(&h, &ok).await.unwrap(), 200);
        let err = failing.await.unwrap().unwrap_err();
        assert!(
            matches!(halted(&*err), Some(Halted::Failed { tries: 4, .. })),
            "{err}"
        );
        assert!(h.down().is_none(), "the cluster answered meanwhile");
    }

    #[tokio::test]
    async fn a_hung_request_is_not_tried_again_and_marks_the_cluster_down() {
        let h = fast(CancellationToken::new());
        let hung = fake(None);
        let err = send(&h, &hung).await.unwrap_err();
        assert_eq!(hung.calls.load(Ordering::Relaxed), 1);
        assert!(err.to_string().contains("no answer within"), "{err}");
        assert!(h.down().is_some());
    }

    #[tokio::test]
    async fn requests_queued_for_a_place_send_nothing_once_the_cluster_is_given_up() {
        // Every place taken by a request the server never answers, and as many again queued
        // behind them: once the hung ones are given up, the queued ones are refused without
        // reaching the server (before, each sent a try and hung for its own timeout).
        let h = fast(CancellationToken::new());
        let hung = fake(None);
        let n = 2 * crate::kube::inflight::MAX_REQUESTS_IN_FLIGHT;
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (h, hung) = (h.clone(), hung.clone());
                tokio::spawn(async move { h.send(hung, get()).await.map(|_| ()) })
            })
            .collect();
        for t in tasks {
            let err = t.await.unwrap().unwrap_err();
            assert!(halted(&*err).is_some(), "{err}");
        }
        assert_eq!(
            hung.calls.load(Ordering::Relaxed) as usize,
            crate::kube::inflight::MAX_REQUESTS_IN_FLIGHT,
            "only the requests holding a place reached the server"
        );
        assert!(h.down().is_some());
    }

    #[tokio::test]
    async fn cancelling_ends_a_hung_request_and_a_wait_between_tries_at_once() {
        let slow = Backoff {
            first: Duration::from_secs(3600),
            max: Duration::from_secs(3600),
            attempts: 3,
        };
        for status in [None, Some(503)] {
            let cancel = CancellationToken::new();
            let h = Arc::new(Health::with(
                "main",
                "https://x",
                cancel.clone(),
                slow,
                Duration::from_secs(3600),
            ));
            let f = fake(status);
            let pending = tokio::spawn({
                let (h, f) = (h.clone(), f.clone());
                async move { h.send(f, get()).await.map(|_| ()) }
            });
            while f.calls.load(Ordering::Relaxed) < 1 {
                tokio::task::yield_now().await;
            }
            cancel.cancel();
            // An hour-long wait or answer: only cancellation ends this within the guard.
            let err = tokio::time::timeout(Duration::from_secs(60), pending)
                .await
                .expect("cancellation ends the request")
                .unwrap()
                .unwrap_err();
            assert!(
                matches!(halted(&*err), Some(Halted::Cancelled { .. })),
                "{err}"
            );
            assert!(send(&h, &fake(Some(200))).await.is_err(), "nothing after");
        }
    }
}
