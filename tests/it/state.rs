//! The state dir: no lost updates between overlapping runs, corrupt files are errors (never empty
//! state), a crash mid-write leaves no half-written file, and every file is private.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use strata::engine::record::{DriftState, LayerStatus};
use strata::engine::{Engine, EngineOptions, Mode, Source};
use strata::stack::LayerId;
use strata::state::stack_status::StackState;

use crate::support::{strata_cli as strata, tf_env};

/// One Terraform layer whose null resource changes with `version`, and an output (so the layer's
/// outputs cache is written).
fn stack(root: &Path, version: u32) {
    let files = [
        (
            "strata.hcl",
            "stack \"s\" {}\nterraform \"app\" {\n  source = \"app\"\n}\n".to_string(),
        ),
        (
            "app/main.tf",
            format!(
                "terraform {{\n  required_providers {{\n    null = {{ source = \"hashicorp/null\" }}\n  }}\n}}\n\
                 resource \"null_resource\" \"x\" {{\n  triggers = {{ v = \"{version}\" }}\n}}\n\
                 output \"v\" {{ value = \"{version}\" }}\n"
            ),
        ),
    ];
    for (p, t) in files {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, t).unwrap();
    }
}

async fn open(root: &Path, state: &Path) -> Engine {
    let mut opts = EngineOptions::new(state);
    opts.terraform_env = tf_env()
        .into_iter()
        .filter(|(k, _)| k != "PATH")
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    Engine::open(Source::Dir(root.to_path_buf()), opts)
        .await
        .unwrap()
}

fn app() -> LayerId {
    LayerId::terraform("app")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_or_diff_overlapping_an_apply_never_reverts_what_the_apply_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (root, state) = (dir.path().join("stack"), dir.path().join(".strata"));
    stack(&root, 1);
    let first = open(&root, &state).await;
    assert!(!first
        .run(Mode::Apply)
        .await
        .unwrap()
        .any(LayerStatus::Failed));
    stack(&root, 2);

    // A plan and a diff start (and read the state dir) before the apply of the new revision...
    let plan = open(&root, &state).await;
    let diff = open(&root, &state).await;
    let apply = open(&root, &state).await;
    let applied = apply.run(Mode::Apply).await.unwrap();
    assert!(applied.any(LayerStatus::Applied), "{applied:?}");
    let new = apply.revision.clone();
    let recorded = StackState::load(&state).unwrap();
    assert_eq!(recorded.converged_revision.as_deref(), Some(new.as_str()));

    // ...and finish after it.
    plan.run(Mode::Plan).await.unwrap();
    let after_plan = StackState::load(&state).unwrap();
    assert_eq!(
        after_plan.converged_revision, recorded.converged_revision,
        "a plan reverted the converged revision"
    );
    let (before, now) = (
        recorded.layer(&app()).unwrap(),
        after_plan.layer(&app()).unwrap(),
    );
    assert_eq!(now.converged_revision, before.converged_revision);
    assert_eq!(now.inputs_hash, before.inputs_hash);
    assert_eq!(now.last_result, before.last_result);
    let report = diff.diff(None).await.unwrap();
    assert!(!report.drifted(), "{report:?}");
    let after_diff = StackState::load(&state).unwrap();
    assert_eq!(
        after_diff.converged_revision, recorded.converged_revision,
        "a diff reverted the converged revision"
    );
    let layer = after_diff.layer(&app()).unwrap();
    assert_eq!(layer.converged_revision.as_deref(), Some(new.as_str()));
    assert_eq!(
        layer.inputs_hash,
        recorded.layer(&app()).unwrap().inputs_hash
    );
    assert_eq!(layer.drift, Some(DriftState::InSync));

    // The next runs see the stack as converged: nothing to plan, no drift.
    let next = open(&root, &state).await;
    let planned = next.run(Mode::Plan).await.unwrap();
    assert_eq!(
        planned.layers[0].status,
        LayerStatus::NotAffected,
        "{planned:?}"
    );
    assert!(!next.diff(None).await.unwrap().drifted());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_status_json_fails_status_and_apply_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    stack(&dir.path().join("stack"), 1);
    let state = dir.path().join(".strata");
    std::fs::create_dir_all(&state).unwrap();
    let torn = b"{\n  \"stack\": \"s\",\n  \"converged_revision\": \"dir-";
    std::fs::write(state.join("status.json"), torn).unwrap();
    for args in [
        &["status"][..],
        &["apply", "--stack", "stack", "--auto-approve"][..],
        &["plan", "--stack", "stack"][..],
    ] {
        let out = strata(dir.path(), args).await;
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
        assert!(
            out.stderr.contains("status.json is corrupt")
                && out.stderr.contains("line 3 column")
                && out.stderr.contains("move it aside"),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert_eq!(std::fs::read(state.join("status.json")).unwrap(), torn);
    assert!(
        !state.join("layers").exists(),
        "nothing ran on an unknown state"
    );
}

#[test]
fn a_corrupt_agent_json_stops_the_agent_at_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".strata");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("agent.json"), b"").unwrap();
    let spec = strata::source::SourceSpec {
        url: dir.path().display().to_string(),
        reference: None,
        path: None,
    };
    let opts = strata::agent::AgentOptions::new(spec, strata::source::SourceOptions::new(&state));
    let Err(e) = strata::agent::Agent::new(opts) else {
        panic!("the agent started from an empty status");
    };
    let e = e.to_string();
    assert!(
        e.contains("agent.json is corrupt (the file is empty)") && e.contains("move it aside"),
        "{e}"
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_write_never_leaves_a_half_written_state_file_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("stack");
    stack(&root, 1);
    let apply = ["apply", "--stack", "stack", "--auto-approve"];
    strata(dir.path(), &apply).await.code(0);
    let state = dir.path().join(".strata");
    // What a writer killed half-way leaves: its temporary file of a status.json being replaced,
    // and a history record cut off mid-line.
    std::fs::write(state.join(".strata-tmp-crash"), b"{\n  \"stack\": \"s").unwrap();
    let mut history = std::fs::OpenOptions::new()
        .append(true)
        .open(state.join("history.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut history, br#"{"run_id":"torn","command":"ap"#).unwrap();
    drop(history);

    strata(dir.path(), &["status"]).await.code(0);
    stack(&root, 2);
    strata(dir.path(), &apply).await.code(0);
    let out = strata(dir.path(), &["history", "--json"]).await.code(0);
    let records: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        records.len(),
        2,
        "both applies, the torn line skipped: {records:?}"
    );
    assert!(records.iter().all(|r| r["command"] == "apply"));
    let text = std::fs::read_to_string(state.join("history.jsonl")).unwrap();
    assert!(text.ends_with("}\n"), "the last record is whole: {text}");
    let status = StackState::load(&state).unwrap();
    assert_eq!(
        status.layer(&app()).unwrap().last_result.as_deref(),
        Some("converged")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_files_are_owner_only_and_the_state_dir_too() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("stack");
    stack(&root, 1);
    let state = dir.path().join(".strata");
    let engine = open(&root, &state).await;
    engine.run(Mode::Apply).await.unwrap();
    let report = engine.diff(None).await.unwrap();
    strata::state::reports::write(&state, &report, strata::state::reports::KEEP).unwrap();
    strata::state::pin::write(&state, "0123abcd").unwrap();
    let app = strata::stack::LayerId::terraform("app");
    strata::state::stack_status::StackState::update(&state, |s| {
        s.layer_mut(&app).awaiting_plan = Some("0123456789abcdef".into());
    })
    .unwrap();
    strata::state::approvals::give(&state, &app, None).unwrap();

    assert_eq!(mode(&state), 0o700, "the state dir");
    let files: Vec<PathBuf> = [
        "status.json",
        "status.json.lock",
        "history.jsonl",
        "history.jsonl.lock",
        "lock",
        "pin",
        "approvals/terraform.app",
        "layers/app/outputs.json",
        "reports/latest.json",
        "reports/latest.md",
        "reports/latest.txt",
    ]
    .iter()
    .map(|f| state.join(f))
    .collect();
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    for d in ["approvals", "reports"] {
        assert_eq!(mode(&state.join(d)), 0o700, "{d}/");
    }
}
