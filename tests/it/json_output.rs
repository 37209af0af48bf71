//! `--json` output as a program reads it: structured changes, through the CLI, real terraform.

use std::path::Path;

use crate::support::strata_cli as strata;

const NULL: &str =
    "terraform {\n  required_providers {\n    null = { source = \"hashicorp/null\" }\n  }\n}\n";

fn write(root: &Path, files: &[(&str, &str)]) {
    for (p, t) in files {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, t).unwrap();
    }
}

fn stack(x: &str) -> String {
    format!("stack \"j\" {{}}\nterraform \"app\" {{\n  source = \"app\"\n  vars   = {{ x = \"{x}\" }}\n}}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_var_change_that_forces_a_replacement_is_a_replace_in_plan_json() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("stack");
    let app = format!(
        "{NULL}variable \"x\" {{ type = string }}\n\
         resource \"null_resource\" \"server\" {{\n  triggers = {{ v = var.x }}\n}}\n\
         resource \"null_resource\" \"steady\" {{}}\n\
         module \"inner\" {{\n  source = \"./inner\"\n  x      = var.x\n}}\n\
         output \"x\" {{ value = var.x }}\n"
    );
    let inner = format!(
        "{NULL}variable \"x\" {{ type = string }}\n\
         resource \"null_resource\" \"worker\" {{\n  triggers = {{ v = var.x }}\n}}\n"
    );
    write(
        &root,
        &[
            ("strata.hcl", &stack("one")),
            ("app/main.tf", &app),
            ("app/inner/main.tf", &inner),
        ],
    );
    let apply = strata(dir.path(), &["apply", "--stack", "stack", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");

    write(&root, &[("strata.hcl", &stack("two"))]);
    let plan = strata(dir.path(), &["plan", "--stack", "stack", "--json"]).await;
    assert_eq!(plan.code, 2, "{plan:?}");
    let v: serde_json::Value =
        serde_json::from_str(&plan.stdout).unwrap_or_else(|e| panic!("{e}: {}", plan.stdout));
    assert_eq!(v["schema_version"], 1);
    let layer = &v["layers"][0];
    assert_eq!(layer["layer"], "terraform.app");
    assert_eq!(layer["status"], "changes");
    let changes = layer["changes"].as_array().unwrap();
    let find = |target: serde_json::Value| {
        changes
            .iter()
            .find(|c| c["target"] == target)
            .unwrap_or_else(|| panic!("no change of {target} in {changes:?}"))
    };
    let server = find(serde_json::json!({"address": "null_resource.server"}));
    assert_eq!(server["action"], "replace");
    assert_eq!(
        server["terraform_actions"],
        serde_json::json!(["delete", "create"])
    );
    assert_eq!(server["reason"], "replace_because_cannot_update");
    assert_eq!(
        server["forces_replacement"],
        serde_json::json!(["triggers"])
    );
    let worker = find(serde_json::json!({"address": "module.inner.null_resource.worker"}));
    assert_eq!(worker["action"], "replace", "module paths are kept");
    assert_eq!(
        worker["forces_replacement"],
        serde_json::json!(["triggers"])
    );
    let output = find(serde_json::json!({"output": "x"}));
    assert_eq!(output["action"], "update");
    assert_eq!(output["terraform_actions"], serde_json::json!(["update"]));
    assert!(
        !changes
            .iter()
            .any(|c| c["target"]["address"] == "null_resource.steady"),
        "what does not change is not listed: {changes:?}"
    );

    let text = strata(dir.path(), &["plan", "--stack", "stack"]).await;
    assert_eq!(text.code, 2, "{text:?}");
    assert!(
        text.stdout
            .contains("      -/+ null_resource.server (triggers forces replacement)\n"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains(
            "      -/+ module.inner.null_resource.worker (triggers forces replacement)\n"
        ),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("      ~ output.x\n"),
        "{}",
        text.stdout
    );
}
