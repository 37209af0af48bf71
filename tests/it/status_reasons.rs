//! `strata status` says, per layer, why it is not converged (Flux/Argo-style): awaiting
//! approval, held by an upstream layer that failed or waits, its own failure, or (from what the
//! agent saw) a pin, a refused revision or a newer revision not applied yet. Typed in
//! `status.json` and `--json`, and one aligned column in the text. The real `strata` binary and
//! the real terraform.

use std::path::Path;

use serde_json::{json, Value};

use crate::support::{strata_cli, Output};

const STACK: &str = r#"stack "s" {}
terraform "gate" {
  source = "ok"
  apply  = "manual"
}
terraform "after" {
  source = "ok"
  vars   = { x = terraform.gate.outputs.y }
}
terraform "broken" {
  source = "broken"
}
terraform "child" {
  source     = "ok"
  depends_on = [terraform.broken]
}
terraform "fine" {
  source = "ok"
}
"#;

const OK: &str = "variable \"x\" {\n  type    = string\n  default = \"\"\n}\nresource \"terraform_data\" \"ok\" {\n  input = var.x\n}\noutput \"y\" {\n  value = \"2\"\n}\n";
const BROKEN: &str = "resource \"terraform_data\" \"b\" {\n  provisioner \"local-exec\" {\n    command = \"exit 7\"\n  }\n}\n";

async fn strata(dir: &Path, args: &[&str]) -> Output {
    strata_cli(dir, args).await
}

fn reasons(v: &Value) -> Value {
    let layers = v["layers"].as_object().unwrap();
    Value::Object(
        layers
            .iter()
            .map(|(k, l)| (k.clone(), l.get("reason").cloned().unwrap_or(Value::Null)))
            .collect(),
    )
}

/// The column where `header` starts in the header line, and where each layer's row has the
/// same column: every row's cells line up under it.
fn aligned(text: &str, header: &str) {
    let lines: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("layer "))
        .take_while(|l| !l.trim().is_empty())
        .collect();
    let col = lines[0].find(header).unwrap();
    for l in &lines[1..] {
        let before = &l[..col.min(l.len())];
        assert!(
            before.ends_with("  ") && l.len() > col && !l[col..].starts_with(' '),
            "{header:?} column misaligned in\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_why_each_layer_waits_typed_and_aligned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("stack");
    for (f, t) in [
        ("strata.hcl", STACK),
        ("ok/main.tf", OK),
        ("broken/main.tf", BROKEN),
    ] {
        let p = root.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, t).unwrap();
    }
    let state = dir.path().join("state");
    let (st, rt) = (state.to_str().unwrap(), root.to_str().unwrap());
    let apply = strata(
        dir.path(),
        &["apply", "--stack", rt, "--state-dir", st, "--auto-approve"],
    )
    .await;
    assert_eq!(apply.code, 1, "{apply:?}");

    let recorded: Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("status.json")).unwrap()).unwrap();
    let mut want = json!({
        "terraform.gate": {"kind": "awaiting_approval"},
        "terraform.after": {"kind": "upstream_held", "upstream": "terraform.gate",
                            "why": "awaiting approval"},
        "terraform.broken": {"kind": "failed"},
        "terraform.child": {"kind": "upstream_failed", "upstream": "terraform.broken"},
        "terraform.fine": null,
    });
    let mut got = reasons(&recorded);
    let error = got["terraform.broken"]["error"].take();
    got["terraform.broken"]
        .as_object_mut()
        .unwrap()
        .remove("error");
    assert_eq!(got, want, "{recorded:#}");
    assert!(
        error.as_str().unwrap().contains("terraform apply failed"),
        "{error}"
    );

    let status = strata(dir.path(), &["status", "--state-dir", st]).await;
    let row = |name: &str| {
        status
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("{name}: {}", status.stdout))
            .to_string()
    };
    assert!(
        row("terraform.gate ").ends_with("awaiting approval"),
        "{}",
        status.stdout
    );
    assert!(
        row("terraform.after ").ends_with("held: upstream terraform.gate: awaiting approval"),
        "{}",
        status.stdout
    );
    assert!(
        row("terraform.child ").ends_with("held: upstream terraform.broken failed"),
        "{}",
        status.stdout
    );
    assert!(
        row("terraform.broken ").contains("failed: terraform.broken: terraform apply failed"),
        "{}",
        status.stdout
    );
    assert!(row("terraform.fine ").ends_with(" -"), "{}", status.stdout);
    for header in [
        "converged at",
        "last result",
        "drift",
        "observed",
        "last run",
        "reason",
    ] {
        aligned(&status.stdout, header);
    }

    // What the agent saw: pinned by a rollback while a newer commit waits.
    let (pin, newest) = ("a".repeat(40), "b".repeat(40));
    let agent = strata::agent::AgentStatus {
        stack: "s".into(),
        revision: Some(pin.clone()),
        latest_seen: Some(newest.clone()),
        pinned: Some(pin.clone()),
        ..Default::default()
    };
    strata::state::agent_status::save(&state, &agent).unwrap();
    let out = strata(dir.path(), &["status", "--state-dir", st, "--json"]).await;
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    want["terraform.fine"] = json!({"kind": "pinned", "revision": pin, "newest": newest});
    let mut got = reasons(&v);
    got["terraform.broken"]
        .as_object_mut()
        .unwrap()
        .remove("error");
    assert_eq!(got, want, "{v:#}");
    let text = strata(dir.path(), &["status", "--state-dir", st]).await;
    assert!(
        text.stdout.contains(
            "pinned at aaaaaaaaaaaa by strata rollback (bbbbbbbbbbbb waits for strata resume)"
        ),
        "{}",
        text.stdout
    );
    for header in ["observed", "last run", "reason"] {
        aligned(&text.stdout, header);
    }

    // Not pinned: the newer commit is pending; refused, it says so.
    let pending = strata::agent::AgentStatus {
        pinned: None,
        ..agent.clone()
    };
    strata::state::agent_status::save(&state, &pending).unwrap();
    let out = strata(dir.path(), &["status", "--state-dir", st, "--json"]).await;
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["layers"]["terraform.fine"]["reason"],
        json!({"kind": "pending_revision", "revision": newest}),
        "{v:#}"
    );
    let refused = strata::agent::AgentStatus {
        refused: Some(strata::agent::Refused {
            revision: newest.clone(),
            reason: "unsigned commit".into(),
        }),
        ..pending
    };
    strata::state::agent_status::save(&state, &refused).unwrap();
    let text = strata(dir.path(), &["status", "--state-dir", st]).await;
    assert!(
        text.stdout
            .contains("revision bbbbbbbbbbbb refused: unsigned commit"),
        "{}",
        text.stdout
    );
    for header in ["observed", "last run", "reason"] {
        aligned(&text.stdout, header);
    }
}
