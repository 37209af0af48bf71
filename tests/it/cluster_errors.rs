//! A cluster that cannot be reached is named, with its server and the reason (a changed CA, a
//! refused connection), never just `ServiceError: client error (Connect)`.

use crate::kube_safety::{layer, run, NS, SETTINGS};
use crate::support::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_another_ca_is_named_with_its_server_and_the_tls_reason() {
    let a = Cluster::start().await;
    let b = Cluster::start().await;
    // A's credentials and CA, B's address: what a cluster restarted with a new CA looks like.
    let kubeconfig = std::fs::read_to_string(&a.kubeconfig)
        .unwrap()
        .replace(a.dev.url(), b.dev.url());
    let stale = a.dir.path().join("stale-kubeconfig");
    std::fs::write(&stale, kubeconfig).unwrap();
    let root = a.dir.path().join("stack");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join("strata.hcl"),
        format!(
            "stack \"demo\" {{}}\n\ncluster \"main\" {{\n  kubeconfig_path = \"{}\"\n}}\n\nkubernetes \"platform\" {{\n  source  = \"k8s/platform\"\n  cluster = cluster.main\n  wait    = false\n}}\n",
            stale.display()
        ),
    )
    .unwrap();
    layer(
        &root,
        "platform",
        &[("ns.yaml", NS), ("settings.yaml", SETTINGS)],
    );
    let out = run(&root, "plan").await.code(1);
    let text = format!("{}{}", out.stdout, out.stderr);
    let at = format!("cluster \"main\" at {}", b.dev.url());
    assert!(text.contains(&at), "{text}");
    assert!(
        text.to_lowercase().contains("certificate") || text.contains("UnknownIssuer"),
        "the TLS reason: {text}"
    );
}
