//! A Kubernetes layer deleted from `strata.hcl`: what is not in Git does not exist, so an apply
//! prunes its objects (with the rules of any prune) and deletes its inventory; a plan only says
//! so. Never what another layer declares now (a renamed layer), never a Namespace holding
//! someone else's objects, and never on a cluster strata can no longer name. The real `strata`
//! binary against devcluster.

use std::path::Path;
use std::time::Duration;

use devcluster::{Fault, FaultAction};
use serde_json::Value;

use crate::kube_safety::{by_hand, layer, run, run_with, uid, NS};
use crate::support::{Cluster, Output};

const LEGACY: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: legacy\n  namespace: shop\ndata:\n  a: \"1\"\n";
const MOVED: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: moved\n  namespace: shop\ndata:\n  b: \"2\"\n";

/// A stack `demo` on cluster `main` (and `side`, the same cluster under another name, when
/// `side`): `platform` (the Namespace), then each of `layers` on `cluster`.
fn stack(root: &Path, c: &Cluster, layers: &[(&str, &str)], side: bool) {
    let mut hcl = format!(
        "stack \"demo\" {{}}\n\ncluster \"main\" {{\n  kubeconfig_path = \"{}\"\n}}\n",
        c.kubeconfig.display()
    );
    if side {
        hcl.push_str(&format!(
            "\ncluster \"side\" {{\n  kubeconfig_path = \"{}\"\n}}\n",
            c.kubeconfig.display()
        ));
    }
    hcl.push_str(
        "\nkubernetes \"platform\" {\n  source  = \"k8s/platform\"\n  cluster = cluster.main\n  wait    = false\n}\n",
    );
    for (name, cluster) in layers {
        hcl.push_str(&format!(
            "\nkubernetes \"{name}\" {{\n  source     = \"k8s/{name}\"\n  cluster    = cluster.{cluster}\n  wait       = false\n  depends_on = [kubernetes.platform]\n}}\n"
        ));
    }
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(root.join("strata.hcl"), hcl).unwrap();
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}:\n{}\n{}", out.stdout, out.stderr))
}

/// The names of the inventories of `layer` in the cluster.
async fn inventories(c: &Cluster, layer: &str) -> Vec<String> {
    in_strata_system(c, "cm", layer).await
}

/// The layer's record of what strata last applied (a Secret beside its inventory).
async fn records(c: &Cluster, layer: &str) -> Vec<String> {
    in_strata_system(c, "secret", layer).await
}

async fn in_strata_system(c: &Cluster, kind: &str, layer: &str) -> Vec<String> {
    let out = c
        .kubectl(&[
            "get",
            kind,
            "-n",
            "strata-system",
            "-l",
            &format!("strata.dev/layer={layer}"),
            "-o",
            "name",
        ])
        .await;
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout.lines().map(String::from).collect()
}

async fn exists(c: &Cluster, kind: &str, name: &str, ns: &str) -> bool {
    let out = c
        .kubectl(&["get", kind, name, "-n", ns, "-o", "name"])
        .await;
    out.code == 0
}

fn remembered(root: &Path, layer: &str) -> bool {
    let status = std::fs::read_to_string(root.join("state/status.json")).unwrap();
    let v: Value = serde_json::from_str(&status).unwrap();
    v["layers"].get(layer).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_layer_is_pruned_on_apply_only_keeping_what_another_layer_now_declares() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    stack(&root, &c, &[("apps", "main"), ("old", "main")], false);
    layer(&root, "platform", &[("ns.yaml", NS)]);
    layer(&root, "apps", &[]);
    layer(
        &root,
        "old",
        &[("legacy.yaml", LEGACY), ("moved.yaml", MOVED)],
    );
    run(&root, "apply").await.code(0);
    let moved = uid(&c, "cm", "moved", Some("shop")).await;
    assert_eq!(inventories(&c, "old").await.len(), 1);
    assert_eq!(records(&c, "old").await.len(), 1);

    // `old` leaves the stack file; in the same commit `apps` takes over one of its objects.
    stack(&root, &c, &[("apps", "main")], false);
    layer(&root, "apps", &[("moved.yaml", MOVED)]);
    let plan = run_with(&root, "plan", &["--json"]).await;
    let p = json(&plan);
    assert_eq!(p["orphaned"][0]["layer"], "kubernetes.old", "{p:#}");
    assert_eq!(p["orphaned"][0]["status"], "orphaned", "{p:#}");
    let changes = p["orphaned"][0]["changes"].to_string();
    assert!(
        changes.contains("legacy") && !changes.contains("moved"),
        "the plan names what would be pruned, and only that: {p:#}"
    );
    let text = run(&root, "plan").await;
    assert!(
        text.stdout.contains("kubernetes.old  orphaned")
            && text.stdout.contains("- ConfigMap/shop/legacy"),
        "{text:?}"
    );
    assert!(
        exists(&c, "cm", "legacy", "shop").await,
        "a plan deletes nothing"
    );
    assert_eq!(
        inventories(&c, "old").await.len(),
        1,
        "a plan deletes nothing"
    );

    let apply = run_with(&root, "apply", &["--json"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let a = json(&apply);
    assert_eq!(a["orphaned"][0]["layer"], "kubernetes.old", "{a:#}");
    assert_eq!(a["orphaned"][0]["status"], "pruned", "{a:#}");
    assert!(!exists(&c, "cm", "legacy", "shop").await, "pruned");
    assert_eq!(
        uid(&c, "cm", "moved", Some("shop")).await,
        moved,
        "handed over, never deleted"
    );
    assert!(inventories(&c, "old").await.is_empty(), "inventory deleted");
    assert!(records(&c, "old").await.is_empty(), "its record too");
    assert!(!remembered(&root, "kubernetes.old"), "forgotten");
    let next = run_with(&root, "apply", &["--json"]).await;
    assert!(json(&next).get("orphaned").is_none(), "{next:?}");
}

/// A first apply records, at its start, where each new layer on a known cluster applies (one
/// write for all): a layer that then never runs (its upstream failed) has it cleared when the
/// run records, and once it leaves the stack file nothing is orphaned or pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_layer_skipped_on_its_first_apply_and_then_removed_leaves_no_orphan() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    stack(&root, &c, &[("late", "main")], false);
    // The platform layer fails its dry run (a name no server accepts): `late` is skipped.
    layer(
        &root,
        "platform",
        &[(
            "ns.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: Not_A_Name\n",
        )],
    );
    layer(&root, "late", &[("legacy.yaml", LEGACY)]);
    let failed = run_with(&root, "apply", &["--json"]).await;
    assert_ne!(failed.code, 0, "{failed:?}");
    let f = json(&failed);
    let late = f["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["layer"] == "kubernetes.late")
        .unwrap();
    assert_eq!(late["status"], "skipped", "{f:#}");
    let status: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("state/status.json")).unwrap())
            .unwrap();
    assert!(
        status["layers"]["kubernetes.late"]["kubernetes"].is_null(),
        "no target for a layer that wrote nothing: {status:#}"
    );

    stack(&root, &c, &[], false);
    layer(&root, "platform", &[("ns.yaml", NS)]);
    let apply = run_with(&root, "apply", &["--json"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(!exists(&c, "cm", "legacy", "shop").await);
    assert!(json(&apply).get("orphaned").is_none(), "{apply:?}");
    let next = run_with(&root, "apply", &["--json"]).await;
    assert_eq!(next.code, 0, "{next:?}");
    assert!(json(&next).get("orphaned").is_none(), "{next:?}");
}

/// A new layer whose cluster never answered wrote nothing: the target its apply recorded
/// ahead is cleared when the run records, so removing the layer (and its cluster block) later
/// leaves nothing orphaned that would wait on that cluster forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_layer_whose_cluster_never_answered_leaves_no_orphan_once_removed() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    // A kubeconfig naming a port nothing listens on.
    let dead = c.dir.path().join("dead.kubeconfig");
    let port = crate::support::free_port().port();
    let text = std::fs::read_to_string(&c.kubeconfig).unwrap();
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string();
    std::fs::write(
        &dead,
        text.replace(&server, &format!("https://127.0.0.1:{port}")),
    )
    .unwrap();
    stack(&root, &c, &[], false);
    let mut hcl = std::fs::read_to_string(root.join("strata.hcl")).unwrap();
    let with_edge = format!(
        "{hcl}\ncluster \"edge\" {{\n  kubeconfig_path = \"{}\"\n}}\n\nkubernetes \"apps\" {{\n  source  = \"k8s/apps\"\n  cluster = cluster.edge\n  wait    = false\n}}\n",
        dead.display()
    );
    std::fs::write(root.join("strata.hcl"), &with_edge).unwrap();
    layer(&root, "platform", &[("ns.yaml", NS)]);
    layer(&root, "apps", &[("legacy.yaml", LEGACY)]);
    let failed = run_with(&root, "apply", &["--json"]).await;
    assert_ne!(failed.code, 0, "{failed:?}");
    let status: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("state/status.json")).unwrap())
            .unwrap();
    assert!(
        status["layers"]["kubernetes.apps"]["kubernetes"].is_null(),
        "no target for a layer that wrote nothing: {status:#}"
    );

    // The layer and its cluster block go: nothing is orphaned, nothing waits on `edge`.
    hcl.push('\n');
    std::fs::write(root.join("strata.hcl"), &hcl).unwrap();
    let apply = run_with(&root, "apply", &["--json"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(json(&apply).get("orphaned").is_none(), "{apply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_layer_deletes_nothing() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    stack(&root, &c, &[("old", "main")], false);
    layer(&root, "platform", &[("ns.yaml", NS)]);
    layer(
        &root,
        "old",
        &[("legacy.yaml", LEGACY), ("moved.yaml", MOVED)],
    );
    run(&root, "apply").await.code(0);
    let legacy = uid(&c, "cm", "legacy", Some("shop")).await;
    let moved = uid(&c, "cm", "moved", Some("shop")).await;

    // Renamed: the same files under a new name.
    stack(&root, &c, &[("renamed", "main")], false);
    std::fs::rename(root.join("k8s/old"), root.join("k8s/renamed")).unwrap();
    let apply = run(&root, "apply").await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(!apply.stdout.contains("- ConfigMap"), "{apply:?}");
    assert_eq!(uid(&c, "cm", "legacy", Some("shop")).await, legacy);
    assert_eq!(uid(&c, "cm", "moved", Some("shop")).await, moved);
    assert!(inventories(&c, "old").await.is_empty(), "{apply:?}");
    assert_eq!(inventories(&c, "renamed").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_layer_s_namespace_holding_foreign_objects_is_kept() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    let attic = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: attic\n";
    let box_ = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: box\n  namespace: attic\n";
    stack(&root, &c, &[("old", "main")], false);
    layer(&root, "platform", &[("ns.yaml", NS)]);
    layer(&root, "old", &[("ns.yaml", attic), ("box.yaml", box_)]);
    run(&root, "apply").await.code(0);
    let ns = uid(&c, "namespace", "attic", None).await;
    by_hand(&c, "notes", "attic").await;

    stack(&root, &c, &[], false);
    let apply = run(&root, "apply").await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(
        apply.stdout.contains(
            "! kept Namespace/attic: still holds ConfigMap/attic/notes (created outside strata)"
        ),
        "{apply:?}"
    );
    assert!(apply.stdout.contains("- ConfigMap/attic/box"), "{apply:?}");
    assert_eq!(uid(&c, "namespace", "attic", None).await, ns, "kept");
    uid(&c, "cm", "notes", Some("attic")).await;
    assert_eq!(
        inventories(&c, "old").await.len(),
        1,
        "what was kept stays in its inventory"
    );
    let status = crate::support::strata_cli(
        &root,
        &[
            "status",
            "--state-dir",
            root.join("state").to_str().unwrap(),
        ],
    )
    .await;
    let row = status
        .stdout
        .lines()
        .find(|l| l.contains("kubernetes.old"))
        .unwrap_or_else(|| panic!("{status:?}"));
    assert!(row.contains("orphaned"), "{row}");

    // Once nothing keeps it, the next apply finishes the job.
    c.kubectl(&["delete", "cm", "notes", "-n", "attic"])
        .await
        .code(0);
    let apply = run(&root, "apply").await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(apply.stdout.contains("- Namespace/attic"), "{apply:?}");
    assert!(inventories(&c, "old").await.is_empty(), "{apply:?}");
    assert!(!remembered(&root, "kubernetes.old"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_layer_whose_cluster_is_gone_too_is_kept_and_reported() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    stack(&root, &c, &[("old", "side")], true);
    layer(&root, "platform", &[("ns.yaml", NS)]);
    layer(&root, "old", &[("legacy.yaml", LEGACY)]);
    run(&root, "apply").await.code(0);
    let legacy = uid(&c, "cm", "legacy", Some("shop")).await;

    // The layer and its cluster block go together: strata can no longer name where it was.
    stack(&root, &c, &[], false);
    let apply = run_with(&root, "apply", &["--json"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let a = json(&apply);
    assert_eq!(a["orphaned"][0]["status"], "orphaned", "{a:#}");
    let detail = a["orphaned"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("so is its cluster \"side\""),
        "says why: {detail}"
    );
    assert_eq!(uid(&c, "cm", "legacy", Some("shop")).await, legacy, "kept");
    assert_eq!(inventories(&c, "old").await.len(), 1, "kept");
    let status: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("state/status.json")).unwrap())
            .unwrap();
    assert_eq!(
        status["layers"]["kubernetes.old"]["reason"]["kind"], "orphaned",
        "{status:#}"
    );

    // The cluster block back (the layer still gone): now it is pruned.
    stack(&root, &c, &[], true);
    let apply = run_with(&root, "apply", &["--json"]).await;
    assert_eq!(json(&apply)["orphaned"][0]["status"], "pruned", "{apply:?}");
    assert!(!exists(&c, "cm", "legacy", "shop").await);
}

/// `kill -9` of strata in its first apply of a layer, the layer removed, then `kill -9` in the
/// middle of its prune: each next apply finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_of_a_removed_layer_killed_midway_is_finished_by_the_next_apply() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let root = c.dir.path().join("stack");
    stack(&root, &c, &[("old", "main")], false);
    layer(&root, "platform", &[("ns.yaml", NS)]);
    layer(&root, "old", &[]);
    run(&root, "apply").await.code(0);
    let many: Vec<(String, String)> = (0..150)
        .map(|i| {
            (
                format!("cm-{i:03}.yaml"),
                format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:03}\n  namespace: shop\n"),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = many.iter().map(|(f, t)| (f.as_str(), t.as_str())).collect();
    layer(&root, "old", &files);
    let cms: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        client.clone(),
        "shop",
        &kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("", "v1", "ConfigMap"),
            "configmaps",
        ),
    );
    let count = || async {
        cms.list(&Default::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(0)
    };
    let slow = |verb: &str| Fault {
        verb: Some(verb.into()),
        resource: Some("configmaps".into()),
        action: FaultAction::Latency(Duration::from_millis(150)),
        count: None,
        dry_run: None,
    };

    // Killed while it creates them.
    c.dev.inject(slow("patch"));
    kill_once(
        spawn_apply(&root),
        "started writing",
        Duration::from_millis(50),
        || async { count().await >= 10 },
    )
    .await;
    c.dev.clear_faults();
    let created = count().await;
    assert!((10..150).contains(&created), "killed midway: {created}");

    // Removed: killed again while it prunes them.
    stack(&root, &c, &[], false);
    c.dev.inject(slow("delete"));
    kill_once(
        spawn_apply(&root),
        "started deleting",
        Duration::from_millis(50),
        || async { count().await <= created - 5 },
    )
    .await;
    c.dev.clear_faults();
    let left = count().await;
    assert!(left > 0, "killed midway: {left} left");
    assert_eq!(inventories(&c, "old").await.len(), 1, "kept until the end");

    let apply = run_with(&root, "apply", &["--json"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(json(&apply)["orphaned"][0]["status"], "pruned", "{apply:?}");
    assert_eq!(count().await, 0, "{apply:?}");
    assert!(inventories(&c, "old").await.is_empty());
    assert!(!remembered(&root, "kubernetes.old"));
}

/// Many layers record where they apply at once (one write of `status.json` for all that ask
/// together): killed while they first apply, then every one removed from the stack file, each
/// object any of them created is pruned, because its layer's target was on disk before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_killed_during_their_first_apply_and_then_removed_are_all_pruned() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let root = c.dir.path().join("stack");
    let names: Vec<String> = (0..40).map(|i| format!("l{i:02}")).collect();
    let layers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "main")).collect();
    stack(&root, &c, &layers, false);
    layer(&root, "platform", &[("ns.yaml", NS)]);
    for n in &names {
        layer(&root, n, &[]);
    }
    run(&root, "apply").await.code(0);
    for n in &names {
        let cm = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{n}\n  namespace: shop\n"
        );
        layer(&root, n, &[("cm.yaml", cm.as_str())]);
    }
    let cms: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        client.clone(),
        "shop",
        &kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("", "v1", "ConfigMap"),
            "configmaps",
        ),
    );
    let count = || async {
        cms.list(&Default::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(0)
    };
    c.dev.inject(Fault {
        verb: Some("patch".into()),
        resource: Some("configmaps".into()),
        action: FaultAction::Latency(Duration::from_millis(300)),
        count: None,
        dry_run: None,
    });
    kill_once(
        spawn_apply(&root),
        "started writing",
        Duration::from_millis(20),
        || async { count().await >= 3 },
    )
    .await;
    c.dev.clear_faults();
    let created = count().await;
    assert!((3..40).contains(&created), "killed midway: {created}");

    stack(&root, &c, &[], false);
    let apply = run_with(&root, "apply", &["--json"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert_eq!(
        count().await,
        0,
        "every object created was pruned: {apply:?}"
    );
    for n in &names {
        assert!(inventories(&c, n).await.is_empty(), "{n}: {apply:?}");
        assert!(!remembered(&root, &format!("kubernetes.{n}")), "{n}");
    }
}

/// Kills `child` (kill -9) once `reached` holds, polling `every` (at most 1,200 times); fails if it ends first or never gets
/// there.
async fn kill_once<F, Fut>(
    mut child: tokio::process::Child,
    what: &str,
    every: Duration,
    reached: F,
) where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut polls = 0;
    while !reached().await {
        polls += 1;
        assert!(polls < 1200, "the apply never {what}");
        assert!(child.try_wait().unwrap().is_none(), "ended before the kill");
        tokio::time::sleep(every).await;
    }
    child.kill().await.unwrap();
}

fn spawn_apply(root: &Path) -> tokio::process::Child {
    tokio::process::Command::new(assert_cmd::cargo::cargo_bin("strata"))
        .args(["apply", "--auto-approve", "--stack"])
        .arg(root)
        .arg("--state-dir")
        .arg(root.join("state"))
        .current_dir(root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The agent, on a commit that removes a Kubernetes layer: one `orphaned` alert, its objects
/// pruned, no approval asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn the_agent_alerts_once_when_a_kubernetes_layer_leaves_and_prunes_it() {
    use crate::agent::{cm, kinds, options, receiver, until, Repo};
    let c = Cluster::start().await;
    let repo = Repo {
        dir: c.dir.path().join("repo"),
    };
    let hcl = |with_gone: bool| {
        let mut h = format!(
            "stack \"truth\" {{\n  alert_after = \"0s\"\n}}\ncluster \"main\" {{\n  kubeconfig_path = \"{}\"\n}}\nkubernetes \"kept\" {{\n  source    = \"k8s/kept\"\n  cluster   = cluster.main\n  namespace = \"default\"\n}}\n",
            c.kubeconfig.display()
        );
        if with_gone {
            h.push_str("kubernetes \"gone\" {\n  source    = \"k8s/gone\"\n  cluster   = cluster.main\n  namespace = \"default\"\n}\n");
        }
        h
    };
    repo.write("strata.hcl", &hcl(true));
    repo.write("k8s/kept/cm.yaml", &cm("kept", "blue"));
    repo.write("k8s/gone/cm.yaml", &cm("gone", "red"));
    repo.git(&["init", "-q", "-b", "main"]);
    repo.commit("first");
    let (alerts, got) = receiver().await;
    let state = c.dir.path().join("state");
    let mut o = options(&repo, &state, &alerts);
    o.poll_interval = Some(Duration::from_secs(1));
    let addr = o.listen.unwrap();
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
    assert!(exists(&c, "cm", "gone", "default").await);

    repo.write("strata.hcl", &hcl(false));
    repo.commit("drop gone");
    let orphaned = || {
        got.lock()
            .unwrap()
            .iter()
            .filter(|a| a["condition"] == "orphaned kubernetes.gone")
            .cloned()
            .collect::<Vec<_>>()
    };
    until("an orphaned alert", 120, || !orphaned().is_empty()).await;
    let mut polls = 0;
    while exists(&c, "cm", "gone", "default").await {
        polls += 1;
        assert!(polls < 600, "never pruned");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = || async {
        let r = reqwest::get(format!("http://{addr}/api/v1/status"))
            .await
            .unwrap();
        serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()
    };
    // A few more polls of the same commit: still one alert.
    let syncs = status().await["syncs"].as_u64().unwrap();
    let mut polls = 0;
    while status().await["syncs"].as_u64().unwrap() < syncs + 3 {
        polls += 1;
        assert!(polls < 600, "the agent stopped polling");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let alert = orphaned();
    assert_eq!(alert.len(), 1, "one alert: {alert:?}");
    let s = status().await;
    assert_eq!(s["awaiting_approval"], serde_json::json!([]), "{s:#}");
    assert!(
        s["stack"]["layers"].get("kubernetes.gone").is_none(),
        "{s:#}"
    );
    assert!(exists(&c, "cm", "kept", "default").await);
    stop.cancel();
    agent.await.unwrap();
}

/// Pruned with the stack: a removed layer's objects go first, so the Namespace another layer
/// stops declaring in the same commit goes in the same apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_layer_is_pruned_before_the_namespace_it_lived_in() {
    let c = Cluster::start().await;
    let root = c.dir.path().join("stack");
    stack(&root, &c, &[("old", "main")], false);
    layer(&root, "platform", &[("ns.yaml", NS)]);
    layer(&root, "old", &[("legacy.yaml", LEGACY)]);
    run(&root, "apply").await.code(0);

    stack(&root, &c, &[], false);
    layer(&root, "platform", &[]);
    let apply = run(&root, "apply").await;
    assert_eq!(apply.code, 0, "{apply:?}");
    assert!(
        apply.stdout.contains("- ConfigMap/shop/legacy"),
        "{apply:?}"
    );
    assert!(apply.stdout.contains("- Namespace/shop"), "{apply:?}");
    assert!(
        !exists(&c, "namespace", "shop", "default").await,
        "{apply:?}"
    );
}

/// A cluster block pointed at another API server since the layer was applied: its inventory is
/// not looked for there, and nothing is forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_layer_whose_cluster_now_points_elsewhere_is_kept() {
    let c = Cluster::start().await;
    let other = Cluster::start().await;
    let root = c.dir.path().join("stack");
    stack(&root, &c, &[("old", "main")], false);
    layer(&root, "platform", &[("ns.yaml", NS)]);
    layer(&root, "old", &[("legacy.yaml", LEGACY)]);
    run(&root, "apply").await.code(0);

    stack(&root, &other, &[], false);
    let apply = run_with(&root, "apply", &["--json"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let a = json(&apply);
    assert_eq!(a["orphaned"][0]["status"], "orphaned", "{a:#}");
    let detail = a["orphaned"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("which points at"), "{detail}");
    assert!(exists(&c, "cm", "legacy", "shop").await);
    assert_eq!(inventories(&c, "old").await.len(), 1);
    assert!(remembered(&root, "kubernetes.old"));
}
