//! Advisory locks: PostgreSQL's counterpart of the kernel locks the state dir uses. A session
//! lock belongs to its connection, so, like `flock`, it is released when the holder closes it,
//! and when the holder dies (even by SIGKILL: the server sees the socket close). No lock is ever
//! stale, none needs taking over.

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, Postgres};

use super::{Store, StoreError};

/// Held while a document is read, modified and written back (what `FileLock` is on disk).
pub struct DocLock {
    conn: Option<PoolConnection<Postgres>>,
    key: i64,
    store: Store,
}

/// The stack lock: held by the one writer of a stack for its whole run, on a connection of its
/// own (outside the pool, so a long run never starves the short reads and writes).
pub struct StackLock {
    conn: Option<PgConnection>,
    store: Store,
}

impl std::fmt::Debug for StackLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StackLock({:?})", self.store)
    }
}

impl Store {
    /// The advisory lock id of the key `rel` in this namespace.
    pub(super) fn advisory_key(&self, rel: &str) -> i64 {
        use sha2::Digest;
        let digest = sha2::Sha256::new()
            .chain_update(b"strata\0")
            .chain_update(self.namespace.as_bytes())
            .chain_update(b"\0")
            .chain_update(rel.as_bytes())
            .finalize();
        i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
    }

    /// Waits for the lock of the document at `rel`; holders keep it only for a read and a write.
    ///
    /// # Errors
    /// [`StoreError::Query`] naming the key when no connection can be had or the lock taken.
    pub fn lock_doc(&self, rel: &str) -> Result<DocLock, StoreError> {
        let (pool, key) = (self.inner.locks.clone(), self.advisory_key(rel));
        let conn = self
            .run(async move {
                let mut conn = pool.acquire().await?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(key)
                    .execute(&mut *conn)
                    .await?;
                Ok::<_, sqlx::Error>(conn)
            })?
            .map_err(self.query_error("lock", rel))?;
        Ok(DocLock {
            conn: Some(conn),
            key,
            store: self.clone(),
        })
    }

    /// Takes the stack lock at `rel` if it is free.
    ///
    /// # Guarantees
    /// At most one [`StackLock`] per key exists at a time, across processes and machines.
    ///
    /// # Errors
    /// [`StoreError::Query`] when the server cannot be reached.
    pub fn try_lock_stack(&self, rel: &str) -> Result<Option<StackLock>, StoreError> {
        let (options, key) = (self.inner.options.clone(), self.advisory_key(rel));
        let conn = self
            .run(async move {
                let mut conn = PgConnection::connect_with(&options).await?;
                let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(key)
                    .fetch_one(&mut conn)
                    .await?;
                if got {
                    Ok(Some(conn))
                } else {
                    let _ = conn.close().await;
                    Ok::<_, sqlx::Error>(None)
                }
            })?
            .map_err(self.query_error("lock", rel))?;
        Ok(conn.map(|conn| StackLock {
            conn: Some(conn),
            store: self.clone(),
        }))
    }
}

impl Drop for DocLock {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let key = self.key;
        self.store.inner.bridge.spawn(async move {
            // A connection that could not unlock must not go back to the pool still holding it.
            let unlocked = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .fetch_one(&mut *conn)
                .await;
            if !matches!(unlocked, Ok(true)) {
                let _ = conn.close().await;
            }
        });
    }
}

impl Drop for StackLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Closing the session releases the lock; wait for it, so a run that ends and the
            // next one in this process never find their own stale lock.
            let _ = self.store.inner.bridge.run(async move {
                let _ = conn.close().await;
            });
        }
    }
}
