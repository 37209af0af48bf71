//! The handle: start a devcluster, hand out its kubeconfig, inject faults, stop it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::faults::{self, Fault};
use crate::{ids, kubeconfig, ready, server, store, tls};

/// How a devcluster runs.
#[derive(Debug, Clone)]
pub struct DevClusterOptions {
    /// Default `127.0.0.1:0` (an ephemeral port).
    pub listen: SocketAddr,
    /// Persist objects here across restarts; without it a restart is a lost cluster.
    pub data: Option<PathBuf>,
    /// After this delay workloads report ready (Jobs complete, claims bind); `None` = never.
    /// Default 1s.
    pub simulate_ready: Option<Duration>,
    /// The bearer token clients must send; random when unset.
    pub token: Option<String>,
}

impl Default for DevClusterOptions {
    fn default() -> Self {
        DevClusterOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data: None,
            simulate_ready: Some(Duration::from_secs(1)),
            token: None,
        }
    }
}

/// A running devcluster. Dropped = stopped.
pub struct DevCluster {
    url: String,
    token: String,
    ca_pem: String,
    shared: Arc<server::Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DevCluster {
    /// Starts serving: binds `opts.listen`, loads `opts.data` when it exists, makes a fresh CA and
    /// server certificate, and spawns the server and its background tick on the current Tokio
    /// runtime.
    ///
    /// # Guarantees
    /// Once this returns, the port accepts connections. Every 100 ms the simulated controllers
    /// run and changes are flushed to the data file; it is flushed once more on [`stop`].
    ///
    /// [`stop`]: DevCluster::stop
    ///
    /// # Errors
    /// When the address can't be bound, the data file can't be read, or the certificate can't be
    /// made.
    pub async fn start(opts: DevClusterOptions) -> std::io::Result<DevCluster> {
        let listener = tokio::net::TcpListener::bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        let mut store = store::Store::new(opts.data.clone());
        if let Some(path) = &opts.data {
            store.load(path).map_err(std::io::Error::other)?;
        }
        let token = opts.token.clone().unwrap_or_else(ids::random_token);
        let tls = tls::generate().map_err(std::io::Error::other)?;
        let shared = Arc::new(server::Shared {
            store: Mutex::new(store),
            token: token.clone(),
            faults: faults::Faults::default(),
            requests: Mutex::new(Default::default()),
        });
        let app = axum::Router::new()
            .fallback(server::handle)
            .with_state(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let tls_config = tls.config.clone();
        let background = shared.clone();
        let ready = opts.simulate_ready;
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            let ticker = async {
                loop {
                    every.tick().await;
                    let mut store = background.store.lock().expect("store");
                    if let Some(delay) = ready {
                        ready::tick(&mut store, delay);
                    }
                    if let Err(e) = store.flush() {
                        tracing::warn!("{e}");
                    }
                }
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
            let serve = async {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    let app = app.clone();
                    tokio::spawn(async move {
                        let Ok(stream) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let service = hyper_util::service::TowerToHyperService::new(app);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await;
                    });
                }
            };
            tokio::select! {
                _ = serve => {}
                _ = ticker => {}
                _ = rx => {}
            }
            let _ = background.store.lock().expect("store").flush();
        });
        Ok(DevCluster {
            url: format!("https://{addr}"),
            token,
            ca_pem: tls.ca_pem,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// A kubeconfig for this cluster (context `devcluster`).
    pub fn kubeconfig(&self) -> String {
        kubeconfig::render(&self.url, &self.ca_pem, &self.token)
    }

    /// The PEM of the certificate authority that signed the server's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes the kubeconfig with mode 0600.
    ///
    /// # Errors
    /// When the file can't be written.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        kubeconfig::write_private(path, self.kubeconfig().as_bytes())
    }

    /// Makes matching requests fail, hang or slow down.
    pub fn inject(&self, fault: Fault) {
        self.shared.faults.inject(fault);
    }

    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// The requests served so far, by method and path (`GET /apis`, `PATCH
    /// /api/v1/namespaces/default/configmaps/a`); also at `GET /_devcluster/requests`.
    pub fn requests(&self) -> std::collections::BTreeMap<String, u64> {
        self.shared.requests.lock().expect("requests").clone()
    }

    /// How many requests were served whose `METHOD path` satisfies `which`.
    pub fn count_requests(&self, which: impl Fn(&str) -> bool) -> u64 {
        let counts = self.shared.requests.lock().expect("requests");
        counts
            .iter()
            .filter(|(k, _)| which(k))
            .map(|(_, n)| n)
            .sum()
    }

    /// Forgets the requests counted so far.
    pub fn reset_requests(&self) {
        self.shared.requests.lock().expect("requests").clear();
    }

    /// The current global resourceVersion: unchanged across requests means nothing was written.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().expect("store").rv
    }

    pub fn object_count(&self) -> usize {
        self.shared.store.lock().expect("store").objects.len()
    }

    /// Stops serving and writes the data file.
    ///
    /// # Guarantees
    /// Waits up to 5 s for the server task to flush; a dropped handle stops without that wait.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}
