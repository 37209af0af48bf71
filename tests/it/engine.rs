//! The engine end to end: real terraform, a DevCluster, the strata CLI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use strata::engine::record::LayerStatus;
use strata::engine::{Engine, EngineOptions, Mode, Source};
use strata::stack::LayerId;

use crate::support::{strata_cli as strata, tf_env, Cluster};

const NULL: &str =
    "terraform {\n  required_providers {\n    null = { source = \"hashicorp/null\" }\n  }\n}\n";

fn network_tf() -> String {
    format!("{NULL}variable \"cidr\" {{ type = string }}\nresource \"null_resource\" \"net\" {{\n  triggers = {{ cidr = var.cidr }}\n}}\noutput \"subnet_id\" {{ value = \"subnet-${{replace(var.cidr, \"/\", \"-\")}}\" }}\n")
}

fn cluster_tf() -> String {
    format!("{NULL}variable \"subnet_id\" {{ type = string }}\nvariable \"kubeconfig_path\" {{ type = string }}\nresource \"null_resource\" \"cluster\" {{\n  triggers = {{ subnet = var.subnet_id }}\n}}\noutput \"db_host\" {{ value = \"db.${{var.subnet_id}}.internal\" }}\noutput \"kubeconfig\" {{\n  value     = file(var.kubeconfig_path)\n  sensitive = true\n}}\n")
}

fn stack_hcl(kubeconfig: &Path) -> String {
    format!(
        r#"stack "e2e" {{
  parallelism = 4
}}

terraform "network" {{
  source = "infra/network"
  vars   = {{ cidr = "10.0.0.0/16" }}
}}

terraform "cluster" {{
  source = "infra/cluster"
  vars = {{
    subnet_id       = terraform.network.outputs.subnet_id
    kubeconfig_path = "{}"
  }}
}}

cluster "main" {{
  kubeconfig = terraform.cluster.outputs.kubeconfig
}}

kubernetes "platform" {{
  source    = "k8s/platform"
  cluster   = cluster.main
  namespace = "platform"
  drift     = "correct"
  vars      = {{ db_host = terraform.cluster.outputs.db_host }}
}}

kubernetes "apps" {{
  source     = "k8s/apps"
  cluster    = cluster.main
  namespace  = "apps"
  depends_on = [kubernetes.platform]
}}
"#,
        kubeconfig.display()
    )
}

fn write(root: &Path, files: &[(&str, &str)]) {
    for (p, t) in files {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, t).unwrap();
    }
}

fn e2e_stack(root: &Path, kubeconfig: &Path) {
    write(root, &[
        ("strata.hcl", &stack_hcl(kubeconfig)),
        ("infra/network/main.tf", &network_tf()),
        ("infra/cluster/main.tf", &cluster_tf()),
        ("k8s/platform/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: platform\n"),
        ("k8s/platform/settings.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  db_host: ${db_host}\n  color: blue\n"),
        ("k8s/apps/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n"),
        ("k8s/apps/web.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: \"nginx:1.27\"}]\n"),
    ]);
}

fn statuses(json: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["layer"].as_str().unwrap().to_string(),
                l["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_stack_applies_end_to_end_and_then_stays_converged() {
    let c = Cluster::start().await;
    let work = c.dir.path().join("work");
    e2e_stack(&work.join("stack"), &c.kubeconfig);

    let plan = strata(&work, &["plan", "--stack", "stack", "--json"]).await;
    assert_eq!(plan.code, 2, "{plan:?}");
    assert_eq!(
        statuses(&plan.stdout),
        pairs(&[
            ("terraform.network", "changes"),
            ("terraform.cluster", "changes"),
            ("kubernetes.platform", "waiting"),
            ("kubernetes.apps", "waiting"),
        ])
    );
    let text = strata(&work, &["plan", "--stack", "stack"]).await;
    assert!(
        text.stdout
            .contains("waiting on terraform.cluster (outputs.kubeconfig unknown until applied)"),
        "{}",
        text.stdout
    );

    let apply = strata(
        &work,
        &["apply", "--stack", "stack", "--auto-approve", "--json"],
    )
    .await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(
        statuses(&apply.stdout),
        pairs(&[
            ("terraform.network", "applied"),
            ("terraform.cluster", "applied"),
            ("kubernetes.platform", "applied"),
            ("kubernetes.apps", "applied"),
        ])
    );
    let host = c
        .kubectl(&[
            "get",
            "cm",
            "settings",
            "-n",
            "platform",
            "-o",
            "jsonpath={.data.db_host}",
        ])
        .await
        .code(0);
    assert_eq!(
        host.stdout, "db.subnet-10.0.0.0-16.internal",
        "a terraform output reached a ConfigMap"
    );
    assert!(
        !apply.stdout.contains(c.dev.token()) && !apply.stderr.contains(c.dev.token()),
        "the kubeconfig (a sensitive output) never shows"
    );

    let rv = c.dev.resource_version();
    let again = strata(
        &work,
        &["apply", "--stack", "stack", "--auto-approve", "--json"],
    )
    .await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        statuses(&again.stdout),
        pairs(&[
            ("terraform.network", "not_affected"),
            ("terraform.cluster", "not_affected"),
            ("kubernetes.platform", "unchanged"),
            ("kubernetes.apps", "unchanged"),
        ])
    );
    assert_eq!(
        c.dev.resource_version(),
        rv,
        "a second apply changes nothing in the cluster"
    );

    // A colleague's out-of-band edit: diff sees it (exit 2), apply reverts it, diff is clean.
    c.kubectl(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "platform",
        "--type=merge",
        "-p",
        r#"{"data":{"color":"red"}}"#,
    ])
    .await
    .code(0);
    let diff = strata(&work, &["diff", "--stack", "stack"]).await;
    assert_eq!(diff.code, 2, "{diff:?}");
    assert!(
        diff.stdout.contains(".data.color: \"red\" → \"blue\""),
        "{}",
        diff.stdout
    );
    let md = strata(&work, &["diff", "--stack", "stack", "--markdown"]).await;
    assert!(
        md.stdout.contains("| `kubernetes.platform` | drifted |"),
        "{}",
        md.stdout
    );
    let fix = strata(&work, &["apply", "--stack", "stack", "--auto-approve"]).await;
    assert_eq!(fix.code, 0, "{fix:?}");
    let diff = strata(&work, &["diff", "--stack", "stack", "--json"]).await;
    assert_eq!(diff.code, 0, "{diff:?}");

    let history = strata(&work, &["history", "--json"]).await.code(0);
    let runs: Vec<serde_json::Value> = serde_json::from_str(&history.stdout).unwrap();
    let commands: Vec<&str> = runs
        .iter()
        .map(|r| r["command"].as_str().unwrap())
        .collect();
    assert_eq!(commands, ["plan", "plan", "apply", "apply", "apply"]);
    let status = strata(&work, &["status"]).await.code(0);
    assert!(
        status.stdout.contains("kubernetes.platform"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("converged"), "{}", status.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_layer_skips_its_dependents_while_a_parallel_branch_applies() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("stack");
    let boom = format!("{NULL}resource \"null_resource\" \"b\" {{\n  provisioner \"local-exec\" {{\n    command = \"exit 7\"\n  }}\n}}\noutput \"x\" {{ value = \"1\" }}\n");
    let ok = format!("{NULL}variable \"x\" {{\n  type    = string\n  default = \"\"\n}}\nresource \"null_resource\" \"ok\" {{}}\noutput \"y\" {{ value = \"2\" }}\n");
    write(&root, &[
        ("strata.hcl", "stack \"s\" {}\nterraform \"broken\" {\n  source = \"broken\"\n}\nterraform \"after\" {\n  source = \"ok\"\n  vars   = { x = terraform.broken.outputs.x }\n}\nterraform \"last\" {\n  source     = \"ok\"\n  depends_on = [terraform.after]\n}\nterraform \"independent\" {\n  source = \"ok\"\n}\n"),
        ("broken/main.tf", &boom),
        ("ok/main.tf", &ok),
    ]);
    let out = strata(
        dir.path(),
        &["apply", "--stack", "stack", "--auto-approve", "--json"],
    )
    .await;
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        statuses(&out.stdout),
        pairs(&[
            ("terraform.broken", "failed"),
            ("terraform.after", "skipped"),
            ("terraform.last", "skipped"),
            ("terraform.independent", "applied"),
        ])
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["layers"][2]["detail"], "upstream terraform.broken failed",
        "the root cause, not the intermediate layer"
    );
    assert!(v["layers"][0]["detail"].as_str().unwrap().starts_with(
        "terraform.broken: terraform apply failed: Error: local-exec provisioner error"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_touching_one_layer_plans_only_it_and_its_dependents() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let app = format!("{NULL}variable \"subnet\" {{ type = string }}\nresource \"null_resource\" \"app\" {{\n  triggers = {{ s = var.subnet }}\n}}\n");
    let other = format!("{NULL}resource \"null_resource\" \"other\" {{}}\n");
    write(&repo, &[
        ("strata.hcl", "stack \"g\" {}\nterraform \"net\" {\n  source = \"net\"\n  vars = { cidr = \"10.0.0.0/8\" }\n}\nterraform \"app\" {\n  source = \"app\"\n  vars = { subnet = terraform.net.outputs.subnet_id }\n}\nterraform \"other\" {\n  source = \"other\"\n}\n"),
        ("net/main.tf", &network_tf()),
        ("app/main.tf", &app),
        ("other/main.tf", &other),
    ]);
    let git = |args: &[&str]| {
        let ok = std::process::Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("GIT_AUTHOR_NAME", "A")
            .env("GIT_AUTHOR_EMAIL", "a@x")
            .env("GIT_COMMITTER_NAME", "A")
            .env("GIT_COMMITTER_EMAIL", "a@x")
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-qm", "stack"]);
    let state = dir.path().join("state");
    let engine = |state: PathBuf| {
        let repo = repo.clone();
        async move {
            let spec = strata::source::SourceSpec {
                url: repo.display().to_string(),
                reference: None,
                path: None,
            };
            let source = Source::Repo {
                spec,
                opts: strata::source::SourceOptions::new(&state),
            };
            let mut opts = EngineOptions::new(&state);
            opts.terraform_env = tf_env()
                .into_iter()
                .filter(|(k, _)| k != "PATH")
                .map(|(k, v)| (k.into(), v.into()))
                .collect();
            Engine::open(source, opts).await.unwrap()
        }
    };
    let first = engine(state.clone()).await;
    let applied = first.run(Mode::Apply).await.unwrap();
    assert!(
        applied
            .layers
            .iter()
            .all(|l| l.status == LayerStatus::Applied),
        "{applied:?}"
    );

    // Touch the network only: it and its dependent are planned; `other` runs no terraform at all.
    write(
        &repo,
        &[("net/main.tf", &format!("{}\n# a comment\n", network_tf()))],
    );
    git(&["commit", "-qam", "touch net"]);
    let second = engine(state.clone()).await;
    let plan = second.run(Mode::Plan).await.unwrap();
    let by = |n: &str| {
        plan.layers
            .iter()
            .find(|l| l.layer == LayerId::terraform(n))
            .unwrap()
            .clone()
    };
    assert_eq!(by("net").status, LayerStatus::Unchanged);
    assert!(
        by("net")
            .reasons
            .iter()
            .any(|r| r.contains("changed paths: net/main.tf")),
        "{:?}",
        by("net").reasons
    );
    assert_eq!(by("app").status, LayerStatus::Unchanged);
    assert!(
        by("app")
            .reasons
            .iter()
            .any(|r| r.contains("upstream terraform.net")),
        "{:?}",
        by("app").reasons
    );
    assert_eq!(by("other").status, LayerStatus::NotAffected);
    assert_eq!(
        second.terraform_invocations(),
        2,
        "a plan for net and app (no changes: nothing to show); init skipped; nothing for other"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_apply_waits_for_or_names_the_lock_holder_and_manual_layers_need_approval() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("stack");
    let tf = format!("{NULL}resource \"null_resource\" \"x\" {{}}\n");
    write(&root, &[
        ("strata.hcl", "stack \"l\" {}\nterraform \"gate\" {\n  source = \"x\"\n  apply  = \"manual\"\n}\nterraform \"free\" {\n  source = \"x\"\n}\n"),
        ("x/main.tf", &tf),
    ]);
    let state = dir.path().join(".strata");
    let held =
        strata::state::lock::Lock::acquire(&state, "a test holding the lock", Duration::ZERO)
            .await
            .unwrap();
    let out = strata(dir.path(), &["apply", "--stack", "stack", "--auto-approve"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("the stack is locked by pid"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("running `a test holding the lock`"),
        "{}",
        out.stderr
    );
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        drop(held);
    });
    let out = strata(
        dir.path(),
        &[
            "apply",
            "--stack",
            "stack",
            "--auto-approve",
            "--lock-timeout",
            "20s",
            "--json",
        ],
    )
    .await;
    release.await.unwrap();
    assert_eq!(
        out.code, 2,
        "waited for the lock; the manual layer awaits approval: {out:?}"
    );
    assert_eq!(
        statuses(&out.stdout),
        pairs(&[
            ("terraform.gate", "awaiting_approval"),
            ("terraform.free", "applied")
        ])
    );
    let out = strata(
        dir.path(),
        &[
            "apply",
            "--stack",
            "stack",
            "--auto-approve",
            "--approve",
            "gate",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        statuses(&out.stdout),
        pairs(&[
            ("terraform.gate", "applied"),
            ("terraform.free", "not_affected")
        ])
    );
    let out = strata(dir.path(), &["apply", "--stack", "stack"]).await;
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("pass --auto-approve"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_layers_declaring_the_same_object_are_refused_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("stack");
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\n";
    write(&root, &[
        ("strata.hcl", "stack \"d\" {}\ncluster \"c\" {\n  kubeconfig_path = \"/nonexistent\"\n}\nkubernetes \"a\" {\n  source    = \"a\"\n  cluster   = cluster.c\n  namespace = \"team\"\n}\nkubernetes \"b\" {\n  source    = \"b\"\n  cluster   = cluster.c\n  namespace = \"team\"\n}\n"),
        ("a/cm.yaml", cm),
        ("b/other.yaml", &format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n---\n{cm}")),
    ]);
    let out = strata(dir.path(), &["plan", "--stack", "stack"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains("ConfigMap/team/shared is declared by two layers: kubernetes.a (a/cm.yaml:1) and kubernetes.b (b/other.yaml:6)"),
        "{}",
        out.stderr
    );
}

/// An apply runs `terraform output` only when the plan left an output unknown: outputs the plan
/// knows are what terraform would print (one invocation fewer per applied layer), and they come
/// out the same, sensitive flag included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_takes_the_outputs_its_plan_knows_and_asks_terraform_for_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let known = format!(
        "{NULL}resource \"null_resource\" \"x\" {{}}\noutput \"name\" {{ value = \"fixed\" }}\noutput \"token\" {{\n  value     = \"s3cr3t-planted\"\n  sensitive = true\n}}\n"
    );
    let later = format!("{NULL}resource \"null_resource\" \"x\" {{}}\noutput \"id\" {{ value = null_resource.x.id }}\n");
    let mut counts = Vec::new();
    for (name, tf) in [("known", &known), ("later", &later)] {
        let root = dir.path().join(name);
        write(
            &root,
            &[
                (
                    "strata.hcl",
                    &format!("stack \"{name}\" {{}}\nterraform \"t\" {{\n  source = \"t\"\n}}\n"),
                ),
                ("t/main.tf", tf),
            ],
        );
        let state = root.join(".strata");
        let mut opts = EngineOptions::new(&state);
        opts.terraform_env = tf_env()
            .into_iter()
            .filter(|(k, _)| k != "PATH")
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let engine = Engine::open(Source::Dir(root.clone()), opts).await.unwrap();
        let report = engine.run(Mode::Apply).await.unwrap();
        assert_eq!(report.layers[0].status, LayerStatus::Applied, "{report:?}");
        counts.push(engine.terraform_invocations());
        let cached: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(state.join("layers/t/outputs.json")).unwrap(),
        )
        .unwrap();
        if name == "known" {
            // `{name: [value, sensitive]}`.
            assert_eq!(cached["name"], serde_json::json!(["fixed", false]));
            assert_eq!(cached["token"][1], true, "{cached}");
        } else {
            assert!(
                cached["id"][0].as_str().is_some_and(|v| !v.is_empty()),
                "{cached}"
            );
        }
    }
    assert_eq!(
        counts[1],
        counts[0] + 1,
        "`terraform output` only where the plan did not know an output: {counts:?}"
    );
}
