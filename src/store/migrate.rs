//! The state database's schema, brought up to date when strata starts: versioned SQL files applied
//! in order, each recorded in `strata.migrations`.

use sqlx::Executor;

use super::{Store, StoreError};

/// Every migration this strata knows, in order. Only strata's own schema: what Terraform's `pg`
/// backend shares across the database is created apart, best effort ([`Store::ensure_terraform_sequence`]),
/// so it never moves the schema version (an older strata keeps working on the database).
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../../migrations/0001_state.sql"))];

/// The advisory lock migrations hold, so processes starting together take turns.
const MIGRATION_LOCK: i64 = 0x5374_7261_7461_4d31; // "StrataM1"

enum Outcome {
    Done,
    TooNew(i32),
}

impl Store {
    pub(super) fn migrate(&self) -> Result<(), StoreError> {
        let pool = self.inner.pool.clone();
        let known = MIGRATIONS.last().map_or(0, |m| m.0);
        let outcome = self
            .run(async move {
                // Up to date (every start but the first after an upgrade): nothing to take or
                // create, so a user with only SELECT (a `strata status` reader) gets in too.
                let exists: bool =
                    sqlx::query_scalar("SELECT to_regclass('strata.migrations') IS NOT NULL")
                        .fetch_one(&pool)
                        .await?;
                let current: Option<i32> = if exists {
                    sqlx::query_scalar("SELECT max(version) FROM strata.migrations")
                        .fetch_one(&pool)
                        .await?
                } else {
                    None
                };
                match current {
                    Some(v) if v > known => return Ok(Outcome::TooNew(v)),
                    Some(v) if v == known => return Ok(Outcome::Done),
                    _ => {}
                }
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *tx)
                    .await?;
                let conn: &mut sqlx::PgConnection = &mut tx;
                conn.execute(
                    "CREATE SCHEMA IF NOT EXISTS strata; \
                     CREATE TABLE IF NOT EXISTS strata.migrations ( \
                       version integer PRIMARY KEY, \
                       applied_at timestamptz NOT NULL DEFAULT now())",
                )
                .await?;
                let applied: Vec<i32> = sqlx::query_scalar("SELECT version FROM strata.migrations")
                    .fetch_all(&mut *tx)
                    .await?;
                if let Some(newest) = applied.iter().copied().max().filter(|v| *v > known) {
                    return Ok(Outcome::TooNew(newest));
                }
                for (version, sql) in MIGRATIONS {
                    if applied.contains(version) {
                        continue;
                    }
                    let conn: &mut sqlx::PgConnection = &mut tx;
                    conn.execute(*sql).await?;
                    sqlx::query("INSERT INTO strata.migrations (version) VALUES ($1)")
                        .bind(version)
                        .execute(&mut *tx)
                        .await?;
                    tracing::info!("migrated the state database to schema version {version}");
                }
                tx.commit().await?;
                Ok::<_, sqlx::Error>(Outcome::Done)
            })?
            .map_err(|e| StoreError::Migrate {
                url: self.inner.url.clone(),
                reason: self.inner.url.scrub(&e.to_string()),
            })?;
        match outcome {
            Outcome::Done => Ok(()),
            Outcome::TooNew(found) => Err(StoreError::TooNew {
                url: self.inner.url.clone(),
                found,
                known,
            }),
        }
    }
}
