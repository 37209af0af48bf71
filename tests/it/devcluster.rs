//! `strata devcluster`, the subcommand: it serves until SIGTERM and keeps its data file. The
//! server itself is tested in its own crate (crates/devcluster).

use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn cm_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &ar("", "v1", "ConfigMap", "configmaps"))
}

#[tokio::test]
async fn the_cli_serves_until_sigterm_and_keeps_its_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let data = dir.path().join("data.json");
    let start = || {
        tokio::process::Command::new(assert_cmd::cargo::cargo_bin("strata"))
            .args(["devcluster", "--kubeconfig-out"])
            .arg(&kc)
            .arg("--data")
            .arg(&data)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let client_for = |kc: &std::path::Path| {
        let text = std::fs::read_to_string(kc).unwrap();
        async move {
            let k = kube::config::Kubeconfig::from_yaml(&text).unwrap();
            kube::Client::try_from(
                kube::Config::from_custom_kubeconfig(k, &Default::default())
                    .await
                    .unwrap(),
            )
            .unwrap()
        }
    };
    let wait_ready = |child: &mut tokio::process::Child| {
        let out = child.stdout.take().unwrap();
        async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(out).lines();
            let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert!(
                first.starts_with("devcluster serving at https://127.0.0.1:"),
                "{first}"
            );
            lines
        }
    };
    let mut child = start();
    let _lines = wait_ready(&mut child).await;
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&kc).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let client = client_for(&kc).await;
    cm_api(&client, "default")
        .patch(
            "durable",
            &PatchParams::apply("t"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "durable"}}),
            ),
        )
        .await
        .unwrap();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");

    let mut child = start();
    let _lines = wait_ready(&mut child).await;
    let client = client_for(&kc).await;
    assert!(cm_api(&client, "default")
        .get_opt("durable")
        .await
        .unwrap()
        .is_some());
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let _ = child.wait().await;
}
