//! (g) disaster recovery: the first `strata bootstrap` of a stack whose Terraform state lives in
//! PostgreSQL and whose Kubernetes layers run on a devcluster, then the same bootstrap after the
//! cluster (a new devcluster, no data file) and strata's state dir are lost; then `strata diff`.

use std::path::Path;
use std::process::{Child, Command};

use super::{devcluster_at, env, git, measure_logged, row, strata, write, Measured, NULL};

/// The integration tests' PostgreSQL server (one file, included by its path).
#[path = "../../tests/it/support/postgres.rs"]
mod postgres;
use postgres::Postgres;

/// A database per Terraform layer: Terraform's `pg` backend takes one advisory lock per
/// database to create a workspace, so two layers initialising at once in one database fail
/// with "Already locked for workspace creation".
const DATABASES: [&str; 2] = ["cluster", "network"];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The stack: a Terraform layer standing for the cluster (its output is the kubeconfig), a
/// Terraform layer of a few resources whose outputs the Kubernetes layers read, a platform
/// layer and an apps layer of `objects` ConfigMaps, Deployments and Services.
fn write_repo(repo: &Path, pg: &Postgres, kubeconfig: &Path, objects: usize) {
    let backend = format!(
        "  backend_config = {{ conn_str = \"{}\" }}\n",
        pg.conn_str_to("cluster")
    );
    write(
        &repo.join("strata.hcl"),
        &format!(
            "stack \"dr\" {{}}\n\
             terraform \"cluster\" {{\n  source = \"cluster\"\n{backend}  vars = {{ kubeconfig_path = \"{}\" }}\n}}\n\
             terraform \"network\" {{\n  source = \"network\"\n  backend_config = {{ conn_str = \"{}\" }}\n}}\n\
             cluster \"main\" {{\n  kubeconfig = terraform.cluster.outputs.kubeconfig\n}}\n\
             kubernetes \"platform\" {{\n  source    = \"platform\"\n  cluster   = cluster.main\n  namespace = \"platform\"\n  wait      = false\n  vars      = {{ subnet = terraform.network.outputs.subnet }}\n}}\n\
             kubernetes \"apps\" {{\n  source     = \"apps\"\n  cluster    = cluster.main\n  namespace  = \"apps\"\n  wait       = false\n  depends_on = [kubernetes.platform]\n}}\n",
            kubeconfig.display(),
            pg.conn_str_to("network"),
        ),
    );
    let pg_backend = "terraform {\n  backend \"pg\" {}\n}\n";
    write(
        &repo.join("cluster/main.tf"),
        &format!("{NULL}{pg_backend}variable \"kubeconfig_path\" {{ type = string }}\nresource \"null_resource\" \"cluster\" {{}}\noutput \"kubeconfig\" {{\n  value     = file(var.kubeconfig_path)\n  sensitive = true\n}}\n"),
    );
    write(
        &repo.join("network/main.tf"),
        &format!("{NULL}{pg_backend}resource \"null_resource\" \"subnet\" {{\n  count = 3\n}}\noutput \"subnet\" {{ value = \"10.0.0.0/16\" }}\n"),
    );
    let mut platform =
        String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: platform\n");
    for i in 0..20 {
        platform.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: net-{i}\ndata:\n  subnet: ${{subnet}}\n"));
    }
    write(&repo.join("platform/all.yaml"), &platform);
    let mut apps = String::from("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n");
    for i in 0..objects / 3 {
        apps.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-{i}\ndata:\n  color: blue\n\
             ---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\nspec:\n  replicas: 0\n  selector: {{matchLabels: {{app: app-{i}}}}}\n  template:\n    metadata: {{labels: {{app: app-{i}}}}}\n    spec:\n      containers: [{{name: web, image: \"nginx:1.27\"}}]\n\
             ---\napiVersion: v1\nkind: Service\nmetadata:\n  name: app-{i}\nspec:\n  selector: {{app: app-{i}}}\n  ports: [{{port: 80}}]\n"
        ));
    }
    write(&repo.join("apps/all.yaml"), &apps);
    // Terraform leaves lock files in the layers it initialises only in strata's working copies,
    // never in the repository.
    git(repo, &["init", "-q", "-b", "main"]);
    git(repo, &["add", "-A"]);
    git(repo, &["commit", "-q", "-m", "dr stack"]);
}

fn bootstrap(work: &Path, repo: &Path, log: &str) -> Measured {
    let mut c = Command::new(strata());
    c.current_dir(work)
        .args(["bootstrap", "--listen", "127.0.0.1:0", "--repo"])
        .arg(repo)
        .arg("--state-dir")
        .arg(work.join("state"));
    measure_logged(env(&mut c), &work.join(log))
}

fn stop(mut cluster: Child) {
    let _ = cluster.kill();
    let _ = cluster.wait();
}

pub fn bench_recovery(rows: &mut Vec<[String; 5]>, objects: usize) {
    let pg = Postgres::start();
    for db in DATABASES {
        pg.create_database(db);
    }
    let work = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let (cluster, kubeconfig) = devcluster_at(work.path(), &listen);
    let repo = work.path().join("repo");
    write_repo(&repo, &pg, &kubeconfig, objects);
    let n = 2 + 21 + 1 + objects / 3 * 3;
    let first = bootstrap(work.path(), &repo, "first.log");
    row(
        rows,
        "g",
        &format!("strata bootstrap, first (2 Terraform + {n} objects)"),
        &first,
        format!("exit {}", first.code),
    );

    // Disaster: the cluster and its data are gone, and so is strata's state dir; the Terraform
    // state in PostgreSQL and the repository are what is left.
    stop(cluster);
    let _ = std::fs::remove_file(&kubeconfig);
    std::fs::remove_dir_all(work.path().join("state")).unwrap();
    let (cluster, _) = devcluster_at(work.path(), &listen);
    let again = bootstrap(work.path(), &repo, "again.log");
    let mut d = Command::new(strata());
    d.current_dir(work.path())
        .args(["diff", "--repo"])
        .arg(&repo)
        .arg("--state-dir")
        .arg(work.path().join("state"));
    let diff = measure_logged(env(&mut d), &work.path().join("diff.log"));
    row(
        rows,
        "g",
        "strata bootstrap after losing cluster + state dir",
        &again,
        format!(
            "exit {}; {:.2}x the first bootstrap (target 1.2x); strata diff right after: exit {} (target 0)",
            again.code,
            again.secs / first.secs,
            diff.code
        ),
    );
    stop(cluster);
}
