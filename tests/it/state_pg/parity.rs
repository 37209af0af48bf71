//! The same records through the state database as through a state dir: status, history and
//! diff, environments, stacks side by side, and a reader with SELECT only.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::support::{tf_env, Postgres};

use super::*;

#[test]
fn state_pg_status_history_and_diff_show_the_same_as_a_state_dir() {
    let pg = Postgres::start();
    let fx = Fixture::new(&module(1));
    let db = At::Db(url(&pg));
    let dir = At::Dir(fx.dir.path().join("state"));
    for at in [&dir, &db] {
        fx.strata(&["apply", "--auto-approve"], at).code(0);
    }
    std::fs::write(fx.root.join("app/main.tf"), module(2)).unwrap();
    for at in [&dir, &db] {
        fx.strata(&["apply", "--auto-approve"], at).code(0);
    }

    for args in [
        &["status", "--json"][..],
        &["history", "--json"][..],
        &["diff", "--json"][..],
    ] {
        let (a, b) = (fx.strata(args, &dir), fx.strata(args, &db));
        assert_eq!(a.code, b.code, "{args:?}\n{a:?}\n{b:?}");
        assert_eq!(
            normalized(&json(&a)),
            normalized(&json(&b)),
            "{args:?} differs between a state dir and the state database"
        );
    }
    let status = json(&fx.strata(&["status", "--json"], &db));
    let layer = &status["layers"]["terraform.app"];
    assert_eq!(layer["last_result"], "converged", "{status}");
    assert_eq!(
        layer["converged_revision"], status["converged_revision"],
        "{status}"
    );
    let history = json(&fx.strata(&["history", "--json"], &db));
    assert_eq!(
        history.as_array().map(Vec::len),
        Some(2),
        "two applies: {history}"
    );

    // Everything strata keeps is in the database, the Terraform state in the layer's schema.
    let docs: Vec<String> = query(
        &pg,
        "SELECT path FROM strata.documents WHERE namespace = 'default' ORDER BY path",
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    for expected in ["layer-runs.json", "lock", "status.json"] {
        assert!(docs.iter().any(|d| d == expected), "{expected} in {docs:?}");
    }
    let logs = query(
        &pg,
        "SELECT count(*) FROM strata.log_lines WHERE path = 'history.jsonl'",
    );
    assert_eq!(logs, [["2"]]);
    let tf = query(&pg, "SELECT name, data FROM strata_default_app.states");
    assert_eq!(tf.len(), 1, "one workspace's state: {tf:?}");
    assert!(
        tf[0][1].contains("null_resource"),
        "Terraform state in the pg backend"
    );
    // The cache keeps no sensitive output in the database, nothing holds the password, and the
    // local working dir is private.
    let all = query(
        &pg,
        "SELECT convert_from(body, 'UTF8') FROM strata.documents",
    )
    .concat()
    .concat();
    assert!(
        !all.contains("secret-output-2"),
        "a sensitive output is cached in clear"
    );
    assert!(!all.contains(PASSWORD), "the password is stored");
    let work: Vec<PathBuf> = std::fs::read_dir(fx.xdg().join("strata"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(work.len(), 1, "{work:?}");
    assert_eq!(
        std::fs::metadata(&work[0]).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(
        !work[0].join("status.json").exists() && !work[0].join("history.jsonl").exists(),
        "no records are kept on the machine"
    );
}

#[test]
fn state_pg_environments_show_the_same_from_a_machine_that_never_ran_them() {
    let pg = Postgres::start();
    let fx = Fixture::new(&module(1));
    std::fs::write(
        fx.root.join("strata.hcl"),
        "stack \"s\" {}\nenvironment \"dev\" {}\nenvironment \"prod\" {}\n\
         terraform \"app\" {\n  source = \"app\"\n}\n",
    )
    .unwrap();
    let db = At::Db(url(&pg));
    let dir = At::Dir(fx.dir.path().join("state"));
    for at in [&dir, &db] {
        for env in ["dev", "prod"] {
            fx.strata(&["apply", "--auto-approve", "--env", env], at)
                .code(0);
        }
    }
    let fresh = |args: &[&str]| {
        let out = fx
            .command(args, &db)
            .env("XDG_STATE_HOME", fx.dir.path().join("another-machine"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    for args in [
        &["status", "--json"][..],
        &["history", "--json", "--env", "prod"][..],
        &["status", "--json", "--env", "dev"][..],
    ] {
        let local = normalized(&json(&fx.strata(args, &dir)));
        assert_eq!(
            normalized(&json(&fx.strata(args, &db))),
            local,
            "{args:?}: the state database and a state dir differ"
        );
        assert_eq!(
            normalized(&fresh(args)),
            local,
            "{args:?}: another machine sees something else"
        );
    }
    let schemas = query(
        &pg,
        "SELECT count(*) FROM information_schema.schemata \
         WHERE schema_name LIKE 'strata_default_envs_%'",
    );
    assert_eq!(schemas, [["2"]], "a Terraform state per environment");
}

#[test]
fn state_pg_two_stacks_never_share_records_each_has_its_namespace() {
    let pg = Postgres::start();
    let shop = Fixture::new(&module(1));
    let billing = Fixture::new(&module(1));
    std::fs::write(
        billing.root.join("strata.hcl"),
        "stack \"billing\" {}\nterraform \"app\" {\n  source = \"app\"\n}\n",
    )
    .unwrap();
    let db = At::Db(url(&pg));
    shop.strata(&["apply", "--auto-approve"], &db).code(0);

    // Another stack pointed at the same namespace is refused before it reads or writes anything.
    let refused = billing.strata(&["apply", "--auto-approve"], &db);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains(
            "holds the state of stack \"s\", not of stack \"billing\": give each stack its own --state-namespace"
        ),
        "{refused:?}"
    );
    let plan = billing.strata(&["plan"], &db);
    assert_eq!(plan.code, 1, "{plan:?}");

    // In a namespace of its own it converges, and each stack's records stay its own.
    let ns = |fx: &Fixture, args: &[&str], ns: &str| {
        let mut c = fx.command(args, &db);
        c.args(["--state-namespace", ns]);
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default()
    };
    ns(&billing, &["apply", "--auto-approve"], "billing");
    let billing_status = ns(&billing, &["status", "--json"], "billing");
    assert_eq!(billing_status["stack"], "billing", "{billing_status}");
    let shop_status = json(&shop.strata(&["status", "--json"], &db));
    assert_eq!(shop_status["stack"], "s", "{shop_status}");
    assert_eq!(
        query(
            &pg,
            "SELECT count(*) FROM strata.log_lines WHERE namespace = 'billing'"
        ),
        [["1"]]
    );
    let schemas = query(
        &pg,
        "SELECT schema_name::text FROM information_schema.schemata \
         WHERE schema_name LIKE 'strata_%' ORDER BY 1",
    );
    assert_eq!(
        schemas,
        [["strata_billing_app"], ["strata_default_app"]],
        "one Terraform state per stack"
    );
}

#[test]
fn state_pg_a_reader_with_select_only_can_run_status_and_history() {
    let pg = Postgres::start();
    let fx = Fixture::new(&module(1));
    let db = At::Db(url(&pg));
    fx.strata(&["apply", "--auto-approve"], &db).code(0);
    query(&pg, "CREATE ROLE reader LOGIN");
    query(&pg, "GRANT USAGE ON SCHEMA strata TO reader");
    query(&pg, "GRANT SELECT ON ALL TABLES IN SCHEMA strata TO reader");
    let reader = At::Db(pg.conn_str().replace("postgres@", "reader@"));
    let status = fx.strata(&["status", "--json"], &reader);
    assert_eq!(status.code, 0, "{status:?}");
    assert_eq!(
        json(&status),
        json(&fx.strata(&["status", "--json"], &db)),
        "the reader sees what the writer sees"
    );
    fx.strata(&["history"], &reader).code(0);
    // A reader cannot write: an apply fails naming the database, and changes nothing.
    let apply = fx.strata(&["apply", "--auto-approve"], &reader);
    assert_eq!(apply.code, 1, "{apply:?}");
    assert!(
        apply.stderr.contains("postgres://reader@127.0.0.1:"),
        "{apply:?}"
    );
}

#[test]
fn state_pg_the_schema_version_stays_1_so_older_strata_and_readers_keep_working() {
    let pg = Postgres::start();
    let fx = Fixture::new(&module(1));
    let db = At::Db(url(&pg));
    fx.strata(&["apply", "--auto-approve"], &db).code(0);
    // Terraform's pg backend sequence exists (created before terraform ran) without a schema
    // version of its own: a strata of the release before, which knows version 1 only, still
    // opens this database.
    assert_eq!(
        query(
            &pg,
            "SELECT (to_regclass('public.global_states_id_seq') IS NOT NULL)::text"
        ),
        [["true"]]
    );
    assert_eq!(
        query(
            &pg,
            "SELECT version::bigint FROM strata.migrations ORDER BY 1"
        ),
        [["1"]]
    );

    // A database as the release before left it (version 1 only), read by a user with SELECT
    // only and this strata: nothing to migrate, no CREATE tried.
    query(&pg, "DELETE FROM strata.migrations WHERE version > 1");
    query(&pg, "CREATE ROLE reader LOGIN");
    query(&pg, "GRANT USAGE ON SCHEMA strata TO reader");
    query(&pg, "GRANT SELECT ON ALL TABLES IN SCHEMA strata TO reader");
    let reader = At::Db(pg.conn_str().replace("postgres@", "reader@"));
    let status = fx.strata(&["status", "--json"], &reader);
    assert_eq!(status.code, 0, "{status:?}");
    assert!(!status.stderr.contains("WARN"), "{status:?}");
}

#[test]
fn state_pg_the_url_comes_from_strata_state_and_migrations_run_once() {
    let pg = Postgres::start();
    let fx = Fixture::new(&module(1));
    let from_env = |args: &[&str]| {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("strata"));
        c.args(args)
            .env("STRATA_STATE", url(&pg))
            .env("XDG_STATE_HOME", fx.xdg())
            .envs(tf_env())
            .env_remove("STRATA_STATE_DIR")
            .stdin(Stdio::null());
        c.output().unwrap()
    };
    let racing: Vec<_> = (0..4)
        .map(|_| {
            let mut c = Command::new(assert_cmd::cargo::cargo_bin("strata"));
            c.args(["history"])
                .env("STRATA_STATE", url(&pg))
                .env("XDG_STATE_HOME", fx.xdg())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for r in racing {
        let out = r.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        query(
            &pg,
            "SELECT version::bigint FROM strata.migrations ORDER BY 1"
        ),
        [["1"]]
    );
    let applied = from_env(&[
        "apply",
        "--auto-approve",
        "--stack",
        fx.root.to_str().unwrap(),
    ]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let help = from_env(&["status", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("STRATA_STATE") && !help.contains(PASSWORD),
        "{help}"
    );
    assert_eq!(
        query(
            &pg,
            "SELECT count(*) FROM strata.log_lines WHERE path = 'history.jsonl'"
        ),
        [["1"]]
    );
}
