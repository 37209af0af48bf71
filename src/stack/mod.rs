//! The stack file, `strata.hcl`: parsing, checking and the model of layers it declares.
//!
//! [`Stack::load`] reads a stack directory and reports *every* problem it finds, each with its
//! `file:line:col`; the layer graph (and its cycles) is [`crate::graph`]'s business.

mod attrs;
pub mod diag;
pub mod env;
pub mod expr;
pub mod images;
pub mod limits;
pub mod model;
mod outputs;
mod parse;

use std::path::{Component, Path, PathBuf};

pub use diag::{Diagnostic, Diagnostics, Location};
pub use env::EnvError;
pub use expr::{EvalError, Expr};
pub use model::*;

/// The stack file's name inside a stack directory.
pub const STACK_FILE: &str = "strata.hcl";

/// How a stack file is named in messages: the path a person knows it by, and for a Git source
/// the (short) commit it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub file: PathBuf,
    pub revision: Option<String>,
}

impl Shown {
    /// A file on disk, named by its path.
    pub fn file(file: PathBuf) -> Shown {
        Shown {
            file,
            revision: None,
        }
    }
}

impl Stack {
    /// Reads and checks the stack in `dir`.
    ///
    /// # Errors
    /// Every problem found, in file order: syntax, unknown blocks and attributes, wrong types,
    /// duplicate names, references to layers or clusters that don't exist, and source directories
    /// that are missing or escape the stack root. Cycles are reported by
    /// [`crate::graph::LayerGraph::build`]; [`crate::validate`] runs both.
    pub fn load(dir: impl AsRef<Path>) -> Result<Stack, Diagnostics> {
        match Stack::load_partial(dir.as_ref()) {
            Ok((stack, diags)) if diags.is_empty() => Ok(stack),
            Ok((_, diags)) | Err(diags) => Err(diags),
        }
    }

    /// Like [`Stack::load`], but returns what could be read beside the problems, so that later
    /// checks (the graph's cycles) can still run and be reported together. `Err` only when there
    /// is nothing to go on (no file, or not HCL).
    pub fn load_partial(dir: &Path) -> Result<(Stack, Diagnostics), Diagnostics> {
        Stack::load_shown(dir, &Shown::file(dir.join(STACK_FILE)))
    }

    /// Like [`Stack::load_partial`], with every place named as `shown` says: for a stack read
    /// from a materialised commit, its path in the repository and the commit.
    pub fn load_shown(dir: &Path, shown: &Shown) -> Result<(Stack, Diagnostics), Diagnostics> {
        let file = dir.join(STACK_FILE);
        let text = std::fs::read_to_string(&file).map_err(|e| {
            let message = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "no {STACK_FILE} in {}: not a stack directory",
                    dir.display()
                )
            } else {
                format!("failed to read {}: {e}", shown.file.display())
            };
            Diagnostics(vec![Diagnostic::new(
                Location {
                    file: shown.file.clone(),
                    line: 1,
                    col: 1,
                    revision: shown.revision.clone(),
                },
                message,
            )])
        })?;
        Stack::from_text_shown(&text, shown, dir)
    }

    /// Parses stack-file text as if it were `file` in the stack directory `root`.
    pub fn from_text(
        text: &str,
        file: &Path,
        root: &Path,
    ) -> Result<(Stack, Diagnostics), Diagnostics> {
        Stack::from_text_shown(text, &Shown::file(file.to_path_buf()), root)
    }

    fn from_text_shown(
        text: &str,
        shown: &Shown,
        root: &Path,
    ) -> Result<(Stack, Diagnostics), Diagnostics> {
        let (stack, mut diags, _) =
            parse::parse_text(text, &shown.file, shown.revision.as_deref(), root);
        let Some(stack) = stack else {
            return Err(diags);
        };
        check_references(&stack, &mut diags);
        env::check(&stack, &mut diags);
        check_sources(&stack, &mut diags);
        outputs::check(&stack, &mut diags);
        diags.sort();
        Ok((stack, diags))
    }
}

/// Every reference must name a declared layer or cluster of the right kind.
fn check_references(stack: &Stack, diags: &mut Diagnostics) {
    let names = |kind: LayerKind| -> Vec<&str> {
        stack
            .layers
            .iter()
            .filter(|l| l.id.kind == kind)
            .map(|l| l.id.name.as_str())
            .collect()
    };
    let unknown_layer = |target: &LayerId| -> String {
        let same = names(target.kind);
        let mut msg = format!(
            "unknown layer \"{}\"{}",
            target.name,
            diag::hint(&target.name, same.iter().copied())
        );
        if diag::did_you_mean(&target.name, same).is_none() {
            let other = LayerId::new(
                match target.kind {
                    LayerKind::Terraform => LayerKind::Kubernetes,
                    LayerKind::Kubernetes => LayerKind::Terraform,
                },
                target.name.clone(),
            );
            if stack.layer(&other).is_some() {
                msg = format!("unknown layer {target} (there is a layer {other})");
            } else {
                msg = format!("unknown layer {target}");
            }
        }
        msg
    };
    let refs = stack
        .layers
        .iter()
        .flat_map(|l| l.references())
        .chain(stack.clusters.iter().flat_map(|c| c.references()));
    for r in refs {
        if stack.layer(&r.target).is_none() {
            diags.push(r.location.clone(), unknown_layer(&r.target));
        }
    }
    for layer in &stack.layers {
        for d in &layer.depends_on {
            if stack.layer(&d.target).is_none() {
                diags.push(d.location.clone(), unknown_layer(&d.target));
            }
        }
        if let LayerSpec::Kubernetes(k) = &layer.spec {
            if stack.cluster(&k.cluster).is_none() {
                let names: Vec<&str> = stack.clusters.iter().map(|c| c.name.as_str()).collect();
                diags.push(
                    k.cluster_location.clone(),
                    format!(
                        "unknown cluster \"{}\"{}",
                        k.cluster,
                        diag::hint(&k.cluster, names)
                    ),
                );
            }
        }
    }
}

/// A layer's source must be a directory inside the stack root, also after symlinks.
fn check_sources(stack: &Stack, diags: &mut Diagnostics) {
    let root = stack.root.canonicalize().ok();
    // Many layers share a source (one module, many instances): each is checked once, which
    // keeps a large stack's validation linear in its layers, not in their filesystem calls.
    let mut checked: std::collections::HashMap<&Path, Option<String>> = Default::default();
    for layer in &stack.layers {
        let src = &layer.source;
        let problem = checked
            .entry(src.as_path())
            .or_insert_with(|| source_problem(&stack.root, root.as_deref(), src));
        if let Some(problem) = problem {
            diags.push(layer.location.clone(), format!("{}: {problem}", layer.id));
        }
    }
}

/// What is wrong with a layer's source directory `src`, if anything: the end of a diagnostic
/// that names the layer first.
fn source_problem(stack_root: &Path, root: Option<&Path>, src: &Path) -> Option<String> {
    let shown = src.display();
    if src.is_absolute() || src.has_root() {
        return Some(format!(
            "source \"{shown}\" must be relative to the stack root"
        ));
    }
    if escapes(src) {
        return Some(format!("source \"{shown}\" escapes the stack root"));
    }
    let full = stack_root.join(src);
    match std::fs::metadata(&full) {
        Err(_) => {
            let hint = sibling_hint(&full, src);
            Some(format!("source directory \"{shown}\" does not exist{hint}"))
        }
        Ok(m) if !m.is_dir() => Some(format!("source \"{shown}\" is not a directory")),
        Ok(_) => {
            let inside = match (root, full.canonicalize()) {
                (Some(root), Ok(real)) => real.starts_with(root),
                _ => false,
            };
            (!inside).then(|| {
                format!("source \"{shown}\" resolves outside the stack root (through a symlink)")
            })
        }
    }
}

/// Whether a relative path climbs above its starting directory at any point.
fn escapes(path: &Path) -> bool {
    let mut depth: i64 = 0;
    for c in path.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return true;
        }
    }
    false
}

/// `" (did you mean \"infra/network\"?)"` when a sibling directory's name is close.
fn sibling_hint(full: &Path, src: &Path) -> String {
    let (Some(parent), Some(name)) = (full.parent(), full.file_name()) else {
        return String::new();
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return String::new();
    };
    let dirs: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    let name = name.to_string_lossy();
    diag::did_you_mean(&name, dirs.iter().map(String::as_str))
        .map(|m| format!(" (did you mean \"{}\"?)", src.with_file_name(m).display()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{InputValue, Output, Outputs};
    use std::time::Duration;

    fn parse(text: &str) -> (Stack, Diagnostics) {
        // A root that doesn't exist: source checks fail, which these tests filter out.
        let (stack, diags) = Stack::from_text(
            text,
            Path::new("s/strata.hcl"),
            Path::new("/nonexistent-root"),
        )
        .unwrap();
        let diags = Diagnostics(
            diags
                .0
                .into_iter()
                .filter(|d| !d.message.contains("source"))
                .collect(),
        );
        (stack, diags)
    }

    #[test]
    fn every_layer_sharing_a_bad_source_is_named_though_it_is_checked_once() {
        let (_, d) = Stack::from_text(
            "stack \"x\" {}\nterraform \"a\" { source = \"m\" }\nterraform \"b\" { source = \"m\" }\nterraform \"c\" { source = \"../up\" }\nterraform \"d\" { source = \"m\" }\n",
            Path::new("s/strata.hcl"),
            Path::new("/nonexistent-root"),
        )
        .unwrap();
        let shown: Vec<String> =
            d.0.iter()
                .map(|d| format!("{}: {}", d.location, d.message))
                .collect();
        assert_eq!(
            shown,
            [
                "s/strata.hcl:2:1: terraform.a: source directory \"m\" does not exist",
                "s/strata.hcl:3:1: terraform.b: source directory \"m\" does not exist",
                "s/strata.hcl:4:1: terraform.c: source \"../up\" escapes the stack root",
                "s/strata.hcl:5:1: terraform.d: source directory \"m\" does not exist",
            ]
        );
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let (s, d) = parse(
            "stack \"x\" {}\nterraform \"a\" { source = \"a\" }\ncluster \"c\" { kubeconfig_path = \"~/.kube/config\" }\nkubernetes \"k\" {\n source = \"k\"\n cluster = cluster.c\n}\n",
        );
        assert!(d.is_empty(), "{d}");
        assert_eq!(s.settings, StackSettings::default());
        let a = &s.layers[0];
        assert_eq!(a.timeout, Duration::from_secs(1800));
        assert_eq!(a.drift, DriftPolicy::Report);
        assert_eq!(a.apply, ApplyPolicy::Auto);
        let LayerSpec::Terraform(t) = &a.spec else {
            panic!("terraform layer")
        };
        assert_eq!(t.workspace, "default");
        let LayerSpec::Kubernetes(k) = &s.layers[1].spec else {
            panic!("kubernetes layer")
        };
        assert!(k.prune && k.wait);
        assert_eq!(k.cluster, "c");
        assert_eq!(k.namespace, None);
    }

    #[test]
    fn vars_are_evaluated_per_key_so_known_ones_stay_known() {
        let (s, d) = parse(
            "stack \"x\" {}\nterraform \"net\" { source = \"n\" }\nterraform \"db\" {\n source = \"d\"\n vars = {\n  cidr = \"10.0.0.0/16\"\n  subnet = terraform.net.outputs.subnet_id\n }\n}\n",
        );
        assert!(d.is_empty(), "{d}");
        let db = s.layer(&LayerId::terraform("db")).unwrap();
        let none = Outputs::new();
        assert_eq!(
            db.vars["cidr"].evaluate(&none).unwrap(),
            InputValue::Known("10.0.0.0/16".into())
        );
        assert!(db.vars["subnet"].evaluate(&none).unwrap().is_unknown());
        assert_eq!(db.vars["subnet"].location.to_string(), "s/strata.hcl:7:12");
        let mut known = Outputs::new();
        known.insert(
            LayerId::terraform("net"),
            [("subnet_id".to_string(), Output::plain("subnet-1".into()))].into(),
        );
        assert_eq!(
            db.vars["subnet"].evaluate(&known).unwrap(),
            InputValue::Known("subnet-1".into())
        );
    }

    #[test]
    fn a_second_stack_block_and_top_level_attributes_are_refused() {
        let (_, d) = parse("x = 1\nstack \"a\" {}\nstack \"b\" {}\n");
        let text = d.to_string();
        assert!(
            text.contains("s/strata.hcl:1:1: unexpected attribute \"x\""),
            "{text}"
        );
        assert!(
            text.contains(
                "s/strata.hcl:3:1: a second stack block (the first is at s/strata.hcl:2:1)"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_stack_without_a_stack_block_says_how_to_add_one() {
        let (_, d) = parse("");
        assert_eq!(
            d.to_string(),
            "s/strata.hcl:1:1: missing stack block: add `stack \"NAME\" { }` to name the stack"
        );
    }

    #[test]
    fn names_must_be_identifiers_and_blocks_take_one() {
        let (_, d) = parse("stack \"x\" {}\nterraform \"a b\" { source = \"a\" }\nterraform {}\nterraform \"a\" \"b\" {}\n");
        let text = d.to_string();
        assert!(
            text.contains("2:11: invalid terraform name \"a b\""),
            "{text}"
        );
        assert!(text.contains("3:1: terraform block needs a name"), "{text}");
        assert!(
            text.contains("4:15: terraform block takes one name, found 2"),
            "{text}"
        );
    }

    #[test]
    fn a_stack_id_must_be_a_label_value() {
        let (s, d) = parse("stack \"x\" {\n  id = \"shop-prod\"\n}\n");
        assert!(d.is_empty(), "{d}");
        assert_eq!(s.settings.id.as_deref(), Some("shop-prod"));
        let (s, d) = parse("stack \"x\" {\n  id = \"shop prod/\"\n}\n");
        assert!(
            d.to_string()
                .contains("s/strata.hcl:2:8: id must be 1 to 63 letters"),
            "{d}"
        );
        assert_eq!(s.settings.id, None);
    }
}
