//! The state database across kill -9, racing writers and machines: nothing lost, one writer per
//! stack, and another machine carries on from the shared records.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::support::Postgres;

use super::*;

#[test]
fn state_pg_kill_9_mid_apply_leaves_the_database_consistent_and_the_next_run_resumes() {
    let pg = Postgres::start();
    let scratch = tempfile::tempdir().unwrap();
    let started = scratch.path().join("started");
    let module = format!(
        "{NULL_PROVIDER}
resource \"null_resource\" \"slow\" {{
  provisioner \"local-exec\" {{
    command = \"echo started >> {}; sleep 5\"
  }}
}}
",
        started.display()
    );
    let fx = Fixture::new(&module);
    let db = At::Db(url(&pg));
    let mut first = Background(
        fx.command(&["apply", "--auto-approve"], &db)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the provisioner runs", || started.exists());
    // SIGKILL: strata gets no chance to release its lock or finish a write.
    first.0.kill().unwrap();
    let _ = first.0.wait();

    // The records read back (no torn document), and the lock died with its holder.
    fx.strata(&["status", "--json"], &db).code(0);
    let second = fx.strata(&["apply", "--auto-approve"], &db);
    assert_eq!(second.code, 0, "the next apply resumes\n{second:?}");
    let after = fx.strata(&["plan"], &db);
    assert_eq!(after.code, 0, "nothing left to do\n{after:?}");
    let tf = query(&pg, "SELECT data FROM strata_default_app.states");
    assert!(tf.concat().concat().contains("null_resource"), "{tf:?}");
}

#[test]
fn state_pg_two_writers_one_holds_the_stack_the_other_is_refused_naming_it() {
    let pg = Postgres::start();
    let scratch = tempfile::tempdir().unwrap();
    let (started, go) = (scratch.path().join("started"), scratch.path().join("go"));
    let module = format!(
        "{NULL_PROVIDER}
resource \"null_resource\" \"held\" {{
  provisioner \"local-exec\" {{
    command = \"echo started >> {}; while [ ! -e {} ]; do sleep 0.1; done\"
  }}
}}
",
        started.display(),
        go.display()
    );
    let fx = Fixture::new(&module);
    let db = At::Db(url(&pg));
    // The first writer runs from another working dir, as another machine would.
    let mut first = Background(
        fx.command(&["apply", "--auto-approve"], &db)
            .env("XDG_STATE_HOME", scratch.path().join("machine-a"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the first writer holds the stack", || started.exists());

    let second = fx.strata(&["apply", "--auto-approve"], &db);
    assert_eq!(second.code, 1, "{second:?}");
    let said = format!("the stack is locked by pid {} on ", first.0.id());
    assert!(
        second.stderr.contains(&said) && second.stderr.contains("running `strata apply`"),
        "the holder is named\n{second:?}"
    );
    std::fs::write(&go, "").unwrap();
    assert!(first.0.wait().unwrap().success());
    fx.strata(&["apply", "--auto-approve"], &db).code(0);
}

#[test]
fn state_pg_concurrent_read_modify_writes_from_two_machines_lose_nothing() {
    use strata::engine::record::{RunRecord, RunResult};
    use strata::stack::LayerId;
    use strata::state::stack_status::StackState;

    let pg = Postgres::start();
    let store = strata::store::Store::open(&url(&pg).parse().unwrap()).unwrap();
    // Two working dirs on the same documents: two machines sharing the state.
    let machines = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = ["a", "b"].iter().map(|m| machines.path().join(m)).collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
        strata::store::mount(d, store.clone()).unwrap();
    }
    let record = |n: usize| RunRecord {
        run_id: format!("run-{n:03}"),
        command: "apply".into(),
        revision: "r".into(),
        commit: None,
        started: "2026-01-01T00:00:00Z".into(),
        finished: "2026-01-01T00:00:00Z".into(),
        result: RunResult::Ok,
        layers: Vec::new(),
    };
    let small = strata::state::retention::Retention { max_bytes: 4096 };
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let dir = dirs[t % 2].clone();
            std::thread::spawn(move || {
                for n in 0..10 {
                    StackState::update(&dir, |s| {
                        s.layer_mut(&LayerId::terraform(format!("t{t}-{n}")))
                            .converged_revision = Some(format!("{t}-{n}"));
                    })
                    .unwrap();
                    strata::state::history::append_kept(&dir, &record(t * 10 + n), small).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let state = StackState::load(&dirs[0]).unwrap();
    for t in 0..8 {
        for n in 0..10 {
            let layer = state
                .layer(&LayerId::terraform(format!("t{t}-{n}")))
                .unwrap_or_else(|| panic!("the update t{t}-{n} was lost"));
            assert_eq!(
                layer.converged_revision.as_deref(),
                Some(format!("{t}-{n}").as_str())
            );
        }
    }
    // The log stayed within its cap, dropping only its oldest records, each kept whole.
    let kept = strata::state::history::read(&dirs[1], 1000).unwrap();
    let bytes: usize = query(
        &pg,
        "SELECT COALESCE(SUM(octet_length(line) + 1), 0)::bigint FROM strata.log_lines",
    )[0][0]
        .parse()
        .unwrap();
    assert!(bytes <= 4096, "{bytes} bytes kept");
    assert!(
        kept.len() > 5 && kept.len() < 80,
        "{} records kept",
        kept.len()
    );
    // Every append got its place (80 in all), and what is kept is the newest run of them.
    let span = query(
        &pg,
        "SELECT max(seq)::bigint, (max(seq) - min(seq) + 1)::bigint, count(*)::bigint \
         FROM strata.log_lines",
    );
    assert_eq!(span[0][0], "80");
    assert_eq!(
        span[0][1], span[0][2],
        "the kept records are the newest: {span:?}"
    );
    assert_eq!(span[0][2], kept.len().to_string());
}

#[test]
fn state_pg_an_agent_killed_on_one_machine_is_carried_on_by_another_from_the_shared_state() {
    let pg = Postgres::start();
    let fx = Fixture::new(&module(1));
    let repo = fx.dir.path().join("repo");
    let first = agent_repo(&repo, 1);
    let db = At::Db(url(&pg));
    let agent = |machine: &str| {
        Background(
            fx.command(
                &[
                    "run",
                    "--repo",
                    repo.to_str().unwrap(),
                    "--listen",
                    "127.0.0.1:0",
                    "--poll-interval",
                    "1s",
                ],
                &db,
            )
            .env("XDG_STATE_HOME", fx.dir.path().join(machine))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        )
    };
    let converged = |commit: &str| {
        let out = fx.strata(&["status", "--json"], &db);
        out.code == 0 && json(&out)["converged_revision"] == commit
    };

    let mut a = agent("machine-a");
    wait_until("machine a converges the first commit", || converged(&first));
    a.0.kill().unwrap();
    let _ = a.0.wait();

    let second = agent_repo(&repo, 2);
    let mut b = agent("machine-b");
    wait_until("machine b converges the next commit", || converged(&second));
    let kill = Command::new("kill")
        .args(["-TERM", &b.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(b.0.wait().unwrap().success(), "the agent stops cleanly");

    // Machine b knew what machine a converged: it replaced the resource a created (the state was
    // shared), it did not create a second one beside it.
    let history = json(&fx.strata(&["history", "--json"], &db));
    let runs: Vec<&serde_json::Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["command"] == "apply" || r["command"] == "sync")
        .collect();
    let last = runs.last().expect("an apply is recorded");
    assert_eq!(last["revision"], second.as_str(), "{history}");
    assert_eq!(last["layers"][0]["counts"], "+1 ~0 -1", "{history}");
    let tf = query(&pg, "SELECT data FROM strata_default_app.states");
    assert_eq!(tf.len(), 1, "{tf:?}");
    let status = json(&fx.strata(&["status", "--json"], &db));
    assert_eq!(status["converged_revision"], second.as_str(), "{status}");
}

#[test]
fn state_pg_approvals_racing_from_four_machines_leave_one_that_the_next_apply_takes() {
    let pg = Postgres::start();
    let fx = Fixture::new(&module(1));
    std::fs::write(
        fx.root.join("strata.hcl"),
        "stack \"s\" {}\nterraform \"app\" {\n  source = \"app\"\n  apply  = \"manual\"\n}\n",
    )
    .unwrap();
    let db = At::Db(url(&pg));
    let held = fx.strata(&["apply", "--auto-approve"], &db);
    assert_eq!(held.code, 2, "{held:?}");
    assert!(held.stdout.contains("awaiting approval"), "{held:?}");

    let racing: Vec<Background> = ["a", "b", "c", "d"]
        .iter()
        .map(|m| {
            Background(
                fx.command(&["approve", "terraform.app"], &db)
                    .env("XDG_STATE_HOME", fx.dir.path().join(m))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    for mut r in racing {
        let status = r.0.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(r.0.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(status.success(), "{err}");
    }
    let approvals = query(
        &pg,
        "SELECT path FROM strata.documents WHERE path LIKE 'approvals/%'",
    );
    assert_eq!(approvals, [["approvals/terraform.app"]]);

    let applied = fx.strata(&["apply", "--auto-approve"], &db);
    assert_eq!(applied.code, 0, "the approval is taken\n{applied:?}");
    assert!(applied.stdout.contains("1 applied"), "{applied:?}");
    assert_eq!(
        query(
            &pg,
            "SELECT count(*) FROM strata.documents WHERE path LIKE 'approvals/%'"
        ),
        [["0"]],
        "and used up"
    );
}

#[test]
fn state_pg_more_writers_than_connections_at_once_all_finish() {
    use strata::stack::LayerId;
    use strata::state::stack_status::StackState;

    let pg = Postgres::start();
    let store = strata::store::Store::open(&url(&pg).parse().unwrap()).unwrap();
    let machine = tempfile::tempdir().unwrap();
    strata::store::mount(machine.path(), store).unwrap();
    // Each writer holds the lock of its own document while it reads and writes it: more of them
    // at once than the pool has connections must not leave them all waiting for one.
    let start = std::sync::Arc::new(std::sync::Barrier::new(40));
    let threads: Vec<_> = (0..40)
        .map(|t| {
            let dir = machine.path().join(format!("envs/e{t}"));
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                for n in 0..5 {
                    StackState::update(&dir, |s| {
                        s.layer_mut(&LayerId::terraform("app")).converged_revision =
                            Some(format!("{n}"));
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        query(
            &pg,
            "SELECT count(*) FROM strata.documents WHERE path LIKE 'envs/%/status.json'"
        ),
        [["40"]]
    );
}

#[test]
fn state_pg_an_apply_whose_show_fails_passes_its_new_outputs_not_the_cached_ones() {
    // No sensitive output: the state database caches these outputs.
    let plain = |version: u32| {
        format!(
            "{NULL_PROVIDER}resource \"null_resource\" \"x\" {{\n  triggers = {{ v = \"{version}\" }}\n}}\n\
             output \"v\" {{ value = \"{version}\" }}\n"
        )
    };
    let pg = Postgres::start();
    let fx = Fixture::new(&plain(1));
    let db = At::Db(url(&pg));
    std::fs::write(
        fx.root.join("strata.hcl"),
        "stack \"s\" {}\nterraform \"app\" {\n  source = \"app\"\n}\n\
         terraform \"user\" {\n  source = \"user\"\n  vars   = { v = terraform.app.outputs.v }\n}\n",
    )
    .unwrap();
    std::fs::create_dir_all(fx.root.join("user")).unwrap();
    std::fs::write(
        fx.root.join("user/main.tf"),
        format!(
            "{NULL_PROVIDER}variable \"v\" {{ type = string }}\n\
             resource \"null_resource\" \"user\" {{\n  triggers = {{ v = var.v }}\n}}\n\
             output \"seen\" {{ value = var.v }}\n"
        ),
    )
    .unwrap();
    fx.strata(&["apply", "--auto-approve"], &db).code(0);
    let user_saw = || {
        let data = query(&pg, "SELECT data FROM strata_default_user.states");
        let state: serde_json::Value = serde_json::from_str(&data[0][0]).unwrap();
        state["outputs"]["seen"]["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(user_saw(), "1");
    assert_eq!(
        query(
            &pg,
            "SELECT count(*)::bigint FROM strata.documents WHERE path = 'layers/app/outputs.json'"
        ),
        [["1"]],
        "app's outputs are cached in the database"
    );

    // app's next apply succeeds, the `show` beside it fails.
    std::fs::write(fx.root.join("app/main.tf"), plain(2)).unwrap();
    let real = which::which("terraform").expect("terraform on PATH: run `make tools`");
    let wrapper = fx.dir.path().join("terraform-failing-show");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ \"$1\" = show ] && {{ echo 'Error: show refused by the test' >&2; exit 1; }}\nexec {} \"$@\"\n",
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = fx
        .command(&["apply", "--auto-approve"], &db)
        .env("STRATA_TERRAFORM", &wrapper)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("applied, but its change list could not be read"),
        "{stdout}"
    );
    assert_eq!(user_saw(), "2", "user got app's new outputs");
    let after = fx.strata(&["plan"], &db);
    assert_eq!(after.code, 0, "nothing left to do\n{after:?}");
}
