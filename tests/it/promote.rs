//! `strata promote FROM TO` against a bare repository: the one-line commit of a marked value,
//! `--vars`, `--push-branch`, a no-op, a push raced by another writer, and refusals that name
//! what is known.

use std::path::Path;

use crate::images::{bare_repo, git};
use crate::support::strata_cli_env;

const STACK: &str = r#"stack "shop" {}

image "web" {
  repository = "registry.example.com/shop/web"
  policy     = { semver = ">=1.0.0" }
}

environment "dev" {
  vars = {
    replicas  = 1
    web_image = "registry.example.com/shop/web:1.4.0" # strata:image web
  }
  apply = "auto"
}

environment "staging" {
  vars = {
    replicas  = 2
    web_image = "registry.example.com/shop/web:1.3.0"  # strata:image web
  }
}

environment "prod" {
  vars  = {
    replicas  = 3
    web_image = "registry.example.com/shop/web:1.2.0"   # strata:image web
  }
  apply = "safe"
}

terraform "app" {
  source = "app"
  vars   = { name = "shop-${env.name}", size = env.vars.replicas, image = env.vars.web_image }
}

image "api" {
  repository = "registry.example.com/shop/api"
  policy     = { regex = "^main-(?P<ts>[0-9]+)$", order = "numerical" }
}
"#;

fn files() -> Vec<(&'static str, String)> {
    vec![
        ("strata.hcl", STACK.to_string()),
        (
            "app/main.tf",
            "variable \"name\" {}\nvariable \"size\" {}\nvariable \"image\" {}\nvariable \"api_image\" {}\noutput \"image\" { value = var.image }\n".into(),
        ),
        (
            "app/api.auto.tfvars",
            "api_image = \"registry.example.com/shop/api:main-9\" # strata:image api\n".into(),
        ),
    ]
}

async fn promote(
    root: &Path,
    bare: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> crate::support::Output {
    let st = root.join("state");
    let mut all = vec!["promote"];
    all.extend_from_slice(args);
    all.extend([
        "--repo",
        bare.to_str().unwrap(),
        "--state-dir",
        st.to_str().unwrap(),
    ]);
    strata_cli_env(root, &all, env).await
}

#[tokio::test]
async fn promote_commits_the_marked_value_as_a_one_line_change_and_then_nothing() {
    let d = tempfile::tempdir().unwrap();
    let (_work, bare) = bare_repo(d.path(), &files());
    let before = git(&bare, &["rev-parse", "main"]);
    let out = promote(d.path(), &bare, &["dev", "prod"], &[])
        .await
        .code(0);
    let head = git(&bare, &["rev-parse", "main"]);
    assert_eq!(out.stdout.lines().next().unwrap(), head, "{}", out.stdout);
    assert_eq!(
        git(&bare, &["rev-parse", "main~1"]),
        before,
        "one commit on top"
    );
    assert_eq!(
        git(&bare, &["diff", "--numstat", "main~1", "main"]),
        "1\t1\tstrata.hcl"
    );
    let want = STACK.replace(
        "web:1.2.0\"   # strata:image web",
        "web:1.4.0\"   # strata:image web",
    );
    assert_ne!(want, STACK);
    assert_eq!(
        git(&bare, &["show", "main:strata.hcl"]),
        want.trim_end(),
        "only prod's web_image changed, byte for byte"
    );
    assert_eq!(
        git(&bare, &["log", "-1", "--format=%an <%ae>|%s", "main"]),
        "strata <strata@localhost>|promote dev → prod: web_image registry.example.com/shop/web:1.4.0"
    );
    assert!(
        out.stdout.contains("strata.hcl:26  web_image"),
        "{}",
        out.stdout
    );
    // prod holds dev's value now: nothing to commit.
    let out = promote(d.path(), &bare, &["dev", "prod"], &[])
        .await
        .code(0);
    assert!(out.stdout.contains("nothing committed"), "{}", out.stdout);
    assert_eq!(git(&bare, &["rev-parse", "main"]), head);
}

#[tokio::test]
async fn promote_vars_to_a_push_branch_copies_only_those_and_leaves_the_branch_alone() {
    let d = tempfile::tempdir().unwrap();
    let (_work, bare) = bare_repo(d.path(), &files());
    let main = git(&bare, &["rev-parse", "main"]);
    let out = promote(
        d.path(),
        &bare,
        &[
            "staging",
            "prod",
            "--vars",
            "replicas",
            "--push-branch",
            "promote/prod",
            "--json",
        ],
        &[],
    )
    .await
    .code(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["proposed"], true);
    assert_eq!(v["pushed_to"], "promote/prod");
    assert_eq!(v["branch"], "main");
    assert_eq!(v["changes"][0]["var"], "replicas");
    assert_eq!(v["changes"].as_array().unwrap().len(), 1);
    assert_eq!(git(&bare, &["rev-parse", "main"]), main, "main untouched");
    let proposal = git(&bare, &["rev-parse", "promote/prod"]);
    assert_eq!(v["commit"], proposal.as_str());
    assert_eq!(git(&bare, &["rev-parse", "promote/prod~1"]), main);
    assert_eq!(
        git(&bare, &["show", "promote/prod:strata.hcl"]),
        STACK
            .replace("    replicas  = 3\n", "    replicas  = 2\n")
            .trim_end(),
        "prod's replicas only; its web_image stays"
    );
}

#[tokio::test]
async fn unknown_environments_and_vars_are_refused_naming_the_known_ones() {
    let d = tempfile::tempdir().unwrap();
    let (_work, bare) = bare_repo(d.path(), &files());
    let main = git(&bare, &["rev-parse", "main"]);
    let out = promote(d.path(), &bare, &["dev", "prd"], &[]).await.code(1);
    assert!(
        out.stderr
            .contains("no environment \"prd\"; it declares: dev, staging, prod"),
        "{}",
        out.stderr
    );
    let out = promote(
        d.path(),
        &bare,
        &["dev", "prod", "--vars", "web_image,image"],
        &[],
    )
    .await
    .code(1);
    assert!(
        out.stderr
            .contains("environment \"dev\" has no var \"image\"; its vars: replicas, web_image"),
        "{}",
        out.stderr
    );
    let out = promote(d.path(), &bare, &["prod", "prod"], &[])
        .await
        .code(1);
    assert!(
        out.stderr.contains("two different environments"),
        "{}",
        out.stderr
    );
    assert_eq!(git(&bare, &["rev-parse", "main"]), main, "nothing pushed");
    let heads = git(
        &bare,
        &["for-each-ref", "--format=%(refname)", "refs/heads"],
    );
    assert_eq!(heads, "refs/heads/main");
}

#[tokio::test]
async fn a_promotion_whose_push_is_rejected_is_made_again_on_the_new_head() {
    let d = tempfile::tempdir().unwrap();
    let (_work, bare) = bare_repo(d.path(), &files());
    // Another writer changes prod's replicas (the line above the promoted one) right before
    // strata's first push: a git on PATH that runs the racer once, then the real git.
    let real = which::which("git").unwrap();
    let bin = d.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let racer = d.path().join("racer.sh");
    std::fs::write(
        &racer,
        format!(
            "set -e\ncd {root}\n{real} clone -q {bare} other\ncd other\nsed -i 's/replicas  = 3/replicas  = 5/' strata.hcl\n{real} -c user.name=Bo -c user.email=bo@example.com commit -qam 'scale prod'\n{real} push -q origin HEAD:main\n",
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
    let out = promote(d.path(), &bare, &["dev", "prod"], &[("PATH", &path)])
        .await
        .code(0);
    assert!(d.path().join("raced").exists(), "the racer ran");
    assert!(out.stdout.contains("2 pushes"), "{}", out.stdout);
    assert_eq!(
        git(&bare, &["log", "--format=%s", "main"]),
        "promote dev → prod: web_image registry.example.com/shop/web:1.4.0\nscale prod\nfirst",
        "on top of the racer's commit, nothing forced"
    );
    assert_eq!(
        git(&bare, &["show", "main:strata.hcl"]),
        STACK
            .replace("replicas  = 3", "replicas  = 5")
            .replace("web:1.2.0\"   #", "web:1.4.0\"   #")
            .trim_end()
    );
}

/// The `strata status` row of `env`.
fn row<'a>(status: &'a str, env: &str) -> &'a str {
    status
        .lines()
        .find(|l| l.split_whitespace().next() == Some(env))
        .unwrap_or_else(|| panic!("no row for {env} in {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_what_each_environment_runs_and_a_promotion_moves_it() {
    let d = tempfile::tempdir().unwrap();
    let (_work, bare) = bare_repo(d.path(), &files());
    let st = d.path().join("state");
    let (repo, state) = (bare.to_str().unwrap(), st.to_str().unwrap());
    let apply = |env: &'static str| {
        let root = d.path().to_path_buf();
        async move {
            strata_cli_env(
                &root,
                &[
                    "apply",
                    "--auto-approve",
                    "--repo",
                    repo,
                    "--state-dir",
                    state,
                    "--env",
                    env,
                ],
                &[],
            )
            .await
            .code(0);
        }
    };
    apply("dev").await;
    apply("prod").await;
    let first = git(&bare, &["rev-parse", "main"]);
    let status = strata_cli_env(d.path(), &["status", "--state-dir", state], &[])
        .await
        .code(0)
        .stdout;
    let short = &first[..12];
    assert!(status.starts_with("environment  converged"), "{status}");
    assert_eq!(
        row(&status, "dev"),
        format!("dev          {short}  api main-9, web 1.4.0")
    );
    assert_eq!(
        row(&status, "prod"),
        format!("prod         {short}  api main-9, web 1.2.0")
    );
    assert!(
        !status.contains("staging"),
        "an environment never run has no state: {status}"
    );
    assert!(
        status
            .contains("images: api main-9 (app/api.auto.tfvars:1), web 1.2.0 (env.vars.web_image)"),
        "{status}"
    );

    // Promote dev's image to prod and converge prod: prod runs dev's tag at the new commit,
    // dev still runs what it ran.
    promote(d.path(), &bare, &["dev", "prod"], &[])
        .await
        .code(0);
    apply("prod").await;
    let second = git(&bare, &["rev-parse", "main"]);
    let json = strata_cli_env(d.path(), &["status", "--state-dir", state, "--json"], &[])
        .await
        .code(0)
        .stdout;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let prod = &v["environments"]["prod"];
    assert_eq!(prod["converged_revision"], second.as_str());
    let web: Vec<&serde_json::Value> = prod["converged_images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["image"] == "web")
        .collect();
    assert_eq!(web.len(), 1, "{prod}");
    assert_eq!(web[0]["tag"], "1.4.0");
    assert_eq!(web[0]["var"], "web_image");
    assert_eq!(web[0]["file"], "strata.hcl");
    let dev = &v["environments"]["dev"];
    assert_eq!(dev["converged_revision"], first.as_str());
    let status = strata_cli_env(d.path(), &["status", "--state-dir", state], &[])
        .await
        .code(0)
        .stdout;
    assert_eq!(
        row(&status, "prod"),
        format!("prod         {}  api main-9, web 1.4.0", &second[..12])
    );
}
