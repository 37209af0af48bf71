//! The one sequence Terraform's `pg` backend numbers the workspaces of every schema from
//! (`public.global_states_id_seq`). Its first `terraform init` in a database creates it with
//! `CREATE SEQUENCE IF NOT EXISTS`, which is not safe against itself: two layers' first inits at
//! once race on it in the catalog and one fails. strata creates it before any terraform runs.
//!
//! It lies outside strata's schema and is not a migration: it never moves the schema version,
//! so an older strata keeps working on the database (a rollout can be undone), and a user who
//! only reads (`strata status`) never meets a `CREATE`.

use std::time::Duration;

use sqlx::Executor;

use super::Store;

/// How long the create waits behind another session creating it (a first `terraform init`).
const WAIT: Duration = Duration::from_secs(60);

impl Store {
    /// Creates Terraform's `pg` backend sequence when it is missing; for commands that run
    /// terraform (the writers), never for one that only reads the state.
    ///
    /// # Guarantees
    /// - Best effort: it never fails the command. A database user without `CREATE` on the
    ///   schema `public` (layers with backends of their own), a create that lost the race to
    ///   another session, or one that waited [`WAIT`] behind it, is logged (a warning naming
    ///   the reason, password masked) and left to Terraform's own init; the next start tries
    ///   again, and nothing is recorded as done that was not.
    /// - An existing sequence costs one read, and no lock or `CREATE` is tried.
    pub fn ensure_terraform_sequence(&self) {
        let pool = self.inner.pool.clone();
        let wait = format!("SET LOCAL lock_timeout = '{}ms'", WAIT.as_millis());
        let created = self.run(async move {
            let exists: bool =
                sqlx::query_scalar("SELECT to_regclass('public.global_states_id_seq') IS NOT NULL")
                    .fetch_one(&pool)
                    .await?;
            if exists {
                return Ok(false);
            }
            let mut tx = pool.begin().await?;
            let conn: &mut sqlx::PgConnection = &mut tx;
            conn.execute(wait.as_str()).await?;
            conn.execute("CREATE SEQUENCE IF NOT EXISTS public.global_states_id_seq AS bigint")
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(true)
        });
        match created {
            Ok(Ok(true)) => {
                tracing::info!(
                    "created Terraform's pg backend sequence public.global_states_id_seq"
                )
            }
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(
                "could not create Terraform's pg backend sequence public.global_states_id_seq \
                 in {}: {}; Terraform creates it on its first init",
                self.inner.url,
                self.inner.url.scrub(&e.to_string())
            ),
            Err(e) => tracing::warn!(
                "could not create Terraform's pg backend sequence: {e}; Terraform creates it on \
                 its first init"
            ),
        }
    }
}
