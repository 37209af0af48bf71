//! A small builder for running `strata` the way a user does, with its output captured.

use std::path::{Path, PathBuf};
use std::process::Command;

mod postgres;
#[allow(unused_imports)]
pub use postgres::Postgres;

/// The repository root: tests run from here so fixture paths in messages are stable.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One `strata` invocation.
pub struct Strata {
    args: Vec<String>,
    cwd: PathBuf,
    envs: Vec<(String, String)>,
}

/// What a run printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Strata {
    pub fn new<I, S>(args: I) -> Strata
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Strata {
            args: args.into_iter().map(|a| a.as_ref().to_string()).collect(),
            cwd: repo_root(),
            envs: Vec::new(),
        }
    }

    #[allow(dead_code)]
    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Strata {
        self.cwd = dir.as_ref().to_path_buf();
        self
    }

    #[allow(dead_code)]
    pub fn env(mut self, key: &str, value: impl AsRef<str>) -> Strata {
        self.envs.push((key.into(), value.as_ref().into()));
        self
    }

    pub fn run(self) -> Output {
        let out = Command::new(assert_cmd::cargo::cargo_bin("strata"))
            .args(&self.args)
            .current_dir(&self.cwd)
            .env_remove("STRATA_LOG")
            .envs(self.envs)
            .output()
            .expect("strata runs");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
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

/// Everything strata logs in this test binary, at every level. Tests look for their own unique
/// strings in it: a global subscriber is the only kind every thread's events reach reliably.
pub struct Logs(&'static std::sync::Mutex<Vec<u8>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[allow(dead_code)]
pub fn captured_logs() -> Logs {
    static BUFFER: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| LogWriter(&BUFFER))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
    });
    Logs(&BUFFER)
}

struct LogWriter(&'static std::sync::Mutex<Vec<u8>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A devcluster for one test, its kubeconfig on disk, and a scratch directory.
#[allow(dead_code)]
pub struct Cluster {
    pub dev: devcluster::DevCluster,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

#[allow(dead_code)]
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

/// PATH with the repository's bin/ first (terraform from `make tools`) and the offline provider
/// mirror's CLI config.
#[allow(dead_code)]
pub fn tf_env() -> Vec<(String, String)> {
    let rc = repo_root().join("bin/terraformrc");
    assert!(rc.exists(), "run `make tools`");
    let path = format!(
        "{}:{}",
        repo_root().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    vec![
        ("TF_CLI_CONFIG_FILE".into(), rc.display().to_string()),
        ("PATH".into(), path),
    ]
}

/// Runs the strata CLI asynchronously (so an in-process devcluster keeps serving), with
/// terraform from `make tools`.
#[allow(dead_code)]
pub async fn strata_cli(cwd: &Path, args: &[&str]) -> Output {
    strata_cli_env(cwd, args, &[]).await
}

/// [`strata_cli`] with extra environment.
#[allow(dead_code)]
pub async fn strata_cli_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let out = tokio::process::Command::new(assert_cmd::cargo::cargo_bin("strata"))
        .args(args)
        .current_dir(cwd)
        .envs(tf_env())
        .env_remove("SOPS_AGE_KEY_FILE")
        .envs(env.iter().copied())
        .env_remove("STRATA_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A free TCP port on 127.0.0.1.
#[allow(dead_code)]
pub fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A module's `required_providers` for hashicorp/null (served from the offline mirror).
pub const NULL_PROVIDER: &str = "terraform {\n  required_providers {\n    null = {\n      source = \"hashicorp/null\"\n    }\n  }\n}\n";

/// Lines in a file (0 when it does not exist).
pub fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// Waits (bounded, generously: 180 s) until `cond` holds, polling every 100 ms.
#[track_caller]
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(180),
            "timed out waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
