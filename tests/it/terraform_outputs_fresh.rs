//! A Terraform layer's outputs after an apply that did not end cleanly: a `show` beside the
//! apply that failed, or strata killed mid-apply with an outputs cache of an earlier apply
//! present. Dependents always get what the apply produced, never the outputs of the apply
//! before it. The real `strata` binary and the real terraform.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::support::{lines, tf_env, wait_until, Output, NULL_PROVIDER};

/// A stack of two layers, `net` and `app` (which takes `net`'s output `id`), with its state dir.
struct Fixture {
    dir: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("stack");
        std::fs::create_dir_all(root.join("net")).unwrap();
        std::fs::create_dir_all(root.join("app")).unwrap();
        std::fs::write(
            root.join("strata.hcl"),
            "stack \"s\" {}\nterraform \"net\" {\n  source = \"net\"\n}\n\
             terraform \"app\" {\n  source = \"app\"\n  vars   = { net = terraform.net.outputs.id }\n}\n",
        )
        .unwrap();
        std::fs::write(
            root.join("app/main.tf"),
            format!(
                "{NULL_PROVIDER}variable \"net\" {{ type = string }}\n\
                 resource \"null_resource\" \"app\" {{\n  triggers = {{ net = var.net }}\n}}\n\
                 output \"seen\" {{ value = var.net }}\n"
            ),
        )
        .unwrap();
        let state = dir.path().join("state");
        let fx = Fixture { dir, root, state };
        fx.net(1, 0);
        fx
    }

    /// `net` at `version`: its output `id` is `net-VERSION`; its resource's provisioner notes
    /// that it started, then sleeps `sleep` seconds.
    fn net(&self, version: u32, sleep: u32) {
        std::fs::write(
            self.root.join("net/main.tf"),
            format!(
                "{NULL_PROVIDER}resource \"null_resource\" \"net\" {{\n  triggers = {{ v = \"{version}\" }}\n\
                 \x20 provisioner \"local-exec\" {{\n    command = \"echo started >> {}; sleep {sleep}\"\n  }}\n}}\n\
                 output \"id\" {{ value = \"net-{version}\" }}\n",
                self.started().display()
            ),
        )
        .unwrap();
    }

    fn started(&self) -> PathBuf {
        self.dir.path().join("started")
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
            .env_remove("STRATA_TERRAFORM")
            .stdin(Stdio::null());
        c
    }

    fn run(mut c: Command) -> Output {
        let out = c.output().unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn strata(&self, args: &[&str]) -> Output {
        Fixture::run(self.command(args))
    }

    /// What `app` last applied with: its output `seen` in its Terraform state.
    fn app_saw(&self) -> String {
        let text =
            std::fs::read_to_string(self.state.join("layers/app/terraform.tfstate")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json["outputs"]["seen"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A terraform that runs the real one for everything but `show`, which fails.
    fn terraform_failing_show(&self) -> PathBuf {
        let real = which::which("terraform").expect("terraform on PATH: run `make tools`");
        let path = self.dir.path().join("terraform-failing-show");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nif [ \"$1\" = show ]; then\n  echo 'Error: show refused by the test' >&2\n  exit 1\nfi\nexec {} \"$@\"\n",
                real.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }
}

#[test]
fn an_apply_whose_show_fails_is_applied_and_its_dependents_get_its_new_outputs() {
    let fx = Fixture::new();
    let first = fx.strata(&["apply", "--auto-approve"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(fx.app_saw(), "net-1");

    fx.net(2, 0);
    let mut c = fx.command(&["apply", "--auto-approve", "--json"]);
    c.env("STRATA_TERRAFORM", fx.terraform_failing_show());
    let second = Fixture::run(c);
    assert_eq!(second.code, 0, "the apply succeeded: {second:?}");
    assert_eq!(
        fx.app_saw(),
        "net-2",
        "app applied with what net's apply produced, not its earlier outputs"
    );
    let report: serde_json::Value =
        serde_json::from_str(&second.stdout).unwrap_or_else(|e| panic!("{e}: {}", second.stdout));
    let net = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == "terraform.net")
        .unwrap_or_else(|| panic!("net in {report}"));
    assert_eq!(net["status"], "applied", "{net}");
    let unread = net["changes_unread"].as_str().unwrap_or_default();
    assert!(
        unread.contains("show") && unread.contains("show refused by the test"),
        "the report says why its changes are not listed: {net}"
    );

    let third = fx.strata(&["plan"]);
    assert_eq!(third.code, 0, "nothing left to do\n{third:?}");
}

#[test]
fn kill_9_mid_apply_with_outputs_cached_then_the_next_run_passes_on_the_new_outputs() {
    let fx = Fixture::new();
    let first = fx.strata(&["apply", "--auto-approve"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(fx.app_saw(), "net-1");
    assert!(
        fx.state.join("layers/net/outputs.json").exists(),
        "net's outputs are cached"
    );

    fx.net(2, 3);
    let mut killed = fx
        .command(&["apply", "--auto-approve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("net's new resource is being created", || {
        lines(&fx.started()) == 2
    });
    killed.kill().unwrap();
    let _ = killed.wait();

    // The orphaned terraform finishes net's apply; the next run waits for it.
    let next = fx.strata(&["apply", "--auto-approve"]);
    assert_eq!(next.code, 0, "{next:?}");
    assert_eq!(lines(&fx.started()), 2, "net was applied once");
    assert_eq!(
        fx.app_saw(),
        "net-2",
        "app applied with net's new outputs, not those cached before the kill\n{next:?}"
    );
}

/// A `plan` takes no stack lock, so it may read a layer's state while an apply is changing it.
/// Were it to cache what it read, the outputs the apply forgot before it started could come
/// back and, if the apply then died before saving its own, be passed on as current. Only an
/// apply writes the cache.
#[test]
fn a_plan_reads_outputs_it_needs_but_never_caches_them() {
    let fx = Fixture::new();
    let first = fx.strata(&["apply", "--auto-approve"]);
    assert_eq!(first.code, 0, "{first:?}");
    let cache = fx.state.join("layers/net/outputs.json");
    assert!(cache.exists(), "the apply cached net's outputs");
    std::fs::remove_file(&cache).unwrap();

    let plan = fx.strata(&["plan"]);
    assert_eq!(
        plan.code, 0,
        "nothing to do, net's outputs read for app\n{plan:?}"
    );
    assert!(!cache.exists(), "a plan wrote the outputs cache");

    let apply = fx.strata(&["apply", "--auto-approve"]);
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(cache.exists(), "an apply caches the outputs it read");
}
