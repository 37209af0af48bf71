//! Documents and logs in the state database: what [`crate::state`]'s file primitives do on disk,
//! one statement (or one transaction) each.

use sqlx::Row;

use super::{Store, StoreError};

/// `LIKE` pattern matching every key under `dir/`.
fn under(dir: &str) -> String {
    let escaped = dir
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    if escaped.is_empty() {
        "%".into()
    } else {
        format!("{escaped}/%")
    }
}

impl Store {
    /// The document at `rel`, if any.
    ///
    /// # Errors
    /// [`StoreError::Query`] naming the key.
    pub fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (pool, ns, key) = (
            self.inner.pool.clone(),
            self.namespace.clone(),
            rel.to_string(),
        );
        self.run(async move {
            sqlx::query_scalar::<_, Vec<u8>>(
                "SELECT body FROM strata.documents WHERE namespace = $1 AND path = $2",
            )
            .bind(ns)
            .bind(key)
            .fetch_optional(&pool)
            .await
        })?
        .map_err(self.query_error("read", rel))
    }

    /// Replaces the document at `rel`.
    ///
    /// # Guarantees
    /// One statement: a reader sees the old body or the new one.
    ///
    /// # Errors
    /// [`StoreError::Query`] naming the key; the old document is then untouched.
    pub fn put(&self, rel: &str, body: &[u8]) -> Result<(), StoreError> {
        let (pool, ns, key, body) = (
            self.inner.pool.clone(),
            self.namespace.clone(),
            rel.to_string(),
            body.to_vec(),
        );
        self.run(async move {
            sqlx::query(
                "INSERT INTO strata.documents (namespace, path, body) VALUES ($1, $2, $3) \
                 ON CONFLICT (namespace, path) DO UPDATE SET body = EXCLUDED.body, updated_at = now()",
            )
            .bind(ns)
            .bind(key)
            .bind(body)
            .execute(&pool)
            .await
        })?
        .map(drop)
        .map_err(self.query_error("write", rel))
    }

    /// Removes the document at `rel`; whether there was one.
    ///
    /// # Errors
    /// [`StoreError::Query`] naming the key.
    pub fn delete(&self, rel: &str) -> Result<bool, StoreError> {
        let (pool, ns, key) = (
            self.inner.pool.clone(),
            self.namespace.clone(),
            rel.to_string(),
        );
        self.run(async move {
            sqlx::query("DELETE FROM strata.documents WHERE namespace = $1 AND path = $2")
                .bind(ns)
                .bind(key)
                .execute(&pool)
                .await
        })?
        .map(|r| r.rows_affected() > 0)
        .map_err(self.query_error("remove", rel))
    }

    /// The names of the documents directly in `dir` (not in dirs below it), sorted.
    ///
    /// # Errors
    /// [`StoreError::Query`] naming the dir.
    pub fn list(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let (pool, ns, pattern) = (self.inner.pool.clone(), self.namespace.clone(), under(dir));
        let keys = self
            .run(async move {
                sqlx::query_scalar::<_, String>(
                    "SELECT path FROM strata.documents WHERE namespace = $1 AND path LIKE $2 \
                     ORDER BY path",
                )
                .bind(ns)
                .bind(pattern)
                .fetch_all(&pool)
                .await
            })?
            .map_err(self.query_error("list", dir))?;
        let skip = if dir.is_empty() { 0 } else { dir.len() + 1 };
        Ok(keys
            .into_iter()
            .map(|k| k[skip..].to_string())
            .filter(|name| !name.contains('/'))
            .collect())
    }

    /// The names of the dirs directly in `dir` that hold a document or a log (at any depth),
    /// sorted: what listing `dir` on disk gives, read from the database rather than from this
    /// machine's cache dir.
    ///
    /// # Errors
    /// [`StoreError::Query`] naming the namespace.
    pub fn subdirs(&self, dir: &str) -> Result<Vec<String>, StoreError> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut names: Vec<String> = self
            .dirs()?
            .iter()
            .filter_map(|d| d.strip_prefix(&prefix))
            .filter_map(|rest| rest.split('/').next())
            .filter(|name| !name.is_empty())
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Every dir that holds a document or a log of this namespace.
    pub(super) fn dirs(&self) -> Result<Vec<String>, StoreError> {
        let (pool, ns) = (self.inner.pool.clone(), self.namespace.clone());
        let keys = self
            .run(async move {
                sqlx::query_scalar::<_, String>(
                    "SELECT path FROM strata.documents WHERE namespace = $1 \
                     UNION SELECT DISTINCT path FROM strata.log_lines WHERE namespace = $1",
                )
                .bind(ns)
                .fetch_all(&pool)
                .await
            })?
            .map_err(self.query_error("list", ""))?;
        let mut dirs: Vec<String> = keys
            .iter()
            .filter_map(|k| k.rsplit_once('/').map(|(d, _)| d.to_string()))
            .collect();
        dirs.sort();
        dirs.dedup();
        Ok(dirs)
    }

    /// Appends `line` to the log at `rel`, then drops its oldest lines when it holds more than
    /// `max_bytes`, keeping the newest that fit in half of it (always the one just appended).
    ///
    /// # Guarantees
    /// One transaction under the log's advisory lock: the record and the trimming land together
    /// or not at all, and concurrent appends are ordered.
    ///
    /// # Errors
    /// [`StoreError::Query`] naming the log; nothing was appended.
    pub fn append(&self, rel: &str, line: &str, max_bytes: u64) -> Result<(), StoreError> {
        let (pool, ns, key, line) = (
            self.inner.pool.clone(),
            self.namespace.clone(),
            rel.to_string(),
            line.to_string(),
        );
        let lock = self.advisory_key(rel);
        let cap = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        self.run(async move {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO strata.log_lines (namespace, path, line) VALUES ($1, $2, $3)")
                .bind(&ns)
                .bind(&key)
                .bind(&line)
                .execute(&mut *tx)
                .await?;
            let total: i64 = sqlx::query(
                "SELECT COALESCE(SUM(octet_length(line) + 1), 0)::bigint AS total \
                 FROM strata.log_lines WHERE namespace = $1 AND path = $2",
            )
            .bind(&ns)
            .bind(&key)
            .fetch_one(&mut *tx)
            .await?
            .get("total");
            if total > cap {
                let trimmed = sqlx::query(
                    "DELETE FROM strata.log_lines WHERE namespace = $1 AND path = $2 AND seq IN ( \
                       SELECT seq FROM ( \
                         SELECT seq, SUM(octet_length(line) + 1) OVER (ORDER BY seq DESC) AS newer, \
                                ROW_NUMBER() OVER (ORDER BY seq DESC) AS n \
                         FROM strata.log_lines WHERE namespace = $1 AND path = $2) t \
                       WHERE newer > $3 AND n > 1)",
                )
                .bind(&ns)
                .bind(&key)
                .bind(cap / 2)
                .execute(&mut *tx)
                .await?;
                tracing::info!(
                    "compacted the log {ns}/{key}: dropped its oldest {} records",
                    trimmed.rows_affected()
                );
            }
            tx.commit().await
        })?
        .map_err(self.query_error("append to", rel))
    }

    /// The lines of the log at `rel`, oldest first; `[]` when it has none.
    ///
    /// # Errors
    /// [`StoreError::Query`] naming the log.
    pub fn lines(&self, rel: &str) -> Result<Vec<String>, StoreError> {
        let (pool, ns, key) = (
            self.inner.pool.clone(),
            self.namespace.clone(),
            rel.to_string(),
        );
        self.run(async move {
            sqlx::query_scalar::<_, String>(
                "SELECT line FROM strata.log_lines WHERE namespace = $1 AND path = $2 ORDER BY seq",
            )
            .bind(ns)
            .bind(key)
            .fetch_all(&pool)
            .await
        })?
        .map_err(self.query_error("read", rel))
    }
}
