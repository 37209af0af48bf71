//! Many Kubernetes layers on one cluster share one client and one discovery: a run asks the
//! cluster what it serves once, not once (or three times) per layer, and asks again only when a
//! kind is not found (a CRD another layer applied earlier in the same run).

use std::path::Path;

use crate::kube_safety::{layer, run, run_with};
use crate::support::Cluster;

/// A stack `many` of `n` Kubernetes layers, each one ConfigMap in its own namespace; each layer
/// after the first depends on the one before (a chain, so they run one after another).
pub(crate) fn chain(root: &Path, c: &Cluster, n: usize) {
    let mut hcl = format!(
        "stack \"many\" {{}}\n\ncluster \"main\" {{\n  kubeconfig_path = \"{}\"\n}}\n",
        c.kubeconfig.display()
    );
    for i in 0..n {
        let after = if i == 0 {
            String::new()
        } else {
            format!("  depends_on = [kubernetes.l{}]\n", i - 1)
        };
        hcl.push_str(&format!(
            "\nkubernetes \"l{i}\" {{\n  source  = \"k8s/l{i}\"\n  cluster = cluster.main\n  wait    = false\n  namespace = \"default\"\n{after}}}\n"
        ));
        layer(
            root,
            &format!("l{i}"),
            &[(
                "cm.yaml",
                &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm{i}\ndata:\n  n: \"{i}\"\n"),
            )],
        );
    }
    std::fs::write(root.join("strata.hcl"), hcl).unwrap();
}

/// Requests for the list of API groups: one per discovery of the cluster.
fn discoveries(c: &Cluster) -> u64 {
    c.dev.count_requests(|r| r == "GET /apis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_layers_discover_the_cluster_once_per_run() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    chain(&root, &c, 50);
    for verb in ["plan", "apply", "diff", "apply"] {
        c.dev.reset_requests();
        let out = run(&root, verb).await;
        assert_eq!(
            out.code,
            if verb == "plan" { 2 } else { 0 },
            "{verb}: {out:?}"
        );
        assert_eq!(
            discoveries(&c),
            1,
            "{verb} of 50 layers: discovery once per run"
        );
    }
    // The same run lists the stack's inventories and records once, and reads each layer's
    // object: one request a layer (each layer of a chain is ready only after the run's list of
    // the ConfigMaps, so it reads its own), not the dozen a discovery per layer costs.
    let total: u64 = c.dev.requests().values().sum();
    assert!(
        total < 50 * 2,
        "a no-op apply of 50 layers made {total} requests"
    );
}

const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.example.com
spec:
  group: example.com
  names: {kind: Gadget, plural: gadgets}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_whose_crd_an_earlier_layer_applied_in_the_same_run_is_found() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("strata.hcl"),
        format!(
            r#"stack "crds" {{}}

cluster "main" {{
  kubeconfig_path = "{}"
}}

kubernetes "before" {{
  source    = "k8s/before"
  cluster   = cluster.main
  wait      = false
  namespace = "default"
}}

kubernetes "crds" {{
  source     = "k8s/crds"
  cluster    = cluster.main
  wait       = false
  depends_on = [kubernetes.before]
}}

kubernetes "gadgets" {{
  source     = "k8s/gadgets"
  cluster    = cluster.main
  wait       = false
  namespace  = "default"
  depends_on = [kubernetes.crds]
}}
"#,
            c.kubeconfig.display()
        ),
    )
    .unwrap();
    layer(
        &root,
        "before",
        &[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: before\n",
        )],
    );
    layer(&root, "crds", &[("crd.yaml", CRD)]);
    layer(
        &root,
        "gadgets",
        &[(
            "g.yaml",
            "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g1\nspec:\n  size: 1\n",
        )],
    );
    // The first layer's discovery is taken before the CRD exists; the third layer's kind is not
    // in it, so the cluster is asked again rather than the layer failing.
    let out = run_with(&root, "apply", &[]).await;
    assert_eq!(out.code, 0, "{out:?}");
    c.kubectl(&["get", "gadgets.example.com", "g1", "-n", "default"])
        .await
        .code(0);
    let n = discoveries(&c);
    assert!(
        (2..=4).contains(&n),
        "discovery again for the new kind, not per layer: {n}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn the_agent_keeps_its_cluster_and_discovery_across_loops() {
    use crate::agent::{cm, kinds, options, receiver, until, Repo};
    let c = Cluster::start().await;
    let repo = Repo {
        dir: c.dir.path().join("repo"),
    };
    repo.write(
        "strata.hcl",
        &format!(
            "stack \"kept\" {{}}\ncluster \"main\" {{\n  kubeconfig_path = \"{}\"\n}}\nkubernetes \"a\" {{\n  source    = \"k8s/a\"\n  cluster   = cluster.main\n  namespace = \"default\"\n}}\nkubernetes \"b\" {{\n  source    = \"k8s/b\"\n  cluster   = cluster.main\n  namespace = \"default\"\n}}\n",
            c.kubeconfig.display()
        ),
    );
    repo.write("k8s/a/cm.yaml", &cm("a", "blue"));
    repo.write("k8s/b/cm.yaml", &cm("b", "blue"));
    repo.git(&["init", "-q", "-b", "main"]);
    repo.commit("first");
    let (alerts, got) = receiver().await;
    let mut o = options(&repo, &c.dir.path().join("state"), &alerts);
    o.drift_interval = Some(std::time::Duration::from_secs(1));
    let stop = tokio_util::sync::CancellationToken::new();
    let agent = tokio::spawn(
        strata::agent::Agent::new(o)
            .expect("agent state")
            .run(stop.clone()),
    );
    until("the first sync converged", 120, || {
        kinds(&got).contains(&"converged".to_string())
    })
    .await;
    // Several drift checks of both layers, each reading both layers' objects: the cluster's
    // discovery from the sync serves them all.
    let seen = discoveries(&c);
    let reads = |c: &Cluster| {
        c.dev
            .count_requests(|r| r.starts_with("GET /api/v1/namespaces/default/configmaps/"))
    };
    let before = reads(&c);
    until("three more drift checks", 120, || reads(&c) >= before + 6).await;
    assert_eq!(discoveries(&c), seen, "no discovery after the first sync");
    assert_eq!(seen, 1, "one discovery for the first sync of two layers");
    stop.cancel();
    agent.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_objects_of_a_kind_the_cluster_does_not_serve_cost_one_discovery() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    chain(&root, &c, 3);
    let gizmos: String = (0..40)
        .map(|i| format!("---\napiVersion: example.com/v1\nkind: Gizmo\nmetadata:\n  name: g{i}\n"))
        .collect();
    layer(&root, "l1", &[("gizmos.yaml", &gizmos)]);
    c.dev.reset_requests();
    let out = run(&root, "plan").await;
    assert_eq!(out.code, 1, "{out:?}");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("Gizmo"), "the unserved kind is named: {text}");
    // The run's discovery, and one more when the kind is not in it (it could be a new CRD);
    // then the kind is remembered as not served for the rest of the run.
    assert_eq!(discoveries(&c), 2);
}

/// PATCH requests (dry runs and writes) to the ConfigMaps of namespace `default`.
fn configmap_patches(c: &Cluster, name: Option<&str>) -> u64 {
    let prefix = "PATCH /api/v1/namespaces/default/configmaps/";
    c.dev.count_requests(|r| {
        r.strip_prefix(prefix)
            .is_some_and(|n| name.is_none_or(|want| n == want))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_op_apply_dry_runs_only_objects_it_cannot_tell_unchanged() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    chain(&root, &c, 5);
    assert_eq!(run(&root, "apply").await.code, 0);
    c.dev.reset_requests();
    let rv = c.dev.resource_version();
    let out = run(&root, "apply").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(c.dev.resource_version(), rv, "a no-op apply writes nothing");
    // Each live object holds every field strata applies, owned by strata alone: a forced
    // apply could not change it, so no dry run is sent.
    assert_eq!(configmap_patches(&c, None), 0, "{:?}", c.dev.requests());

    // Another manager changes a value strata applies: that object is dry-run again (and
    // handled as before), the others still are not.
    let edit = c
        .kubectl(&[
            "patch",
            "configmap",
            "cm2",
            "-n",
            "default",
            "--type",
            "merge",
            "-p",
            // `chain` writes `n: "2"`, and YAML reads the key `n` as `false`.
            r#"{"data":{"false":"edited"}}"#,
            "--field-manager=someone",
        ])
        .await;
    assert_eq!(edit.code, 0, "{edit:?}");
    c.dev.reset_requests();
    let plan = run(&root, "plan").await;
    c.dev.reset_requests();
    let out = run(&root, "apply").await;
    assert_eq!(
        out.code, plan.code,
        "apply after the edit: {out:?}; plan said {plan:?}"
    );
    assert!(configmap_patches(&c, Some("cm2")) >= 1, "cm2 is dry-run");
    for other in ["cm0", "cm1", "cm3", "cm4"] {
        assert_eq!(configmap_patches(&c, Some(other)), 0, "{other}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_apply_writes_the_records_namespace_once_not_per_layer() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    chain(&root, &c, 10);
    c.dev.reset_requests();
    let out = run(&root, "apply").await;
    assert_eq!(out.code, 0, "{out:?}");
    // The first record written finds the namespace missing and creates it; every later one
    // finds it there.
    assert_eq!(
        c.dev
            .count_requests(|r| r == "PATCH /api/v1/namespaces/strata-system"),
        1,
        "{:?}",
        c.dev.requests()
    );
    let got = c
        .kubectl(&[
            "get",
            "configmaps,secrets",
            "-n",
            "strata-system",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(got.code, 0, "{got:?}");
    for i in 0..10 {
        for prefix in ["configmap/inventory.", "secret/applied."] {
            assert!(
                got.stdout
                    .lines()
                    .any(|l| l.starts_with(prefix) && l.ends_with(&format!(".l{i}"))),
                "{prefix}…l{i} recorded: {}",
                got.stdout
            );
        }
    }

    // Lost between two runs, the namespace is created again by the next record written.
    let del = c
        .kubectl(&["delete", "namespace", "strata-system", "--wait=true"])
        .await;
    assert_eq!(del.code, 0, "{del:?}");
    layer(
        &root,
        "l3",
        &[(
            "cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm3\ndata:\n  n: \"changed\"\n",
        )],
    );
    let out = run(&root, "apply").await;
    assert_eq!(out.code, 0, "{out:?}");
    let got = c
        .kubectl(&["get", "secret", "-n", "strata-system", "-o", "name"])
        .await;
    assert!(
        got.stdout.lines().any(|l| l.ends_with(".l3")),
        "the record of l3 written again: {got:?}"
    );
}
