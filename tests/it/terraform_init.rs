//! A Terraform layer whose configuration is broken for a while: terraform's own error reaches the
//! user with the repository path, and once the file is fixed the next apply succeeds without
//! anyone touching strata's state dir. The real `strata` binary and the real terraform.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::support::{tf_env, Output};

/// A stack with a network layer that calls a local module two levels up.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
}

const MODULE: &str =
    "variable \"cidr\" {\n  type = string\n}\noutput \"cidr\" {\n  value = var.cidr\n}\n";

const MAIN_OK: &str = "module \"subnet\" {\n  source = \"../../modules/subnet\"\n  cidr   = \"10.0.1.0/24\"\n}\n\noutput \"subnet\" {\n  value = module.subnet.cidr\n}\n";

/// The same file with the closing brace of the module block missing.
const MAIN_BROKEN: &str = "module \"subnet\" {\n  source = \"../../modules/subnet\"\n  cidr   = \"10.0.1.0/24\"\n\noutput \"subnet\" {\n  value = module.subnet.cidr\n}\n";

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("stack");
        std::fs::create_dir_all(root.join("infra/network")).unwrap();
        std::fs::create_dir_all(root.join("modules/subnet")).unwrap();
        std::fs::write(
            root.join("strata.hcl"),
            "stack \"s\" {}\nterraform \"network\" {\n  source = \"infra/network\"\n}\n",
        )
        .unwrap();
        std::fs::write(root.join("modules/subnet/main.tf"), MODULE).unwrap();
        std::fs::write(root.join("infra/network/main.tf"), MAIN_OK).unwrap();
        let state = dir.path().join("state");
        Fixture {
            _dir: dir,
            root,
            state,
        }
    }

    fn write_main(&self, text: &str) {
        std::fs::write(self.root.join("infra/network/main.tf"), text).unwrap();
    }

    fn strata(&self, args: &[&str]) -> Output {
        let out = Command::new(assert_cmd::cargo::cargo_bin("strata"))
            .args(args)
            .arg("--stack")
            .arg(&self.root)
            .arg("--state-dir")
            .arg(&self.state)
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
}

#[track_caller]
fn assert_ok(what: &str, out: &Output) {
    assert_eq!(out.code, 0, "{what}:\n{}\n{}", out.stdout, out.stderr);
}

/// The exact repro of the first hour: a syntax error in a file calling a local module shows
/// terraform's own error at the repository path, and fixing the file is all it takes.
#[test]
fn a_syntax_error_shows_terraforms_error_and_the_fixed_file_applies() {
    let fx = Fixture::new();
    assert_ok("first apply", &fx.strata(&["apply", "--auto-approve"]));
    fx.write_main(MAIN_BROKEN);
    let broken = fx.strata(&["apply", "--auto-approve"]);
    assert_ne!(broken.code, 0, "{}\n{}", broken.stdout, broken.stderr);
    let text = format!("{}{}", broken.stdout, broken.stderr);
    assert!(
        !text.contains("Unreadable module directory"),
        "the module was not copied:\n{text}"
    );
    assert!(
        text.contains("Invalid single-argument block definition")
            || text.contains("Unclosed configuration block")
            || text.contains("Argument or block definition required"),
        "terraform's own syntax error is shown:\n{text}"
    );
    assert!(
        text.contains("infra/network/main.tf:"),
        "the error names the repository path with its line:\n{text}"
    );
    assert!(
        !text.contains("/runs/"),
        "no path into strata's state dir:\n{text}"
    );

    // Fixed, with another change that needs no init: the layer must init again all the same.
    fx.write_main(&MAIN_OK.replace("10.0.1.0", "10.0.2.0"));
    let fixed = fx.strata(&["apply", "--auto-approve"]);
    assert_ok("the fixed file applies", &fixed);
    let again = fx.strata(&["apply", "--auto-approve"]);
    assert_ok("and keeps applying", &again);
}

/// An init that fails after the configuration was first initialised (a module that vanished)
/// must not leave a stamp that makes the next run skip init.
#[test]
fn a_failed_init_makes_the_next_run_init_again() {
    let fx = Fixture::new();
    assert_ok("first apply", &fx.strata(&["apply", "--auto-approve"]));
    // Calling a second, missing module: init fails and rewrites the data dir's module manifest.
    fx.write_main(&format!(
        "{MAIN_OK}\nmodule \"extra\" {{\n  source = \"../../modules/missing\"\n  cidr = \"x\"\n}}\n"
    ));
    let failed = fx.strata(&["apply", "--auto-approve"]);
    assert_ne!(failed.code, 0, "{}\n{}", failed.stdout, failed.stderr);
    fx.write_main(&MAIN_OK.replace("10.0.1.0", "10.0.3.0"));
    assert_ok(
        "back to the first configuration's modules",
        &fx.strata(&["apply", "--auto-approve"]),
    );
}

/// `--reinit` throws away the layer's data dir and initialises afresh, keeping its local state.
#[test]
fn reinit_starts_a_clean_data_dir_and_keeps_the_state() {
    let fx = Fixture::new();
    assert_ok("first apply", &fx.strata(&["apply", "--auto-approve"]));
    let layer = fx.state.join("layers/network");
    let state_before = std::fs::read_to_string(layer.join("terraform.tfstate")).unwrap();
    assert!(state_before.contains("10.0.1.0/24"), "{state_before}");
    // A data dir damaged beyond what the stamp can see.
    std::fs::write(
        layer.join("tf-data/modules/modules.json"),
        "{\"Modules\":[]}",
    )
    .unwrap();
    let damaged = fx.strata(&["apply", "--auto-approve", "--all"]);
    assert_ne!(damaged.code, 0, "{}\n{}", damaged.stdout, damaged.stderr);

    let unknown = fx.strata(&["apply", "--auto-approve", "--reinit", "terraform.nope"]);
    assert_ne!(unknown.code, 0);
    assert!(
        unknown.stderr.contains("terraform.nope"),
        "{}",
        unknown.stderr
    );

    // --reinit plans the layer although nothing it depends on changed.
    let out = fx.strata(&["apply", "--auto-approve", "--reinit", "terraform.network"]);
    assert_ok("apply --reinit", &out);
    assert!(
        !out.stdout.contains("not affected: nothing"),
        "{}",
        out.stdout
    );
    let state_after = std::fs::read_to_string(layer.join("terraform.tfstate")).unwrap();
    assert!(state_after.contains("10.0.1.0/24"), "{state_after}");
    let serial = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap()["lineage"].clone();
    assert_eq!(
        serial(&state_before),
        serial(&state_after),
        "the same state"
    );
}
