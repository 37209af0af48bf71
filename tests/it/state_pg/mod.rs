//! `--state postgres://…`: the state off the machine. The real `strata` binary, the real terraform
//! and a real PostgreSQL.

mod config_stacks;
mod crashes;
mod creation_lock;
mod parity;
mod secrets;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::support::{tf_env, Output, Postgres};
pub(super) use crate::support::{wait_until, NULL_PROVIDER};

/// A password the server (trust auth) ignores, so every test can look for it in what it sees.
pub(super) const PASSWORD: &str = "pw-never-shown-7f3a";

/// A stack of one Terraform layer, run against a state dir or a state database.
pub(super) struct Fixture {
    pub(super) dir: tempfile::TempDir,
    pub(super) root: PathBuf,
}

impl Fixture {
    pub(super) fn new(module: &str) -> Fixture {
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
    pub(super) fn xdg(&self) -> PathBuf {
        self.dir.path().join("xdg")
    }

    /// `strata ARGS` with the state at `at`: `--state URL`, or `--state-dir DIR`. Commands that
    /// read a stack get `--stack`.
    pub(super) fn command(&self, args: &[&str], at: &At) -> Command {
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

    pub(super) fn strata(&self, args: &[&str], at: &At) -> Output {
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

pub(super) enum At {
    Dir(PathBuf),
    Db(String),
}

/// The state database's URL with a password in it.
pub(super) fn url(pg: &Postgres) -> String {
    pg.conn_str()
        .replace("postgres@", &format!("postgres:{PASSWORD}@"))
}

pub(super) fn module(version: u32) -> String {
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
pub(super) fn query(pg: &Postgres, sql: &str) -> Vec<Vec<String>> {
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
pub(super) fn normalized(value: &serde_json::Value) -> serde_json::Value {
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

pub(super) fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e})\n{out:?}"))
}

/// A strata started in the background, killed (and reaped) if the test ends before it does.
pub(super) struct Background(pub(super) std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Git repository holding a stack of one Terraform layer whose resource is replaced on every
/// commit.
pub(super) fn agent_repo(dir: &std::path::Path, version: u32) -> String {
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
