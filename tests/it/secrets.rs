//! Secrets stay secret end to end, through the CLI: values that are sensitive by provenance (a
//! sensitive Terraform output, a SOPS-decrypted file) never appear in any output, report or
//! record, whatever field or kind they are in; core Secrets' values never do.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;

use crate::support::{strata_cli as strata, Cluster, Output};

fn write(root: &Path, files: &[(&str, &str)]) {
    for (p, t) in files {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, t).unwrap();
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(s)
}

/// Every form a planted value could leak in: itself and base64.
fn assert_absent(what: &str, text: &str, planted: &[&str]) {
    for p in planted {
        assert!(!text.contains(p), "{p} leaked in {what}:\n{text}");
        assert!(
            !text.contains(&b64(p)),
            "base64 of {p} leaked in {what}:\n{text}"
        );
    }
}

/// Every file of the state dir, as text, except the provider cache and the files that must hold
/// sensitive outputs to hand them downstream (terraform's state, the outputs cache): those are
/// checked to be readable by their owner only.
fn assert_private_tree(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", d.display());
        if d.is_dir() {
            todo.extend(std::fs::read_dir(&d).unwrap().flatten().map(|e| e.path()));
        }
    }
}

fn state_files(dir: &Path) -> Vec<(PathBuf, String)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "plugin-cache" || name == "providers" {
                continue;
            }
            if name.contains(".tfstate") || name == "outputs.json" {
                let mode = std::fs::metadata(&p).unwrap().permissions().mode();
                assert_eq!(mode & 0o077, 0, "{} is {mode:o}", p.display());
                continue;
            }
            // A removed layer is destroyed from the copy of its last apply: its source (this
            // test's own Terraform code holds the planted value) and its inputs, owner-only.
            if name == "applied" {
                assert_private_tree(&p);
                continue;
            }
            if p.is_dir() {
                todo.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, String::from_utf8_lossy(&bytes).into_owned()));
            }
        }
    }
    out
}

fn all_outputs(outs: &[&Output]) -> String {
    outs.iter()
        .map(|o| format!("{}\n{}\n", o.stdout, o.stderr))
        .collect()
}

const TOKEN: &str = "tok-planted-4411";
const LIVE: &str = "live-planted-9031";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sensitive_output_in_a_secret_annotation_and_its_last_applied_annotation_never_print() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    let stack = format!(
        "stack \"sec\" {{}}\nterraform \"gen\" {{\n  source = \"gen\"\n}}\ncluster \"main\" {{\n  kubeconfig_path = \"{}\"\n}}\nkubernetes \"app\" {{\n  source    = \"app\"\n  cluster   = cluster.main\n  namespace = \"sec\"\n  vars      = {{ token = terraform.gen.outputs.token }}\n}}\n",
        c.kubeconfig.display()
    );
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  annotations:\n    note: \"uses ${token}\"\nstringData:\n  token: ${token}\n";
    write(
        &root,
        &[
            ("strata.hcl", &stack),
            (
                "gen/main.tf",
                &format!(
                    "output \"token\" {{\n  value     = \"{TOKEN}\"\n  sensitive = true\n}}\n"
                ),
            ),
            (
                "app/ns.yaml",
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: sec\n",
            ),
            ("app/secret.yaml", secret),
        ],
    );
    let apply = strata(
        c.dir.path(),
        &["apply", "--stack", "stack", "--auto-approve"],
    )
    .await;
    assert_eq!(apply.code, 0, "{apply:?}");

    // Someone changes it by hand with client-side `kubectl apply`, which leaves the whole
    // Secret, base64 data included, in the last-applied annotation.
    let by_hand = c.dir.path().join("by-hand.yaml");
    std::fs::write(
        &by_hand,
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  namespace: sec\n  annotations:\n    note: \"{LIVE}\"\ndata:\n  token: {}\n", base64::engine::general_purpose::STANDARD.encode(LIVE)),
    )
    .unwrap();
    c.kubectl(&["apply", "-f", by_hand.to_str().unwrap()])
        .await
        .code(0);
    let live = c
        .kubectl(&["get", "secret", "creds", "-n", "sec", "-o", "json"])
        .await;
    assert!(
        live.stdout.contains("last-applied-configuration"),
        "{live:?}"
    );

    let text = strata(c.dir.path(), &["-vvv", "diff", "--stack", "stack"]).await;
    let json = strata(c.dir.path(), &["diff", "--stack", "stack", "--json"]).await;
    let md = strata(c.dir.path(), &["diff", "--stack", "stack", "--markdown"]).await;
    assert_eq!(text.code, 2, "drift is found: {text:?}");
    assert!(text.stdout.contains("Secret"), "{text:?}");
    assert!(text.stdout.contains("*** (changed)"), "{text:?}");
    let printed = all_outputs(&[&apply, &text, &json, &md]);
    assert_absent("the outputs", &printed, &[TOKEN, LIVE]);
    for (file, content) in state_files(&c.dir.path().join(".strata")) {
        assert_absent(&file.display().to_string(), &content, &[TOKEN, LIVE]);
    }

    // A `kind: Secret` of another group is an ordinary object: it may not receive the value.
    write(
        &root,
        &[(
            "app/qa.yaml",
            "apiVersion: qa.example.com/v1\nkind: Secret\nmetadata:\n  name: fake\nspec:\n  token: ${token}\n",
        )],
    );
    let plan = strata(c.dir.path(), &["plan", "--stack", "stack"]).await;
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(
        plan.stderr.contains("app/qa.yaml:6: ${token} is sensitive and may only be substituted into a Secret, not a Secret of qa.example.com/v1")
            || plan.stdout.contains("app/qa.yaml:6: ${token} is sensitive and may only be substituted into a Secret, not a Secret of qa.example.com/v1"),
        "{plan:?}"
    );
    assert_absent("the refused plan", &all_outputs(&[&plan]), &[TOKEN]);
}

fn keygen(file: &Path) -> String {
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(file)
        .output()
        .expect("age-keygen runs (make tools installs age)");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("Public key: "))
        .expect("a public key")
        .trim()
        .to_string()
}

fn encrypt(recipient: &str, plain: &Path, format: &str, regex: Option<&str>) -> String {
    let mut cmd = Command::new("sops");
    cmd.args([
        "--encrypt",
        "--age",
        recipient,
        "--input-type",
        format,
        "--output-type",
        format,
    ]);
    if let Some(r) = regex {
        cmd.args(["--encrypted-regex", r]);
    }
    let out = cmd
        .arg(plain)
        .output()
        .expect("sops runs (make tools installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const SOPS_PW: &str = "sops-planted-5528";
const SOPS_TF: &str = "sops-tf-planted-7170";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sops_encrypted_secret_and_tfvars_are_applied_and_diffed_without_ever_printing_and_another_key_is_refused(
) {
    let c = Cluster::start().await;
    let keys = c.dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (mine, theirs) = (keys.join("agent.txt"), keys.join("other.txt"));
    let recipient = keygen(&mine);
    keygen(&theirs);
    let root = c.dir.path().join("stack");
    let stack = format!(
        "stack \"sops\" {{}}\nterraform \"db\" {{\n  source = \"db\"\n}}\ncluster \"main\" {{\n  kubeconfig_path = \"{}\"\n}}\nkubernetes \"app\" {{\n  source    = \"app\"\n  cluster   = cluster.main\n  namespace = \"enc\"\n}}\n",
        c.kubeconfig.display()
    );
    let plain = c.dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(
        plain.join("secret.yaml"),
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {SOPS_PW}\n"),
    )
    .unwrap();
    std::fs::write(
        plain.join("terraform.tfvars.json"),
        format!("{{\"password\": \"{SOPS_TF}\"}}"),
    )
    .unwrap();
    // The Secret with every value encrypted (sops's default), identity included.
    let secret = encrypt(&recipient, &plain.join("secret.yaml"), "yaml", None);
    let tfvars = encrypt(
        &recipient,
        &plain.join("terraform.tfvars.json"),
        "json",
        None,
    );
    assert!(!secret.contains(SOPS_PW) && !tfvars.contains(SOPS_TF));
    write(
        &root,
        &[
            ("strata.hcl", &stack),
            (
                "db/main.tf",
                "variable \"password\" { type = string }\noutput \"password_length\" { value = length(var.password) }\noutput \"echo\" { value = var.password }\n",
            ),
            ("db/terraform.tfvars.json", &tfvars),
            ("app/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: enc\n"),
            ("app/secret.yaml", &secret),
        ],
    );
    let planted = [SOPS_PW, SOPS_TF];

    // Encrypted to another key: refused, naming the file, nothing of the layer applied.
    let other = theirs.to_str().unwrap();
    let wrong = strata(
        c.dir.path(),
        &[
            "apply",
            "--stack",
            "stack",
            "--auto-approve",
            "--age-key-file",
            other,
        ],
    )
    .await;
    assert_eq!(wrong.code, 1, "{wrong:?}");
    let said = all_outputs(&[&wrong]);
    assert!(said.contains("failed to decrypt app/secret.yaml"), "{said}");
    assert!(
        said.contains("failed to decrypt db/terraform.tfvars.json"),
        "{said}"
    );
    c.kubectl(&["get", "namespace", "enc"]).await.code(1);

    let key = mine.to_str().unwrap();
    let apply = strata(
        c.dir.path(),
        &[
            "-vvv",
            "apply",
            "--stack",
            "stack",
            "--auto-approve",
            "--age-key-file",
            key,
        ],
    )
    .await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let live = c
        .kubectl(&[
            "get",
            "secret",
            "db",
            "-n",
            "enc",
            "-o",
            "jsonpath={.data.password}",
        ])
        .await;
    assert_eq!(
        live.stdout,
        base64::engine::general_purpose::STANDARD.encode(SOPS_PW),
        "decrypted for real"
    );

    // Drift: the live value changed by hand.
    c.kubectl(&[
        "patch",
        "secret",
        "db",
        "-n",
        "enc",
        "--type=merge",
        "-p",
        r#"{"stringData":{"password":"changed-by-hand"}}"#,
    ])
    .await
    .code(0);
    let diff = strata(
        c.dir.path(),
        &["-vvv", "diff", "--stack", "stack", "--age-key-file", key],
    )
    .await;
    assert_eq!(diff.code, 2, "{diff:?}");
    assert!(diff.stdout.contains(".data.password"), "{diff:?}");
    // The key also comes from the environment, as sops reads it.
    let json = crate::support::strata_cli_env(
        c.dir.path(),
        &["diff", "--stack", "stack", "--json"],
        &[("SOPS_AGE_KEY_FILE", key)],
    )
    .await;
    assert_eq!(json.code, 2, "{json:?}");
    let md = strata(
        c.dir.path(),
        &[
            "diff",
            "--stack",
            "stack",
            "--markdown",
            "--age-key-file",
            key,
        ],
    )
    .await;
    let plan = strata(
        c.dir.path(),
        &[
            "-vvv",
            "plan",
            "--stack",
            "stack",
            "--all",
            "--json",
            "--age-key-file",
            key,
        ],
    )
    .await;
    let status = strata(c.dir.path(), &["status", "--json"]).await;
    let history = strata(c.dir.path(), &["history", "--json"]).await;
    let printed = all_outputs(&[&wrong, &apply, &diff, &json, &md, &plan, &status, &history]);
    assert_absent("the outputs", &printed, &planted);
    for (file, content) in state_files(&c.dir.path().join(".strata")) {
        assert_absent(&file.display().to_string(), &content, &planted);
    }
    let inventory = c.kubectl(&["get", "configmaps", "-A", "-o", "yaml"]).await;
    assert_absent("the inventory", &inventory.stdout, &planted);
    // Git keeps the encrypted file: the copy terraform read was decrypted, not the source.
    assert_eq!(
        std::fs::read_to_string(root.join("db/terraform.tfvars.json")).unwrap(),
        tfvars
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubernetes_plan_shows_each_changed_field_before_and_after_with_secret_values_masked() {
    const OLD: &str = "old-planted-3306";
    const NEW: &str = "new-planted-8812";
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    let stack = format!(
        "stack \"fields\" {{}}\ncluster \"main\" {{\n  kubeconfig_path = \"{}\"\n}}\nkubernetes \"app\" {{\n  source    = \"app\"\n  cluster   = cluster.main\n  namespace = \"fields\"\n}}\n",
        c.kubeconfig.display()
    );
    let layer = |color: &str, password: &str| {
        format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: fields\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: {color}\n  size: large\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: {password}\n")
    };
    write(
        &root,
        &[
            ("strata.hcl", &stack),
            ("app/all.yaml", &layer("blue", OLD)),
        ],
    );
    let apply = strata(
        c.dir.path(),
        &["apply", "--stack", "stack", "--auto-approve"],
    )
    .await;
    assert_eq!(apply.code, 0, "{apply:?}");

    write(&root, &[("app/all.yaml", &layer("green", NEW))]);
    let text = strata(c.dir.path(), &["plan", "--stack", "stack"]).await;
    assert_eq!(text.code, 2, "{text:?}");
    assert!(
        text.stdout
            .contains("~ ConfigMap/fields/settings\n          .data.color: \"blue\" → \"green\"\n"),
        "{text:?}"
    );
    assert!(
        text.stdout.contains(
            "~ Secret/fields/creds\n          .data.password: \"***\" → \"*** (changed)\"\n"
        ),
        "{text:?}"
    );
    let json = strata(c.dir.path(), &["plan", "--stack", "stack", "--json"]).await;
    assert_eq!(json.code, 2, "{json:?}");
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let changes = v["layers"][0]["changes"].as_array().unwrap();
    let of = |kind: &str| {
        changes
            .iter()
            .find(|c| c["target"]["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {changes:?}"))
    };
    assert_eq!(
        of("ConfigMap")["fields"],
        serde_json::json!([{"path": ".data.color", "live": "blue", "desired": "green"}])
    );
    assert_eq!(
        of("Secret")["fields"],
        serde_json::json!([{"path": ".data.password", "live": "***", "desired": "*** (changed)"}])
    );
    assert_absent("the plans", &all_outputs(&[&text, &json]), &[OLD, NEW]);
}
