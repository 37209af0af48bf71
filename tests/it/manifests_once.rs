//! Each manifest file is parsed once per run: opening the stack parses the Kubernetes layers'
//! files (no object declared twice) and each layer's load takes that parse. What is applied must
//! never come from a stale or un-substituted parse: a file edited after the stack was opened, a
//! document whose vars come from a Terraform output, and the next run after an edit.

use std::path::Path;

use strata::engine::record::LayerStatus;
use strata::engine::{Engine, EngineOptions, Mode, Source};

use crate::support::{tf_env, Cluster};

fn write(root: &Path, files: &[(&str, &str)]) {
    for (p, t) in files {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, t).unwrap();
    }
}

fn plain(v: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\ndata:\n  v: {v}\n")
}

async fn data(c: &Cluster, name: &str) -> serde_json::Value {
    let out = c
        .kubectl(&["get", "configmap", name, "-n", "default", "-o", "json"])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["data"].clone()
}

async fn apply(root: &Path) -> Engine {
    let mut opts = EngineOptions::new(root.join(".strata"));
    opts.terraform_env = tf_env()
        .into_iter()
        .filter(|(k, _)| k != "PATH")
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    Engine::open(Source::Dir(root.to_path_buf()), opts)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_applied_is_each_file_as_it_is_when_loaded_with_its_vars_substituted() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    let hcl = format!(
        "stack \"once\" {{}}\n\
         terraform \"colors\" {{\n  source = \"colors\"\n}}\n\
         cluster \"c\" {{\n  kubeconfig_path = \"{}\"\n}}\n\
         kubernetes \"app\" {{\n  source    = \"app\"\n  cluster   = cluster.c\n  namespace = \"default\"\n  wait      = false\n  vars      = {{ color = terraform.colors.outputs.color }}\n}}\n",
        c.kubeconfig.display()
    );
    write(
        &root,
        &[
            ("strata.hcl", &hcl),
            ("colors/main.tf", "output \"color\" { value = \"red\" }\n"),
            ("app/plain.yaml", &plain("one")),
            (
                "app/vars.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: vars\ndata:\n  color: ${color}\n  literal: $${color}\n",
            ),
        ],
    );

    // Opened (every file parsed), then edited before the layer loads: the edit is applied.
    let engine = apply(&root).await;
    std::fs::write(root.join("app/plain.yaml"), plain("two")).unwrap();
    let report = engine.run(Mode::Apply).await.unwrap();
    assert!(
        report
            .layers
            .iter()
            .all(|l| l.status == LayerStatus::Applied),
        "{report:?}"
    );
    assert_eq!(data(&c, "plain").await, serde_json::json!({"v": "two"}));
    // The value from the Terraform output, not the text the stack was opened with.
    assert_eq!(
        data(&c, "vars").await,
        serde_json::json!({"color": "red", "literal": "${color}"})
    );
    drop(engine);

    // The next run (the agent opens the stack anew each time) reads the file as it is then.
    std::fs::write(root.join("app/plain.yaml"), plain("three")).unwrap();
    let engine = apply(&root).await;
    let report = engine.run(Mode::Apply).await.unwrap();
    assert!(
        report
            .layers
            .iter()
            .all(|l| l.status != LayerStatus::Failed),
        "{report:?}"
    );
    assert_eq!(data(&c, "plain").await, serde_json::json!({"v": "three"}));
    assert_eq!(
        data(&c, "vars").await,
        serde_json::json!({"color": "red", "literal": "${color}"})
    );
}
