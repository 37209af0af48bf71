//! State off the machine: with `--state postgres://…`, every document the state dir would hold
//! (status, history, run records, agent status, pin, approvals, reports, alerts, outputs cache)
//! lives in PostgreSQL instead, and the stack lock is a PostgreSQL advisory lock.
//!
//! Callers do not change: [`crate::state`] keeps its path-based API, and a local working dir is
//! *mounted* on a [`Store`] ([`mount`]); each state primitive asks [`route`] whether its path lies
//! under a mounted dir, and if so reads or writes the row keyed by (namespace, path relative to
//! that dir). Caches (mirrors, revisions, the plugin cache, Terraform's data dirs) stay on disk in
//! the working dir: they are rebuilt from Git and the registry when lost.
//!
//! ```text
//! strata.migrations   version, applied_at             applied at start, in one transaction
//! strata.documents    namespace, path, body           status.json, pin, approvals/…, reports/…
//! strata.log_lines    namespace, path, seq, line      history.jsonl, alerts.jsonl (retention in SQL)
//! ```

pub mod bind;
mod bridge;
mod documents;
mod locks;
mod migrate;
mod terraform_sequence;
mod url;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

pub use bridge::BridgeGone;
pub use locks::{DocLock, StackLock};
pub use url::StateUrl;

/// The namespace the command line's state lives in; an agent converging several stacks gives
/// each its own with [`Store::with_namespace`].
pub const DEFAULT_NAMESPACE: &str = "default";

/// How long a read, write or append waits for a free connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections for reads, writes and appends: each holds one for a statement or a transaction
/// and waits for nothing else meanwhile, so they always come back.
const MAX_CONNECTIONS: u32 = 8;
/// Connections holding the advisory lock of a read-modify-write in progress. A pool of their own:
/// holders need a data connection to read and write, and lock holders filling the one pool would
/// leave each waiting for a connection only another could give back.
const MAX_LOCK_CONNECTIONS: u32 = 16;
/// How long a read-modify-write waits for a lock connection: behind every other one in progress.
const LOCK_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);

/// The state database could not be reached, migrated, read or written. Messages carry the
/// driver's text with the URL and its password masked, never the driver's error itself: it may
/// quote the connection string.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the state location {url} is not a postgres:// URL; give --state postgres://USER@HOST:PORT/DB (the password in PGPASSWORD or ~/.pgpass)")]
    NotPostgres { url: StateUrl },
    #[error("failed to connect to the state database {url}: {reason}; check that the server runs and the URL, user and password are right")]
    Connect { url: StateUrl, reason: String },
    #[error("failed to migrate the state database {url}: {reason}; nothing was changed, run strata again once the database accepts writes")]
    Migrate { url: StateUrl, reason: String },
    #[error("the state database {url} holds schema version {found}, newer than this strata knows ({known}); upgrade strata")]
    TooNew {
        url: StateUrl,
        found: i32,
        known: i32,
    },
    #[error("failed to {action} {key} in the state database {url}: {reason}")]
    Query {
        action: &'static str,
        key: String,
        url: StateUrl,
        reason: String,
    },
    #[error("the state database {url}: {source}")]
    Bridge {
        url: StateUrl,
        #[source]
        source: BridgeGone,
    },
    #[error("failed to start the state store's thread: {0}")]
    Start(#[source] std::io::Error),
}

struct Inner {
    url: StateUrl,
    options: PgConnectOptions,
    /// Reads, writes and appends.
    pool: PgPool,
    /// Connections holding a document's advisory lock ([`DocLock`]).
    locks: PgPool,
    bridge: bridge::Bridge,
}

/// A connection pool to the state database, and the namespace its documents are kept in.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    namespace: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({} {})", self.inner.url, self.namespace)
    }
}

impl Store {
    /// Connects to the state database and brings its schema up to date.
    ///
    /// # Guarantees
    /// Migrations run in one transaction under an advisory lock: several processes starting at
    /// once apply each exactly once, and a crash leaves the schema as it was.
    ///
    /// # Errors
    /// [`StoreError::NotPostgres`], [`StoreError::Connect`] (server down, bad credentials),
    /// [`StoreError::Migrate`] or [`StoreError::TooNew`]; each names the URL, password masked.
    pub fn open(url: &StateUrl) -> Result<Store, StoreError> {
        if !url.is_postgres() {
            return Err(StoreError::NotPostgres { url: url.clone() });
        }
        let connect = |e: sqlx::Error| StoreError::Connect {
            url: url.clone(),
            reason: url.scrub(&e.to_string()),
        };
        let options: PgConnectOptions = url.expose().parse().map_err(connect)?;
        let bridge = bridge::Bridge::start().map_err(StoreError::Start)?;
        let opts = options.clone();
        let (pool, locks) = bridge
            .run(async move {
                let locks = PgPoolOptions::new()
                    .max_connections(MAX_LOCK_CONNECTIONS)
                    .acquire_timeout(LOCK_ACQUIRE_TIMEOUT)
                    .connect_lazy_with(opts.clone());
                PgPoolOptions::new()
                    .max_connections(MAX_CONNECTIONS)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_with(opts)
                    .await
                    .map(|pool| (pool, locks))
            })
            .map_err(|source| StoreError::Bridge {
                url: url.clone(),
                source,
            })?
            .map_err(connect)?;
        let store = Store {
            inner: Arc::new(Inner {
                url: url.clone(),
                options,
                pool,
                locks,
                bridge,
            }),
            namespace: DEFAULT_NAMESPACE.into(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The same database, documents kept under `namespace` (one per stack of an agent).
    pub fn with_namespace(&self, namespace: &str) -> Store {
        Store {
            inner: self.inner.clone(),
            namespace: namespace.to_string(),
        }
    }

    pub fn url(&self) -> &StateUrl {
        &self.inner.url
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// How a document is named in messages: the database, password masked, and its key.
    pub fn describe(&self, rel: &str) -> PathBuf {
        PathBuf::from(format!("{} {}/{rel}", self.inner.url, self.namespace))
    }

    fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + Send + 'static,
    {
        self.inner
            .bridge
            .run(work)
            .map_err(|source| StoreError::Bridge {
                url: self.inner.url.clone(),
                source,
            })
    }

    fn query_error(
        &self,
        action: &'static str,
        rel: &str,
    ) -> impl FnOnce(sqlx::Error) -> StoreError {
        let (url, key) = (self.inner.url.clone(), format!("{}/{rel}", self.namespace));
        move |e| StoreError::Query {
            action,
            key,
            reason: url.scrub(&e.to_string()),
            url,
        }
    }
}

/// Local dirs whose state documents live in a [`Store`], longest first.
static MOUNTS: RwLock<Vec<(PathBuf, Store)>> = RwLock::new(Vec::new());

/// From now on, state documents under `local_dir` are read and written in `store`.
///
/// # Guarantees
/// Dirs that hold documents in the store are created under `local_dir` (0700), so code that
/// lists a state dir's environments finds them on a machine that never ran the stack.
///
/// # Errors
/// [`StoreError::Query`] when the store cannot be listed; [`StoreError::Start`] when a dir
/// cannot be created.
pub fn mount(local_dir: &Path, store: Store) -> Result<(), StoreError> {
    for dir in store.dirs()? {
        crate::util::fs::create_private_dir_all(&local_dir.join(dir)).map_err(StoreError::Start)?;
    }
    let mut mounts = MOUNTS.write().unwrap_or_else(|p| p.into_inner());
    mounts.retain(|(d, _)| d != local_dir);
    mounts.push((local_dir.to_path_buf(), store));
    mounts.sort_by_key(|(d, _)| std::cmp::Reverse(d.as_os_str().len()));
    Ok(())
}

/// The store `path` lives in, and its key there, if it lies under a mounted dir.
pub fn route(path: &Path) -> Option<(Store, String)> {
    let mounts = MOUNTS.read().unwrap_or_else(|p| p.into_inner());
    mounts.iter().find_map(|(dir, store)| {
        let rel = path.strip_prefix(dir).ok()?;
        let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
        Some((store.clone(), parts?.join("/")))
    })
}
