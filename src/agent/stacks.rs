//! The `stack "NAME" { ... }` blocks of the agent's configuration file (`strata run --config
//! agent.hcl`): the stacks one agent converges, each from its own repository. The file's
//! `alert` and `writeback` blocks are the notifier's (`crate::notify::load_config`); this reads
//! only the stacks, and refuses anything in them it does not know, with the place it is at.

use std::path::{Path, PathBuf};

use hcl::edit::expr::Expression;
use hcl::edit::structure::{Block, Body};
use hcl::edit::Span;

use crate::source::VerifyPolicy;
use crate::stack::diag::SourceMap;
use crate::stack::{Diagnostics, Location};

const STACK_ATTRS: [&str; 5] = ["repo", "ref", "path", "env", "verify"];

/// One `stack` block: where the stack is and which of its environments to converge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackSource {
    /// The block's label: the stack's name on this agent (its state dir, Lease, alerts and
    /// metrics are named after it).
    pub name: String,
    pub repo: String,
    /// Branch, tag or commit; `None`: the remote's HEAD.
    pub reference: Option<String>,
    /// The directory of `strata.hcl` in the repository; `None`: its root.
    pub path: Option<PathBuf>,
    /// The environments to converge; empty: every one the stack declares.
    pub env: Vec<String>,
    pub verify: Option<VerifyPolicy>,
    /// Where the block starts.
    pub at: Location,
}

/// The configuration file cannot be used: every problem, each at its place.
#[derive(Debug, thiserror::Error)]
pub enum StacksError {
    #[error("failed to read the agent configuration {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}\nfix the agent configuration and start the agent again")]
    Invalid(Diagnostics),
}

/// Reads the `stack` blocks of the agent configuration at `path` (none: the file configures
/// alerts only, and the agent converges the stack of `--repo`).
///
/// # Errors
/// The file cannot be read, is not HCL, or a `stack` block is wrong: no label, a name that is
/// not a plain label, a repeated name, an unknown or repeated attribute, a value of the wrong
/// type, no `repo`, an invalid `verify`. Each problem names the file, line and block.
pub fn load(path: &Path) -> Result<Vec<StackSource>, StacksError> {
    let text = std::fs::read_to_string(path).map_err(|source| StacksError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// As [`load`], on the file's text.
///
/// # Errors
/// As [`load`].
pub fn parse(text: &str, file: &Path) -> Result<Vec<StackSource>, StacksError> {
    let map = SourceMap::new(file, text);
    let mut diags = Diagnostics::default();
    let body: Body = match hcl::edit::parser::parse_body(text) {
        Ok(b) => b,
        Err(e) => {
            let loc = e.location();
            diags.push(
                Location {
                    file: file.to_path_buf(),
                    line: loc.line(),
                    col: loc.column(),
                    revision: None,
                },
                format!("syntax error: {}", e.message()),
            );
            return Err(StacksError::Invalid(diags));
        }
    };
    let mut stacks: Vec<StackSource> = Vec::new();
    for block in body.blocks().filter(|b| b.ident.as_str() == "stack") {
        let at = map.locate_span(block.span());
        if let Some(s) = stack_block(block, &map, &mut diags) {
            if let Some(first) = stacks.iter().find(|o| o.name == s.name) {
                diags.push(
                    at,
                    format!(
                        "stack \"{}\" is declared twice (first at line {}): give each stack its own name",
                        s.name, first.at.line
                    ),
                );
                continue;
            }
            stacks.push(s);
        }
    }
    if diags.is_empty() {
        Ok(stacks)
    } else {
        Err(StacksError::Invalid(diags))
    }
}

/// Whether `name` can name a stack: it becomes a directory, a Lease name and a metrics label.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 50
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn stack_block(block: &Block, map: &SourceMap, diags: &mut Diagnostics) -> Option<StackSource> {
    let at = map.locate_span(block.span());
    let labels: Vec<&str> = block.labels.iter().map(|l| l.as_str()).collect();
    let [name] = labels.as_slice() else {
        diags.push(
            at,
            "a stack block takes one label, its name: stack \"shop\" { repo = \"...\" }",
        );
        return None;
    };
    let name = name.to_string();
    if !valid_name(&name) {
        diags.push(
            at.clone(),
            format!("stack \"{name}\": a stack name is lowercase letters, digits and '-' (at most 50), as it names a directory and a Kubernetes Lease"),
        );
    }
    let mut s = StackSource {
        name: name.clone(),
        repo: String::new(),
        reference: None,
        path: None,
        env: Vec::new(),
        verify: None,
        at: at.clone(),
    };
    let mut seen: Vec<&str> = Vec::new();
    for nested in block.body.blocks() {
        diags.push(
            map.locate_span(nested.span()),
            format!(
                "stack \"{name}\": unknown block \"{}\" (a stack holds {})",
                nested.ident.as_str(),
                STACK_ATTRS.join(", ")
            ),
        );
    }
    for attr in block.body.attributes() {
        let key = attr.key.as_str();
        let here = map.locate_span(attr.span());
        if !STACK_ATTRS.contains(&key) {
            diags.push(
                here,
                format!(
                    "stack \"{name}\": unknown attribute \"{key}\" (known: {})",
                    STACK_ATTRS.join(", ")
                ),
            );
            continue;
        }
        if seen.contains(&key) {
            diags.push(here, format!("stack \"{name}\": \"{key}\" is set twice"));
            continue;
        }
        seen.push(key);
        let string = |diags: &mut Diagnostics| match &attr.value {
            Expression::String(v) => Some(v.value().to_string()),
            _ => {
                diags.push(
                    here.clone(),
                    format!("stack \"{name}\": \"{key}\" must be a string"),
                );
                None
            }
        };
        match key {
            "repo" => s.repo = string(diags).unwrap_or_default(),
            "ref" => s.reference = string(diags),
            "path" => s.path = string(diags).map(PathBuf::from),
            "verify" => {
                if let Some(v) = string(diags) {
                    match v.parse() {
                        Ok(p) => s.verify = Some(p),
                        Err(e) => diags.push(here.clone(), format!("stack \"{name}\": verify: {e}")),
                    }
                }
            }
            "env" => match &attr.value {
                Expression::Array(items) => {
                    for item in items.iter() {
                        match item {
                            Expression::String(v) => s.env.push(v.value().to_string()),
                            _ => diags.push(
                                here.clone(),
                                format!("stack \"{name}\": \"env\" is a list of environment names: env = [\"dev\", \"prod\"]"),
                            ),
                        }
                    }
                }
                _ => diags.push(
                    here.clone(),
                    format!("stack \"{name}\": \"env\" is a list of environment names: env = [\"dev\", \"prod\"]"),
                ),
            },
            _ => unreachable!("every known attribute is handled"),
        }
    }
    if !seen.contains(&"repo") {
        diags.push(
            at,
            format!("stack \"{name}\": \"repo\" is required (the Git repository of the stack)"),
        );
        return None;
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> String {
        match parse(text, Path::new("agent.hcl")) {
            Ok(s) => panic!("accepted: {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn reads_every_stack_with_its_attributes() {
        let text = r#"
alert "webhook" "ops" { url = "https://example.com" }

stack "shop" {
  repo   = "https://git.example.com/platform/shop.git"
  ref    = "main"
  path   = "deploy"
  env    = ["dev", "prod"]
  verify = "ssh:/etc/strata/allowed_signers"
}

stack "billing" {
  repo = "/srv/git/billing"
}
"#;
        let s = parse(text, Path::new("agent.hcl")).expect("valid");
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "shop");
        assert_eq!(s[0].reference.as_deref(), Some("main"));
        assert_eq!(s[0].path, Some(PathBuf::from("deploy")));
        assert_eq!(s[0].env, vec!["dev".to_string(), "prod".to_string()]);
        assert!(matches!(s[0].verify, Some(VerifyPolicy::Ssh(_))));
        assert_eq!(s[0].at.line, 4);
        assert_eq!(s[1].name, "billing");
        assert_eq!(s[1].reference, None);
        assert!(s[1].env.is_empty());
    }

    #[test]
    fn refuses_unknown_attributes_at_their_line() {
        let e = errors("stack \"shop\" {\n  repo = \"r\"\n  branch = \"main\"\n}\n");
        assert!(e.contains("agent.hcl:3:"), "{e}");
        assert!(
            e.contains("stack \"shop\": unknown attribute \"branch\""),
            "{e}"
        );
    }

    #[test]
    fn refuses_duplicate_names_naming_both_lines() {
        let e = errors("stack \"a\" { repo = \"r\" }\n\nstack \"a\" { repo = \"s\" }\n");
        assert!(e.contains("agent.hcl:3:"), "{e}");
        assert!(e.contains("declared twice (first at line 1)"), "{e}");
    }

    #[test]
    fn refuses_a_stack_without_repo_or_with_a_bad_name_or_types() {
        let e = errors(
            "stack \"a\" {\n  ref = \"main\"\n}\nstack \"B_x\" {\n  repo = 1\n  env = \"dev\"\n  verify = \"x\"\n}\nstack { repo = \"r\" }\n",
        );
        assert!(
            e.contains("agent.hcl:1:1: stack \"a\": \"repo\" is required"),
            "{e}"
        );
        assert!(
            e.contains("agent.hcl:4:1: stack \"B_x\": a stack name is"),
            "{e}"
        );
        assert!(e.contains("agent.hcl:5:"), "{e}");
        assert!(e.contains("\"repo\" must be a string"), "{e}");
        assert!(e.contains("agent.hcl:6:"), "{e}");
        assert!(e.contains("agent.hcl:7:"), "{e}");
        assert!(
            e.contains("agent.hcl:9:1: a stack block takes one label"),
            "{e}"
        );
    }

    #[test]
    fn a_file_without_stacks_has_none() {
        assert!(parse("writeback { notes = true }\n", Path::new("a.hcl"))
            .expect("valid")
            .is_empty());
    }

    #[test]
    fn a_syntax_error_names_its_place() {
        let e = errors("stack \"a\" {\n  repo = \n}\n");
        assert!(e.contains("agent.hcl:"), "{e}");
        assert!(e.contains("syntax error"), "{e}");
    }
}
