//! Several agent replicas sharing the stacks of one configuration, through Kubernetes Leases
//! (`--coordination kubernetes`): one `coordination.k8s.io/v1` Lease per stack (`strata-NAME`),
//! held by the replica that converges it, and one per replica (`strata-replica-ID`) that says it
//! is alive. A replica converges only the stacks whose Lease it holds.
//!
//! - `lease.rs`: the Lease objects — names, what is read from one, how one is written.
//! - `coordinator.rs`: the loop — heartbeat, renew, acquire up to a fair share, release the
//!   excess, give every Lease back at shutdown.
//!
//! Every write is an update with the resourceVersion last read (or a create): of two replicas
//! racing for one Lease, the API server takes one write and answers the other 409. A Lease is
//! taken over only after the replica saw it unchanged for its whole duration on its own clock,
//! so clocks that disagree between machines do not shorten a Lease.

mod coordinator;
mod lease;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use coordinator::{Coordinator, StackTask};
pub use lease::{replica_lease_name, stack_lease_name};

/// How the replicas coordinate.
#[derive(Debug, Clone)]
pub struct CoordinationOptions {
    /// The namespace the Leases live in.
    pub namespace: String,
    /// The kubeconfig of the Leases' cluster; `None`: `KUBECONFIG`, else the in-cluster
    /// service account.
    pub kubeconfig: Option<PathBuf>,
    /// This replica's holder identity.
    pub replica_id: String,
    /// How long a Lease lasts without renewal; it is renewed every third of it.
    pub lease_duration: Duration,
}

impl CoordinationOptions {
    /// The default replica id: the host name and the process id, unique among live replicas.
    pub fn default_replica_id() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "strata".into());
        format!("{host}-{}", std::process::id())
    }

    /// How often Leases are renewed and the others' looked at.
    pub fn renew_every(&self) -> Duration {
        self.lease_duration / 3
    }
}

/// Why coordination could not start or went wrong.
#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    #[error("failed to read the coordination kubeconfig {path}: {source}; pass a readable file with --coordination-kubeconfig")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no cluster to hold the Leases in: {0}; pass --coordination-kubeconfig, set KUBECONFIG, or run the agent in a pod")]
    NoCluster(String),
    #[error("failed to create the Kubernetes client for the Leases: {0}")]
    Client(#[source] kube::Error),
    #[error("the Leases in namespace {namespace} cannot be {verb}: {source}; create the namespace if it does not exist, and give the agent get, list, create, update and delete on coordination.k8s.io leases there (`strata install --export` grants them)")]
    Api {
        namespace: String,
        verb: &'static str,
        #[source]
        source: kube::Error,
    },
}

/// The client of the Leases' cluster: `--coordination-kubeconfig`, else `KUBECONFIG`, else the
/// in-cluster service account.
///
/// # Errors
/// The kubeconfig cannot be read, or there is none and the agent does not run in a pod.
pub async fn client(opts: &CoordinationOptions) -> Result<kube::Client, CoordinationError> {
    let config = match &opts.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|source| {
                CoordinationError::Kubeconfig {
                    path: path.clone(),
                    source,
                }
            })?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|source| CoordinationError::Kubeconfig {
                    path: path.clone(),
                    source,
                })?
        }
        None => match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            Some(_) => kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| CoordinationError::NoCluster(e.to_string()))?,
            None => kube::Config::incluster()
                .map_err(|e| CoordinationError::NoCluster(e.to_string()))?,
        },
    };
    // A Lease call that waits or retries past a renewal is worth less than the next renewal:
    // no built-in retries, and every call bounded.
    let mut config = config;
    config.default_retry = false;
    let bound = opts.renew_every().max(Duration::from_secs(1));
    config.connect_timeout = Some(bound);
    config.read_timeout = Some(bound);
    config.write_timeout = Some(bound);
    kube::Client::try_from(config).map_err(CoordinationError::Client)
}

/// Whether a stack's Lease is still held long enough to start an apply: the agent enters it
/// before every sync and drift check, and holds what [`Fence::enter`] returns while the work
/// runs. A Lease last renewed when `until` was set lapses then; no new work starts in its last
/// `margin`, so a replica that stopped renewing (cut off from the API server) stops starting
/// applies before another replica may take the stack. A closed fence (the Lease is being given
/// back, or was lost) lets nothing new start, and says when the work in progress is done.
#[derive(Debug, Clone)]
pub struct Fence {
    state: Arc<Mutex<FenceState>>,
    margin: Duration,
}

#[derive(Debug)]
struct FenceState {
    /// When the Lease lapses unless renewed.
    until: Instant,
    closed: bool,
    /// Syncs and drift checks running now.
    busy: usize,
}

/// Work entered through a [`Fence`]; leaving it (dropping this) ends it.
#[derive(Debug)]
pub struct Entered(Fence);

impl Drop for Entered {
    fn drop(&mut self) {
        self.0.state.lock().expect("fence").busy -= 1;
    }
}

impl Fence {
    /// A fence that lets work start until `margin` before `until`.
    pub fn new(until: Instant, margin: Duration) -> Fence {
        Fence {
            state: Arc::new(Mutex::new(FenceState {
                until,
                closed: false,
                busy: 0,
            })),
            margin,
        }
    }

    fn open(&self, s: &FenceState) -> bool {
        !s.closed && s.until.saturating_duration_since(Instant::now()) > self.margin
    }

    /// Whether new work may start now.
    pub fn may_start(&self) -> bool {
        self.open(&self.state.lock().expect("fence"))
    }

    /// Starts a piece of work, if it may start now; it runs until the result is dropped.
    pub fn enter(&self) -> Option<Entered> {
        let mut s = self.state.lock().expect("fence");
        if !self.open(&s) {
            return None;
        }
        s.busy += 1;
        Some(Entered(self.clone()))
    }

    /// Whether no work entered is running. Once closed, a fence that is idle stays idle.
    pub fn idle(&self) -> bool {
        self.state.lock().expect("fence").busy == 0
    }

    /// Stops `stop` when the Lease lapses unrenewed, whatever the coordination loop is doing:
    /// a renewal stuck on an API server that does not answer must not keep the stack's work
    /// going past the Lease. Ends once `stop` is cancelled.
    pub(crate) fn watch(&self, stop: tokio_util::sync::CancellationToken) {
        let fence = self.clone();
        tokio::spawn(async move {
            loop {
                let until = fence.state.lock().expect("fence").until;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(until.into()) => {}
                }
                if fence.state.lock().expect("fence").until <= Instant::now() {
                    tracing::error!("a stack's Lease lapsed unrenewed: stopping its work");
                    stop.cancel();
                    return;
                }
            }
        });
    }

    /// The Lease was renewed: it lasts until `until`.
    pub(crate) fn extend(&self, until: Instant) {
        self.state.lock().expect("fence").until = until;
    }

    /// The Lease is lost or being given back: nothing new starts.
    pub(crate) fn close(&self) {
        self.state.lock().expect("fence").closed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_closes_before_the_lease_lapses() {
        let f = Fence::new(
            Instant::now() + Duration::from_secs(10),
            Duration::from_secs(5),
        );
        assert!(f.may_start());
        f.extend(Instant::now() + Duration::from_secs(4));
        assert!(!f.may_start(), "within the margin, nothing new starts");
        assert!(f.enter().is_none());
        f.extend(Instant::now() + Duration::from_secs(60));
        assert!(f.may_start());
        let work = f.enter().expect("open");
        assert!(!f.idle());
        f.close();
        assert!(!f.may_start());
        assert!(f.enter().is_none(), "closed: nothing new enters");
        assert!(!f.idle(), "the work entered before goes on");
        drop(work);
        assert!(f.idle());
    }
}
