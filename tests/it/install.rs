//! `strata install --export`: the manifests that run the agent in a cluster apply cleanly with
//! kubectl, and grant no wildcard unless asked; `cluster { in_cluster = true }` is checked and,
//! outside a pod, says so.

use serde_json::Value;

use crate::support::{strata_cli, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exported_manifests_apply_with_kubectl_and_grant_no_wildcard() {
    let c = Cluster::start().await;
    let out = strata_cli(
        c.dir.path(),
        &[
            "install",
            "--export",
            "--repo",
            "https://git.example.com/platform/shop.git",
            "--ref",
            "main",
        ],
    )
    .await
    .code(0);
    let file = c.dir.path().join("install.yaml");
    std::fs::write(&file, &out.stdout).unwrap();
    c.kubectl(&["apply", "-f", file.to_str().unwrap()])
        .await
        .code(0);
    // A second apply changes nothing (the manifests are what the server stores).
    let again = c
        .kubectl(&["apply", "-f", file.to_str().unwrap()])
        .await
        .code(0);
    assert!(
        again.stdout.lines().all(|l| l.ends_with("unchanged")),
        "{}",
        again.stdout
    );

    let role = c
        .kubectl(&["get", "clusterrole", "strata-strata-system", "-o", "json"])
        .await
        .code(0);
    let role: Value = serde_json::from_str(&role.stdout).unwrap();
    for rule in role["rules"].as_array().unwrap() {
        for field in ["apiGroups", "resources", "verbs"] {
            assert!(
                !rule[field].as_array().unwrap().iter().any(|v| v == "*"),
                "no wildcard: {rule}"
            );
        }
    }
    let deploy = c
        .kubectl(&[
            "get",
            "deployment",
            "strata",
            "-n",
            "strata-system",
            "-o",
            "json",
        ])
        .await
        .code(0);
    let deploy: Value = serde_json::from_str(&deploy.stdout).unwrap();
    let container = &deploy["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(container["args"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "https://git.example.com/platform/shop.git"));
    assert_eq!(
        deploy["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );
    // Two replicas sharing the stacks through Leases, each named after its pod.
    assert_eq!(deploy["spec"]["replicas"], 2);
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for pair in [
        ["--coordination", "kubernetes"],
        ["--lease-namespace", "strata-system"],
        ["--replica-id", "$(POD_NAME)"],
    ] {
        assert!(args.windows(2).any(|w| w == pair), "{pair:?} in {args:?}");
    }
    assert_eq!(
        container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    // The Role grants what the Lease coordination does, on Leases only in its namespace.
    let role = c
        .kubectl(&["get", "role", "strata", "-n", "strata-system", "-o", "json"])
        .await
        .code(0);
    let role: Value = serde_json::from_str(&role.stdout).unwrap();
    let leases = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == "leases")
        })
        .expect("a rule for leases");
    assert_eq!(leases["apiGroups"][0], "coordination.k8s.io");
    for verb in ["get", "list", "create", "update", "delete"] {
        assert!(
            leases["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == verb),
            "{verb} on leases: {leases}"
        );
    }
    for kind in [
        "serviceaccount",
        "service",
        "networkpolicy",
        "role",
        "rolebinding",
    ] {
        c.kubectl(&["get", kind, "strata", "-n", "strata-system"])
            .await
            .code(0);
    }

    let admin = strata_cli(
        c.dir.path(),
        &["install", "--export", "--repo", "r", "--cluster-admin"],
    )
    .await
    .code(0);
    assert!(admin.stdout.contains("- \"*\""), "{}", admin.stdout);
    let refused = strata_cli(c.dir.path(), &["install", "--repo", "r"]).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stderr.contains("--export"), "{}", refused.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_cluster_cluster_is_checked_and_says_when_strata_is_not_in_a_pod() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("stack");
    std::fs::create_dir_all(root.join("k8s")).unwrap();
    std::fs::write(
        root.join("k8s/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: default\n",
    )
    .unwrap();
    let hcl = "stack \"self\" {}\ncluster \"self\" {\n  in_cluster = true\n}\nkubernetes \"apps\" {\n  source  = \"k8s\"\n  cluster = cluster.self\n}\n";
    std::fs::write(root.join("strata.hcl"), hcl).unwrap();
    let stack = root.to_str().unwrap();
    strata_cli(dir.path(), &["validate", "--stack", stack])
        .await
        .code(0);
    let plan = strata_cli(
        dir.path(),
        &["plan", "--stack", stack, "--state-dir", "state"],
    )
    .await;
    assert_eq!(plan.code, 1, "{plan:?}");
    assert!(
        plan.stdout.contains("does not run in a pod")
            || plan.stderr.contains("does not run in a pod"),
        "{plan:?}"
    );

    std::fs::write(
        root.join("strata.hcl"),
        hcl.replace(
            "in_cluster = true",
            "in_cluster = true\n  kubeconfig_path = \"~/.kube/config\"",
        ),
    )
    .unwrap();
    let both = strata_cli(dir.path(), &["validate", "--stack", stack]).await;
    assert_eq!(both.code, 1, "{both:?}");
    assert!(both.stderr.contains("choose one"), "{}", both.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exported_manifests_wire_the_shared_state_and_the_stacks_config() {
    let c = Cluster::start().await;
    let out = strata_cli(
        c.dir.path(),
        &[
            "install",
            "--export",
            "--namespace",
            "ops",
            "--state-secret",
            "strata-state",
            "--config-map",
            "strata-agent",
            "--resources",
            "configmaps,apps/deployments",
        ],
    )
    .await
    .code(0);
    // What the manifests mean, said above them.
    let notes: Vec<&str> = out
        .stdout
        .lines()
        .take_while(|l| l.starts_with("# "))
        .collect();
    let notes = notes.join("\n");
    assert!(notes.contains("Secret strata-state (key `url`)"), "{notes}");
    assert!(notes.contains("ConfigMap strata-agent"), "{notes}");
    assert!(!notes.contains("each pod's own emptyDir"), "{notes}");
    let file = c.dir.path().join("install.yaml");
    std::fs::write(&file, &out.stdout).unwrap();
    c.kubectl(&["apply", "-f", file.to_str().unwrap()])
        .await
        .code(0);
    let again = c
        .kubectl(&["apply", "-f", file.to_str().unwrap()])
        .await
        .code(0);
    assert!(
        again.stdout.lines().all(|l| l.ends_with("unchanged")),
        "{}",
        again.stdout
    );

    // Still no wildcard, in the namespace's Role or the layers' ClusterRole.
    for (kind, name, ns) in [
        ("clusterrole", "strata-ops", None),
        ("role", "strata", Some("ops")),
    ] {
        let mut args = vec!["get", kind, name, "-o", "json"];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        let role: Value = serde_json::from_str(&c.kubectl(&args).await.code(0).stdout).unwrap();
        for rule in role["rules"].as_array().unwrap() {
            for field in ["apiGroups", "resources", "verbs"] {
                assert!(
                    !rule[field].as_array().unwrap().iter().any(|v| v == "*"),
                    "no wildcard in {kind} {name}: {rule}"
                );
            }
        }
    }

    let deploy = c
        .kubectl(&["get", "deployment", "strata", "-n", "ops", "-o", "json"])
        .await
        .code(0);
    let deploy: Value = serde_json::from_str(&deploy.stdout).unwrap();
    let pod = &deploy["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // The stacks come from the configuration, the state from the database: no --repo, and no
    // state dir (refused beside --state).
    assert!(
        args.windows(2)
            .any(|w| w == ["--config", "/etc/strata/agent.hcl"]),
        "{args:?}"
    );
    assert!(!args.contains(&"--repo"), "{args:?}");
    assert!(!args.contains(&"--state-dir"), "{args:?}");
    // strata is the pod's PID 1, and the kubelet kills the whole container when the pod's
    // grace ends: the grace covers letting a running apply finish (--shutdown-grace), then
    // terraform's own 30 s after SIGINT to save its state, then giving the Leases back.
    let shutdown = args
        .windows(2)
        .find(|w| w[0] == "--shutdown-grace")
        .map(|w| w[1])
        .expect("--shutdown-grace given");
    let shutdown: u64 = shutdown
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("seconds: {shutdown}"));
    let pod_grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    assert!(
        pod_grace > shutdown + 30,
        "the pod's grace ({pod_grace} s) covers --shutdown-grace ({shutdown} s) and terraform's 30 s"
    );
    for pair in [
        ["--coordination", "kubernetes"],
        ["--lease-namespace", "ops"],
    ] {
        assert!(args.windows(2).any(|w| w == pair), "{pair:?} in {args:?}");
    }
    // The URL only by reference to the Secret, never a value in the manifests.
    let env = container["env"].as_array().unwrap();
    let state = env
        .iter()
        .find(|e| e["name"] == "STRATA_STATE")
        .expect("STRATA_STATE");
    assert_eq!(
        state["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "strata-state", "key": "url"})
    );
    assert!(state.get("value").is_none(), "{state}");
    assert!(!out.stdout.contains("postgres://strata"), "{}", out.stdout);
    let xdg = env
        .iter()
        .find(|e| e["name"] == "XDG_STATE_HOME")
        .expect("the working dir of caches");
    assert_eq!(xdg["value"], "/var/lib/strata");
    // The configuration read-only from the ConfigMap.
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "config")
        .expect("the config mount");
    assert_eq!(mount["mountPath"], "/etc/strata");
    assert_eq!(mount["readOnly"], true);
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config")
        .expect("the config volume");
    assert_eq!(volume["configMap"]["name"], "strata-agent");

    // Without them: the emptyDir state and what it means, said.
    let plain = strata_cli(c.dir.path(), &["install", "--export", "--repo", "r"])
        .await
        .code(0);
    assert!(
        plain.stdout.starts_with("# ") && plain.stdout.contains("each pod's own emptyDir"),
        "{}",
        plain.stdout
    );
    assert!(plain.stdout.contains("--state-secret"), "{}", plain.stdout);
    // Neither a repository nor a configuration: nothing to converge.
    let neither = strata_cli(c.dir.path(), &["install", "--export"]).await;
    assert_eq!(neither.code, 2, "{neither:?}");
    assert!(neither.stderr.contains("--repo"), "{}", neither.stderr);
    // Both: the agent would refuse --repo beside the stack blocks of its configuration and the
    // pods crash-loop, so the export is refused instead, saying what to do.
    let both = strata_cli(
        c.dir.path(),
        &[
            "install",
            "--export",
            "--repo",
            "r",
            "--config-map",
            "strata-agent",
        ],
    )
    .await;
    assert_ne!(both.code, 0, "{both:?}");
    assert!(both.stdout.is_empty(), "no manifests: {both:?}");
    assert!(
        both.stderr.contains("--repo") && both.stderr.contains("--config-map"),
        "{both:?}"
    );
}
