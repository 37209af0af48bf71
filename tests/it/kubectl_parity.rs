//! Manifests mean to strata what they mean to kubectl: the same install files, applied by the
//! real kubectl to one devcluster and by strata to another, are stored with the same content.

use std::path::{Path, PathBuf};
use std::time::Duration;

use devcluster::DevClusterOptions;
use serde_json::Value;
use strata::kube::{self as layer, ApplyOptions, SyncOptions};

use crate::support::{repo_root, Cluster};

fn opts() -> SyncOptions {
    let mut apply = ApplyOptions::new("corpus", "corpus");
    apply.backoff.first = Duration::from_millis(20);
    SyncOptions {
        apply,
        prune: true,
        wait: false,
        timeout: Duration::from_secs(10),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

/// What both clusters must agree on: the stored object without what a server invents per
/// object (uid, resourceVersion, timestamps, managedFields, allocated cluster IPs) and strata's
/// own labels and annotations.
fn comparable(mut v: Value) -> Value {
    if let Some(md) = v["metadata"].as_object_mut() {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
        ] {
            md.remove(k);
        }
        for key in ["labels", "annotations"] {
            if let Some(m) = md.get_mut(key).and_then(Value::as_object_mut) {
                m.retain(|k, _| !k.starts_with("strata.dev/"));
                if m.is_empty() {
                    md.remove(key);
                }
            }
        }
    }
    if let Some(spec) = v["spec"].as_object_mut() {
        spec.remove("clusterIP");
        spec.remove("clusterIPs");
    }
    strip_times(&mut v);
    v
}

fn strip_times(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("lastTransitionTime");
            m.values_mut().for_each(strip_times);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_times),
        _ => {}
    }
}

async fn kubectl_apply_until_done(c: &Cluster, dir: &Path) {
    // As against a real cluster, custom resources can be applied once their CRD exists.
    for _ in 0..3 {
        let out = c
            .kubectl(&["apply", "--server-side", "-f", dir.to_str().unwrap()])
            .await;
        if out.code == 0 {
            return;
        }
        assert!(
            out.stderr.contains("ensure CRDs are installed first"),
            "{out:?}"
        );
    }
    panic!("kubectl could not apply {}", dir.display());
}

fn corpus() -> PathBuf {
    repo_root().join("tests/corpus/controller")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_is_stored_as_kubectl_stores_it() {
    let no_ready = || DevClusterOptions {
        simulate_ready: None,
        ..Default::default()
    };
    let by_kubectl = Cluster::with(no_ready()).await;
    let by_strata = Cluster::with(no_ready()).await;
    kubectl_apply_until_done(&by_kubectl, &corpus()).await;

    copy_dir(&corpus(), &by_strata.dir.path().join("k8s"));
    let client = by_strata.client().await;
    let o = opts();
    let (desired, resources) = layer::desired(
        &client.clone().into(),
        by_strata.dir.path(),
        Path::new("k8s"),
        &Default::default(),
        &o.apply,
    )
    .await
    .unwrap();
    assert!(desired.len() >= 28, "{}", desired.len());
    let cs = layer::sync(&client.clone().into(), &desired, &resources, &o)
        .await
        .unwrap();
    assert!(
        cs.summary().starts_with(&format!("+{} ", desired.len())),
        "{cs:?}"
    );

    let other = by_kubectl.client().await;
    let mut compared = 0;
    for d in &desired {
        let ours = d.api(&client).get(&d.r.name).await.unwrap();
        let theirs = d
            .api(&other)
            .get(&d.r.name)
            .await
            .unwrap_or_else(|e| panic!("{}: kubectl stored nothing: {e}", d.r));
        let ours = comparable(serde_json::to_value(ours).unwrap());
        let theirs = comparable(serde_json::to_value(theirs).unwrap());
        assert_eq!(
            ours,
            theirs,
            "{} differs (strata left, kubectl right)\n{}\n{}",
            d.r,
            serde_json::to_string_pretty(&ours).unwrap(),
            serde_json::to_string_pretty(&theirs).unwrap()
        );
        compared += 1;
    }
    assert_eq!(compared, desired.len());

    // A second apply of the same files writes nothing.
    let (desired, resources) = layer::desired(
        &client.clone().into(),
        by_strata.dir.path(),
        Path::new("k8s"),
        &Default::default(),
        &o.apply,
    )
    .await
    .unwrap();
    let again = layer::sync(&client.clone().into(), &desired, &resources, &o)
        .await
        .unwrap();
    assert_eq!(again.summary(), "+0 ~0 -0", "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yaml_1_1_values_are_typed_as_kubectl_types_them() {
    let c = Cluster::start().await;
    let files = [(
        "pod.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: modes\ndata:\n  mode: \"0755\"\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      hostNetwork: yes\n      automountServiceAccountToken: no\n      containers: [{name: c, image: i, tty: on}]\n      volumes: [{name: v, configMap: {name: modes, defaultMode: 0755, items: [{key: mode, path: m, mode: 0644}]}}]\n",
    )];
    let dir = c.dir.path().join("k8s");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(files[0].0), files[0].1).unwrap();
    let client = c.client().await;
    let o = opts();
    let (desired, resources) = layer::desired(
        &client.clone().into(),
        c.dir.path(),
        Path::new("k8s"),
        &Default::default(),
        &o.apply,
    )
    .await
    .unwrap();
    layer::sync(&client.clone().into(), &desired, &resources, &o)
        .await
        .unwrap();
    let d = c
        .kubectl(&["get", "deployment", "d", "-n", "default", "-o", "json"])
        .await
        .code(0);
    let d: Value = serde_json::from_str(&d.stdout).unwrap();
    let spec = &d["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["automountServiceAccountToken"], false);
    assert_eq!(spec["containers"][0]["tty"], true);
    assert_eq!(spec["volumes"][0]["configMap"]["defaultMode"], 493);
    assert_eq!(spec["volumes"][0]["configMap"]["items"][0]["mode"], 420);
    let cm = c
        .kubectl(&[
            "get",
            "configmap",
            "modes",
            "-n",
            "default",
            "-o",
            "jsonpath={.data.mode}",
        ])
        .await
        .code(0);
    assert_eq!(cm.stdout, "0755");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unquoted_yes_in_configmap_data_is_refused_as_kubectl_refuses_it() {
    let c = Cluster::start().await;
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\n  namespace: default\ndata:\n  enabled: yes\n";
    let dir = c.manifests("kubectl", &[("cm.yaml", cm)]);
    let out = c
        .kubectl(&["apply", "--server-side", "-f", dir.to_str().unwrap()])
        .await
        .code(1);
    assert!(out.stderr.contains("must be a string"), "{out:?}");

    let layer_dir = c.dir.path().join("k8s");
    std::fs::create_dir_all(&layer_dir).unwrap();
    std::fs::write(layer_dir.join("cm.yaml"), cm).unwrap();
    let client = c.client().await;
    let o = opts();
    let (desired, resources) = layer::desired(
        &client.clone().into(),
        c.dir.path(),
        Path::new("k8s"),
        &Default::default(),
        &o.apply,
    )
    .await
    .unwrap();
    let err = layer::sync(&client.clone().into(), &desired, &resources, &o)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("data[enabled]: Invalid value: true: must be a string"),
        "{err}"
    );
}

#[test]
fn typed_lists_are_applied_item_by_item() {
    let dir = tempfile::tempdir().unwrap();
    let k8s = dir.path().join("k8s");
    std::fs::create_dir_all(&k8s).unwrap();
    std::fs::write(
        k8s.join("list.yaml"),
        "apiVersion: v1\nkind: ConfigMapList\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: b}\n",
    )
    .unwrap();
    let m = layer::manifest::load(dir.path(), Path::new("k8s"), &Default::default()).unwrap();
    let names: Vec<&str> = m.iter().map(|m| m.name()).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn a_nine_megabyte_file_loads_as_kubectl_applies_it() {
    let dir = tempfile::tempdir().unwrap();
    let k8s = dir.path().join("k8s");
    std::fs::create_dir_all(&k8s).unwrap();
    let value = "x".repeat(900 << 10);
    let mut text = String::new();
    for i in 0..10 {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\ndata:\n  v: {value}\n"
        ));
    }
    assert!(text.len() > 9_000_000);
    std::fs::write(k8s.join("big.yaml"), &text).unwrap();
    let m = layer::manifest::load(dir.path(), Path::new("k8s"), &Default::default()).unwrap();
    assert_eq!(m.len(), 10);
}
