//! Git sources against real `git` repositories made in temp dirs.

use std::path::{Path, PathBuf};
use std::process::Command;

use strata::source::{
    self, Reason, SignatureStatus, SourceError, SourceOptions, SourceSpec, VerifyPolicy,
};
use strata::stack::LayerId;

use crate::support::Strata;

/// A repository to push commits into, and a state dir to fetch them with.
struct Upstream {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    state: PathBuf,
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Alice")
        .env("GIT_AUTHOR_EMAIL", "alice@example.com")
        .env("GIT_COMMITTER_NAME", "Alice")
        .env("GIT_COMMITTER_EMAIL", "alice@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Upstream {
    fn new() -> Upstream {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let repo = root.join("upstream");
        std::fs::create_dir(&repo).unwrap();
        git_in(&repo, &["init", "-q", "-b", "main"]);
        Upstream {
            state: root.join("state"),
            _dir: dir,
            root,
            repo,
        }
    }

    fn git(&self, args: &[&str]) -> String {
        git_in(&self.repo, args)
    }

    fn write(&self, files: &[(&str, &str)]) {
        for (path, text) in files {
            let p = self.repo.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    /// Writes files and commits them; returns the commit id.
    fn commit(&self, message: &str, files: &[(&str, &str)]) -> String {
        self.write(files);
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn spec(&self, reference: Option<&str>) -> SourceSpec {
        SourceSpec {
            url: self.repo.display().to_string(),
            reference: reference.map(str::to_string),
            path: None,
        }
    }

    fn resolve(&self, reference: Option<&str>) -> Result<source::Revision, SourceError> {
        source::resolve(&self.spec(reference), &SourceOptions::new(&self.state))
    }
}

const STACK: &str = r#"stack "s" {}

terraform "a" {
  source = "infra/a"
}

terraform "b" {
  source = "infra/b"
}

terraform "c" {
  source = "infra/c"
  vars   = { x = "1" }
}

cluster "main" {
  kubeconfig = terraform.b.outputs.kubeconfig
}

kubernetes "apps" {
  source  = "k8s/apps"
  cluster = cluster.main
}
"#;

fn stack_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("strata.hcl", STACK),
        (
            "infra/a/main.tf",
            "module \"s\" {\n  source = \"../modules/shared\"\n}\n",
        ),
        (
            "infra/b/main.tf",
            "module \"s\" {\n  source = \"../modules/shared\"\n}\n\noutput \"kubeconfig\" {\n  value = \"\"\n}\n",
        ),
        ("infra/c/main.tf", "# independent\n"),
        (
            "infra/modules/shared/main.tf",
            "module \"deep\" {\n  source = \"./deep\"\n}\n",
        ),
        ("infra/modules/shared/deep/main.tf", "# v1\n"),
        (
            "k8s/apps/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
        ),
        ("README.md", "outside the stack's layers\n"),
    ]
}

#[test]
fn new_commits_are_fetched_into_the_same_mirror_and_materialised_read_only() {
    let up = Upstream::new();
    let first = up.commit("one", &[("strata.hcl", "stack \"s\" {}\n")]);
    let r1 = up.resolve(None).unwrap();
    assert_eq!(
        (r1.commit.as_str(), r1.ref_name.as_str()),
        (first.as_str(), "refs/heads/main")
    );
    assert_eq!(r1.summary, "one");
    assert_eq!(r1.author, "Alice <alice@example.com>");
    assert_eq!(r1.signature, SignatureStatus::Unsigned);
    assert!(r1.stale.is_none());
    let file = r1.dir.join("strata.hcl");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "stack \"s\" {}\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o444
    );
    assert_eq!(
        std::fs::metadata(&r1.dir).unwrap().permissions().mode() & 0o777,
        0o555
    );

    let second = up.commit("two", &[("x.txt", "2")]);
    let r2 = up.resolve(None).unwrap();
    assert_eq!(r2.commit, second);
    assert!(!r2.history_rewritten);
    let mirrors: Vec<_> = std::fs::read_dir(up.state.join("mirrors"))
        .unwrap()
        .collect();
    assert_eq!(mirrors.len(), 1, "one mirror per URL");
    assert!(r1.dir.is_dir(), "earlier revisions stay until collected");
}

#[test]
fn branches_tags_and_commit_ids_pin_revisions_and_unknown_refs_list_what_exists() {
    let up = Upstream::new();
    let first = up.commit("one", &[("a", "1")]);
    up.git(&["tag", "-a", "v1", "-m", "release 1"]);
    up.git(&["tag", "light"]);
    up.git(&["checkout", "-q", "-b", "dev"]);
    let dev = up.commit("dev work", &[("a", "2")]);
    up.git(&["checkout", "-q", "main"]);

    assert_eq!(up.resolve(Some("v1")).unwrap().commit, first);
    assert_eq!(up.resolve(Some("v1")).unwrap().ref_name, "refs/tags/v1");
    assert_eq!(up.resolve(Some("light")).unwrap().commit, first);
    assert_eq!(up.resolve(Some("dev")).unwrap().commit, dev);
    assert_eq!(up.resolve(Some(&first)).unwrap().commit, first);
    assert_eq!(up.resolve(None).unwrap().commit, first, "HEAD is main");
    let err = up.resolve(Some("nope")).unwrap_err().to_string();
    assert!(err.contains("ref \"nope\" not found"), "{err}");
    assert!(
        err.contains("branches: dev, main; tags: light, v1"),
        "{err}"
    );
}

#[test]
fn short_commit_ids_resolve_when_unambiguous_and_name_every_candidate_otherwise() {
    let up = Upstream::new();
    let first = up.commit("one", &[("a", "1")]);
    let second = up.commit("two", &[("a", "2")]);
    // A short id of a commit that is no longer the branch tip, as `rollback --to e8d049b` gives it.
    let r = up.resolve(Some(&first[..7])).unwrap();
    assert_eq!(r.commit, first);
    assert_eq!(r.ref_name, first, "a short id pins the full commit");
    assert_eq!(up.resolve(Some(&second[..12])).unwrap().commit, second);
    assert_eq!(
        up.resolve(Some(&first[..7].to_uppercase())).unwrap().commit,
        first
    );
    // A branch that spells like hex wins, as in git.
    up.git(&["branch", &first[..6], &second]);
    assert_eq!(up.resolve(Some(&first[..6])).unwrap().commit, second);
    let err = up.resolve(Some("abcdef0")).unwrap_err().to_string();
    assert!(err.contains("ref \"abcdef0\" not found"), "{err}");

    // 1,500 commits make several pairs whose ids share their first four digits.
    let mut script = String::new();
    for i in 0..1500 {
        script.push_str(&format!(
            "commit refs/heads/many\ncommitter A <a@example.com> {} +0000\ndata <<EOM\nc{i}\nEOM\n\n",
            1_700_000_000 + i
        ));
    }
    let fast_import = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(&up.repo)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(script.as_bytes())?;
            child.wait()
        })
        .unwrap();
    assert!(fast_import.success());
    let ids = up.git(&["rev-list", "many"]);
    let mut by_prefix: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for id in ids.lines() {
        by_prefix.entry(&id[..4]).or_default().push(id);
    }
    let (prefix, twins) = by_prefix
        .iter()
        .find(|(_, ids)| ids.len() > 1)
        .expect("1,500 commits share a 4-digit prefix");
    up.resolve(Some("many")).unwrap();
    let err = up.resolve(Some(prefix)).unwrap_err().to_string();
    assert!(err.contains("is ambiguous"), "{err}");
    for id in twins {
        assert!(err.contains(id), "{err} names {id}");
    }
}

#[test]
fn a_broken_stack_file_in_a_commit_is_named_by_its_repository_path_and_commit() {
    let up = Upstream::new();
    let commit = up.commit(
        "typo",
        &[(
            "envs/prod/strata.hcl",
            "stack \"s\" {}\n\nterraform \"a\" {\n  sourc = \"infra\"\n}\n",
        )],
    );
    let out = Strata::new([
        "plan",
        "--repo",
        up.repo.to_str().unwrap(),
        "--path",
        "envs/prod",
        "--state-dir",
        up.state.to_str().unwrap(),
    ])
    .run()
    .code(1);
    let at = format!("envs/prod/strata.hcl:4:3 (at {})", &commit[..7]);
    assert!(out.stderr.contains(&at), "{}", out.stderr);
    assert!(!out.stderr.contains("revisions"), "{}", out.stderr);
}

#[test]
fn a_shared_module_change_affects_its_callers_and_their_dependents_only() {
    let up = Upstream::new();
    let base = up.commit("base", &stack_files());
    let changed = up.commit(
        "deep module",
        &[
            ("infra/modules/shared/deep/main.tf", "# v2\n"),
            ("README.md", "x"),
        ],
    );
    let rev = up.resolve(None).unwrap();
    assert_eq!(rev.commit, changed);
    let v = strata::validate(&rev.stack_dir).unwrap();
    let repo = source::open_mirror(&up.state, &up.spec(None).url).unwrap();
    let id = |s: &str| gix::ObjectId::from_hex(s.as_bytes()).unwrap();
    let a = source::affected::affected(
        &repo,
        id(&base),
        id(&changed),
        Path::new(""),
        &v.stack,
        &v.graph,
        &rev.stack_dir,
    );
    let names: Vec<String> = a.layers.keys().map(ToString::to_string).collect();
    assert_eq!(names, ["terraform.a", "terraform.b", "kubernetes.apps"]);
    assert_eq!(
        a.layers[&LayerId::terraform("a")],
        [Reason::ChangedModule {
            module: "infra/modules/shared/deep".into()
        }]
    );
    assert_eq!(
        a.layers[&LayerId::kubernetes("apps")],
        [Reason::Upstream {
            layer: LayerId::terraform("b")
        }]
    );

    // A change to one block of strata.hcl affects that layer only.
    let edited = STACK.replace("vars   = { x = \"1\" }", "vars   = { x = \"2\" }");
    let next = up.commit(
        "c var",
        &[("strata.hcl", &edited), ("infra/c/extra.tf", "# new\n")],
    );
    let rev = up.resolve(None).unwrap();
    let v = strata::validate(&rev.stack_dir).unwrap();
    let a = source::affected::affected(
        &repo_reopen(&up),
        id(&changed),
        id(&next),
        Path::new(""),
        &v.stack,
        &v.graph,
        &rev.stack_dir,
    );
    let c = &a.layers[&LayerId::terraform("c")];
    assert_eq!(a.layers.len(), 1, "{a:?}");
    assert!(c.contains(&Reason::StackFile));
    assert!(c.contains(&Reason::ChangedPaths {
        paths: vec!["infra/c/extra.tf".into()],
        count: 1
    }));
}

fn repo_reopen(up: &Upstream) -> gix::Repository {
    source::open_mirror(&up.state, &up.spec(None).url).unwrap()
}

#[test]
fn the_cli_explains_affected_layers_since_a_commit() {
    let up = Upstream::new();
    up.commit("base", &stack_files());
    up.commit("shared", &[("infra/modules/shared/main.tf", "# changed\n")]);
    let out = Strata::new([
        "source",
        "show",
        "--repo",
        "upstream",
        "--state-dir",
        "state",
        "--since",
        "HEAD~1",
    ])
    .cwd(&up.root)
    .run()
    .code(0);
    assert!(out.stdout.contains("message    shared\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("signature  unsigned\n"),
        "{}",
        out.stdout
    );
    let affected: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("affected"))
        .collect();
    assert_eq!(
        affected[1],
        "  terraform.a      changed module infra/modules/shared"
    );
    assert_eq!(
        affected[2],
        "  terraform.b      changed module infra/modules/shared"
    );
    assert_eq!(
        affected[3],
        "  kubernetes.apps  upstream terraform.b is affected"
    );
    assert_eq!(affected.len(), 4, "{}", out.stdout);
}

#[test]
fn a_symlink_escaping_the_tree_is_refused_and_nothing_is_written() {
    let up = Upstream::new();
    up.commit("ok", &[("a", "1")]);
    std::fs::create_dir_all(up.repo.join("infra")).unwrap();
    std::os::unix::fs::symlink("../../../etc/passwd", up.repo.join("infra/escape")).unwrap();
    let bad = up.commit("escape", &[]);
    let err = up.resolve(None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("commit {bad} refused: infra/escape: symlink target \"../../../etc/passwd\" resolves outside the tree")
    );
    let revs: Vec<String> = std::fs::read_dir(up.state.join("revisions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!revs.iter().any(|r| r.contains(&bad)), "{revs:?}");
}

#[test]
fn an_oversize_file_and_a_submodule_are_refused_naming_path_and_limit() {
    let up = Upstream::new();
    let big = up.commit("big", &[("data/blob.bin", &"x".repeat(100))]);
    let mut opts = SourceOptions::new(&up.state);
    opts.limits.max_file_bytes = 64;
    let err = source::resolve(&up.spec(None), &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("commit {big} refused: data/blob.bin: 100 bytes is over the file-size limit of 64 bytes")
    );
    opts.limits = Default::default();
    opts.limits.max_files = 0;
    let err = source::resolve(&up.spec(None), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("more than 0 files (the file-count limit)"),
        "{err}"
    );

    up.git(&[
        "update-index",
        "--add",
        "--cacheinfo",
        &format!("160000,{big},vendor/lib"),
    ]);
    up.git(&["commit", "-q", "-m", "submodule"]);
    let sub = up.git(&["rev-parse", "HEAD"]);
    let err = up.resolve(None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("commit {sub} refused: vendor/lib: submodules are not supported")
    );
}

#[test]
fn ssh_signed_commits_are_accepted_and_unsigned_or_foreign_ones_refused() {
    let up = Upstream::new();
    let key = |name: &str| {
        let path = up.root.join(name);
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&path)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        path
    };
    let alice = key("alice");
    let mallory = key("mallory");
    let allowed = up.root.join("allowed_signers");
    let pubkey = std::fs::read_to_string(alice.with_extension("pub")).unwrap();
    std::fs::write(&allowed, format!("alice@example.com {pubkey}")).unwrap();
    let policy = VerifyPolicy::Ssh(allowed.clone());
    let sign_with = |k: &Path, msg: &str| {
        up.write(&[("f", msg)]);
        up.git(&["add", "-A"]);
        let signing = format!("user.signingkey={}", k.display());
        up.git(&[
            "-c",
            "gpg.format=ssh",
            "-c",
            &signing,
            "commit",
            "-q",
            "-S",
            "-m",
            msg,
        ]);
        up.git(&["rev-parse", "HEAD"])
    };
    let mut opts = SourceOptions::new(&up.state);
    opts.verify = Some(policy);

    let good = sign_with(&alice, "signed by alice");
    let rev = source::resolve(&up.spec(None), &opts).unwrap();
    assert_eq!(rev.commit, good);
    assert_eq!(
        rev.signature,
        SignatureStatus::Good {
            format: "ssh".into(),
            signer: "alice@example.com".into()
        }
    );

    let foreign = sign_with(&mallory, "signed by mallory");
    let err = source::resolve(&up.spec(None), &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("commit {foreign} refused: bad signature: the signing key is not in the allowed signers file")
    );
    assert!(!up.state.join("revisions").join(&foreign).exists());

    let unsigned = up.commit("unsigned", &[("f", "3")]);
    let err = source::resolve(&up.spec(None), &opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("commit {unsigned} refused: the commit is not signed")
    );

    // Without a policy the signature is only reported.
    let plain = up.resolve(Some(&good)).unwrap();
    assert_eq!(
        plain.signature,
        SignatureStatus::Unverified {
            format: "ssh".into()
        }
    );

    // The CLI refuses with exit 1 and the reason.
    let out = Strata::new([
        "source",
        "show",
        "--repo",
        "upstream",
        "--state-dir",
        "state",
        "--verify",
    ])
    .cwd(&up.root)
    .run();
    assert_ne!(out.code, 0);
    let verify = format!("ssh:{}", allowed.display());
    let out = Strata::new([
        "source",
        "show",
        "--repo",
        "upstream",
        "--state-dir",
        "state",
        "--verify",
        &verify,
    ])
    .cwd(&up.root)
    .run()
    .code(1);
    assert_eq!(
        out.stderr,
        format!("error: commit {unsigned} refused: the commit is not signed\n")
    );
}

#[test]
fn an_unreachable_remote_keeps_the_last_revision_and_says_it_is_stale() {
    let up = Upstream::new();
    let first = up.commit("one", &[("a", "1")]);
    up.resolve(None).unwrap();
    std::fs::rename(&up.repo, up.root.join("moved-away")).unwrap();
    let rev = up.resolve(None).unwrap();
    assert_eq!(rev.commit, first);
    let stale = rev.stale.expect("stale");
    assert!(stale.error.contains("failed to fetch"), "{}", stale.error);
    // Never fetched at all: an error, not a guess.
    let other = SourceSpec {
        url: up.root.join("never-existed").display().to_string(),
        reference: None,
        path: None,
    };
    assert!(source::resolve(&other, &SourceOptions::new(&up.state)).is_err());
}

#[test]
fn a_force_pushed_branch_is_followed_and_reported() {
    let up = Upstream::new();
    up.commit("one", &[("a", "1")]);
    up.commit("two", &[("a", "2")]);
    up.resolve(None).unwrap();
    up.git(&["reset", "-q", "--hard", "HEAD~1"]);
    let rewritten = up.commit("two, rewritten", &[("a", "2b")]);
    let rev = up.resolve(None).unwrap();
    assert_eq!(rev.commit, rewritten);
    assert!(rev.history_rewritten);
    assert_eq!(std::fs::read_to_string(rev.dir.join("a")).unwrap(), "2b");
}

#[test]
fn a_corrupt_mirror_is_cloned_again() {
    let up = Upstream::new();
    up.commit("one", &[("a", "1")]);
    up.resolve(None).unwrap();
    let mirror = std::fs::read_dir(up.state.join("mirrors"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_dir_all(mirror.join("objects")).unwrap();
    std::fs::write(mirror.join("HEAD"), "garbage").unwrap();
    let next = up.commit("two", &[("a", "2")]);
    assert_eq!(up.resolve(None).unwrap().commit, next);
}

#[test]
fn a_stack_path_inside_the_repository_is_the_stack_dir() {
    let up = Upstream::new();
    up.commit("nested", &[("envs/prod/strata.hcl", "stack \"prod\" {}\n")]);
    let mut spec = up.spec(None);
    spec.path = Some("envs/prod".into());
    let rev = source::resolve(&spec, &SourceOptions::new(&up.state)).unwrap();
    assert!(rev.stack_dir.ends_with("envs/prod"));
    assert!(strata::validate(&rev.stack_dir).is_ok());
    spec.path = Some("envs/../../x".into());
    let err = source::resolve(&spec, &SourceOptions::new(&up.state)).unwrap_err();
    assert!(err.to_string().contains("is not a directory"), "{err}");
}
