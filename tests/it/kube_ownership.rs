//! Ownership: objects carry the identity of the stack that applied them, so a stack never prunes
//! or silently takes over another's, even one with the same name; a moved stack keeps its objects
//! through an explicit id; an inventory from before stack ids is taken over, not orphaned.

use std::time::Duration;

use crate::kube_safety::{
    by_hand, layer, run, run_with, stack, stack_with, uid, NS, ORDERS, SETTINGS,
};
use crate::support::Cluster;

/// Two teams, two stack directories and state dirs, both `stack "demo"` with a layer `apps`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stacks_sharing_a_name_never_prune_or_silently_take_over_each_other() {
    let c = Cluster::start().await;
    let a = c.dir.path().join("team-a");
    let b = c.dir.path().join("team-b");
    for root in [&a, &b] {
        stack(root, &c);
        layer(root, "platform", &[]);
    }
    let cm = |name: &str, extra: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: default\n{extra}data:\n  team: x\n")
    };
    layer(
        &a,
        "apps",
        &[
            ("a.yaml", &cm("a-config", "")),
            ("common.yaml", &cm("common", "")),
        ],
    );
    run(&a, "apply").await.code(0);
    let a_uid = uid(&c, "cm", "a-config", Some("default")).await;

    // B's first apply prunes nothing of A's.
    layer(&b, "apps", &[("b.yaml", &cm("b-config", ""))]);
    let out = run(&b, "apply").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(uid(&c, "cm", "a-config", Some("default")).await, a_uid);
    // Nor does A's next apply prune B's.
    let out = run(&a, "apply").await;
    assert_eq!(out.code, 0, "{out:?}");
    uid(&c, "cm", "b-config", Some("default")).await;

    // B declaring A's object is refused, naming it and its owner.
    layer(
        &b,
        "apps",
        &[
            ("b.yaml", &cm("b-config", "")),
            ("common.yaml", &cm("common", "")),
        ],
    );
    let out = run(&b, "apply").await;
    assert_ne!(out.code, 0, "{out:?}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("ConfigMap/default/common: it already exists, managed by stack \"demo\" (id "),
        "{all}"
    );
    assert!(all.contains("strata.dev/adopt"), "{all}");

    // An object made by hand is refused too.
    by_hand(&c, "by-hand", "default").await;
    layer(
        &b,
        "apps",
        &[
            ("b.yaml", &cm("b-config", "")),
            ("h.yaml", &cm("by-hand", "")),
        ],
    );
    let out = run(&b, "apply").await;
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("ConfigMap/default/by-hand: it already exists, created outside strata"),
        "{all}"
    );

    // With consent (an annotation, or `--adopt`) it is adopted, and the apply says so.
    let adopt = "  annotations:\n    strata.dev/adopt: \"true\"\n";
    layer(
        &b,
        "apps",
        &[
            ("b.yaml", &cm("b-config", "")),
            ("common.yaml", &cm("common", adopt)),
        ],
    );
    let out = run(&b, "apply").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("~ ConfigMap/default/common (adopted: it was managed by stack \"demo\" (id "),
        "{out:?}"
    );
    layer(
        &b,
        "apps",
        &[
            ("b.yaml", &cm("b-config", "")),
            ("common.yaml", &cm("common", adopt)),
            ("h.yaml", &cm("by-hand", "")),
        ],
    );
    let out = run_with(&b, "apply", &["--adopt"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("~ ConfigMap/default/by-hand (adopted: it was created outside strata)"),
        "{out:?}"
    );
    let report = run(&b, "plan").await;
    assert_eq!(report.code, 0, "{report:?}");
    // A now neither takes it back silently nor prunes it when it leaves A's Git.
    layer(&a, "apps", &[("a.yaml", &cm("a-config", ""))]);
    let out = run(&a, "apply").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        !out.stdout.contains("- ConfigMap/default/common"),
        "{out:?}"
    );
    uid(&c, "cm", "common", Some("default")).await;
}

/// A state dir rebuilt for a stack that also moved (another directory, or another URL for the
/// same repository) owns its objects again only under an explicit, unchanged stack `id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_stack_owns_its_objects_through_its_explicit_id() {
    let c = Cluster::start().await;
    let old = c.dir.path().join("old");
    let new = c.dir.path().join("new");
    for root in [&old, &new] {
        stack_with(root, &c, "  id = \"shop-prod\"\n");
        layer(root, "platform", &[("ns.yaml", NS)]);
        layer(
            root,
            "apps",
            &[("orders.yaml", ORDERS), ("settings.yaml", SETTINGS)],
        );
    }
    run(&old, "apply").await.code(0);
    let orders = uid(&c, "cm", "orders", Some("shop")).await;
    let label = c
        .kubectl(&[
            "get",
            "cm",
            "orders",
            "-n",
            "shop",
            "-o",
            "jsonpath={.metadata.labels.strata\\.dev/stack-id}",
        ])
        .await;
    assert_eq!(label.stdout, "shop-prod");

    // The new copy, with a fresh state dir, applies without adopting and prunes as the old did.
    layer(&new, "apps", &[("orders.yaml", ORDERS)]);
    let out = run(&new, "apply").await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("- ConfigMap/shop/settings"), "{out:?}");
    assert!(!out.stdout.contains("adopted"), "{out:?}");
    assert_eq!(uid(&c, "cm", "orders", Some("shop")).await, orders);

    // Without the id, the moved copy is another stack: refused, not silently taken over.
    let other = c.dir.path().join("other");
    stack(&other, &c);
    layer(&other, "platform", &[]);
    layer(&other, "apps", &[("orders.yaml", ORDERS)]);
    let out = run(&other, "apply").await;
    assert_ne!(out.code, 0, "{out:?}");
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains(
            "ConfigMap/shop/orders: it already exists, managed by stack \"demo\" (id shop-prod)"
        ),
        "{all}"
    );
}

/// An inventory and objects written before stack ids existed (named and labelled by the stack
/// name alone) are taken over by the stack, not orphaned: what left Git is still pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inventory_from_before_stack_ids_is_taken_over() {
    use strata::kube::{self as k8s, ApplyOptions, SyncOptions};
    let c = Cluster::start().await;
    let client = c.client().await;
    let legacy = |name: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: default\n  labels:\n    strata.dev/stack: demo\n    strata.dev/layer: apps\n")
    };
    let entries = r#"[{"group":"","version":"v1","kind":"ConfigMap","namespace":"default","name":"kept"},{"group":"","version":"v1","kind":"ConfigMap","namespace":"default","name":"gone"}]"#;
    let inventory = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: inventory.demo.apps\n  namespace: strata-system\ndata:\n  entries: '{entries}'\n"
    );
    let files = [
        (
            "ns.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: strata-system\n".to_string(),
        ),
        ("inv.yaml", inventory),
        ("kept.yaml", legacy("kept")),
        ("gone.yaml", legacy("gone")),
    ];
    for (f, text) in &files {
        let path = c.dir.path().join(f);
        std::fs::write(&path, text).unwrap();
        c.kubectl(&["create", "-f", path.to_str().unwrap()])
            .await
            .code(0);
    }

    let dir = c.manifests(
        "apps",
        &[(
            "kept.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\n  namespace: default\n",
        )],
    );
    let mut apply = ApplyOptions::new("demo", "apps");
    apply.stack_id = "0123456789abcdef".into();
    let opts = SyncOptions {
        apply,
        prune: true,
        wait: false,
        timeout: Duration::from_secs(10),
    };
    let (desired, resources) = k8s::desired(
        &client.clone().into(),
        c.dir.path(),
        &dir,
        &Default::default(),
        &opts.apply,
    )
    .await
    .unwrap();
    let cs = k8s::sync(&client.clone().into(), &desired, &resources, &opts)
        .await
        .unwrap();
    assert_eq!(cs.summary(), "+0 ~1 -1", "{cs:?}");
    let label = c
        .kubectl(&[
            "get",
            "cm",
            "kept",
            "-n",
            "default",
            "-o",
            "jsonpath={.metadata.labels.strata\\.dev/stack-id}",
        ])
        .await;
    assert_eq!(label.stdout, "0123456789abcdef");
    assert_ne!(
        c.kubectl(&["get", "cm", "gone", "-n", "default"])
            .await
            .code,
        0
    );
    assert_ne!(
        c.kubectl(&["get", "cm", "inventory.demo.apps", "-n", "strata-system"])
            .await
            .code,
        0,
        "the old inventory is replaced"
    );
    c.kubectl(&[
        "get",
        "cm",
        "inventory.0123456789abcdef.apps",
        "-n",
        "strata-system",
    ])
    .await
    .code(0);
}
