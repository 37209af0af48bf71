//! The bound on one cluster's requests in flight. Every layer of a run (and the agent, across its
//! loops) sends through the cluster's one client; with 16 Kubernetes layers at once, each with
//! its own writes in flight, nothing else would stop strata from sending hundreds of requests at
//! once. An API server sheds load past its own limit (kube-apiserver's `--max-requests-inflight`
//! is 400 by default, shared with every other client, under priority and fairness), and an
//! answer it sheds (429) costs a retry; strata keeps its share small instead.
//!
//! A request holds a place from the moment it is sent until its answer is read to the end (or
//! dropped): the server is still busy with a request while it writes a long LIST page. Waits
//! between tries hold no place. Watches are long-lived by design and hold none.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http_body::{Body, Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Requests one cluster's client has in flight at most: enough for 16 layers to keep the
/// connection pool busy, a small share of an API server's default 400.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 32;

/// The places of one cluster's requests in flight.
#[derive(Debug, Clone)]
pub struct Places(Arc<Semaphore>);

impl Default for Places {
    fn default() -> Places {
        Places(Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT)))
    }
}

impl Places {
    /// Waits for a free place; the caller races it with its run's cancellation.
    pub async fn take(&self) -> Place {
        let permit = self
            .0
            .clone()
            .acquire_owned()
            .await
            .expect("the places of a cluster are never closed");
        Place { _permit: permit }
    }

    /// Places free now (for tests).
    pub fn free(&self) -> usize {
        self.0.available_permits()
    }
}

/// One request's place among its cluster's requests in flight; freed when dropped.
#[derive(Debug)]
pub struct Place {
    _permit: OwnedSemaphorePermit,
}

/// An answer's body that holds its request's place until it is read to the end, fails, or is
/// dropped.
#[derive(Debug)]
pub struct Placed<B> {
    body: B,
    place: Option<Place>,
}

impl<B> Placed<B> {
    pub fn new(body: B, place: Option<Place>) -> Placed<B> {
        Placed { body, place }
    }
}

impl<B: Body + Unpin> Body for Placed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None | Some(Err(_)))) {
            this.place = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use http::{Request, Response};
    use http_body_util::{BodyExt, Full};
    use kube::client::Body as KubeBody;
    use tokio_util::sync::CancellationToken;
    use tower::{BoxError, Service};

    use crate::kube::breaker::{Health, REQUEST_TIMEOUT};
    use crate::util::retry::Backoff;

    /// An API server that counts the requests it is busy with: from the moment one arrives
    /// until it has written its answer (the test says when with `done`).
    #[derive(Clone, Default)]
    struct Server {
        now: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
    }

    impl Server {
        fn done(&self) {
            self.now.fetch_sub(1, Ordering::SeqCst);
        }

        fn peak(&self) -> usize {
            self.peak.load(Ordering::SeqCst)
        }
    }

    impl Service<Request<KubeBody>> for Server {
        type Response = Response<Full<bytes::Bytes>>;
        type Error = BoxError;
        type Future =
            Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send + 'static>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<KubeBody>) -> Self::Future {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(n, Ordering::SeqCst);
            Box::pin(async {
                Ok(Response::new(Full::new(bytes::Bytes::from_static(
                    b"{\"kind\":\"ConfigMap\"}",
                ))))
            })
        }
    }

    fn get(uri: &str) -> Request<KubeBody> {
        Request::get(uri).body(KubeBody::empty()).unwrap()
    }

    fn health() -> Arc<Health> {
        Arc::new(Health::with(
            "main",
            "https://10.0.0.1:6443",
            CancellationToken::new(),
            Backoff::default(),
            REQUEST_TIMEOUT,
        ))
    }

    #[tokio::test]
    async fn a_cluster_never_has_more_requests_in_flight_than_its_bound() {
        // 16 layers × 16 writes: ten times the bound, all sent at once. Each answer is held
        // unread until the server was seen at the bound (bounded polling, no timing assumed),
        // so a place freed before the answer is read would let the server see more.
        let (h, server) = (health(), Server::default());
        let tasks: Vec<_> = (0..16 * 16)
            .map(|i| {
                let (h, server) = (h.clone(), server.clone());
                tokio::spawn(async move {
                    let uri = format!("/api/v1/namespaces/a/configmaps/c{i}");
                    let resp = h.send(server.clone(), get(&uri)).await.expect("answer");
                    for _ in 0..2000 {
                        if server.peak() >= MAX_REQUESTS_IN_FLIGHT {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    // Other requests get their turn to (wrongly) reach the server now.
                    for _ in 0..16 {
                        tokio::task::yield_now().await;
                    }
                    // The server counts itself done first, as a real one has written the
                    // whole answer before the client reads its end.
                    server.done();
                    let body = resp.into_body().collect().await.expect("body").to_bytes();
                    body.len()
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.expect("task") > 0);
        }
        assert_eq!(server.peak(), MAX_REQUESTS_IN_FLIGHT);
        assert_eq!(
            h.places().free(),
            MAX_REQUESTS_IN_FLIGHT,
            "every place freed"
        );
    }

    #[tokio::test]
    async fn an_unread_answer_holds_its_place_and_a_watch_takes_none() {
        let (h, server) = (health(), Server::default());
        let mut held = Vec::new();
        for i in 0..MAX_REQUESTS_IN_FLIGHT {
            let uri = format!("/api/v1/namespaces/a/configmaps/c{i}");
            held.push(h.send(server.clone(), get(&uri)).await.expect("answer"));
        }
        assert_eq!(h.places().free(), 0);
        // Every place taken: a watch still goes through.
        let watch = "/api/v1/namespaces/a/configmaps?watch=true&resourceVersion=1";
        h.send(server.clone(), get(watch)).await.expect("watch");
        // A request waits for a place, and gets one once an answer is read.
        let waiting = tokio::spawn({
            let (h, server) = (h.clone(), server.clone());
            async move {
                h.send(server, get("/api/v1/namespaces/a/configmaps/last"))
                    .await
                    .map(|_| ())
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "no place is free");
        let first = held.remove(0);
        first.into_body().collect().await.expect("body");
        tokio::time::timeout(Duration::from_secs(60), waiting)
            .await
            .expect("a place was freed")
            .expect("task")
            .expect("answer");
        drop(held);
        assert_eq!(h.places().free(), MAX_REQUESTS_IN_FLIGHT);
    }
}
