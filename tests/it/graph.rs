//! `strata graph`: waves and labelled edges in four formats.

use crate::support::Strata;

fn graph(format: &str) -> String {
    Strata::new(["graph", "--stack", "stacks/demo", "--format", format])
        .run()
        .code(0)
        .stdout
}

#[test]
fn text_lists_waves_and_what_created_each_edge() {
    insta::assert_snapshot!(graph("text"));
}

#[test]
fn dot_output_is_a_digraph_with_labelled_edges() {
    let dot = graph("dot");
    insta::assert_snapshot!(dot);
    // Graphviz is the judge; `make tools` installs it, and CI must have it.
    let ran = std::process::Command::new("dot").arg("-V").output().is_ok();
    assert!(
        ran || std::env::var_os("CI").is_none(),
        "Graphviz's dot is missing: run `make tools`"
    );
    if let Ok(out) = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(dot.as_bytes())?;
            child.wait_with_output()
        })
    {
        assert!(
            out.status.success(),
            "dot rejected the graph: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("<svg"));
    }
}

#[test]
fn mermaid_output_is_a_flowchart() {
    insta::assert_snapshot!(graph("mermaid"));
}

#[test]
fn json_output_carries_waves_edges_and_sources() {
    let v: serde_json::Value = serde_json::from_str(&graph("json")).unwrap();
    assert_eq!(v["stack"], "demo");
    assert_eq!(
        v["waves"],
        serde_json::json!([
            ["terraform.network"],
            ["terraform.cluster"],
            ["kubernetes.platform"],
            ["kubernetes.apps"]
        ])
    );
    let apps = &v["layers"][3];
    assert_eq!(apps["id"], "kubernetes.apps");
    assert_eq!(apps["wave"], 4);
    assert_eq!(apps["source"], "k8s/apps");
    assert_eq!(
        apps["upstream"],
        serde_json::json!(["terraform.cluster", "kubernetes.platform"])
    );
    let edge = v["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["to"] == "kubernetes.platform")
        .unwrap();
    assert_eq!(
        edge["labels"],
        serde_json::json!(["outputs.db_host", "cluster.main: outputs.kubeconfig"])
    );
}

#[test]
fn an_invalid_stack_has_no_graph() {
    let out = Strata::new(["graph", "--stack", "tests/fixtures/cycle"])
        .run()
        .code(1);
    assert!(out.stdout.is_empty());
    assert!(out.stderr.contains("dependency cycle"));
}
