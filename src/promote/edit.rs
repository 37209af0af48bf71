//! The edit a promotion makes to the stack file's text: the chosen `vars` values of one
//! environment block copied, as written, over the same values of another. Pure: text in, text
//! and the changes out; everything outside the replaced values keeps its bytes.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;

use hcl::edit::expr::{Expression, ObjectKey};
use hcl::edit::structure::Body;
use hcl::edit::Span;
use serde::Serialize;

use crate::images::markers;

/// One value copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VarChange {
    pub var: String,
    /// The line of the target environment's value, in the stack file.
    pub line: usize,
    /// The value as the target environment held it (as written).
    pub from: String,
    /// The value copied from the source environment (as written).
    pub to: String,
}

/// Why a promotion's edit cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("cannot read the stack file: {0}")]
    Syntax(String),
    #[error("promote needs two different environments, got {0} twice")]
    Same(String),
    #[error("the stack declares no environment \"{name}\"; it declares: {known}")]
    UnknownEnv { name: String, known: String },
    #[error("environment \"{env}\" has no var \"{var}\"; its vars: {known}")]
    UnknownVar {
        env: String,
        var: String,
        known: String,
    },
    #[error("environment \"{env}\": vars must be written as an object, {{ NAME = VALUE }}, to be promoted")]
    NotAnObject { env: String },
    #[error("no var of environment \"{from}\" or \"{to}\" carries a `# strata:image` marker: name the vars with --vars ({from}'s vars: {known})")]
    NoneMarked {
        from: String,
        to: String,
        known: String,
    },
}

/// One `NAME = VALUE` of an environment's `vars`, and where its value is in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Var {
    pub name: String,
    pub span: Range<usize>,
}

/// An environment block's vars as written, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVars {
    pub vars: Vec<Var>,
}

impl EnvVars {
    fn get(&self, name: &str) -> Option<&Var> {
        self.vars.iter().find(|v| v.name == name)
    }
    fn known(&self) -> String {
        let names: Vec<&str> = self.vars.iter().map(|v| v.name.as_str()).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }
}

/// An `environment "NAME"` block as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvBlock {
    pub name: String,
    /// The whole block, in bytes of the text.
    pub span: Range<usize>,
    /// `None`: `vars` is not written as an object.
    pub vars: Option<EnvVars>,
}

/// Every environment block of a stack file's text, with the places of its vars' values.
///
/// # Errors
/// The text is no HCL (the parser's message).
pub fn environment_blocks(text: &str) -> Result<Vec<EnvBlock>, String> {
    let body: Body = hcl::edit::parser::parse_body(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for block in body.blocks() {
        if block.ident.as_str() != "environment" {
            continue;
        }
        let (Some(label), Some(span)) = (block.labels.first(), block.span()) else {
            continue;
        };
        let vars = match block.body.get_attribute("vars").map(|a| &a.value) {
            None => Some(EnvVars { vars: Vec::new() }),
            Some(Expression::Object(object)) => {
                let vars = object
                    .iter()
                    .filter_map(|(key, value)| {
                        let name = match key {
                            ObjectKey::Ident(i) => i.as_str().to_string(),
                            ObjectKey::Expression(Expression::String(s)) => s.as_str().to_string(),
                            ObjectKey::Expression(_) => return None,
                        };
                        let span = value.expr().span()?;
                        Some(Var { name, span })
                    })
                    .collect();
                Some(EnvVars { vars })
            }
            Some(_) => None,
        };
        out.push(EnvBlock {
            name: label.as_str().to_string(),
            span,
            vars,
        });
    }
    Ok(out)
}

/// The line of byte `at` in `text`, from 1.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The stack file's text with `vars` (default: those carrying a `# strata:image` marker in
/// either block) of environment `from` copied over `to`'s, and the values that changed (none:
/// the text is returned as it was).
///
/// # Errors
/// The text is no HCL; `from` and `to` are the same, or unknown (naming the known ones); a
/// named var is missing from either block (naming that block's vars); no var is marked and
/// none named; a block's vars are not written as an object.
pub fn promote_text(
    text: &str,
    from: &str,
    to: &str,
    vars: Option<&[String]>,
) -> Result<(String, Vec<VarChange>), EditError> {
    if from == to {
        return Err(EditError::Same(from.to_string()));
    }
    let envs = environment_blocks(text).map_err(EditError::Syntax)?;
    let known = || {
        let names: Vec<&str> = envs.iter().map(|e| e.name.as_str()).collect();
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    };
    let find = |name: &str| -> Result<&EnvVars, EditError> {
        match envs.iter().find(|e| e.name == name).map(|e| &e.vars) {
            Some(Some(v)) => Ok(v),
            Some(None) => Err(EditError::NotAnObject {
                env: name.to_string(),
            }),
            None => Err(EditError::UnknownEnv {
                name: name.to_string(),
                known: known(),
            }),
        }
    };
    let (source, target) = (find(from)?, find(to)?);
    let names: Vec<String> = match vars {
        Some(v) => v.to_vec(),
        None => {
            let mut found = markers::Found::default();
            markers::scan_bytes(Path::new(""), text.as_bytes(), &mut found);
            let marked = |env: &EnvVars| -> Vec<String> {
                env.vars
                    .iter()
                    .filter(|v| {
                        found
                            .markers
                            .iter()
                            .any(|m| v.span.start <= m.span.start && m.span.end <= v.span.end)
                    })
                    .map(|v| v.name.clone())
                    .collect()
            };
            let mut names = marked(source);
            for n in marked(target) {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
            if names.is_empty() {
                return Err(EditError::NoneMarked {
                    from: from.to_string(),
                    to: to.to_string(),
                    known: source.known(),
                });
            }
            names
        }
    };
    let mut seen = BTreeSet::new();
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    let mut changes = Vec::new();
    for name in names {
        if !seen.insert(name.clone()) {
            continue;
        }
        let missing = |env: &str, vars: &EnvVars| EditError::UnknownVar {
            env: env.to_string(),
            var: name.clone(),
            known: vars.known(),
        };
        let s = source.get(&name).ok_or_else(|| missing(from, source))?;
        let t = target.get(&name).ok_or_else(|| missing(to, target))?;
        let (new, old) = (&text[s.span.clone()], &text[t.span.clone()]);
        if new == old {
            continue;
        }
        changes.push(VarChange {
            var: name.clone(),
            line: line_of(text, t.span.start),
            from: old.to_string(),
            to: new.to_string(),
        });
        edits.push((t.span.clone(), new.to_string()));
    }
    let mut out = text.to_string();
    edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
    for (span, value) in edits {
        out.replace_range(span, &value);
    }
    Ok((out, changes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK: &str = "stack \"shop\" {}\r\n\nenvironment \"dev\" {\n  vars = {\n    replicas  = 1\n    web_image = \"registry.example.com/shop/web:1.4.0\" # strata:image web\n    \"api_tag\" = \"7\" # strata:image api:tag\n    region    = \"eu\"\n  }\n  apply = \"auto\"\n}\n\nenvironment \"prod\" {\n  vars  = {\n    replicas  = 3\n    web_image = \"registry.example.com/shop/web:1.2.0\"   # strata:image web\n    api_tag   = \"6\" # strata:image api:tag\n    region    = \"us\"\n  }\n  apply = \"safe\"\n}\n";

    #[test]
    fn marked_values_are_copied_and_nothing_else_changes() {
        let (text, changes) = promote_text(STACK, "dev", "prod", None).unwrap();
        assert_eq!(
            text,
            STACK
                .replace("web:1.2.0", "web:1.4.0")
                .replace("api_tag   = \"6\"", "api_tag   = \"7\"")
        );
        let got: Vec<(&str, usize, &str, &str)> = changes
            .iter()
            .map(|c| (c.var.as_str(), c.line, c.from.as_str(), c.to.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "web_image",
                    16,
                    "\"registry.example.com/shop/web:1.2.0\"",
                    "\"registry.example.com/shop/web:1.4.0\""
                ),
                ("api_tag", 17, "\"6\"", "\"7\""),
            ]
        );
        // Again: both hold the same values now, nothing changes.
        let (again, none) = promote_text(&text, "dev", "prod", None).unwrap();
        assert_eq!(again, text);
        assert!(none.is_empty());
    }

    #[test]
    fn named_vars_are_copied_as_written_and_equal_ones_are_no_change() {
        let vars = ["region".to_string(), "replicas".to_string()];
        let (text, changes) = promote_text(STACK, "prod", "dev", Some(&vars)).unwrap();
        assert_eq!(
            text,
            STACK
                .replace("region    = \"eu\"", "region    = \"us\"")
                .replace("replicas  = 1", "replicas  = 3")
        );
        assert_eq!(changes.len(), 2);
        let (same, none) = promote_text(&text, "prod", "dev", Some(&vars)).unwrap();
        assert_eq!(same, text);
        assert!(none.is_empty());
    }

    #[test]
    fn unknown_environments_and_vars_are_named_with_the_known_ones() {
        let e = promote_text(STACK, "dev", "prd", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the stack declares no environment \"prd\"; it declares: dev, prod"
        );
        let e = promote_text(STACK, "dev", "prod", Some(&["web".into()])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment \"dev\" has no var \"web\"; its vars: replicas, web_image, api_tag, region"
        );
        let e = promote_text(STACK, "dev", "dev", None).unwrap_err();
        assert!(matches!(e, EditError::Same(_)), "{e}");
        let unmarked = STACK
            .replace("# strata:image web", "")
            .replace("# strata:image api:tag", "");
        let e = promote_text(&unmarked, "dev", "prod", None).unwrap_err();
        assert!(e.to_string().contains("--vars"), "{e}");
        let lacking = STACK.replace("    region    = \"us\"\n", "");
        let e = promote_text(&lacking, "dev", "prod", Some(&["region".into()])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment \"prod\" has no var \"region\"; its vars: replicas, web_image, api_tag"
        );
    }
}
