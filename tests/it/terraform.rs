//! Terraform layers against the real terraform (from `make tools`) and the hashicorp/null provider
//! from the offline mirror.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use strata::stack::{LayerId, Stack};
use strata::terraform::{
    Action, InitOutcome, LayerInput, PlanMode, Step, Terraform, TerraformBinary, TerraformError,
    TerraformOptions,
};
use strata::value::{InputValue, Outputs};
use tokio_util::sync::CancellationToken;

use crate::support::{repo_root, NULL_PROVIDER};

/// A stack in a temp dir, with its own state dir.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    state: PathBuf,
}

impl Fixture {
    fn new(files: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("stack");
        for (path, text) in files {
            let p = root.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        let state = dir.path().join("state");
        Fixture {
            _dir: dir,
            root,
            state,
        }
    }

    fn stack(&self) -> Stack {
        Stack::load(&self.root).unwrap_or_else(|d| panic!("{d}"))
    }
}

/// terraform from bin/ (what `make tools` installs) or PATH, with the offline provider mirror.
async fn terraform(state: &Path) -> Terraform {
    let rc = repo_root().join("bin/terraformrc");
    assert!(rc.exists(), "bin/terraformrc is missing: run `make tools`");
    let local = repo_root().join("bin/terraform");
    let bin = if local.exists() {
        TerraformBinary::at(&local).await
    } else {
        TerraformBinary::find(None).await
    }
    .unwrap_or_else(|e| panic!("{e}: run `make tools`"));
    let mut opts = TerraformOptions::new(state);
    opts.grace = Duration::from_secs(5);
    opts.env.push(("TF_CLI_CONFIG_FILE".into(), rc.into()));
    Terraform::new(bin, opts)
}

fn net_module() -> String {
    format!(
        "{NULL_PROVIDER}
variable \"cidr\" {{ type = string }}
resource \"null_resource\" \"net\" {{
  triggers = {{ cidr = var.cidr }}
}}
output \"subnet_id\" {{ value = \"subnet-${{var.cidr}}\" }}
"
    )
}

fn vars_of(stack: &Stack, layer: &LayerId, outputs: &Outputs) -> BTreeMap<String, InputValue> {
    stack
        .layer(layer)
        .unwrap()
        .vars
        .iter()
        .map(|(k, e)| (k.clone(), e.evaluate(outputs).unwrap()))
        .collect()
}

fn input<'a>(
    stack: &'a Stack,
    root: &'a Path,
    layer: &LayerId,
    revision: &'a str,
    vars: BTreeMap<String, InputValue>,
) -> LayerInput<'a> {
    LayerInput {
        layer: stack.layer(layer).unwrap(),
        stack_root: root,
        revision,
        vars,
        backend_config: BTreeMap::new(),
    }
}

#[tokio::test]
async fn first_apply_creates_and_the_second_plan_is_a_no_op_without_init() {
    let fx = Fixture::new(&[
        ("strata.hcl", "stack \"s\" {}\nterraform \"net\" {\n  source = \"net\"\n  vars = { cidr = \"10.0.0.0/16\" }\n}\n"),
        ("net/main.tf", &net_module()),
    ]);
    let stack = fx.stack();
    let tf = terraform(&fx.state).await;
    let id = LayerId::terraform("net");
    let cancel = CancellationToken::new();
    let vars = vars_of(&stack, &id, &Outputs::new());

    let mut p = tf
        .prepare(input(&stack, &fx.root, &id, "rev1", vars.clone()))
        .await
        .unwrap();
    let plan = tf.plan(&mut p, PlanMode::Normal, &cancel).await.unwrap();
    assert_eq!(p.init, InitOutcome::Ran);
    assert!(plan.has_changes);
    assert_eq!(plan.counts.to_string(), "+1 ~0 -0");
    assert_eq!(plan.resources[0].address, "null_resource.net");
    assert_eq!(plan.resources[0].action, Action::Create);
    let applied = tf.apply(&p, &plan, &cancel).await.unwrap();
    assert_eq!(applied.outputs["subnet_id"].value, "subnet-10.0.0.0/16");
    drop(p);
    assert!(
        fx.state.join("layers/net/terraform.tfstate").exists(),
        "local state lives in the state dir"
    );

    let before = tf.invocations();
    let mut p = tf
        .prepare(input(&stack, &fx.root, &id, "rev1", vars))
        .await
        .unwrap();
    let plan = tf.plan(&mut p, PlanMode::Normal, &cancel).await.unwrap();
    assert_eq!(p.init, InitOutcome::Skipped);
    assert!(!plan.has_changes, "{plan:?}");
    assert!(plan.resources.is_empty());
    assert_eq!(
        tf.invocations() - before,
        1,
        "plan only: a plan without changes has nothing to show"
    );
}

#[tokio::test]
async fn a_changed_var_plans_a_replace_and_a_stale_plan_is_refused() {
    let fx = Fixture::new(&[
        (
            "strata.hcl",
            "stack \"s\" {}\nterraform \"net\" {\n  source = \"net\"\n}\n",
        ),
        ("net/main.tf", &net_module()),
    ]);
    let stack = fx.stack();
    let tf = terraform(&fx.state).await;
    let id = LayerId::terraform("net");
    let cancel = CancellationToken::new();
    let cidr = |v: &str| BTreeMap::from([("cidr".to_string(), InputValue::Known(v.into()))]);

    let mut p = tf
        .prepare(input(&stack, &fx.root, &id, "r1", cidr("a")))
        .await
        .unwrap();
    let plan = tf.plan(&mut p, PlanMode::Normal, &cancel).await.unwrap();
    tf.apply(&p, &plan, &cancel).await.unwrap();

    let mut p = tf
        .prepare(input(&stack, &fx.root, &id, "r1", cidr("b")))
        .await
        .unwrap();
    let plan = tf.plan(&mut p, PlanMode::Normal, &cancel).await.unwrap();
    assert_eq!(plan.resources[0].action, Action::Replace);
    assert_eq!(plan.counts.replace, 1);
    let trig = plan.resources[0]
        .attributes
        .iter()
        .find(|a| a.name == "triggers")
        .unwrap();
    assert!(trig.forces_replacement);

    let other = tf
        .prepare(input(&stack, &fx.root, &id, "r2", cidr("b")))
        .await
        .unwrap();
    let err = tf.apply(&other, &plan, &cancel).await.unwrap_err();
    assert!(matches!(err, TerraformError::StalePlan { .. }), "{err}");

    let mut d = tf
        .prepare(input(&stack, &fx.root, &id, "r1", cidr("a")))
        .await
        .unwrap();
    let destroy = tf.plan(&mut d, PlanMode::Destroy, &cancel).await.unwrap();
    assert_eq!(destroy.counts.destroy, 1);
    tf.apply(&d, &destroy, &cancel).await.unwrap();
}

#[tokio::test]
async fn outputs_reach_a_dependent_layer_and_state_survives_a_new_revision_dir() {
    let app = format!(
        "{NULL_PROVIDER}
variable \"subnet\" {{ type = string }}
resource \"null_resource\" \"app\" {{
  triggers = {{ subnet = var.subnet }}
}}
output \"placed_in\" {{ value = var.subnet }}
"
    );
    let hcl = "stack \"s\" {}\nterraform \"net\" {\n  source = \"net\"\n  vars = { cidr = \"10.1.0.0/16\" }\n}\nterraform \"app\" {\n  source = \"app\"\n  vars = { subnet = \"${terraform.net.outputs.subnet_id}-a\" }\n}\n";
    let fx = Fixture::new(&[
        ("strata.hcl", hcl),
        ("net/main.tf", &net_module()),
        ("app/main.tf", &app),
    ]);
    let stack = fx.stack();
    let tf = terraform(&fx.state).await;
    let cancel = CancellationToken::new();
    let (net, app_id) = (LayerId::terraform("net"), LayerId::terraform("app"));

    let mut outputs = Outputs::new();
    assert!(vars_of(&stack, &app_id, &outputs)["subnet"].is_unknown());
    let mut p = tf
        .prepare(input(
            &stack,
            &fx.root,
            &net,
            "r1",
            vars_of(&stack, &net, &outputs),
        ))
        .await
        .unwrap();
    let plan = tf.plan(&mut p, PlanMode::Normal, &cancel).await.unwrap();
    outputs.insert(
        net.clone(),
        tf.apply(&p, &plan, &cancel).await.unwrap().outputs,
    );

    let vars = vars_of(&stack, &app_id, &outputs);
    let mut p = tf
        .prepare(input(&stack, &fx.root, &app_id, "r1", vars))
        .await
        .unwrap();
    let plan = tf.plan(&mut p, PlanMode::Normal, &cancel).await.unwrap();
    let applied = tf.apply(&p, &plan, &cancel).await.unwrap();
    assert_eq!(applied.outputs["placed_in"].value, "subnet-10.1.0.0/16-a");

    // The same configuration materialised elsewhere (a new revision): state is found, no changes.
    let moved = fx.root.parent().unwrap().join("revision-2");
    copy_dir(&fx.root, &moved);
    let stack2 = Stack::load(&moved).unwrap();
    let mut p = tf
        .prepare(input(
            &stack2,
            &moved,
            &net,
            "r2",
            vars_of(&stack2, &net, &outputs),
        ))
        .await
        .unwrap();
    let plan = tf.plan(&mut p, PlanMode::Normal, &cancel).await.unwrap();
    assert!(!plan.has_changes, "{plan:?}");
}

#[tokio::test]
async fn a_failing_local_exec_names_the_layer_and_step() {
    let module = format!(
        "{NULL_PROVIDER}
resource \"null_resource\" \"boom\" {{
  provisioner \"local-exec\" {{
    command = \"echo the-disk-is-full >&2; exit 3\"
  }}
}}
"
    );
    let fx = Fixture::new(&[
        (
            "strata.hcl",
            "stack \"s\" {}\nterraform \"db\" {\n  source = \"db\"\n}\n",
        ),
        ("db/main.tf", &module),
    ]);
    let stack = fx.stack();
    let tf = terraform(&fx.state).await;
    let id = LayerId::terraform("db");
    let cancel = CancellationToken::new();
    let mut p = tf
        .prepare(input(&stack, &fx.root, &id, "r1", BTreeMap::new()))
        .await
        .unwrap();
    let plan = tf.plan(&mut p, PlanMode::Normal, &cancel).await.unwrap();
    let err = tf.apply(&p, &plan, &cancel).await.unwrap_err();
    let TerraformError::Failed { step, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*step, Step::Apply);
    let text = err.to_string();
    assert!(
        text.starts_with("terraform.db: terraform apply failed: "),
        "{text}"
    );
    assert!(text.contains("local-exec"), "{text}");
}

#[tokio::test]
async fn a_sensitive_output_never_appears_in_any_output() {
    const SECRET: &str = "planted-secret-8c41f";
    let producer = format!(
        "{NULL_PROVIDER}
output \"token\" {{
  value     = \"{SECRET}\"
  sensitive = true
}}
output \"plain\" {{ value = \"visible\" }}
"
    );
    // The consumer does not mark its variable sensitive and echoes it: strata must scrub it.
    let consumer = format!(
        "{NULL_PROVIDER}
variable \"token\" {{ type = string }}
resource \"null_resource\" \"use\" {{
  triggers = {{ token = var.token }}
  provisioner \"local-exec\" {{
    command = \"echo using ${{var.token}}; echo failing with ${{var.token}} >&2; exit 1\"
  }}
}}
output \"echo\" {{ value = var.token }}
"
    );
    let hcl = "stack \"s\" {}\nterraform \"p\" {\n  source = \"p\"\n}\nterraform \"c\" {\n  source = \"c\"\n  vars = { token = terraform.p.outputs.token }\n}\n";
    let fx = Fixture::new(&[
        ("strata.hcl", hcl),
        ("p/main.tf", &producer),
        ("c/main.tf", &consumer),
    ]);
    let stack = fx.stack();

    let logs = crate::support::captured_logs();
    let tf = terraform(&fx.state).await;
    let cancel = CancellationToken::new();
    let (p_id, c_id) = (LayerId::terraform("p"), LayerId::terraform("c"));
    let mut printed = String::new();

    let mut p = tf
        .prepare(input(&stack, &fx.root, &p_id, "r1", BTreeMap::new()))
        .await
        .unwrap();
    let plan = tf.plan(&mut p, PlanMode::Normal, &cancel).await.unwrap();
    printed += &format!("{plan:?}{}", serde_json::to_string(&plan).unwrap());
    let applied = tf.apply(&p, &plan, &cancel).await.unwrap();
    printed += &format!("{applied:?}{}", serde_json::to_string(&applied).unwrap());
    assert!(applied.outputs["token"].sensitive);
    assert_eq!(
        applied.outputs["token"].value, SECRET,
        "the value itself is kept, wrapped"
    );

    let mut outputs = Outputs::new();
    outputs.insert(p_id, applied.outputs);
    let vars = vars_of(&stack, &c_id, &outputs);
    assert!(vars["token"].is_sensitive());
    printed += &format!("{vars:?}");
    let mut c = tf
        .prepare(input(&stack, &fx.root, &c_id, "r1", vars))
        .await
        .unwrap();
    let plan = tf.plan(&mut c, PlanMode::Normal, &cancel).await.unwrap();
    printed += &format!("{plan:?}{}", serde_json::to_string(&plan).unwrap());
    let err = tf.apply(&c, &plan, &cancel).await.unwrap_err();
    printed += &format!("{err}{err:?}");
    drop(c);

    let logs = logs.text();
    assert!(
        logs.contains("using ***"),
        "the consumer's echo is logged, scrubbed:\n{logs}"
    );
    assert!(printed.contains("failing with ***"), "{printed}");
    assert!(
        !printed.contains(SECRET),
        "leaked in printed values: {printed}"
    );
    assert!(!logs.contains(SECRET), "leaked in logs: {logs}");
    // The var file that carried it is private and gone with the run.
    assert!(!std::fs::read_dir(fx.state.join("layers/c/runs"))
        .unwrap()
        .any(|_| true));
}

#[tokio::test]
async fn a_timed_out_apply_is_interrupted_and_leaves_no_process_behind() {
    let marker = "59.73";
    let module = format!(
        "{NULL_PROVIDER}
resource \"null_resource\" \"slow\" {{
  provisioner \"local-exec\" {{
    command = \"sleep {marker}\"
  }}
}}
"
    );
    let fx = Fixture::new(&[
        (
            "strata.hcl",
            "stack \"s\" {}\nterraform \"slow\" {\n  source  = \"slow\"\n  timeout = \"10s\"\n}\n",
        ),
        ("slow/main.tf", &module),
    ]);
    let mut stack = fx.stack();
    let tf = terraform(&fx.state).await;
    let id = LayerId::terraform("slow");
    let cancel = CancellationToken::new();
    // A first plan with a generous timeout does the (slow) init.
    let generous = {
        let mut s = stack.clone();
        s.layers[0].timeout = Duration::from_secs(300);
        s
    };
    let mut p = tf
        .prepare(input(&generous, &fx.root, &id, "r", BTreeMap::new()))
        .await
        .unwrap();
    tf.plan(&mut p, PlanMode::Normal, &cancel).await.unwrap();
    drop(p);

    stack.layers[0].timeout = Duration::from_secs(10);
    let mut p = tf
        .prepare(input(&stack, &fx.root, &id, "r", BTreeMap::new()))
        .await
        .unwrap();
    let plan = tf.plan(&mut p, PlanMode::Normal, &cancel).await.unwrap();
    let started = std::time::Instant::now();
    let err = tf.apply(&p, &plan, &cancel).await.unwrap_err();
    assert!(
        matches!(
            err,
            TerraformError::TimedOut {
                step: Step::Apply,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.is_interrupted());
    assert_eq!(
        err.to_string(),
        "terraform.slow: terraform apply timed out after 10s and was interrupted"
    );
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "did not wait for the sleep"
    );
    let left: Vec<String> = processes()
        .into_iter()
        .filter(|c| c.contains(marker))
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
}

#[tokio::test]
async fn cancellation_interrupts_a_running_apply() {
    let module = format!(
        "{NULL_PROVIDER}
resource \"null_resource\" \"slow\" {{
  provisioner \"local-exec\" {{
    command = \"sleep 58.31\"
  }}
}}
"
    );
    let fx = Fixture::new(&[
        (
            "strata.hcl",
            "stack \"s\" {}\nterraform \"slow\" {\n  source = \"slow\"\n}\n",
        ),
        ("slow/main.tf", &module),
    ]);
    let stack = fx.stack();
    let tf = terraform(&fx.state).await;
    let id = LayerId::terraform("slow");
    let cancel = CancellationToken::new();
    let mut p = tf
        .prepare(input(&stack, &fx.root, &id, "r", BTreeMap::new()))
        .await
        .unwrap();
    let plan = tf.plan(&mut p, PlanMode::Normal, &cancel).await.unwrap();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        trigger.cancel();
    });
    let err = tf.apply(&p, &plan, &cancel).await.unwrap_err();
    assert!(
        matches!(
            err,
            TerraformError::Interrupted {
                step: Step::Apply,
                ..
            }
        ),
        "{err}"
    );
    let left: Vec<String> = processes()
        .into_iter()
        .filter(|c| c.contains("58.31"))
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
}

#[tokio::test]
async fn an_unknown_input_is_refused_before_terraform_runs() {
    let fx = Fixture::new(&[
        ("strata.hcl", "stack \"s\" {}\nterraform \"net\" {\n  source = \"net\"\n}\nterraform \"app\" {\n  source = \"net\"\n  vars = { cidr = terraform.net.outputs.subnet_id }\n}\n"),
        ("net/main.tf", &net_module()),
    ]);
    let stack = fx.stack();
    let tf = terraform(&fx.state).await;
    let id = LayerId::terraform("app");
    let vars = vars_of(&stack, &id, &Outputs::new());
    let err = tf
        .prepare(input(&stack, &fx.root, &id, "r", vars))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "terraform.app: input \"cidr\" is not known yet (terraform.net outputs.subnet_id)"
    );
    assert_eq!(tf.invocations(), 0);
}

/// Command lines of every process on the machine.
fn processes() -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if !text.trim().is_empty() {
                out.push(text);
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_declared_backend_gets_backend_config_and_workspaces_are_created() {
    let module = "terraform {\n  backend \"local\" {}\n  required_providers {\n    null = { source = \"hashicorp/null\" }\n  }\n}\nresource \"null_resource\" \"x\" {}\noutput \"ws\" { value = terraform.workspace }\n";
    let fx = Fixture::new(&[
        (
            "strata.hcl",
            "stack \"s\" {}\nterraform \"b\" {\n  source = \"b\"\n  workspace = \"staging\"\n}\n",
        ),
        ("b/main.tf", module),
    ]);
    let stack = fx.stack();
    let tf = terraform(&fx.state).await;
    let id = LayerId::terraform("b");
    let cancel = CancellationToken::new();
    let elsewhere = fx.root.parent().unwrap().join("remote-state");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let state_path = elsewhere.join("b.tfstate");
    let mut inp = input(&stack, &fx.root, &id, "r", BTreeMap::new());
    inp.backend_config = BTreeMap::from([
        (
            "workspace_dir".to_string(),
            InputValue::Known(elsewhere.join("ws").display().to_string().into()),
        ),
        (
            "path".to_string(),
            InputValue::Known(state_path.display().to_string().into()),
        ),
    ]);
    let mut p = tf.prepare(inp.clone()).await.unwrap();
    assert!(p.config.has_backend);
    let plan = tf.plan(&mut p, PlanMode::Normal, &cancel).await.unwrap();
    let applied = tf.apply(&p, &plan, &cancel).await.unwrap();
    assert_eq!(applied.outputs["ws"].value, "staging");
    assert!(
        elsewhere.join("ws/staging/terraform.tfstate").exists(),
        "the workspace's state is where backend_config says"
    );
    assert!(!fx.state.join("layers/b/terraform.tfstate").exists());
    drop(p);
    let mut p = tf.prepare(inp).await.unwrap();
    let plan = tf.plan(&mut p, PlanMode::Normal, &cancel).await.unwrap();
    assert_eq!(p.init, InitOutcome::Skipped);
    assert!(!plan.has_changes);
}

#[tokio::test]
async fn plan_files_and_run_dirs_are_private() {
    use std::os::unix::fs::MetadataExt;
    let fx = Fixture::new(&[
        ("strata.hcl", "stack \"s\" {}\nterraform \"net\" {\n  source = \"net\"\n  vars = { cidr = \"10.9.0.0/16\" }\n}\n"),
        ("net/main.tf", &net_module()),
    ]);
    let stack = fx.stack();
    let tf = terraform(&fx.state).await;
    let id = LayerId::terraform("net");
    let cancel = CancellationToken::new();
    let vars = vars_of(&stack, &id, &Outputs::new());
    let mut p = tf
        .prepare(input(&stack, &fx.root, &id, "r", vars))
        .await
        .unwrap();
    let plan = tf.plan(&mut p, PlanMode::Normal, &cancel).await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
    let runs: Vec<PathBuf> = std::fs::read_dir(fx.state.join("layers/net/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run_dir = runs[0].as_path();
    assert_eq!(mode(&run_dir.join("layer.tfplan")), 0o600, "the plan file");
    assert_eq!(mode(run_dir), 0o700, "the run dir");
    assert_eq!(
        mode(&fx.state.join("layers/net/runs")),
        0o700,
        "the runs dir"
    );
    let files: Vec<(String, u32)> = std::fs::read_dir(run_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                mode(&e.path()),
            )
        })
        .collect();
    assert!(files.len() >= 3, "{files:?}");
    assert!(files.iter().all(|(_, m)| *m == 0o600), "{files:?}");
    tf.apply(&p, &plan, &cancel).await.unwrap();
    assert_eq!(
        mode(&fx.state.join("layers/net/terraform.tfstate")),
        0o600,
        "local state holds secrets"
    );
}

#[tokio::test]
async fn state_paths_and_backend_settings_with_template_markers_stay_literal() {
    let declared = "terraform {\n  backend \"local\" {}\n  required_providers {\n    null = { source = \"hashicorp/null\" }\n  }\n}\nresource \"null_resource\" \"x\" {}\n";
    let fx = Fixture::new(&[
        (
            "strata.hcl",
            "stack \"s\" {}\nterraform \"plain\" {\n  source = \"plain\"\n}\nterraform \"b\" {\n  source = \"b\"\n}\n",
        ),
        (
            "plain/main.tf",
            &format!("{NULL_PROVIDER}resource \"null_resource\" \"x\" {{}}\n"),
        ),
        ("b/main.tf", declared),
    ]);
    let stack = fx.stack();
    // Markers, quotes and a backslash: a template would fail to parse or write elsewhere.
    let state = fx
        .root
        .parent()
        .unwrap()
        .join("st${a}ate %{ if x } \"q\" \\ end");
    let tf = terraform(&state).await;
    let cancel = CancellationToken::new();

    let plain = LayerId::terraform("plain");
    let mut p = tf
        .prepare(input(&stack, &fx.root, &plain, "r", BTreeMap::new()))
        .await
        .unwrap();
    let plan = tf.plan(&mut p, PlanMode::Normal, &cancel).await.unwrap();
    tf.apply(&p, &plan, &cancel).await.unwrap();
    assert!(
        state.join("layers/plain/terraform.tfstate").exists(),
        "the override's path is read literally"
    );

    let b = LayerId::terraform("b");
    let state_path = state.join("b ${x} %{y}.tfstate");
    let mut inp = input(&stack, &fx.root, &b, "r", BTreeMap::new());
    inp.backend_config = BTreeMap::from([(
        "path".to_string(),
        InputValue::Known(state_path.display().to_string().into()),
    )]);
    let mut p = tf.prepare(inp).await.unwrap();
    let plan = tf.plan(&mut p, PlanMode::Normal, &cancel).await.unwrap();
    tf.apply(&p, &plan, &cancel).await.unwrap();
    assert!(
        state_path.exists(),
        "the backend_config value is read literally"
    );
}
