//! Issue 14, repro 1: nothing strata or terraform writes in the state dir is readable by anyone
//! but its owner (Terraform state holds sensitive outputs; `tf-data/terraform.tfstate` holds the
//! backend's `conn_str`), and `strata status` says so when something is.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::{strata_cli as strata, Postgres};

fn write(root: &Path, files: &[(&str, &str)]) {
    for (p, t) in files {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, t).unwrap();
    }
}

/// Every file and directory under `dir` that its group or others can read, write or enter.
fn exposed(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let mode = std::fs::symlink_metadata(&d).unwrap().permissions().mode();
        if mode & 0o077 != 0 {
            out.push((d.clone(), mode & 0o777));
        }
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                todo.push(e.path());
            } else if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
                out.push((e.path(), meta.permissions().mode() & 0o777));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_state_and_backend_config_are_private_and_status_warns_when_they_are_not() {
    let pg = Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("stack");
    write(
        &root,
        &[
            (
                "strata.hcl",
                &format!(
                    "stack \"perm\" {{}}\nterraform \"remote\" {{\n  source = \"remote\"\n  backend_config = {{ conn_str = \"{}\" }}\n}}\nterraform \"local\" {{\n  source = \"local\"\n}}\n",
                    pg.conn_str()
                ),
            ),
            (
                "remote/main.tf",
                "terraform {\n  backend \"pg\" {}\n}\noutput \"token\" {\n  value     = \"remote-token\"\n  sensitive = true\n}\n",
            ),
            (
                "local/main.tf",
                "output \"token\" {\n  value     = \"local-token\"\n  sensitive = true\n}\n",
            ),
        ],
    );
    let apply = strata(dir.path(), &["apply", "--stack", "stack", "--auto-approve"]).await;
    assert_eq!(apply.code, 0, "{apply:?}");
    let state = dir.path().join(".strata");
    let backend = state.join("layers/remote/tf-data/terraform.tfstate");
    assert!(
        std::fs::read_to_string(&backend)
            .unwrap()
            .contains("conn_str"),
        "terraform keeps the backend settings here"
    );
    assert!(state.join("layers/local/terraform.tfstate").exists());
    assert_eq!(exposed(&state), vec![], "readable by group or others");

    let status = strata(dir.path(), &["status"]).await;
    assert_eq!(status.code, 0, "{status:?}");
    assert!(!status.stderr.contains("readable by"), "{status:?}");

    // Someone loosens it: status says what and how to fix it, in text and JSON alike.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&backend, std::fs::Permissions::from_mode(0o644)).unwrap();
    for args in [&["status"][..], &["status", "--json"][..]] {
        let status = strata(dir.path(), args).await;
        assert_eq!(status.code, 0, "{status:?}");
        assert!(
            status
                .stderr
                .contains("warning: the state dir .strata holds secrets but is readable by others"),
            "{status:?}"
        );
        assert!(
            status
                .stderr
                .contains(".strata/layers/remote/tf-data/terraform.tfstate (0644)"),
            "{status:?}"
        );
        assert!(
            status
                .stderr
                .contains("fix it with: chmod -R go-rwx .strata"),
            "{status:?}"
        );
    }
}
