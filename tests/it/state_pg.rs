//! `--state postgres://…`: the state off the machine. The real `strata` binary, the real terraform
//! and a real PostgreSQL: what status, history and diff show is the same as with a state dir,
//! Terraform state lands in the pg backend, a kill -9 leaves the database consistent, two writers
//! never both hold the stack, and the password never shows.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{tf_env, Output, Postgres};

/// A password the server (trust auth) ignores, so every test can look for it in what it sees.
const PASSWORD: &str = "pw-never-shown-7f3a";

/// A stack of one Terraform layer, run against a state dir or a state database.
struct Fixture {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    fn new(module: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("stack");
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::write(
            root.join("strata.hcl"),
            "stack \"s\" {}\nterraform \"app\" {\n  source = \"app\"\n}\n",
        )
        .unwrap();
        std::fs::write(root.join("app/main.tf"), module).unwrap();
        Fixture { dir, root }
    }

    /// Where strata keeps the caches of a state database (`XDG_STATE_HOME`).
    fn xdg(&self) -> PathBuf {
        self.dir.path().join("xdg")
    }

    /// `strata ARGS` with the state at `at`: `--state URL`, or `--state-dir DIR`. Commands that
    /// read a stack get `--stack`.
    fn command(&self, args: &[&str], at: &At) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("strata"));
        c.args(args);
        if matches!(args[0], "apply" | "plan" | "diff") {
            c.arg("--stack").arg(&self.root);
        }
        match at {
            At::Dir(d) => c.arg("--state-dir").arg(d),
            At::Db(url) => c.arg("--state").arg(url),
        };
        c.envs(tf_env())
            .env("XDG_STATE_HOME", self.xdg())
            .env_remove("STRATA_LOG")
            .env_remove("STRATA_STATE")
            .env_remove("STRATA_STATE_DIR")
            .stdin(Stdio::null());
        c
    }

    fn strata(&self, args: &[&str], at: &At) -> Output {
        let out = self.command(args, at).output().unwrap();
        let out = Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            !out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD),
            "the password is shown by {args:?}\n{out:?}"
        );
        out
    }
}

enum At {
    Dir(PathBuf),
    Db(String),
}

/// The state database's URL with a password in it.
fn url(pg: &Postgres) -> String {
    pg.conn_str()
        .replace("postgres@", &format!("postgres:{PASSWORD}@"))
}

const NULL_PROVIDER: &str = "terraform {\n  required_providers {\n    null = {\n      source = \"hashicorp/null\"\n    }\n  }\n}\n";

fn module(version: u32) -> String {
    format!(
        "{NULL_PROVIDER}
resource \"null_resource\" \"x\" {{
  triggers = {{ v = \"{version}\" }}
}}
output \"v\" {{ value = \"{version}\" }}
output \"token\" {{
  value     = \"secret-output-{version}\"
  sensitive = true
}}
"
    )
}

/// Rows of a query, each row's columns as text.
fn query(pg: &Postgres, sql: &str) -> Vec<Vec<String>> {
    let url = pg.conn_str();
    let sql = sql.to_string();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            use sqlx::Row;
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            let rows = sqlx::query(&sql).fetch_all(&mut conn).await.unwrap();
            rows.iter()
                .map(|r| {
                    (0..r.columns().len())
                        .map(|i| {
                            r.try_get::<String, _>(i)
                                .or_else(|_| r.try_get::<i64, _>(i).map(|n| n.to_string()))
                                .or_else(|_| {
                                    r.try_get::<Vec<u8>, _>(i)
                                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                                })
                                .unwrap()
                        })
                        .collect()
                })
                .collect()
        })
}

/// `value` with what differs between two runs of the same stack blanked out: times, durations,
/// and the paths of the state dir or working dir.
fn normalized(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let time = regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}").unwrap();
    match value {
        Value::String(s) if time.is_match(s) => Value::String("<time>".into()),
        Value::Array(items) => Value::Array(items.iter().map(normalized).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if k.contains("duration")
                        || k.ends_with("_ms")
                        || k == "pid"
                        || k == "run_id"
                    {
                        Value::String("<n>".into())
                    } else {
                        normalized(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e})\n{out:?}"))
}

/// A strata started in the background, killed (and reaped) if the test ends before it does.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[track_caller]
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

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
fn state_pg_a_bad_url_or_a_database_down_is_an_error_naming_the_redacted_url() {
    let pg = Postgres::start();
    let fx = Fixture::new(&module(1));
    let port = crate::support::free_port().port();
    let down = format!("postgres://postgres:{PASSWORD}@127.0.0.1:{port}/tfstate?sslmode=disable");
    let out = fx.strata(&["status"], &At::Db(down));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "the --state URL postgres://postgres:****@127.0.0.1:{port}/tfstate?sslmode=disable holds a password on the command line"
        )),
        "{out:?}"
    );
    assert!(
        out.stderr.contains(&format!(
            "failed to connect to the state database postgres://postgres:****@127.0.0.1:{port}/tfstate?sslmode=disable"
        )),
        "{out:?}"
    );

    let out = fx.strata(
        &["status"],
        &At::Db(format!("mysql://root:{PASSWORD}@h/db")),
    );
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("the state location mysql://root:****@h/db is not a postgres:// URL"),
        "{out:?}"
    );

    let missing = url(&pg).replace("/tfstate", "/nosuchdb");
    let out = fx.strata(&["history"], &At::Db(missing));
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("postgres://postgres:****@127.0.0.1:"),
        "{out:?}"
    );

    // The state lives in one place.
    let both = fx
        .command(&["status"], &At::Db(url(&pg)))
        .arg("--state-dir")
        .arg(fx.dir.path().join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert_eq!(both.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--state and --state-dir are both given"),
        "{stderr}"
    );

    // A namespace must stay apart from every other one in schema names.
    let bad = fx
        .command(&["status"], &At::Db(url(&pg)))
        .args(["--state-namespace", "Shop Prod"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--state-namespace \"Shop Prod\" is not a namespace"),
        "{stderr}"
    );
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
        query(&pg, "SELECT version::bigint FROM strata.migrations"),
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
fn state_pg_the_url_given_in_strata_state_reaches_no_child_process() {
    let pg = Postgres::start();
    let scratch = tempfile::tempdir().unwrap();
    let seen = scratch.path().join("seen");
    // What a provisioner (and so terraform, and anything the layer runs) sees: its environment,
    // and the command lines of every process on the machine while it runs (a process that ends
    // meanwhile makes `cat` fail: not the provisioner).
    let module = format!(
        "{NULL_PROVIDER}
resource \"null_resource\" \"look\" {{
  provisioner \"local-exec\" {{
    command = \"env >> {seen}; cat /proc/[0-9]*/cmdline 2>/dev/null >> {seen}; true\"
  }}
}}
",
        seen = seen.display()
    );
    let fx = Fixture::new(&module);
    // A password of this test's own: other tests run beside it with theirs on command lines.
    let password = "pw-only-in-the-environment-91c2";
    let out = Command::new(assert_cmd::cargo::cargo_bin("strata"))
        .args(["apply", "--auto-approve", "--stack"])
        .arg(&fx.root)
        .env("STRATA_STATE", url(&pg).replace(PASSWORD, password))
        .env("XDG_STATE_HOME", fx.xdg())
        .envs(tf_env())
        .env_remove("STRATA_STATE_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("holds a password on the command line"),
        "a URL from the environment is not on the command line"
    );
    // Command lines are NUL-separated: read as bytes, NULs kept.
    let seen = String::from_utf8_lossy(&std::fs::read(&seen).unwrap()).into_owned();
    assert!(seen.contains("PATH="), "the provisioner ran: {seen}");
    assert!(
        seen.contains("terraform\0apply"),
        "the command lines were read: {seen}"
    );
    assert!(
        !seen.contains(password),
        "a child sees the password:\n{seen}"
    );
    assert!(
        !seen.contains("STRATA_STATE="),
        "a child sees STRATA_STATE:\n{seen}"
    );
}

/// A Git repository holding a stack of one Terraform layer whose resource is replaced on every
/// commit.
fn agent_repo(dir: &std::path::Path, version: u32) -> String {
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(
        dir.join("strata.hcl"),
        "stack \"s\" {}\nterraform \"app\" {\n  source = \"app\"\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("app/main.tf"), module(version)).unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "Ana")
            .env("GIT_AUTHOR_EMAIL", "ana@example.com")
            .env("GIT_COMMITTER_NAME", "Ana")
            .env("GIT_COMMITTER_EMAIL", "ana@example.com")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    if !dir.join(".git").exists() {
        git(&["init", "-q", "-b", "main"]);
    }
    git(&["add", "-A"]);
    git(&["commit", "-qm", &format!("v{version}")]);
    git(&["rev-parse", "HEAD"])
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
