//! kubediff from the cluster's own lists: many objects of a kind are read with one paged LIST,
//! and the server-side dry run is skipped where the live object shows that strata's forced
//! apply would change nothing. It must never miss drift the dry run of every object finds: the
//! two methods are held against each other over objects the real kubectl mutated every way an
//! operator or a controller does.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use strata::kube::diff::Method;
use strata::kube::{self as layer, ApplyOptions, DiffState, SyncOptions};

use crate::support::Cluster;

fn opts() -> SyncOptions {
    let mut apply = ApplyOptions::new("demo", "listdiff");
    apply.namespace = Some("ns".into());
    apply.backoff.first = Duration::from_millis(20);
    SyncOptions {
        apply,
        prune: true,
        wait: false,
        timeout: Duration::from_secs(10),
    }
}

fn configmap(name: &str, data: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{app: cfg}}\ndata: {data}\n"
    )
}

fn deployment(name: &str, image: &str) -> String {
    format!(
        r#"---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
        - name: web
          image: "{image}"
          args: ["--port", "8080"]
          env: [{{name: MODE, value: "fast"}}, {{name: LEVEL, value: "2"}}]
          ports: [{{containerPort: 8080, name: http, protocol: TCP}}]
"#
    )
}

fn service(name: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n"
    )
}

/// The corpus: a namespace, 24 ConfigMaps, 21 Deployments and 20 Services (each at least
/// [`layer::diff::LIST_FROM`], so each is read by a LIST) and a Secret (read by a GET).
/// `git` changes some objects' desired state, as a commit after the apply would.
fn write_corpus(root: &Path, git: &BTreeMap<&str, String>) {
    let mut y = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns\n");
    for i in 0..24 {
        let name = format!("cm{i}");
        let data = git.get(name.as_str()).cloned();
        y.push_str(&configmap(
            &name,
            &data.unwrap_or_else(|| "{a: \"1\", b: \"2\", color: blue}".into()),
        ));
    }
    for i in 0..21 {
        let name = format!("d{i}");
        let image = git.get(name.as_str()).cloned();
        y.push_str(&deployment(&name, &image.unwrap_or("nginx:1.27".into())));
    }
    for i in 0..20 {
        y.push_str(&service(&format!("s{i}")));
    }
    y.push_str("---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: token\ndata: {t: b2xk}\n");
    let dir = root.join("k8s");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("all.yaml"), y).unwrap();
}

async fn diff_by(c: &Cluster, client: &kube::Client, method: Method) -> layer::KubeDiff {
    let o = opts();
    let cluster: layer::Cluster = client.clone().into();
    let (desired, resources) = layer::desired(
        &cluster,
        c.dir.path(),
        Path::new("k8s"),
        &BTreeMap::new(),
        &o.apply,
    )
    .await
    .unwrap();
    layer::diff_by(&cluster, &desired, &resources, &o, method)
        .await
        .unwrap()
}

async fn apply(c: &Cluster, client: &kube::Client) {
    let o = opts();
    let cluster: layer::Cluster = client.clone().into();
    let (desired, resources) = layer::desired(
        &cluster,
        c.dir.path(),
        Path::new("k8s"),
        &BTreeMap::new(),
        &o.apply,
    )
    .await
    .unwrap();
    layer::sync(&cluster, &desired, &resources, &o)
        .await
        .unwrap();
}

async fn kubectl(c: &Cluster, args: &[&str]) {
    let out = c.kubectl(args).await;
    assert_eq!(out.code, 0, "kubectl {args:?}: {out:?}");
}

/// Applies `yaml` server-side as another field manager (a controller, a second tool).
async fn apply_as(c: &Cluster, manager: &str, force: bool, yaml: &str) {
    let file = c
        .dir
        .path()
        .join(format!("{manager}-{}.yaml", rand_suffix()));
    std::fs::write(&file, yaml).unwrap();
    let f = file.display().to_string();
    let manager = format!("--field-manager={manager}");
    let mut args = vec!["apply", "--server-side", manager.as_str(), "-f", f.as_str()];
    if force {
        args.push("--force-conflicts");
    }
    kubectl(c, &args).await;
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn names(d: &layer::KubeDiff) -> Vec<String> {
    d.objects.iter().map(|o| o.object.name.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diff_without_drift_reads_each_kind_with_one_paged_list_and_runs_no_dry_run() {
    let c = Cluster::start().await;
    let client = c.client().await;
    write_corpus(c.dir.path(), &BTreeMap::new());
    apply(&c, &client).await;
    // 600 ConfigMaps strata does not manage, in the same namespace: the LIST pages over them
    // (500 a page) and drops them.
    let mut other = String::new();
    for i in 0..600 {
        other.push_str(&configmap(&format!("other{i}"), "{x: \"1\"}"));
    }
    let file = c.dir.path().join("other.yaml");
    std::fs::write(&file, other).unwrap();
    kubectl(
        &c,
        &["apply", "-n", "ns", "-f", &file.display().to_string()],
    )
    .await;

    c.dev.reset_requests();
    let d = diff_by(&c, &client, Method::Lists).await;
    assert!(!d.has_drift(), "{:?}", d.objects);
    assert_eq!(d.unchanged, 1 + 24 + 21 + 20 + 1);
    let count = |p: &str| c.dev.count_requests(|r| r == p);
    let prefix = |p: &str| c.dev.count_requests(|r| r.starts_with(p));
    assert_eq!(
        count("GET /api/v1/namespaces/ns/configmaps"),
        2,
        "two pages"
    );
    assert_eq!(count("GET /apis/apps/v1/namespaces/ns/deployments"), 1);
    assert_eq!(count("GET /api/v1/namespaces/ns/services"), 1);
    assert_eq!(
        prefix("GET /api/v1/namespaces/ns/configmaps/"),
        0,
        "no GET each"
    );
    assert_eq!(prefix("GET /apis/apps/v1/namespaces/ns/deployments/"), 0);
    assert_eq!(
        prefix("GET /api/v1/namespaces/ns/secrets/"),
        1,
        "one Secret: a GET"
    );
    // Objects strata owns exactly need no dry run (the Deployments' ports name their protocol);
    // the Services' ports are keyed by the protocol the server defaulted, which strata does not
    // set, so only the server can say.
    assert_eq!(prefix("PATCH /api/v1/namespaces/ns/configmaps/"), 0);
    assert_eq!(prefix("PATCH /apis/apps/v1/namespaces/ns/deployments/"), 0);
    assert_eq!(prefix("PATCH /api/v1/namespaces/ns/secrets/"), 0);
    assert_eq!(prefix("PATCH /api/v1/namespaces/ns/services/"), 20);

    // The reference method reads and dry-runs every object, and agrees.
    c.dev.reset_requests();
    assert_eq!(diff_by(&c, &client, Method::DryRunEach).await, d);
    assert_eq!(prefix("PATCH /api/v1/namespaces/ns/configmaps/"), 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_and_ownership_find_exactly_the_drift_a_dry_run_of_every_object_finds() {
    let c = Cluster::start().await;
    let client = c.client().await;
    write_corpus(c.dir.path(), &BTreeMap::new());
    apply(&c, &client).await;
    let ns = ["-n", "ns"];
    let run = |args: Vec<&'static str>| {
        let mut a: Vec<&str> = ns.to_vec();
        a.extend(args);
        a
    };
    // ConfigMaps: strata-owned fields edited, taken, removed; fields added beside strata's.
    let edits: Vec<Vec<&str>> = vec![
        run(vec![
            "patch",
            "configmap",
            "cm1",
            "--type=merge",
            "-p",
            r#"{"data":{"color":"red"}}"#,
        ]),
        run(vec![
            "patch",
            "configmap",
            "cm4",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/data/a"}]"#,
        ]),
        run(vec!["label", "configmap", "cm5", "extra=yes"]),
        run(vec!["label", "configmap", "cm7", "app-"]),
        run(vec![
            "patch",
            "configmap",
            "cm8",
            "--type=merge",
            "-p",
            r#"{"metadata":{"managedFields":[{}]}}"#,
        ]),
        run(vec!["delete", "configmap", "cm9"]),
        run(vec!["annotate", "configmap", "cm10", "note=hello"]),
        run(vec![
            "patch",
            "configmap",
            "cm13",
            "--type=merge",
            "-p",
            r#"{"data":{"a":"1"}}"#,
        ]),
        run(vec![
            "patch",
            "configmap",
            "cm14",
            "--type=merge",
            "-p",
            r#"{"data":{"a":null}}"#,
        ]),
        run(vec!["label", "configmap", "cm15", "strata.dev/stack-id-"]),
        // Deployments: list items and nested fields.
        run(vec!["set", "image", "deployment/d1", "web=nginx:1.28"]),
        run(vec![
            "patch",
            "deployment",
            "d2",
            "--type=merge",
            "-p",
            r#"{"spec":{"replicas":3}}"#,
        ]),
        run(vec![
            "patch",
            "deployment",
            "d3",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"envoy"}]}}}}"#,
        ]),
        run(vec![
            "patch",
            "deployment",
            "d4",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/template/spec/containers/0/args/1","value":"9090"}]"#,
        ]),
        run(vec!["set", "env", "deployment/d5", "MODE=slow"]),
        run(vec![
            "patch",
            "deployment",
            "d6",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/spec/template/spec/containers/0/env"}]"#,
        ]),
        run(vec![
            "patch",
            "deployment",
            "d7",
            "--type=merge",
            "-p",
            r#"{"spec":{"minReadySeconds":5}}"#,
        ]),
        run(vec![
            "patch",
            "deployment",
            "d8",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/template/spec/containers/0/ports/0/containerPort","value":9090}]"#,
        ]),
        run(vec![
            "patch",
            "deployment",
            "d9",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/spec/template/spec/containers/0/env/0","value":{"name":"FIRST","value":"x"}}]"#,
        ]),
        run(vec![
            "patch",
            "deployment",
            "d11",
            "--type=json",
            "-p",
            r#"[{"op":"move","from":"/spec/template/spec/containers/0/env/1","path":"/spec/template/spec/containers/0/env/0"}]"#,
        ]),
        // Services: a defaulted field strata does not set, and one it does.
        run(vec![
            "patch",
            "service",
            "s1",
            "--type=merge",
            "-p",
            r#"{"spec":{"type":"NodePort"}}"#,
        ]),
        run(vec![
            "patch",
            "service",
            "s2",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/ports/0/targetPort","value":9090}]"#,
        ]),
        run(vec![
            "patch",
            "service",
            "s3",
            "--type=merge",
            "-p",
            r#"{"spec":{"sessionAffinity":"ClientIP"}}"#,
        ]),
        run(vec![
            "patch",
            "secret",
            "token",
            "--type=merge",
            "-p",
            r#"{"data":{"t":"bmV3"}}"#,
        ]),
    ];
    for e in &edits {
        kubectl(&c, e).await;
    }
    // Other managers taking fields strata applies (with another value, and with the same one,
    // which they then share) and setting fields beside them.
    let cm = |name: &str, data: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: ns\ndata: {data}\n")
    };
    apply_as(&c, "other", true, &cm("cm2", "{color: green}")).await;
    apply_as(&c, "other", false, &cm("cm3", "{color: blue}")).await;
    apply_as(&c, "other", false, &cm("cm6", "{z: \"26\"}")).await;
    apply_as(
        &c,
        "hpa",
        true,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d12\n  namespace: ns\nspec:\n  replicas: 4\n",
    )
    .await;
    apply_as(
        &c,
        "hpa",
        false,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d13\n  namespace: ns\nspec:\n  replicas: 1\n",
    )
    .await;
    // Git changes after the apply: a key strata owned dropped (the apply would remove it), a
    // key added, an image changed.
    let git = BTreeMap::from([
        ("cm11", "{a: \"1\", color: blue}".to_string()),
        (
            "cm12",
            "{a: \"1\", b: \"2\", color: blue, new: \"yes\"}".to_string(),
        ),
        ("cm16", "{a: \"1\", b: \"2\", color: \"blue\"}".to_string()),
        ("d10", "nginx:1.29".to_string()),
    ]);
    write_corpus(c.dir.path(), &git);

    let lists = diff_by(&c, &client, Method::Lists).await;
    let each = diff_by(&c, &client, Method::DryRunEach).await;
    for (l, e) in lists.objects.iter().zip(&each.objects) {
        assert_eq!(l, e, "{}: lists and dry runs differ", l.object);
    }
    assert_eq!(lists, each);

    // The same LISTs split over many pages (each page judged and dropped before the next is
    // read) find the same drift: 23 ConfigMaps in pages of 5, 21 Deployments, 20 Services.
    c.dev.reset_requests();
    let paged = diff_by(&c, &client, Method::ListsPaged(5)).await;
    let pages = |p: &str| c.dev.count_requests(|r| r == p);
    assert_eq!(pages("GET /api/v1/namespaces/ns/configmaps"), 5);
    assert_eq!(pages("GET /apis/apps/v1/namespaces/ns/deployments"), 5);
    assert_eq!(pages("GET /api/v1/namespaces/ns/services"), 4);
    for (p, e) in paged.objects.iter().zip(&each.objects) {
        assert_eq!(p, e, "{}: paged lists and dry runs differ", p.object);
    }
    assert_eq!(paged, each);

    // Not vacuous: the drift every operator would call drift is there, and what leaves strata's
    // fields alone is not.
    let drifted = names(&lists);
    for name in [
        "cm1", "cm2", "cm4", "cm7", "cm9", "cm11", "cm12", "cm14", "cm15", "d1", "d2", "d4", "d5",
        "d6", "d8", "d10", "d12", "s2", "token",
    ] {
        assert!(
            drifted.contains(&name.to_string()),
            "{name} drifted: {drifted:?}"
        );
    }
    for name in [
        "cm3", "cm5", "cm6", "cm10", "cm13", "cm16", "cm20", "d3", "d7", "d13", "d20", "s3",
    ] {
        assert!(
            !drifted.contains(&name.to_string()),
            "{name} did not drift: {drifted:?}"
        );
    }
    let state = |n: &str| {
        &lists
            .objects
            .iter()
            .find(|o| o.object.name == n)
            .unwrap()
            .state
    };
    assert_eq!(state("cm9"), &DiffState::Missing);
    assert_eq!(state("cm1"), &DiffState::Changed);
    let secret =
        serde_json::to_string(&lists.objects.iter().find(|o| o.object.name == "token")).unwrap();
    assert!(
        !secret.contains("bmV3") && !secret.contains("b2xk"),
        "{secret}"
    );
}
