//! The manifest limits of `strata.hcl`'s `limits` blocks, and what a broken kustomization says.

use std::path::Path;

use crate::kube_safety::{layer, run};
use crate::support::Cluster;

fn stack(root: &Path, c: &Cluster, stack_limits: &str, layer_limits: &str) {
    let hcl = format!(
        "stack \"demo\" {{\n{stack_limits}}}\n\ncluster \"main\" {{\n  kubeconfig_path = \"{}\"\n}}\n\nkubernetes \"apps\" {{\n  source  = \"k8s/apps\"\n  cluster = cluster.main\n  wait    = false\n{layer_limits}}}\n",
        c.kubeconfig.display()
    );
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("strata.hcl"), hcl).unwrap();
}

const TWO: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: default\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: default\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_limit_applies_over_the_stack_limit() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    layer(&root, "apps", &[("cms.yaml", TWO)]);

    stack(&root, &c, "  limits {\n    max_documents = 1\n  }\n", "");
    let out = run(&root, "plan").await.code(1);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("k8s/apps/cms.yaml: more than 1 documents"),
        "{out:?}"
    );

    stack(
        &root,
        &c,
        "  limits {\n    max_documents = 1\n  }\n",
        "  limits {\n    max_documents = 2\n  }\n",
    );
    run(&root, "plan").await.code(2);

    stack(&root, &c, "", "  limits {\n    max_documents = 0\n  }\n");
    let out = run(&root, "plan").await.code(1);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("strata.hcl:13:"), "{out:?}");
    assert!(
        all.contains("limit \"max_documents\" must be between 1 and 1000000, found 0"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_in_a_kustomization_names_that_file_and_its_line() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    stack(&root, &c, "", "");
    // Eight lines; line 6 is indented wrongly.
    let kustomization = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: default\nresources:\n  - cms.yaml\n labels:\n  - pairs: {team: core}\n# end\n";
    assert_eq!(kustomization.lines().count(), 8);
    layer(
        &root,
        "apps",
        &[("kustomization.yaml", kustomization), ("cms.yaml", TWO)],
    );
    let out = run(&root, "plan").await.code(1);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("k8s/apps/kustomization.yaml:5: kubectl kustomize failed: invalid Kustomization: yaml: line 5: did not find expected key")
            || all.contains("k8s/apps/kustomization.yaml:5: kustomize build failed: invalid Kustomization: yaml: line 5: did not find expected key"),
        "{out:?}"
    );
    assert!(!all.contains("kustomize output line"), "{out:?}");
    assert!(!all.contains("run.go"), "klog's prefix is noise: {out:?}");
}
