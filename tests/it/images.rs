//! Image automation against a real registry (Debian's docker-registry): tag policies, the three
//! marker forms in YAML, tfvars and HCL, `strata image scan` and `strata image update` to a bare
//! repository (direct, push_branch, and a push raced by another writer), TLS with basic auth,
//! registries that page, flood, stall or are down.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::registry::Registry;
use crate::support::strata_cli_env;

pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ana")
        .env("GIT_AUTHOR_EMAIL", "ana@example.com")
        .env("GIT_COMMITTER_NAME", "Ana")
        .env("GIT_COMMITTER_EMAIL", "ana@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Writes `files` under `dir`.
pub(crate) fn write_all(dir: &Path, files: &[(&str, String)]) {
    for (f, text) in files {
        let p = dir.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// A work repository committed with `files`, and a bare clone of it (the remote strata pushes
/// to): (work, bare).
pub(crate) fn bare_repo(root: &Path, files: &[(&str, String)]) -> (PathBuf, PathBuf) {
    let work = root.join("work");
    std::fs::create_dir_all(&work).unwrap();
    write_all(&work, files);
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "first"]);
    let bare = root.join("remote.git");
    git(root, &["clone", "-q", "--bare", "work", "remote.git"]);
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    (work, bare)
}

/// The stack with both images and a marker of each form in YAML, tfvars and HCL.
fn stack_files(host: &str, extra: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "strata.hcl",
            format!(
                "stack \"img\" {{}}\n\nimage \"web\" {{\n  repository    = \"{host}/shop/web\"\n  policy        = {{ semver = \">=1.0.0 <2.0.0\" }}\n  insecure_http = true\n}}\n\nimage \"api\" {{\n  repository    = \"{host}/shop/api\"\n  policy        = {{ regex = \"^main-(?P<ts>[0-9]+)$\", order = \"numerical\" }}\n  insecure_http = true\n}}\n{extra}\nterraform \"t\" {{\n  source = \"t\"\n  vars = {{\n    api_image = \"{host}/shop/api:main-9\" # strata:image api\n  }}\n}}\n"
            ),
        ),
        ("t/main.tf", "variable \"api_image\" {}\n".into()),
        (
            "t/prod.tfvars",
            "region  = \"eu\"\nweb_tag = \"1.0.0\"   # strata:image web:tag\n".into(),
        ),
        (
            "k8s/deploy.yaml",
            format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n        - name: web\n          image: {host}/shop/web:1.0.0 # strata:image web\n        - name: sidecar\n          image: {host}/shop/web:1.0.0\n"),
        ),
        (
            "k8s/values.yaml",
            format!("image:\n  repository: {host}/shop/web # strata:image web:name\n  tag: \"1.0.0\" # strata:image web:tag\n\r\nother: \"1.0.0\"\n"),
        ),
    ]
}

async fn push_tags(reg: &Registry) {
    for t in ["1.0.0", "1.2.0", "2.0.0", "1.3.0-rc.1", "latest"] {
        reg.push("shop/web", t).await;
    }
    for t in ["main-9", "main-10", "main-x", "dev-99"] {
        reg.push("shop/api", t).await;
    }
}

fn json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn image<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["image"] == name)
        .unwrap_or_else(|| panic!("no image {name} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_selects_by_semver_and_regex_from_a_real_registry() {
    let reg = Registry::plain().await;
    push_tags(&reg).await;
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("stack");
    write_all(&dir, &stack_files(&reg.host, ""));
    let st = d.path().join("state");
    let out = strata_cli_env(
        d.path(),
        &[
            "image",
            "scan",
            "--stack",
            dir.to_str().unwrap(),
            "--state-dir",
            st.to_str().unwrap(),
            "--json",
        ],
        &[],
    )
    .await
    .code(2);
    let r = json(&out.stdout);
    let web = image(&r, "web");
    assert_eq!(
        web["latest"], "1.2.0",
        "2.0.0 is out of range, the rc a pre-release: {web}"
    );
    assert_eq!(web["tags"]["listed"], 5);
    assert_eq!(web["tags"]["unparseable"], 1, "latest is no version");
    let api = image(&r, "api");
    assert_eq!(
        api["latest"], "main-10",
        "numerical, not alphabetical: {api}"
    );
    let lines: Vec<(String, u64, String, Value)> = r["images"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["markers"].as_array().unwrap().clone())
        .map(|m| {
            (
                m["file"].as_str().unwrap().to_string(),
                m["line"].as_u64().unwrap(),
                m["form"].as_str().unwrap().to_string(),
                m["wanted"].clone(),
            )
        })
        .collect();
    let host = &reg.host;
    let want: Vec<(String, u64, String, Value)> = vec![
        (
            "k8s/deploy.yaml".into(),
            11,
            "image".into(),
            format!("{host}/shop/web:1.2.0").into(),
        ),
        ("k8s/values.yaml".into(), 2, "name".into(), Value::Null),
        ("k8s/values.yaml".into(), 3, "tag".into(), "1.2.0".into()),
        ("t/prod.tfvars".into(), 2, "tag".into(), "1.2.0".into()),
        (
            "strata.hcl".into(),
            18,
            "image".into(),
            format!("{host}/shop/api:main-10").into(),
        ),
    ];
    assert_eq!(lines, want);
    let text = strata_cli_env(
        d.path(),
        &[
            "image",
            "scan",
            "--stack",
            dir.to_str().unwrap(),
            "--state-dir",
            st.to_str().unwrap(),
        ],
        &[],
    )
    .await
    .code(2);
    assert!(
        text.stdout.contains(&format!(
            "k8s/deploy.yaml:11  {host}/shop/web:1.0.0 → {host}/shop/web:1.2.0"
        )),
        "{}",
        text.stdout
    );
}

/// The files of `repo` at `rev`, for byte-for-byte comparisons.
fn show(repo: &Path, rev: &str, file: &str) -> String {
    git(repo, &["show", &format!("{rev}:{file}")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_commits_only_the_marked_values_and_pushes_them_to_the_branch() {
    let reg = Registry::plain().await;
    push_tags(&reg).await;
    let d = tempfile::tempdir().unwrap();
    let files = stack_files(&reg.host, "");
    let (_work, bare) = bare_repo(d.path(), &files);
    let before = git(&bare, &["rev-parse", "main"]);
    let st = d.path().join("state");
    let args = [
        "image",
        "update",
        "--repo",
        bare.to_str().unwrap(),
        "--state-dir",
        st.to_str().unwrap(),
    ];
    let out = strata_cli_env(d.path(), &args, &[]).await.code(0);
    let head = git(&bare, &["rev-parse", "main"]);
    assert_ne!(head, before);
    assert_eq!(out.stdout.lines().next().unwrap(), head, "{}", out.stdout);
    assert_eq!(
        git(&bare, &["rev-parse", "main~1"]),
        before,
        "one commit on top"
    );
    let message = git(&bare, &["log", "-1", "--format=%B", "main"]);
    assert!(
        message.starts_with("images: api main-9 → main-10, web 1.0.0 → 1.2.0"),
        "{message}"
    );
    assert!(
        message.contains(&format!("Strata-Image: web {}/shop/web:1.2.0", reg.host)),
        "{message}"
    );
    // Every file as it was, but the marked values: the sidecar's image (unmarked), the CRLF
    // line and the unmarked "1.0.0" stay.
    let host = &reg.host;
    for (f, text) in &files {
        let want = match *f {
            "strata.hcl" => text.replace(
                &format!("{host}/shop/api:main-9\""),
                &format!("{host}/shop/api:main-10\""),
            ),
            "t/prod.tfvars" => text.replace("web_tag = \"1.0.0\"", "web_tag = \"1.2.0\""),
            "k8s/deploy.yaml" => text.replacen("web:1.0.0 # strata", "web:1.2.0 # strata", 1),
            "k8s/values.yaml" => text.replace("tag: \"1.0.0\"", "tag: \"1.2.0\""),
            _ => text.clone(),
        };
        assert_ne!(want.len(), 0);
        let got = show(&bare, "main", f);
        assert_eq!(got, want.trim_end(), "{f}");
    }
    let changed = git(&bare, &["diff", "--numstat", "main~1", "main"]);
    assert_eq!(changed.lines().count(), 4, "{changed}");
    // Nothing moved since: no commit.
    let out = strata_cli_env(d.path(), &args, &[]).await.code(0);
    assert!(out.stdout.contains("nothing committed"), "{}", out.stdout);
    assert_eq!(git(&bare, &["rev-parse", "main"]), head);
    let scan = strata_cli_env(
        d.path(),
        &[
            "image",
            "scan",
            "--repo",
            bare.to_str().unwrap(),
            "--state-dir",
            st.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(scan.code, 0, "{}", scan.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_branch_proposes_and_leaves_the_tracked_branch_alone() {
    let reg = Registry::plain().await;
    push_tags(&reg).await;
    let d = tempfile::tempdir().unwrap();
    let wb = "writeback {\n  push_branch = \"strata/images\"\n  author      = \"Image Bot <bot@example.com>\"\n  message     = \"chore: bump {{changes}}\"\n}\n";
    let (_work, bare) = bare_repo(d.path(), &stack_files(&reg.host, wb));
    let main = git(&bare, &["rev-parse", "main"]);
    let st = d.path().join("state");
    let args = [
        "image",
        "update",
        "--repo",
        bare.to_str().unwrap(),
        "--state-dir",
        st.to_str().unwrap(),
    ];
    let out = strata_cli_env(d.path(), &args, &[]).await.code(0);
    assert!(
        out.stdout.contains("proposed on strata/images (for main)"),
        "{}",
        out.stdout
    );
    assert_eq!(git(&bare, &["rev-parse", "main"]), main, "main untouched");
    let proposal = git(&bare, &["rev-parse", "strata/images"]);
    assert_eq!(git(&bare, &["rev-parse", "strata/images~1"]), main);
    assert_eq!(
        git(
            &bare,
            &["log", "-1", "--format=%an <%ae>|%s", "strata/images"]
        ),
        "Image Bot <bot@example.com>|chore: bump api main-9 → main-10, web 1.0.0 → 1.2.0"
    );
    // Again: the proposal already holds the tags, nothing new is pushed.
    let out = strata_cli_env(d.path(), &args, &[]).await.code(0);
    assert!(out.stdout.contains("nothing committed"), "{}", out.stdout);
    assert_eq!(git(&bare, &["rev-parse", "strata/images"]), proposal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_rejected_because_the_branch_moved_is_made_again_on_the_new_head() {
    let reg = Registry::plain().await;
    push_tags(&reg).await;
    let d = tempfile::tempdir().unwrap();
    let (_work, bare) = bare_repo(d.path(), &stack_files(&reg.host, ""));
    // Another writer pushes right before strata's first push: a git on PATH that runs the
    // racer once, then the real git.
    let real = which::which("git").unwrap();
    let bin = d.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let racer = d.path().join("racer.sh");
    std::fs::write(
        &racer,
        format!(
            "set -e\ncd {root}\n{real} clone -q {bare} other\ncd other\nsed -i 's/replicas: 1/replicas: 3/' k8s/deploy.yaml\n{real} -c user.name=Bo -c user.email=bo@example.com commit -qam 'scale web'\n{real} push -q origin HEAD:main\n",
            root = d.path().display(),
            real = real.display(),
            bare = bare.display()
        ),
    )
    .unwrap();
    let wrapper = bin.join("git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$1\" = push ] && [ ! -e {mark} ]; then : > {mark}; sh {racer} >/dev/null 2>&1; fi\nexec {real} \"$@\"\n",
            mark = d.path().join("raced").display(),
            racer = racer.display(),
            real = real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let st = d.path().join("state");
    let out = strata_cli_env(
        d.path(),
        &[
            "image",
            "update",
            "--repo",
            bare.to_str().unwrap(),
            "--state-dir",
            st.to_str().unwrap(),
        ],
        &[("PATH", &path)],
    )
    .await
    .code(0);
    assert!(d.path().join("raced").exists(), "the racer ran");
    assert!(out.stdout.contains("2 pushes"), "{}", out.stdout);
    assert_eq!(
        git(&bare, &["log", "--format=%s", "main"]),
        "images: api main-9 → main-10, web 1.0.0 → 1.2.0\nscale web\nfirst",
        "on top of the racer's commit, nothing forced"
    );
    let deploy = show(&bare, "main", "k8s/deploy.yaml");
    assert!(
        deploy.contains("replicas: 3"),
        "the racer's change is kept: {deploy}"
    );
    assert!(
        deploy.contains("shop/web:1.2.0 # strata:image web"),
        "{deploy}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_registry_with_basic_auth_is_read_with_its_ca_and_credentials_and_failures_are_named()
{
    let mut reg = Registry::secure().await;
    reg.push("shop/web", "1.0.0").await;
    reg.push("shop/web", "1.1.0").await;
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("stack");
    let stack = |creds: bool, ca: bool| {
        let mut attrs = String::new();
        if creds {
            attrs += &format!(
                "  credentials_file = \"{}\"\n",
                reg.credentials_file().display()
            );
        }
        if ca {
            attrs += &format!(
                "  ca_file = \"{}\"\n",
                reg.ca_file.as_ref().unwrap().display()
            );
        }
        write_all(
            &dir,
            &[
                (
                    "strata.hcl",
                    format!("stack \"tls\" {{}}\nimage \"web\" {{\n  repository = \"{}/shop/web\"\n  policy = {{ semver = \">=1\" }}\n  timeout = \"30s\"\n{attrs}}}\n", reg.host),
                ),
                ("app.yaml", format!("image: {}/shop/web:1.0.0 # strata:image web\n", reg.host)),
            ],
        );
    };
    let scan = || async {
        strata_cli_env(
            d.path(),
            &[
                "image",
                "scan",
                "--stack",
                dir.to_str().unwrap(),
                "--state-dir",
                "st",
                "--json",
            ],
            &[],
        )
        .await
    };
    stack(true, true);
    let out = scan().await.code(2);
    assert_eq!(image(&json(&out.stdout), "web")["latest"], "1.1.0");
    stack(false, true);
    let out = scan().await.code(1);
    let web = image(&json(&out.stdout), "web").clone();
    assert_eq!(web["error"]["kind"], "auth", "{web}");
    assert!(
        web["error"]["message"]
            .as_str()
            .unwrap()
            .contains("set credentials_file"),
        "{web}"
    );
    stack(true, false);
    let out = scan().await.code(1);
    assert_eq!(
        image(&json(&out.stdout), "web")["error"]["kind"],
        "unreachable",
        "an unknown CA"
    );
    // Wrong password: refused, and the secret is not printed.
    std::fs::write(
        reg.credentials_file(),
        r#"{"username": "ci", "password": "not-the-password-xyz"}"#,
    )
    .unwrap();
    write_all(&dir, &[(
        "strata.hcl",
        format!("stack \"tls\" {{}}\nimage \"web\" {{\n  repository = \"{}/shop/web\"\n  policy = {{ semver = \">=1\" }}\n  credentials_file = \"{}\"\n  ca_file = \"{}\"\n}}\n", reg.host, reg.dir.path().join("registry.json").display(), reg.ca_file.as_ref().unwrap().display()),
    )]);
    let out = scan().await.code(1);
    assert_eq!(image(&json(&out.stdout), "web")["error"]["kind"], "auth");
    assert!(
        !out.stdout.contains("not-the-password-xyz")
            && !out.stderr.contains("not-the-password-xyz")
    );
    reg.stop();
    let out = scan().await.code(1);
    let web = image(&json(&out.stdout), "web").clone();
    assert_eq!(web["error"]["kind"], "unreachable", "{web}");
    assert!(
        web["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&reg.host),
        "{web}"
    );
}

#[tokio::test]
async fn validate_names_markers_without_a_block_unused_blocks_and_values_of_another_repository() {
    let d = tempfile::tempdir().unwrap();
    write_all(
        d.path(),
        &[
            (
                "strata.hcl",
                "stack \"v\" {}\nimage \"web\" {\n  repository = \"r.example.com/shop/web\"\n  policy = { semver = \">=1\" }\n}\nimage \"idle\" {\n  repository = \"r.example.com/idle\"\n  policy = { semver = \">=1\" }\n}\n".into(),
            ),
            (
                "k8s/app.yaml",
                "a: r.example.com/shop/web:1.0 # strata:image web\nb: r.example.com/shop/api:1.0 # strata:image web\nc: 1.0 # strata:image wbe:tag\nd: r.example.com/other # strata:image web:name\n".into(),
            ),
        ],
    );
    let out = crate::support::Strata::new(["validate", "--stack", d.path().to_str().unwrap()])
        .run()
        .code(1);
    let shown = d.path().display().to_string();
    for want in [
        format!("{shown}/k8s/app.yaml:2:1: image marker web: the line holds \"r.example.com/shop/api:1.0\", not r.example.com/shop/web:TAG"),
        format!("{shown}/k8s/app.yaml:3:1: image marker names image \"wbe\", but the stack declares no image \"wbe\" (did you mean \"web\"?)"),
        format!("{shown}/k8s/app.yaml:4:1: image marker web:name: the line holds \"r.example.com/other\", not r.example.com/shop/web"),
        format!("{shown}/strata.hcl:6:1: image \"idle\" is used by no marker"),
    ] {
        assert!(out.stderr.contains(&want), "missing {want}\n{}", out.stderr);
    }
    assert!(!out.stderr.contains("app.yaml:1:"), "{}", out.stderr);
}
