//! Serving the agent's HTTP side with limits a plain `axum::serve` lacks: a client must send its
//! request headers within a deadline, a connection lives at most so long, and only so many are
//! open at once. Without them, a few thousand connections that send a byte a minute hold a
//! descriptor and a buffer each for as long as they like (slowloris).

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Limits on the agent's HTTP connections.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A client that has not sent its request headers by then is disconnected. Default 5 s.
    pub header_read_timeout: Duration,
    /// A connection is closed (gracefully, after the request in flight) once it is this old.
    /// Default 60 s.
    pub max_connection_age: Duration,
    /// Connections open at once; further clients wait in the kernel's accept queue until one
    /// closes. Default 2,048.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(5),
            max_connection_age: Duration::from_secs(60),
            max_connections: 2048,
        }
    }
}

/// Serves `router` on `listener` until `shutdown`.
///
/// # Guarantees
/// - No connection outlives `limits.header_read_timeout` without sending complete request headers,
///   nor `limits.max_connection_age` in total; at most `limits.max_connections` are open.
/// - On shutdown no new connection is accepted; open ones finish their request in flight.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or similar: wait a little instead of spinning.
                    tracing::warn!("failed to accept an HTTP connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let (age, stop) = (limits.max_connection_age, shutdown.clone());
        tokio::spawn(async move {
            let _permit = permit;
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = tokio::time::sleep(age) => {}
                _ = stop.cancelled() => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        });
    }
}
