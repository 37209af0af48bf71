//! What Terraform's `pg` backend shares across the whole database, met by every new layer of
//! every stack in strata's database on its first run: one lock (`pg_advisory_lock(-1)`) while a
//! workspace it has no row for yet is planned or applied, and one sequence its first init
//! creates. A layer whose first run meets another's must wait for it, not fail (and back off,
//! and alert) because a neighbour happened to be new too.

use std::time::{Duration, Instant};

use crate::support::Postgres;

use super::*;

/// Holds the database-wide workspace-creation lock on a connection of its own until told.
struct CreationLock {
    release: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl CreationLock {
    fn take(pg: &Postgres) -> CreationLock {
        let url = pg.conn_str();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                        .await
                        .unwrap();
                    sqlx::query("SELECT pg_advisory_lock(-1)")
                        .execute(&mut conn)
                        .await
                        .unwrap();
                    held_tx.send(()).unwrap();
                    let _ = tokio::task::spawn_blocking(move || release_rx.recv()).await;
                    sqlx::query("SELECT pg_advisory_unlock(-1)")
                        .execute(&mut conn)
                        .await
                        .unwrap();
                })
        });
        held_rx.recv().expect("the creation lock taken");
        CreationLock { release, thread }
    }

    fn release(self) {
        self.release.send(()).unwrap();
        self.thread.join().unwrap();
    }
}

#[test]
fn state_pg_a_new_layer_waits_for_the_creation_lock_another_holds() {
    let pg = Postgres::start();
    let fx = Fixture::new(&module(1));
    let db = At::Db(url(&pg));
    // Another stack's new layer is being planned in the same database.
    let lock = CreationLock::take(&pg);
    let mut child = fx
        .command(&["apply", "--auto-approve"], &db)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Released only once terraform asked for it (and was refused at least once), or strata
    // gave up: the apply meets it, whatever the time its init takes.
    let start = Instant::now();
    loop {
        let asked = query(
            &pg,
            "SELECT count(*)::bigint FROM pg_stat_activity \
             WHERE query LIKE '%pg_try_advisory_lock(-1)%' AND pid <> pg_backend_pid()",
        )[0][0]
            != "0";
        if asked || child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "terraform never asked for the creation lock"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    lock.release();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the apply waits for the lock and converges:\n{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    let status = json(&fx.strata(&["status", "--json"], &db));
    assert_eq!(
        status["layers"]["terraform.app"]["last_result"], "converged",
        "{status}"
    );
}

#[test]
fn state_pg_a_new_layer_survives_another_first_init_creating_the_sequence() {
    let pg = Postgres::start();
    let fx = Fixture::new(&module(1));
    let db = At::Db(url(&pg));
    // Another layer's first `terraform init` is creating the backend's sequence right now: its
    // transaction has not committed yet.
    let (commit, commit_rx) = std::sync::mpsc::channel::<()>();
    let (begun, begun_rx) = std::sync::mpsc::channel::<i32>();
    let conn_str = pg.conn_str();
    let other = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&conn_str).await.unwrap();
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                let mut tx = conn.begin().await.unwrap();
                sqlx::query("CREATE SEQUENCE IF NOT EXISTS public.global_states_id_seq AS bigint")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                begun.send(pid).unwrap();
                let _ = tokio::task::spawn_blocking(move || commit_rx.recv()).await;
                tx.commit().await.unwrap();
            })
    });
    let holder = begun_rx.recv().expect("the sequence being created");
    let mut child = fx
        .command(&["apply", "--auto-approve"], &db)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Committed once strata or its terraform waits behind it (or strata gave up).
    let start = Instant::now();
    loop {
        let waiting = query(
            &pg,
            &format!(
                "SELECT count(*)::bigint FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid() AND pid <> {holder}"
            ),
        )[0][0]
            != "0";
        if waiting || child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "nothing ever waited for the sequence"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    commit.send(()).unwrap();
    other.join().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the apply converges:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn state_pg_an_explicit_lock_timeout_wins_even_0s_unset_waits_5m() {
    let pg = Postgres::start();
    let fx = Fixture::new(&module(1));
    let db = At::Db(url(&pg));
    // A terraform that notes its arguments, then runs the real one.
    let log = fx.dir.path().join("terraform-args");
    let wrapper = fx.dir.path().join("terraform-noting-args");
    let real = which::which("terraform").expect("terraform on PATH: run `make tools`");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\nexec {} \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let plan_lock_timeout = |stack_file: &str| {
        std::fs::write(fx.root.join("strata.hcl"), stack_file).unwrap();
        let _ = std::fs::remove_file(&log);
        let out = fx
            .command(&["plan"], &db)
            .env("STRATA_TERRAFORM", &wrapper)
            .output()
            .unwrap();
        assert!(
            out.status.code() == Some(2),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let args = std::fs::read_to_string(&log).unwrap();
        let plan = args
            .lines()
            .find(|l| l.starts_with("plan "))
            .unwrap_or_else(|| panic!("no plan in {args}"))
            .to_string();
        plan.split(' ')
            .find_map(|a| a.strip_prefix("-lock-timeout="))
            .unwrap_or_else(|| panic!("no -lock-timeout in {plan}"))
            .to_string()
    };
    let layer = |attrs: &str| {
        format!("stack \"s\" {{}}\nterraform \"app\" {{\n  source = \"app\"\n{attrs}}}\n")
    };
    assert_eq!(
        plan_lock_timeout(&layer("  lock_timeout = \"0s\"\n")),
        "0s",
        "an explicit 0s: fail at once rather than wait"
    );
    assert_eq!(plan_lock_timeout(&layer("  lock_timeout = \"2m\"\n")), "2m");
    assert_eq!(
        plan_lock_timeout(&layer("")),
        "5m",
        "unset: 5m on this backend"
    );
}
