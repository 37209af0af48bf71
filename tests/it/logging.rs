//! What the log says, and how: the agent's lifecycle at the default level, no colour codes in
//! files.

use std::time::{Duration, Instant};

#[test]
fn the_agent_logs_its_lifecycle_by_default_in_plain_text_when_stderr_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("agent.log");
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("strata"))
        .args(["run", "--repo"])
        .arg(dir.path().join("no-such-repo"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--listen", "127.0.0.1:0", "--poll-interval", "1h"])
        .env_remove("STRATA_LOG")
        .env_remove("NO_COLOR")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("listening on") && text.contains("no-such-repo") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill only sends SIGTERM to the child we started.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("listening on"),
        "info lines by default:\n{text}"
    );
    assert!(
        !text.contains("127.0.0.1:0"),
        "the address actually bound, not port 0:\n{text}"
    );
    assert!(text.contains(" INFO "), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes in a file:\n{text:?}"
    );
    assert_eq!(status.code(), Some(0), "{text}");
}

#[test]
fn one_shot_commands_stay_quiet_by_default() {
    let out = crate::support::Strata::new(["validate", "--stack", "stacks/demo"])
        .run()
        .code(0);
    assert_eq!(out.stderr, "", "validate logs nothing on success");
}

/// What `make bench` reads where a Terraform layer's time goes: each terraform command that ran,
/// with its layer and how long it ran, at debug level under a target of its own (so asking for
/// it brings none of terraform's output lines), one JSON object a line with `--log-format json`.
#[test]
fn each_terraform_command_is_timed_at_debug_level_under_its_own_target() {
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("stack");
    std::fs::create_dir_all(stack.join("net")).unwrap();
    std::fs::write(
        stack.join("strata.hcl"),
        "stack \"s\" {}\nterraform \"net\" {\n  source = \"net\"\n}\n",
    )
    .unwrap();
    std::fs::write(
        stack.join("net/main.tf"),
        format!(
            "{}resource \"null_resource\" \"r\" {{}}\n",
            crate::support::NULL_PROVIDER
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut strata = crate::support::Strata::new([
        "--log-format",
        "json",
        "apply",
        "--auto-approve",
        "--stack",
        stack.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ])
    .env("STRATA_LOG", "warn,strata::terraform::timing=debug");
    for (k, v) in crate::support::tf_env() {
        strata = strata.env(&k, v);
    }
    let out = strata.run().code(0);
    let mut steps = Vec::new();
    // The rest of stderr is the run's progress, in plain text.
    for line in out.stderr.lines().filter(|l| l.starts_with('{')) {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let fields = &event["fields"];
        assert_eq!(fields["message"], "terraform finished", "{line}");
        assert_eq!(event["level"], "DEBUG", "{line}");
        assert_eq!(fields["layer"], "terraform.net", "{line}");
        assert!(fields["secs"].as_f64().is_some_and(|s| s > 0.0), "{line}");
        assert!(event["timestamp"].as_str().is_some(), "{line}");
        steps.push(fields["step"].as_str().unwrap().to_string());
    }
    steps.sort();
    // The show runs beside the apply; the plan knew every output, so no `output` runs.
    assert_eq!(steps, ["apply", "init", "plan", "show"], "{}", out.stderr);
}
