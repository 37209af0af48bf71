//! `make bench`: strata measured against peers, all in one run, printed as a table. Nothing here
//! is asserted: the numbers are for reading (and for docs/performance.md).
//!
//! (a) kubediff of N ConfigMaps against a devcluster: `strata diff` vs `kubectl diff --server-side`
//! (b) 8 independent Terraform layers: `strata apply` at parallelism 1, 2, 4 vs a shell loop, and
//! where the time of the loop and of strata at parallelism 1 goes, terraform command by command
//! (c) a 50-layer stack after a commit touching one layer: terraform invocations, wall time
//! (d) commit → converged latency through the agent: webhook vs polling
//! (e) the Flux benchmark's shape: N layers of 4 objects vs the same objects in one layer
//! (f) `strata validate` of N/4 and N generated layers
//! (g) disaster recovery: `strata bootstrap` from the repository, first and after losing the
//! cluster and the state dir (Terraform state in PostgreSQL), then `strata diff`
//!
//! Sizes: BENCH_SIZES (default "1000,10000"), BENCH_FLUX (layers, default 1000), BENCH_VALIDATE
//! (layers, default 60000), BENCH_DR (objects of the recovered apps layer, default 300);
//! BENCH_ONLY=a,g runs only the benches named. Needs `make tools` (terraform, the provider mirror,
//! kubectl) and a release build (`make bench` does both).

mod flux;
mod parallel;
mod recovery;
mod validate;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Measured {
    secs: f64,
    max_rss_mb: f64,
    code: i32,
}

/// Runs a command to the end, measuring wall time and the peak RSS of the process (and of its
/// waited-for children).
fn measure(cmd: &mut Command) -> Measured {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    measure_as_set(cmd)
}

/// [`measure`], with the command's output in `log`; printed when it fails.
fn measure_logged(cmd: &mut Command, log: &Path) -> Measured {
    let out = std::fs::File::create(log).expect("log file");
    cmd.stdout(out.try_clone().expect("log file")).stderr(out);
    let m = measure_as_set(cmd);
    if m.code != 0 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        eprintln!("  exit {}; its output ends:", m.code);
        for l in tail.iter().rev() {
            eprintln!("    {l}");
        }
    }
    m
}

// The child is reaped with wait4 (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn measure_as_set(cmd: &mut Command) -> Measured {
    let started = Instant::now();
    let child = cmd.spawn().expect("spawn");
    let mut status = 0;
    // SAFETY: waiting for our own child with a zeroed rusage to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Measured {
        secs: started.elapsed().as_secs_f64(),
        max_rss_mb: usage.ru_maxrss as f64 / 1024.0,
        code,
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn strata() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("strata")
}

fn env(cmd: &mut Command) -> &mut Command {
    let path = format!(
        "{}:{}",
        root().join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env("PATH", path)
        .env("TF_CLI_CONFIG_FILE", root().join("bin/terraformrc"))
        .env("TF_IN_AUTOMATION", "1")
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const NULL: &str =
    "terraform {\n  required_providers {\n    null = { source = \"hashicorp/null\" }\n  }\n}\n";

fn row(rows: &mut Vec<[String; 5]>, bench: &str, what: &str, m: &Measured, note: String) {
    rows.push([
        bench.into(),
        what.into(),
        format!("{:.2}s", m.secs),
        format!("{:.0} MB", m.max_rss_mb),
        note,
    ]);
    eprintln!(
        "  {bench:4} {what:46} {:>8.2}s {:>7.0} MB  {}",
        m.secs,
        m.max_rss_mb,
        rows.last().unwrap()[4]
    );
}

/// Starts `strata devcluster` as its own process; returns it and its kubeconfig.
fn devcluster(dir: &Path) -> (std::process::Child, PathBuf) {
    devcluster_with(dir, "1s")
}

/// [`devcluster`], with workloads ready after `ready` (`0s`: at once).
fn devcluster_with(dir: &Path, ready: &str) -> (std::process::Child, PathBuf) {
    devcluster_on(dir, ready, "127.0.0.1:0")
}

/// [`devcluster`] listening on `listen` (a cluster that comes back at the same address), with
/// workloads ready at once.
fn devcluster_at(dir: &Path, listen: &str) -> (std::process::Child, PathBuf) {
    devcluster_on(dir, "0s", listen)
}

fn devcluster_on(dir: &Path, ready: &str, listen: &str) -> (std::process::Child, PathBuf) {
    let kc = dir.join("kubeconfig");
    let child = Command::new(strata())
        .args(["devcluster", "--listen", listen, "--simulate-ready", ready])
        .arg("--kubeconfig-out")
        .arg(&kc)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !kc.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "devcluster did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, kc)
}

/// Times one LIST of the default namespace's ConfigMaps straight against the devcluster.
fn list_configmaps(kubeconfig: &Path) -> (f64, usize) {
    let kc: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(kubeconfig).unwrap()).unwrap();
    let server = kc["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap()
        .to_string();
    let token = kc["users"][0]["user"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(
            kc["clusters"][0]["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap();
        let url = format!("{server}/api/v1/namespaces/default/configmaps");
        // One warm-up request (TLS handshake), then the measured one.
        let _ = client
            .get(format!("{url}?limit=1"))
            .bearer_auth(&token)
            .send()
            .await;
        let t = Instant::now();
        let v: serde_json::Value = client
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            t.elapsed().as_secs_f64(),
            v["items"].as_array().map_or(0, Vec::len),
        )
    })
}

fn bench_kubediff(rows: &mut Vec<[String; 5]>, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, kc) = devcluster(dir.path());
    let stack = dir.path().join("stack");
    let mut objs = String::new();
    for i in 0..n {
        objs.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n  namespace: default\ndata:\n  value: \"{i}\"\n"));
    }
    write(&stack.join("k8s/objects.yaml"), &objs);
    write(&stack.join("strata.hcl"), &format!("stack \"bench\" {{}}\ncluster \"c\" {{\n  kubeconfig_path = \"{}\"\n}}\nkubernetes \"objects\" {{\n  source  = \"k8s\"\n  cluster = cluster.c\n  prune   = false\n  wait    = false\n}}\n", kc.display()));
    let state = dir.path().join("state");
    let mut apply = Command::new(strata());
    apply
        .args(["apply", "--auto-approve", "--stack"])
        .arg(&stack)
        .arg("--state-dir")
        .arg(&state);
    let m = measure(env(&mut apply));
    row(
        rows,
        "a",
        &format!("strata apply, {n} ConfigMaps (create)"),
        &m,
        format!("exit {}", m.code),
    );
    let (secs, items) = list_configmaps(&kc);
    let l = Measured {
        secs,
        max_rss_mb: 0.0,
        code: 0,
    };
    row(
        rows,
        "a",
        &format!("devcluster LIST of {n} ConfigMaps (one HTTPS GET)"),
        &l,
        format!("{items} items in the response"),
    );
    let mut diff = Command::new(strata());
    diff.args(["diff", "--stack"])
        .arg(&stack)
        .arg("--state-dir")
        .arg(&state);
    let s = measure(env(&mut diff));
    row(
        rows,
        "a",
        &format!("strata diff, {n} ConfigMaps (no drift)"),
        &s,
        format!("exit {}", s.code),
    );
    let mut kd = Command::new("kubectl");
    kd.args(["diff", "--server-side", "--force-conflicts", "-f"])
        .arg(stack.join("k8s"))
        .env("KUBECONFIG", &kc);
    let k = measure(&mut kd);
    row(
        rows,
        "a",
        &format!("kubectl diff --server-side --force-conflicts, {n} ConfigMaps"),
        &k,
        format!(
            "exit {}; strata {:.1}x faster (target 10x), RSS {:.2}x kubectl's (target: strata \u{2264} 150 MB)",
            k.code,
            k.secs / s.secs,
            s.max_rss_mb / k.max_rss_mb
        ),
    );
    let _ = cluster.kill();
    let _ = cluster.wait();
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "b")
        .env("GIT_AUTHOR_EMAIL", "b@x")
        .env("GIT_COMMITTER_NAME", "b")
        .env("GIT_COMMITTER_EMAIL", "b@x")
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn bench_fifty(rows: &mut Vec<[String; 5]>) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let module =
        format!("{NULL}resource \"null_resource\" \"r\" {{}}\noutput \"o\" {{ value = \"x\" }}\n");
    let mut hcl = String::from("stack \"fifty\" {\n  parallelism = 4\n}\n");
    for i in 0..50 {
        write(&repo.join(format!("l{i}/main.tf")), &module);
        hcl.push_str(&format!("terraform \"l{i}\" {{\n  source = \"l{i}\"\n}}\n"));
    }
    write(&repo.join("strata.hcl"), &hcl);
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "fifty"]);
    let state = dir.path().join("state");
    let mut c = Command::new(strata());
    c.args(["apply", "--auto-approve", "--repo"])
        .arg(&repo)
        .arg("--state-dir")
        .arg(&state);
    let first = measure(env(&mut c));
    row(
        rows,
        "c",
        "strata apply, 50 layers, first run",
        &first,
        format!("exit {}", first.code),
    );
    write(&repo.join("l7/main.tf"), &format!("{module}# touched\n"));
    git(&repo, &["commit", "-qam", "touch l7"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (secs, invocations, planned) = rt.block_on(async {
        let spec = strata::source::SourceSpec {
            url: repo.display().to_string(),
            reference: None,
            path: None,
        };
        let source = strata::engine::Source::Repo {
            spec,
            opts: strata::source::SourceOptions::new(&state),
        };
        let mut opts = strata::engine::EngineOptions::new(&state);
        opts.terraform_env = vec![(
            "TF_CLI_CONFIG_FILE".into(),
            root().join("bin/terraformrc").into(),
        )];
        let t = Instant::now();
        let engine = strata::engine::Engine::open(source, opts).await.unwrap();
        let report = engine.run(strata::engine::Mode::Plan).await.unwrap();
        let planned = report
            .layers
            .iter()
            .filter(|l| l.status != strata::engine::record::LayerStatus::NotAffected)
            .count();
        (
            t.elapsed().as_secs_f64(),
            engine.terraform_invocations(),
            planned,
        )
    });
    let m = Measured {
        secs,
        max_rss_mb: 0.0,
        code: 0,
    };
    row(rows, "c", "strata plan after a commit touching 1 of 50", &m, format!("{planned} layer planned, {invocations} terraform invocations (a plan; a show only when it changes something), 49 untouched"));
}

fn bench_latency(rows: &mut Vec<[String; 5]>) {
    let dir = tempfile::tempdir().unwrap();
    let (mut cluster, kc) = devcluster(dir.path());
    let repo = dir.path().join("repo");
    write(&repo.join("strata.hcl"), &format!("stack \"lat\" {{}}\ncluster \"c\" {{\n  kubeconfig_path = \"{}\"\n}}\nkubernetes \"app\" {{\n  source  = \"k8s\"\n  cluster = cluster.c\n  wait    = false\n}}\n", kc.display()));
    write(&repo.join("k8s/cm.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: latency\n  namespace: default\ndata:\n  v: \"0\"\n");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "v0"]);
    let secret = dir.path().join("secret");
    write(&secret, "bench-webhook-secret-0123");
    for (mode, poll) in [("webhook", "1h"), ("poll (5s interval)", "5s")] {
        let state = dir.path().join(format!("state-{poll}"));
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut agent = Command::new(strata());
        agent
            .args(["run", "--repo"])
            .arg(&repo)
            .arg("--state-dir")
            .arg(&state)
            .args([
                "--listen",
                &listen.to_string(),
                "--poll-interval",
                poll,
                "--webhook-secret-file",
            ])
            .arg(&secret);
        let mut agent = env(&mut agent)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let alerts = state.join("alerts.jsonl");
        let converged = |n: usize| {
            std::fs::read_to_string(&alerts)
                .map(|t| t.matches("\"converged\"").count() >= n)
                .unwrap_or(false)
        };
        let t = Instant::now();
        while !converged(1) && t.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut samples = Vec::new();
        for k in 1..=3 {
            write(&repo.join("k8s/cm.yaml"), &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: latency\n  namespace: default\ndata:\n  v: \"{poll}{k}\"\n"));
            git(&repo, &["commit", "-qam", "change"]);
            let t = Instant::now();
            if mode == "webhook" {
                let body = b"{}";
                let sig = strata::hash::hex(&strata::server::hmac_sha256(
                    b"bench-webhook-secret-0123",
                    body,
                ));
                let _ = Command::new("curl")
                    .args([
                        "-s",
                        "-o",
                        "/dev/null",
                        "-X",
                        "POST",
                        "-H",
                        &format!("X-Hub-Signature-256: sha256={sig}"),
                        "--data",
                        "{}",
                        &format!("http://{listen}/hooks/git"),
                    ])
                    .status();
            }
            while !converged(k + 1) && t.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(20));
            }
            samples.push(t.elapsed().as_secs_f64());
        }
        let _ = agent.kill();
        let _ = agent.wait();
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        let m = Measured {
            secs: mean,
            max_rss_mb: 0.0,
            code: 0,
        };
        row(
            rows,
            "d",
            &format!("commit → converged, {mode}"),
            &m,
            format!(
                "mean of {} commits: {:?}",
                samples.len(),
                samples
                    .iter()
                    .map(|s| format!("{s:.2}s"))
                    .collect::<Vec<_>>()
            ),
        );
    }
    let _ = cluster.kill();
    let _ = cluster.wait();
}

fn main() {
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut rows: Vec<[String; 5]> = Vec::new();
    eprintln!(
        "strata bench ({}), measured on this machine in one run:",
        strata().display()
    );
    // BENCH_ONLY=a,g runs those benches only (all by default).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let on = |b: &str| only.is_empty() || only.split(',').any(|o| o.trim() == b);
    let size = |var: &str, default: usize| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    if on("a") {
        for n in sizes {
            bench_kubediff(&mut rows, n);
        }
    }
    if on("b") {
        parallel::bench_parallel(&mut rows);
    }
    if on("c") {
        bench_fifty(&mut rows);
    }
    if on("d") {
        bench_latency(&mut rows);
    }
    if on("e") {
        flux::bench_flux(&mut rows, size("BENCH_FLUX", 1000));
    }
    if on("f") {
        validate::bench_validate(&mut rows, size("BENCH_VALIDATE", 60_000));
    }
    if on("g") {
        recovery::bench_recovery(&mut rows, size("BENCH_DR", 300));
    }
    println!("\n| bench | what | time | peak RSS | notes |\n| --- | --- | --- | --- | --- |");
    for r in rows {
        let rss = if r[3] == "0 MB" {
            "-".to_string()
        } else {
            r[3].clone()
        };
        println!("| {} | {} | {} | {} | {} |", r[0], r[1], r[2], rss, r[4]);
    }
}
