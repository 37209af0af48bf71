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
