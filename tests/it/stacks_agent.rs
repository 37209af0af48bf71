//! One agent, several stacks (`stack` blocks in `--config`): each converges from its own
//! repository path into its own state dir, at most `--max-concurrent-stacks` at once, and the
//! HTTP side answers for each with `?stack=`.

use std::time::Duration;

use serde_json::Value;

use crate::agent::{receiver, until};
use crate::replicas::{applies, never_overlap, spawn_agent, stacks_repo, state_args};
use crate::support::{free_port, strata_cli};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_converges_every_stack_of_its_config_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let log = root.join("applies.log");
    let names = ["alpha", "beta", "gamma"];
    let (repo, config) = stacks_repo(root, &names, &log);
    // gamma declares two environments; its block converges only `dev`.
    let hcl = std::fs::read_to_string(repo.dir.join("gamma/strata.hcl")).unwrap();
    repo.write(
        "gamma/strata.hcl",
        &format!("{hcl}\nenvironment \"dev\" {{}}\n\nenvironment \"prod\" {{}}\n"),
    );
    repo.commit("gamma has environments");
    // Alerts from every stack go to one receiver, each naming its stack.
    let (url, got) = receiver().await;
    let mut text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("path = \"gamma\"", "path = \"gamma\"\n  env  = [\"dev\"]");
    text.push_str(&format!(
        "alert \"webhook\" \"test\" {{ url = \"{url}\" }}\n"
    ));
    std::fs::write(&config, text).unwrap();
    let state = root.join("state");
    let listen = free_port();
    let token = root.join("token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef").unwrap();
    let mut args = vec![
        "--api-token-file".to_string(),
        token.display().to_string(),
        "--config".to_string(),
        config.display().to_string(),
        "--max-concurrent-stacks".into(),
        "1".into(),
        "--poll-interval".into(),
        "1s".into(),
        "--listen".into(),
        listen.to_string(),
    ];
    args.extend(state_args(&state));
    let out = root.join("agent.out");
    let mut child = spawn_agent(&args, "solo", &out, &[]);
    let all_ended = || applies(&log).iter().filter(|a| a.end.is_some()).count() >= 3;
    for _ in 0..1800 {
        if all_ended() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        all_ended(),
        "every stack converges:\n{}",
        std::fs::read_to_string(&out).unwrap_or_default()
    );
    // The bound is one: no two stacks ever applied at once.
    never_overlap("every stack", &applies(&log));

    let http = reqwest::Client::new();
    let base = format!("http://{listen}");
    let get = |path: String| {
        let http = http.clone();
        async move {
            let r = http.get(path).send().await.unwrap();
            let code = r.status().as_u16();
            (code, r.text().await.unwrap())
        }
    };
    // Ready once every stack converged.
    let mut ready = (0, String::new());
    for _ in 0..300 {
        ready = get(format!("{base}/readyz")).await;
        if ready.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready.0, 200, "{}", ready.1);
    for dir in ["alpha", "beta", "gamma/envs/dev"] {
        assert!(
            state.join("stacks").join(dir).join("agent.json").exists(),
            "{dir} has its own state dir"
        );
    }
    assert!(
        !state.join("stacks/gamma/envs/prod").exists(),
        "gamma's prod is not converged: its block names dev only"
    );
    assert_eq!(
        applies(&log).iter().filter(|a| a.stack == "gamma").count(),
        1,
        "gamma applied once, for dev"
    );
    let (code, body) = get(format!("{base}/api/v1/status")).await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    for n in ["alpha", "beta"] {
        assert!(v["stacks"][n]["revision"].is_string(), "{n} in {v}");
    }
    assert!(
        v["stacks"]["gamma"]["environments"]["dev"]["revision"].is_string(),
        "{v}"
    );
    // One stack with environments: by environment, its own readiness.
    let (code, body) = get(format!("{base}/api/v1/status?stack=gamma")).await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], true, "{v}");
    assert!(v["environments"]["dev"]["revision"].is_string(), "{v}");
    let (code, body) = get(format!("{base}/api/v1/status?stack=gamma&env=dev")).await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["revision"].is_string(), "{v}");
    let (code, body) = get(format!("{base}/api/v1/status?stack=beta")).await;
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["stack"]["stack"], "beta", "{v}");
    assert_eq!(
        v["stack"]["layers"].as_object().map(|l| l.len()),
        Some(1),
        "{v}"
    );
    let (code, body) = get(format!("{base}/api/v1/overview")).await;
    assert_eq!(code, 400, "several stacks and none named: {body}");
    assert!(body.contains("?stack=NAME"), "{body}");
    let (code, body) = get(format!("{base}/api/v1/status?stack=nope")).await;
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("alpha, beta, gamma"), "{body}");
    let (_, metrics) = get(format!("{base}/metrics")).await;
    for n in names {
        assert!(
            metrics.contains(&format!("stack=\"{n}\"")),
            "metrics carry the stack: {metrics}"
        );
        // Each stack has its own source: up per stack.
        assert!(
            metrics.contains(&format!("strata_stack_source_up{{stack=\"{n}\"}} 1")),
            "{metrics}"
        );
    }
    // `strata approve --stack` reaches that stack's layer (nothing waits there); without it the
    // agent asks which stack.
    let approve = |stack: Option<&'static str>| {
        let mut a = vec![
            "approve".to_string(),
            "terraform.work".into(),
            "--agent".into(),
            base.clone(),
            "--api-token-file".into(),
            token.display().to_string(),
        ];
        if let Some(s) = stack {
            a.extend(["--stack".to_string(), s.to_string()]);
        }
        a
    };
    let args_of = |a: &[String]| a.iter().map(String::as_str).collect::<Vec<_>>().join(" ");
    let a = approve(Some("beta"));
    let out = strata_cli(root, &a.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .code(1);
    assert!(
        out.stderr
            .contains("nothing waits for approval on terraform.work"),
        "{}: {}",
        args_of(&a),
        out.stderr
    );
    let a = approve(None);
    let out = strata_cli(root, &a.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .code(1);
    assert!(out.stderr.contains("add ?stack=NAME"), "{}", out.stderr);
    until("a converged alert from every stack", 60, || {
        let got = got.lock().unwrap();
        names.iter().all(|n| {
            got.iter()
                .any(|v| v["type"] == "converged" && v["stack"] == *n)
        })
    })
    .await;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("the agent stops")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_wrong_stack_block_is_refused_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.hcl");
    std::fs::write(
        &config,
        "alert \"webhook\" \"ops\" { url = \"http://127.0.0.1:1/hook\" }\n\nstack \"shop\" {\n  repo   = \"/srv/shop\"\n  branch = \"main\"\n}\n\nstack \"shop\" {\n  repo = \"/srv/other\"\n}\n",
    )
    .unwrap();
    let out = strata_cli(
        dir.path(),
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
        ],
    )
    .await
    .code(1);
    assert!(
        out.stderr
            .contains("agent.hcl:5:3: stack \"shop\": unknown attribute \"branch\""),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("agent.hcl:8:1: stack \"shop\" is declared twice"),
        "{}",
        out.stderr
    );
    // A --repo flag beside stack blocks is refused rather than silently ignored.
    std::fs::write(&config, "stack \"shop\" {\n  repo = \"/srv/shop\"\n}\n").unwrap();
    let out = strata_cli(
        dir.path(),
        &["run", "--config", config.to_str().unwrap(), "--ref", "main"],
    )
    .await
    .code(1);
    assert!(
        out.stderr.contains("--ref applies to the --repo stack"),
        "{}",
        out.stderr
    );
    // Neither --repo nor a stack block: nothing to converge, said so.
    std::fs::write(&config, "writeback { notes = false }\n").unwrap();
    let out = strata_cli(dir.path(), &["run", "--config", config.to_str().unwrap()])
        .await
        .code(1);
    assert!(
        out.stderr.contains("no stack to converge"),
        "{}",
        out.stderr
    );
}
