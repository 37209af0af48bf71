//! Environments: one stack, two instances on two devclusters. Each environment's vars reach its
//! own cluster and Terraform layer, its state is its own, a command that changes something
//! must name it, read-only ones show every one, and one environment can never take over (or
//! prune) another's objects in a shared cluster.

use std::path::Path;

use serde_json::Value;

use crate::support::{strata_cli, Cluster, Output};

const NULL: &str =
    "terraform {\n  required_providers {\n    null = { source = \"hashicorp/null\" }\n  }\n}\n";

fn write(root: &Path, path: &str, text: &str) {
    let p = root.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// `dev` on `a`, `prod` on `b`, and `qa` on `a` too (the same namespace as dev).
fn stack(root: &Path, a: &Cluster, b: &Cluster) {
    write(
        root,
        "strata.hcl",
        &format!(
            r#"stack "shop" {{}}

environment "dev" {{
  vars = {{ color = "blue", kubeconfig = "{a}" }}
}}

environment "prod" {{
  vars  = {{ color = "red", kubeconfig = "{b}" }}
  apply = "safe"
}}

environment "qa" {{
  vars = {{ color = "green", kubeconfig = "{a}" }}
}}

terraform "net" {{
  source = "tf/net"
  vars   = {{ name = "net-${{env.name}}" }}
}}

cluster "main" {{
  kubeconfig_path = env.vars.kubeconfig
}}

kubernetes "apps" {{
  source  = "k8s/apps"
  cluster = cluster.main
  wait    = false
  vars    = {{ color = env.vars.color, net = terraform.net.outputs.name }}
}}
"#,
            a = a.kubeconfig.display(),
            b = b.kubeconfig.display()
        ),
    );
    write(
        root,
        "tf/net/main.tf",
        &format!("{NULL}variable \"name\" {{ type = string }}\nresource \"null_resource\" \"net\" {{}}\noutput \"name\" {{ value = var.name }}\n"),
    );
    write(
        root,
        "k8s/apps/ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n",
    );
    write(
        root,
        "k8s/apps/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\ndata:\n  color: ${color}\n  net: ${net}\n",
    );
}

async fn run(root: &Path, args: &[&str]) -> Output {
    let state = root.join("state");
    let mut all = vec![args[0], "--stack", root.to_str().unwrap()];
    all.extend(["--state-dir", state.to_str().unwrap()]);
    all.extend(&args[1..]);
    strata_cli(root, &all).await
}

async fn setting(c: &Cluster, key: &str) -> String {
    let out = c
        .kubectl(&[
            "get",
            "cm",
            "settings",
            "-n",
            "shop",
            "-o",
            &format!("jsonpath={{.data.{key}}}"),
        ])
        .await;
    if out.code == 0 {
        out.stdout
    } else {
        String::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_environments_from_one_stack_each_converge_their_own_cluster() {
    let (a, b) = (Cluster::start().await, Cluster::start().await);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("stack");
    stack(&root, &a, &b);

    // Changing something needs an environment; an unknown one is named with the known ones.
    let none = run(&root, &["apply", "--auto-approve"]).await;
    assert_eq!(none.code, 1, "{none:?}");
    assert!(
        none.stderr
            .contains("several environments (dev, prod, qa): name one with --env NAME"),
        "{}",
        none.stderr
    );
    let typo = run(&root, &["apply", "--auto-approve", "--env", "prd"]).await;
    assert_eq!(typo.code, 1, "{typo:?}");
    assert!(
        typo.stderr.contains("no environment \"prd\"") && typo.stderr.contains("dev, prod, qa"),
        "{}",
        typo.stderr
    );

    run(&root, &["apply", "--auto-approve", "--env", "dev"])
        .await
        .code(0);
    assert_eq!(setting(&a, "color").await, "blue");
    assert_eq!(
        setting(&a, "net").await,
        "net-dev",
        "Terraform saw env.name"
    );
    assert_eq!(setting(&b, "color").await, "", "prod not applied yet");
    let prod = run(
        &root,
        &["apply", "--auto-approve", "--env", "prod", "--json"],
    )
    .await;
    assert_eq!(prod.code, 0, "{prod:?}");
    let report: Value = serde_json::from_str(&prod.stdout).unwrap();
    assert_eq!(report["env"], "prod");
    assert_eq!(setting(&b, "color").await, "red");
    assert_eq!(setting(&b, "net").await, "net-prod");
    assert_eq!(setting(&a, "color").await, "blue", "dev untouched");

    // Each environment's state is its own.
    for env in ["dev", "prod"] {
        let tfstate = root.join(format!("state/envs/{env}/layers/net/terraform.tfstate"));
        assert!(tfstate.exists(), "{}", tfstate.display());
    }
    assert!(!root.join("state/status.json").exists());

    // Read-only commands show every environment.
    let plan = run(&root, &["plan"]).await;
    // qa was never applied (changes), and its objects are dev's (a failure): the worst wins.
    assert!(plan.code == 1 || plan.code == 2, "{plan:?}");
    for env in ["dev", "prod", "qa"] {
        assert!(
            plan.stdout.contains(&format!("=== environment {env} ===")),
            "{}",
            plan.stdout
        );
    }
    let state = root.join("state");
    let status = strata_cli(&root, &["status", "--state-dir", state.to_str().unwrap()]).await;
    assert_eq!(status.code, 0, "{status:?}");
    assert!(
        status.stdout.contains("=== environment dev ===")
            && status.stdout.contains("=== environment prod ==="),
        "{}",
        status.stdout
    );

    // qa shares dev's cluster and namespace: dev's objects are not qa's to take over.
    let qa = run(&root, &["apply", "--auto-approve", "--env", "qa"]).await;
    assert_eq!(qa.code, 1, "{qa:?}");
    assert!(
        qa.stdout.contains("shop.dev") || qa.stderr.contains("shop.dev"),
        "names the environment that owns them: {qa:?}"
    );
    assert_eq!(setting(&a, "color").await, "blue", "dev's object untouched");

    // Tearing dev down leaves prod converged.
    run(&root, &["destroy", "--auto-approve", "--env", "dev"])
        .await
        .code(0);
    assert_eq!(setting(&a, "color").await, "", "dev gone");
    assert_eq!(setting(&b, "color").await, "red", "prod stays");
    run(&root, &["diff", "--env", "prod"]).await.code(0);
}
