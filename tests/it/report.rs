//! `strata report`: the latest drift check, whoever ran it.

use crate::support::Strata;

#[test]
fn report_shows_the_latest_diff_and_explains_when_there_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("stack");
    std::fs::create_dir_all(&stack).unwrap();
    std::fs::write(stack.join("strata.hcl"), "stack \"empty\" {}\n").unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();

    let none = Strata::new(["report", "--state-dir", state]).run().code(1);
    assert!(
        none.stderr.contains("no drift report in") && none.stderr.contains("strata diff"),
        "{}",
        none.stderr
    );

    let diff = Strata::new([
        "diff",
        "--stack",
        stack.to_str().unwrap(),
        "--state-dir",
        state,
    ])
    .run()
    .code(0);
    let text = Strata::new(["report", "--state-dir", state]).run().code(0);
    assert_eq!(
        text.stdout, diff.stdout,
        "the report is the diff just printed"
    );
    let json = Strata::new(["report", "--state-dir", state, "--format", "json"])
        .run()
        .code(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["stack"], "empty");
    assert_eq!(v["schema_version"], 1);
}
