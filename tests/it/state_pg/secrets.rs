//! The state database's URL: a bad one or a database down is an error naming it with the
//! password masked, and the password reaches no output and no child process.

use std::process::{Command, Stdio};

use crate::support::{tf_env, Postgres};

use super::*;

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
