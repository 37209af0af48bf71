//! Terraform across strata's death and a backend that goes away: nothing terraform did is lost,
//! and no second terraform runs beside one that is still at work. The real `strata` binary, the
//! real terraform and (for the backend) a real PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::{lines, tf_env, wait_until, Output, Postgres, NULL_PROVIDER};

/// A stack of one terraform layer in a temp dir, with its own state dir.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
}

impl Fixture {
    fn new(layer: &str, module: &str, attrs: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("stack");
        std::fs::create_dir_all(root.join(layer)).unwrap();
        std::fs::write(
            root.join("strata.hcl"),
            format!(
                "stack \"s\" {{}}\nterraform \"{layer}\" {{\n  source = \"{layer}\"\n{attrs}}}\n"
            ),
        )
        .unwrap();
        std::fs::write(root.join(layer).join("main.tf"), module).unwrap();
        let state = dir.path().join("state");
        Fixture {
            _dir: dir,
            root,
            state,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("strata"));
        c.args(args)
            .arg("--stack")
            .arg(&self.root)
            .arg("--state-dir")
            .arg(&self.state)
            .envs(tf_env())
            .env_remove("STRATA_LOG")
            .stdin(Stdio::null());
        c
    }

    fn strata(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Command lines of every process on the machine.
fn processes() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .filter(|s| !s.trim().is_empty())
        .collect()
}

/// The resources terraform's local state lists.
fn state_resources(state_file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(state_file).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    json["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            format!(
                "{}.{}",
                r["type"].as_str().unwrap_or(""),
                r["name"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn kill_9_of_strata_mid_apply_loses_nothing_and_the_next_apply_waits_for_terraform() {
    // Longer than terraform's 10s "Still creating..." line, which is what used to hit the dead
    // pipe and kill terraform with SIGPIPE.
    let marker = "14.77";
    let fx0 = tempfile::tempdir().unwrap();
    let started = fx0.path().join("started");
    let ran = fx0.path().join("ran");
    let module = format!(
        "{NULL_PROVIDER}
resource \"null_resource\" \"slow\" {{
  provisioner \"local-exec\" {{
    command = \"echo started >> {}; sleep {marker}; echo ran >> {}\"
  }}
}}
",
        started.display(),
        ran.display()
    );
    let fx = Fixture::new("slow", &module, "");

    let mut first = fx
        .command(&["apply", "--auto-approve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the provisioner runs", || lines(&started) == 1);
    first.kill().unwrap();
    let _ = first.wait();

    // At once, while the orphaned terraform is still in its provisioner.
    let second = fx.strata(&["apply", "--auto-approve"]);
    assert_eq!(second.code, 0, "second apply\n{second:?}");
    assert!(
        second.stderr.contains("waiting for terraform (pid ")
            && second
                .stderr
                .contains("left running by an earlier strata (apply of terraform.slow"),
        "the second apply waited for the first terraform:\n{}",
        second.stderr
    );
    assert_eq!(lines(&started), 1, "the provisioner ran exactly once");
    assert_eq!(lines(&ran), 1, "and to its end");
    assert_eq!(
        state_resources(&fx.state.join("layers/slow/terraform.tfstate")),
        ["null_resource.slow"],
        "terraform's state records what the provisioner did"
    );
    let left: Vec<String> = processes()
        .into_iter()
        .filter(|c| c.contains(marker) || c.contains(&fx.state.display().to_string()))
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
    let runs: Vec<_> = std::fs::read_dir(fx.state.join("layers/slow/runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(runs.is_empty(), "run dirs left: {runs:?}");

    let third = fx.strata(&["plan"]);
    assert_eq!(third.code, 0, "nothing left to do\n{third:?}");
    assert_eq!(lines(&started), 1);
}

#[test]
fn state_terraform_could_not_save_to_a_stopped_postgres_is_kept_refused_and_pushed() {
    use std::os::unix::fs::MetadataExt;
    let pg = Postgres::start();
    let scratch = tempfile::tempdir().unwrap();
    let ran = scratch.path().join("ran");
    // The provisioner stops the backend mid-apply: the resource is created, its state cannot be
    // saved.
    let module = format!(
        "terraform {{
  backend \"pg\" {{}}
  required_providers {{
    null = {{ source = \"hashicorp/null\" }}
  }}
}}
resource \"null_resource\" \"db\" {{
  provisioner \"local-exec\" {{
    command = \"{}; echo ran >> {}\"
  }}
}}
",
        pg.stop_command(),
        ran.display()
    );
    let fx = Fixture::new(
        "db",
        &module,
        &format!(
            "  backend_config = {{ conn_str = \"{}\" }}\n",
            pg.conn_str()
        ),
    );
    let kept = fx.state.join("layers/db/errored.tfstate");

    let first = fx.strata(&["apply", "--auto-approve"]);
    assert_eq!(first.code, 1, "{first:?}");
    assert_eq!(lines(&ran), 1);
    assert!(kept.exists(), "errored.tfstate is kept\n{first:?}");
    assert_eq!(std::fs::metadata(&kept).unwrap().mode() & 0o777, 0o600);
    assert_eq!(
        state_resources(&kept),
        ["null_resource.db"],
        "it records what the apply did"
    );
    let said = format!(
        "terraform.db has unsaved state in {}: run \"strata state push terraform.db\"",
        kept.display()
    );
    assert!(
        first.stdout.contains(&said),
        "the layer fails naming the file and the fix\n{first:?}"
    );
    let runs = fx.state.join("layers/db/runs");
    assert_eq!(std::fs::read_dir(&runs).unwrap().count(), 0);

    pg.restart();
    let refused = fx.strata(&["apply", "--auto-approve"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stdout.contains(&said), "{refused:?}");
    assert_eq!(lines(&ran), 1, "nothing ran on the out-of-date state");
    let plan = fx.strata(&["plan"]);
    assert_eq!(plan.code, 1, "plans are refused too\n{plan:?}");
    assert!(plan.stdout.contains(&said), "{plan:?}");

    let pushed = fx.strata(&["state", "push", "db"]);
    assert_eq!(pushed.code, 0, "{pushed:?}");
    assert!(
        pushed.stdout.contains("terraform.db: pushed ")
            && pushed
                .stdout
                .contains("terraform.db can be planned and applied again."),
        "{pushed:?}"
    );
    assert!(!kept.exists());
    let aside: Vec<String> = std::fs::read_dir(fx.state.join("layers/db"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("errored.tfstate.pushed-"))
        .collect();
    assert_eq!(aside.len(), 1, "the pushed file is kept aside");

    let after = fx.strata(&["apply", "--auto-approve"]);
    assert_eq!(after.code, 0, "{after:?}");
    assert_eq!(
        lines(&ran),
        1,
        "the backend knows the resource: nothing is created again"
    );
    let again = fx.strata(&["state", "push", "terraform.db"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.stdout, "terraform.db: no unsaved state to push.\n");
}
