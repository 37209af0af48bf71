//! A layer deleted from `strata.hcl`: never left behind silently, never destroyed silently.
//! The real `strata` binary and the real terraform.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::support::{tf_env, Output};

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
}

const BOTH: &str = "stack \"s\" {}\nterraform \"network\" {\n  source = \"network\"\n}\nterraform \"old\" {\n  source = \"old\"\n}\n";
const WITHOUT_OLD: &str = "stack \"s\" {}\nterraform \"network\" {\n  source = \"network\"\n}\n";

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("stack");
        for layer in ["network", "old"] {
            std::fs::create_dir_all(root.join(layer)).unwrap();
            std::fs::write(
                root.join(layer).join("main.tf"),
                format!(
                    "resource \"terraform_data\" \"r\" {{\n  input = \"{layer}-resources\"\n}}\n"
                ),
            )
            .unwrap();
        }
        std::fs::write(root.join("strata.hcl"), BOTH).unwrap();
        let state = dir.path().join("state");
        Fixture {
            _dir: dir,
            root,
            state,
        }
    }

    fn strata(&self, args: &[&str]) -> Output {
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("strata"));
        c.args(args);
        if args[0] == "status" {
            c.arg("--state-dir").arg(&self.state);
        } else {
            c.arg("--stack")
                .arg(&self.root)
                .arg("--state-dir")
                .arg(&self.state);
        }
        let out = c
            .envs(tf_env())
            .env_remove("STRATA_LOG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.strata(args);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}:\n{}\n{}", out.stdout, out.stderr))
    }

    fn old_state(&self) -> String {
        std::fs::read_to_string(self.state.join("layers/old/terraform.tfstate")).unwrap()
    }
}

#[track_caller]
fn assert_ok(what: &str, out: &Output) {
    assert_eq!(out.code, 0, "{what}:\n{}\n{}", out.stdout, out.stderr);
}

#[test]
fn a_removed_terraform_layer_is_shown_orphaned_and_never_destroyed_silently() {
    let fx = Fixture::new();
    assert_ok("first apply", &fx.strata(&["apply", "--auto-approve"]));
    let before = fx.old_state();
    assert!(before.contains("old-resources"), "{before}");

    std::fs::write(fx.root.join("strata.hcl"), WITHOUT_OLD).unwrap();
    let plan = fx.json(&["plan", "--json"]);
    let orphaned = plan["orphaned"].as_array().expect("orphaned in the JSON");
    assert_eq!(orphaned.len(), 1, "{plan:#}");
    assert_eq!(orphaned[0]["layer"], "terraform.old", "{plan:#}");
    assert_eq!(orphaned[0]["new"], true, "{plan:#}");
    let text = fx.strata(&["plan"]);
    assert!(
        text.stdout
            .contains("terraform.old  orphaned, orphaned since")
            && text
                .stdout
                .contains("resources will be destroyed when approved"),
        "{}",
        text.stdout
    );

    let apply = fx.json(&["apply", "--auto-approve", "--json"]);
    assert_eq!(apply["orphaned"][0]["layer"], "terraform.old", "{apply:#}");
    assert_eq!(
        apply["orphaned"][0]["new"], false,
        "found by the plan: alerted once"
    );
    assert_eq!(fx.old_state(), before, "nothing destroyed without approval");
    let status = fx.strata(&["status"]);
    let row = status
        .stdout
        .lines()
        .find(|l| l.contains("terraform.old"))
        .unwrap_or_else(|| panic!("{}", status.stdout));
    assert!(row.contains("orphaned"), "not converged: {row}");

    // Put back: managed again, no longer orphaned.
    std::fs::write(fx.root.join("strata.hcl"), BOTH).unwrap();
    let back = fx.json(&["apply", "--auto-approve", "--json"]);
    assert!(back.get("orphaned").is_none(), "{back:#}");
    let status = fx.strata(&["status"]);
    let row = status
        .stdout
        .lines()
        .find(|l| l.contains("terraform.old"))
        .unwrap();
    assert!(row.contains("converged"), "{row}");

    // Removed again and approved: destroyed from its last applied working copy, then forgotten.
    std::fs::write(fx.root.join("strata.hcl"), WITHOUT_OLD).unwrap();
    let other = fx.json(&[
        "apply",
        "--auto-approve",
        "--approve",
        "terraform.network",
        "--json",
    ]);
    assert_eq!(
        other["orphaned"][0]["status"], "orphaned",
        "approving another layer destroys nothing: {other:#}"
    );
    assert_eq!(fx.old_state(), before);
    let destroyed = fx.json(&[
        "apply",
        "--auto-approve",
        "--approve",
        "terraform.old",
        "--json",
    ]);
    assert_eq!(
        destroyed["orphaned"][0]["layer"], "terraform.old",
        "{destroyed:#}"
    );
    assert_eq!(
        destroyed["orphaned"][0]["status"], "destroyed",
        "{destroyed:#}"
    );
    let after = fx.old_state();
    assert!(
        !after.contains("old-resources"),
        "the resources are gone: {after}"
    );
    let status = fx.strata(&["status"]);
    assert!(
        !status.stdout.contains("terraform.old"),
        "{}",
        status.stdout
    );
    let next = fx.json(&["apply", "--auto-approve", "--json"]);
    assert!(next.get("orphaned").is_none(), "{next:#}");
}
