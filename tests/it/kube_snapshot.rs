//! A run reads each cluster once for all its layers (the inventories and records of the stack,
//! and the live objects of kinds it declares many of): per-layer requests drop to the writes,
//! and the snapshot never hides work a layer's own reads would have found.

use std::path::Path;

use crate::kube_rounds::inventory;
use crate::kube_safety::{layer, run};
use crate::support::Cluster;

/// Independent layers `w0`… each holding one ConfigMap of that name in `default`.
fn wide(c: &Cluster, n: usize) -> String {
    let mut hcl = format!(
        "stack \"wide\" {{}}\n\ncluster \"main\" {{\n  kubeconfig_path = \"{}\"\n}}\n",
        c.kubeconfig.display()
    );
    for i in 0..n {
        hcl.push_str(&format!(
            "\nkubernetes \"w{i}\" {{\n  source    = \"k8s/w{i}\"\n  cluster   = cluster.main\n  wait      = false\n  namespace = \"default\"\n}}\n"
        ));
    }
    hcl
}

fn cm(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  v: \"{value}\"\n")
}

fn wide_layers(root: &Path, n: usize) {
    for i in 0..n {
        layer(
            root,
            &format!("w{i}"),
            &[("cm.yaml", &cm(&format!("w{i}"), "one"))],
        );
    }
}

/// Requests to namespaced objects and lists (discovery left out: it is once per run).
fn total(c: &Cluster) -> u64 {
    c.dev.count_requests(|r| r.contains("/namespaces/"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_layers_read_the_cluster_once_per_run_not_once_per_layer() {
    const N: usize = 30;
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("strata.hcl"), wide(&c, N)).unwrap();
    wide_layers(&root, N);

    c.dev.reset_requests();
    let out = run(&root, "apply").await;
    assert_eq!(out.code, 0, "{out:?}");
    let gets = |c: &Cluster, prefix: &str| {
        c.dev
            .count_requests(|r| r.starts_with(&format!("GET {prefix}")))
    };
    // No layer reads its inventory, its record or its object on its own: the run lists them.
    for records in ["configmaps", "secrets"] {
        assert_eq!(
            gets(&c, &format!("/api/v1/namespaces/strata-system/{records}/")),
            0,
            "{:?}",
            c.dev.requests()
        );
    }
    assert_eq!(gets(&c, "/api/v1/namespaces/default/configmaps/"), 0);
    // Per layer: the dry run, the inventory ahead of the write, the write, the record; and
    // the records namespace, which the first layers running at once each find missing.
    // The records namespace is applied once, not by each of the layers that start together.
    assert_eq!(
        c.dev
            .count_requests(|r| r == "PATCH /api/v1/namespaces/strata-system"),
        1,
        "{:?}",
        c.dev.requests()
    );
    let first = total(&c);
    assert!(
        first <= (N as u64) * 4 + 20,
        "a first apply of {N} layers made {first} requests: {:?}",
        c.dev.requests()
    );

    c.dev.reset_requests();
    let rv = c.dev.resource_version();
    let out = run(&root, "apply").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(c.dev.resource_version(), rv, "a no-op apply writes nothing");
    // The two lists of records and the one list of ConfigMaps: nothing per layer.
    assert_eq!(total(&c), 3, "{:?}", c.dev.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_deleted_after_the_snapshot_by_a_layer_it_depends_on_is_created_again() {
    const N: usize = 24;
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    std::fs::create_dir_all(root.join("tf/edit")).unwrap();
    let kubectl = std::env::var("STRATA_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    // Runs again whenever its `run` changes, after `w0`, whose step lists the ConfigMaps of
    // `default` (`late` among them) for the whole run.
    let edit = |run: u32| {
        format!(
        "resource \"terraform_data\" \"edit\" {{\n  triggers_replace = \"{run}\"\n  provisioner \"local-exec\" {{\n    command = \"{kubectl} --kubeconfig {} --cache-dir {} delete configmap late -n default --ignore-not-found\"\n  }}\n}}\n",
        c.kubeconfig.display(),
        c.dir.path().join("kubectl-cache").display()
    )
    };
    std::fs::write(root.join("tf/edit/main.tf"), edit(1)).unwrap();
    let mut hcl = wide(&c, N);
    hcl.push_str(
        "\nterraform \"edit\" {\n  source     = \"tf/edit\"\n  depends_on = [kubernetes.w0]\n}\n\nkubernetes \"late\" {\n  source     = \"k8s/late\"\n  cluster    = cluster.main\n  wait       = false\n  namespace  = \"default\"\n  depends_on = [terraform.edit]\n}\n",
    );
    std::fs::write(root.join("strata.hcl"), hcl).unwrap();
    wide_layers(&root, N);
    layer(&root, "late", &[("cm.yaml", &cm("late", "one"))]);

    let out = run(&root, "apply").await;
    assert_eq!(out.code, 0, "{out:?}");
    let uid = [
        "get",
        "configmap",
        "late",
        "-n",
        "default",
        "-o",
        "jsonpath={.metadata.uid}",
    ];
    let before = c.kubectl(&uid).await;
    assert_eq!(before.code, 0, "{before:?}");

    // The second run lists `late` (it exists), then `edit` deletes it: `late`'s layer became
    // ready after the listing, so it reads its object itself, finds it gone, and creates it.
    std::fs::write(root.join("tf/edit/main.tf"), edit(2)).unwrap();
    let out = run(&root, "apply").await;
    assert_eq!(out.code, 0, "{out:?}");
    let after = c.kubectl(&uid).await;
    assert_eq!(
        after.code, 0,
        "late was created again after the out-of-band deletion: {after:?}\n{out:?}"
    );
    assert_ne!(
        after.stdout, before.stdout,
        "a new object, not the one listed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_whose_dry_run_fails_writes_no_object_while_the_others_converge() {
    const N: usize = 24;
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("strata.hcl"), wide(&c, N)).unwrap();
    wide_layers(&root, N);
    // `w3` also declares an object the server refuses (an invalid name).
    layer(
        &root,
        "w3",
        &[
            ("cm.yaml", &cm("w3", "one")),
            ("bad.yaml", &cm("Bad_Name", "one")),
        ],
    );
    let out = run(&root, "apply").await;
    assert_eq!(out.code, 1, "{out:?}");
    let got = c
        .kubectl(&["get", "configmaps", "-n", "strata-system", "-o", "name"])
        .await;
    assert_eq!(got.code, 0, "{got:?}");
    // The layer that failed wrote its inventory beside its dry runs: it names both objects,
    // neither of which was written.
    assert_eq!(
        inventory(&c, "w3").await,
        Some(vec![
            "ConfigMap/Bad_Name".to_string(),
            "ConfigMap/w3".to_string()
        ]),
        "the inventory written beside the dry runs"
    );
    for i in (0..N).filter(|i| *i != 3) {
        assert!(
            got.stdout.lines().any(|l| l.ends_with(&format!(".w{i}"))),
            "w{i} recorded: {}",
            got.stdout
        );
    }
    c.kubectl(&["get", "configmap", "w3", "-n", "default"])
        .await
        .code(1);

    // Fixed, the next run applies it; the snapshot of that run holds every other inventory.
    layer(&root, "w3", &[("cm.yaml", &cm("w3", "one"))]);
    let out = run(&root, "apply").await;
    assert_eq!(out.code, 0, "{out:?}");
    c.kubectl(&["get", "configmap", "w3", "-n", "default"])
        .await
        .code(0);
    // The object never written is dropped from the inventory: it does not exist.
    assert_eq!(
        inventory(&c, "w3").await,
        Some(vec!["ConfigMap/w3".to_string()])
    );
}
