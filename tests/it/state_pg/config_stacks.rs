//! `--config` stack blocks with `--state postgres://…`: the stacks of one agent keep their
//! records and their Terraform state apart in the one database, even with layers of the same
//! name, and `status --stack NAME` shows through the database what it shows from a state dir.

use crate::agent::Repo;

use super::*;

/// A repository with stacks `shop` (module version 1) and `billing` (version 2), each with one
/// Terraform layer named `app`, and the agent configuration declaring both.
fn two_stacks(root: &std::path::Path) -> std::path::PathBuf {
    let repo = Repo {
        dir: root.join("repo"),
    };
    for (name, version) in [("shop", 1), ("billing", 2)] {
        repo.write(
            &format!("{name}/strata.hcl"),
            &format!("stack \"{name}\" {{}}\nterraform \"app\" {{\n  source = \"app\"\n}}\n"),
        );
        repo.write(&format!("{name}/app/main.tf"), &module(version));
    }
    repo.git(&["init", "-q", "-b", "main"]);
    repo.commit("two stacks");
    let config = root.join("agent.hcl");
    std::fs::write(
        &config,
        format!(
            "stack \"shop\" {{\n  repo = \"{0}\"\n  path = \"shop\"\n}}\n\n\
             stack \"billing\" {{\n  repo = \"{0}\"\n  path = \"billing\"\n}}\n",
            repo.dir.display()
        ),
    )
    .unwrap();
    config
}

#[test]
fn state_pg_config_stacks_keep_their_records_and_schemas_apart() {
    let pg = Postgres::start();
    let fx = Fixture::new(&module(1));
    let config = two_stacks(fx.dir.path());
    let config = config.to_str().unwrap();
    let db = At::Db(url(&pg));
    let dir = At::Dir(fx.dir.path().join("state"));
    for at in [&dir, &db] {
        fx.strata(&["bootstrap", "--config", config], at).code(0);
    }

    // Each stack's status and history, the same through the database as from a state dir.
    let mut seen = Vec::new();
    for stack in ["shop", "billing"] {
        for args in [
            &["status", "--json", "--stack", stack][..],
            &["history", "--json", "--stack", stack][..],
        ] {
            let (a, b) = (fx.strata(args, &dir), fx.strata(args, &db));
            assert_eq!(a.code, 0, "{args:?}\n{a:?}");
            assert_eq!(b.code, 0, "{args:?}\n{b:?}");
            assert_eq!(
                normalized(&json(&a)),
                normalized(&json(&b)),
                "{args:?} differs between a state dir and the state database"
            );
        }
        let status = json(&fx.strata(&["status", "--json", "--stack", stack], &db));
        let layer = &status["layers"]["terraform.app"];
        assert_eq!(layer["last_result"], "converged", "{stack}: {status}");
        seen.push(normalized(&status));
        let history = json(&fx.strata(&["history", "--json", "--stack", stack], &db));
        assert_eq!(
            history.as_array().map(Vec::len),
            Some(1),
            "{stack}: one run of its own: {history}"
        );
    }
    assert_ne!(seen[0], seen[1], "each stack has its own record");

    // Its records under stacks/NAME/, its Terraform state in a schema of its own holding its
    // own resource, although both layers are named `app`.
    let docs: Vec<String> = query(
        &pg,
        "SELECT path FROM strata.documents WHERE namespace = 'default' \
         AND path LIKE 'stacks/%/status.json' ORDER BY path",
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    assert_eq!(
        docs,
        ["stacks/billing/status.json", "stacks/shop/status.json"],
        "a record per stack"
    );
    let schemas: Vec<String> = query(
        &pg,
        "SELECT table_schema::text FROM information_schema.tables \
         WHERE table_name = 'states' AND table_schema LIKE 'strata\\_%' ORDER BY 1",
    )
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    assert_eq!(schemas.len(), 2, "a schema per stack: {schemas:?}");
    for (stack, version) in [("shop", "1"), ("billing", "2")] {
        let schema = schemas
            .iter()
            .find(|s| s.contains(&format!("_{stack}_")))
            .unwrap_or_else(|| panic!("a schema for {stack}: {schemas:?}"));
        let data = query(&pg, &format!("SELECT data FROM {schema}.states"));
        assert_eq!(data.len(), 1, "{stack}: one workspace");
        let state: serde_json::Value = serde_json::from_str(&data[0][0]).unwrap();
        assert_eq!(
            state["outputs"]["v"]["value"], version,
            "{stack}'s state holds its own resource"
        );
    }

    // A stack the state does not hold is refused, naming those it holds.
    for at in [&dir, &db] {
        let out = fx.strata(&["status", "--stack", "nope"], at);
        assert_ne!(out.code, 0, "{out:?}");
        assert!(
            out.stderr
                .contains("holds no state of stack \"nope\": the stacks there are billing, shop"),
            "{out:?}"
        );
    }
    let out = fx.strata(&["status", "--stack", "nope"], &db);
    assert!(
        out.stderr
            .contains("the state database postgres://postgres:****@")
            && !out.stderr.contains(fx.xdg().to_str().unwrap()),
        "the database named, not the machine's cache dir: {out:?}"
    );
}

#[test]
fn state_pg_status_of_a_stack_from_a_machine_that_never_ran_it() {
    let pg = Postgres::start();
    let fx = Fixture::new(&module(1));
    let config = two_stacks(fx.dir.path());
    let db = At::Db(url(&pg));
    fx.strata(&["bootstrap", "--config", config.to_str().unwrap()], &db)
        .code(0);

    // Another machine: no cache of this database at all.
    let elsewhere = fx.dir.path().join("elsewhere");
    let on_another_machine = |args: &[&str]| {
        let out = fx
            .command(args, &db)
            .env("XDG_STATE_HOME", elsewhere.join("xdg"))
            .env("HOME", elsewhere.join("home"))
            .output()
            .unwrap();
        crate::support::Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let here = json(&fx.strata(&["status", "--json", "--stack", "shop"], &db));
    let there = on_another_machine(&["status", "--json", "--stack", "shop"]);
    assert_eq!(there.code, 0, "{there:?}");
    assert_eq!(normalized(&json(&there)), normalized(&here));
    let out = on_another_machine(&["status", "--stack", "nope"]);
    assert!(
        out.stderr
            .contains("holds no state of stack \"nope\": the stacks there are billing, shop"),
        "{out:?}"
    );

    // The database says which stacks it holds, not what this machine's cache dir happens to
    // hold: a dir left there of a stack the database does not hold is no such stack.
    let caches: Vec<_> = std::fs::read_dir(fx.xdg().join("strata"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("pg-"))
        .collect();
    assert_eq!(caches.len(), 1, "{caches:?}");
    std::fs::create_dir_all(caches[0].join("stacks/ghost")).unwrap();
    let out = fx.strata(&["status", "--stack", "ghost"], &db);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("holds no state of stack \"ghost\": the stacks there are billing, shop"),
        "{out:?}"
    );
}
