//! What the tests share: a devcluster per test with its kubeconfig on disk, kubectl and kube-rs
//! clients for it, and the manifests several tests apply.

use std::path::PathBuf;

use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};

/// What a kubectl run printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn code(self, expected: i32) -> Output {
        assert_eq!(
            self.code, expected,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A devcluster for one test, its kubeconfig on disk, and a scratch directory.
pub struct Cluster {
    pub dev: devcluster::DevCluster,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::with(devcluster::DevClusterOptions::default()).await
    }

    pub async fn with(opts: devcluster::DevClusterOptions) -> Cluster {
        let dev = devcluster::DevCluster::start(opts)
            .await
            .expect("devcluster starts");
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        dev.write_kubeconfig(&kubeconfig).unwrap();
        Cluster {
            dev,
            dir,
            kubeconfig,
        }
    }

    /// Runs the real kubectl against the cluster (`STRATA_KUBECTL` picks another binary, e.g.
    /// one of the versioned kubectl.1.27 ... kubectl.1.33).
    pub async fn kubectl(&self, args: &[&str]) -> Output {
        let kubectl = std::env::var("STRATA_KUBECTL").unwrap_or_else(|_| "kubectl".into());
        let out = tokio::process::Command::new(kubectl)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            // A discovery cache of its own: kubectl keeps one per host:port in $HOME, and an
            // earlier cluster on the same port (ports are reused) would answer for this one.
            .arg(format!(
                "--cache-dir={}",
                self.dir.path().join("kubectl-cache").display()
            ))
            .env_remove("KUBECTL_EXTERNAL_DIFF")
            .output()
            .await
            .expect("kubectl runs (make tools installs it)");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A kube-rs client for the cluster.
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::from_yaml(&self.dev.kubeconfig()).unwrap();
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// Writes manifests into a directory under the scratch dir and returns its path.
    pub fn manifests(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for (f, text) in files {
            std::fs::write(d.join(f), text).unwrap();
        }
        d
    }
}

pub const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n";
pub const CRD: &str = r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wd]}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
      subresources: {status: {}}
"#;
pub const WIDGET: &str = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: demo\nspec:\n  size: 3\n";
pub const APP: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27"}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
data:
  color: blue
"#;

pub fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

pub fn cm_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ar("", "v1", "ConfigMap", "configmaps"))
}
