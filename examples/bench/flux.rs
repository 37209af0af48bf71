//! (e) The Flux benchmark's shape (fluxcd/flux-benchmark): N layers of a ServiceAccount, a
//! Service, a Deployment scaled to zero and an Ingress, against the same 4·N objects in one
//! layer; first apply and no-op apply, each on its own `strata devcluster` with readiness
//! simulated at once. strata's own cost per layer is the gap between the two.

use std::path::Path;
use std::process::Command;

use crate::{devcluster_with, env, measure, row, strata, write, Measured};

/// The four objects of app `i`.
fn app(i: usize) -> String {
    format!(
        r#"---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app-{i}
---
apiVersion: v1
kind: Service
metadata:
  name: app-{i}
spec:
  selector: {{app: app-{i}}}
  ports: [{{port: 80, targetPort: 8080}}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-{i}
spec:
  replicas: 0
  selector:
    matchLabels: {{app: app-{i}}}
  template:
    metadata:
      labels: {{app: app-{i}}}
    spec:
      serviceAccountName: app-{i}
      containers:
        - name: app
          image: ghcr.io/stefanprodan/podinfo:6.8.0
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: app-{i}
spec:
  rules:
    - host: app-{i}.example.com
      http:
        paths:
          - path: /
            pathType: Prefix
            backend:
              service: {{name: app-{i}, port: {{number: 80}}}}
"#
    )
}

/// A stack of `layers` layers holding `n` apps between them, on the cluster of `kubeconfig`.
fn stack(dir: &Path, kubeconfig: &Path, n: usize, layers: usize) {
    let mut hcl = format!(
        "stack \"flux\" {{}}\ncluster \"c\" {{\n  kubeconfig_path = \"{}\"\n}}\n",
        kubeconfig.display()
    );
    let per = n.div_ceil(layers);
    for l in 0..layers {
        let objects: String = (l * per..((l + 1) * per).min(n)).map(app).collect();
        write(&dir.join(format!("apps/l{l}/apps.yaml")), &objects);
        hcl.push_str(&format!(
            "kubernetes \"l{l}\" {{\n  source    = \"apps/l{l}\"\n  cluster   = cluster.c\n  namespace = \"default\"\n  wait      = false\n}}\n"
        ));
    }
    write(&dir.join("strata.hcl"), &hcl);
}

/// First apply and no-op apply of `n` apps in `layers` layers, on a fresh devcluster.
fn applies(n: usize, layers: usize) -> (Measured, Measured) {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, kc) = devcluster_with(dir.path(), "0s");
    let root = dir.path().join("stack");
    stack(&root, &kc, n, layers);
    let apply = || {
        let mut c = Command::new(strata());
        c.args(["apply", "--auto-approve", "--stack"])
            .arg(&root)
            .arg("--state-dir")
            .arg(dir.path().join("state"));
        measure(env(&mut c))
    };
    let first = apply();
    let noop = apply();
    let _ = cluster.kill();
    let _ = cluster.wait();
    (first, noop)
}

pub fn bench_flux(rows: &mut Vec<[String; 5]>, n: usize) {
    let (many_first, many_noop) = applies(n, n);
    let (one_first, one_noop) = applies(n, 1);
    let objects = 4 * n;
    for (what, m) in [
        (
            format!("strata apply, {n} layers x 4 objects (first)"),
            &many_first,
        ),
        (
            format!("strata apply, 1 layer x {objects} objects (first)"),
            &one_first,
        ),
    ] {
        row(rows, "e", &what, m, format!("exit {}", m.code));
    }
    let ratio = many_first.secs / one_first.secs;
    rows.last_mut().unwrap()[4] += &format!("; {n} layers / 1 layer: {ratio:.2}x (target 1.5x)");
    for (what, m) in [
        (format!("strata apply, {n} layers (no-op)"), &many_noop),
        (
            format!("strata apply, 1 layer x {objects} objects (no-op)"),
            &one_noop,
        ),
    ] {
        row(rows, "e", &what, m, format!("exit {}", m.code));
    }
    let ratio = many_noop.secs / one_noop.secs;
    rows.last_mut().unwrap()[4] += &format!("; {n} layers / 1 layer: {ratio:.2}x (target 1.3x)");
    let flux = Measured {
        secs: 256.0,
        max_rss_mb: 175.0,
        code: 0,
    };
    rows.push([
        "e".into(),
        "published: Flux v2.6, 1,000 Kustomizations of these 4 objects".into(),
        format!("{:.0}s", flux.secs),
        format!("{:.0} MB", flux.max_rss_mb),
        "fluxcd/flux-benchmark, 2 CPUs, a real cluster: for reference only, devcluster is not a real API server".into(),
    ]);
}
