//! `${name}` substitution of upstream values into manifests (`$${x}` is a literal `${x}`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::value::InputValue;

/// A layer's resolved `vars`.
pub type Vars = BTreeMap<String, InputValue>;

fn is_name_char(c: char, first: bool) -> bool {
    c == '_' || c.is_ascii_alphabetic() || (!first && c.is_ascii_digit())
}

/// The text a value is substituted as: strings as they are, anything else as JSON.
fn text_of(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What a document is, as far as it could be read before substitution: it decides where
/// sensitive values may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocKind<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
}

impl DocKind<'_> {
    /// A core `v1` Secret: the only kind whose values Kubernetes and strata treat as secret. A
    /// `kind: Secret` of any other group is an ordinary object whose fields anyone may read.
    pub fn is_core_secret(&self) -> bool {
        self.api_version == "v1" && self.kind == "Secret"
    }

    fn describe(&self) -> String {
        if self.api_version == "v1" || self.api_version.is_empty() {
            self.kind.to_string()
        } else {
            format!("{} of {}", self.kind, self.api_version)
        }
    }
}

/// Substitutes `vars` into one document's text. `kind` is the document's kind when it could be
/// read before substitution; sensitive values may only go into a core `v1` Secret.
///
/// # Errors
/// One message per problem, each with `file:line`: undefined variables (with a did-you-mean),
/// sensitive values outside a core Secret, values not known yet.
pub fn substitute(
    text: &str,
    vars: &Vars,
    kind: Option<DocKind<'_>>,
    file: &Path,
    first_line: usize,
) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let at = format!("{}:{}", file.display(), first_line + i);
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let tail = &rest[pos..];
            if let Some(after) = tail.strip_prefix("$${") {
                out.push_str("${");
                rest = after;
                continue;
            }
            let Some(body) = tail.strip_prefix("${") else {
                out.push('$');
                rest = &tail[1..];
                continue;
            };
            let Some(end) = body.find('}') else {
                out.push_str(tail);
                rest = "";
                continue;
            };
            let name = &body[..end];
            let valid = name
                .chars()
                .enumerate()
                .all(|(j, c)| is_name_char(c, j == 0))
                && !name.is_empty();
            if !valid {
                // Not ours (a shell snippet in a ConfigMap, say): leave it alone.
                out.push_str(&tail[..end + 3]);
                rest = &body[end + 1..];
                continue;
            }
            match vars.get(name) {
                None => {
                    let hint = crate::stack::diag::hint(name, vars.keys().map(String::as_str));
                    problems.push(format!("{at}: undefined variable ${{{name}}}{hint}"));
                }
                Some(InputValue::Unknown(why)) => {
                    problems.push(format!(
                        "{at}: ${{{name}}} is not known yet ({})",
                        crate::value::references(why)
                    ));
                }
                Some(InputValue::Sensitive(v)) => {
                    if kind.is_some_and(|k| k.is_core_secret()) {
                        out.push_str(&text_of(v.expose()));
                    } else {
                        problems.push(format!(
                            "{at}: ${{{name}}} is sensitive and may only be substituted into a Secret, not a {}",
                            kind.map_or("document of unknown kind".into(), |k| k.describe())
                        ));
                    }
                }
                Some(InputValue::Known(v)) => out.push_str(&text_of(v)),
            }
            rest = &body[end + 1..];
        }
        out.push_str(rest);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::Redacted;

    fn vars() -> Vars {
        BTreeMap::from([
            (
                "db_host".to_string(),
                InputValue::Known("db.internal".into()),
            ),
            ("port".to_string(), InputValue::Known(5432.into())),
            (
                "token".to_string(),
                InputValue::Sensitive(Redacted::new("s3cr3t".into())),
            ),
        ])
    }

    #[test]
    fn variables_are_substituted_and_escapes_kept_literal() {
        let out = substitute(
            "host: ${db_host}:${port}\nraw: $${db_host} and $HOME ${not-a-var}\n",
            &vars(),
            Some(DocKind {
                api_version: "v1",
                kind: "ConfigMap",
            }),
            Path::new("f.yaml"),
            1,
        )
        .unwrap();
        assert_eq!(
            out,
            "host: db.internal:5432\nraw: ${db_host} and $HOME ${not-a-var}\n"
        );
    }

    #[test]
    fn undefined_and_misplaced_sensitive_values_name_file_and_line() {
        let err = substitute(
            "a: 1\nb: ${db_hots}\nc: ${token}\n",
            &vars(),
            Some(DocKind {
                api_version: "v1",
                kind: "ConfigMap",
            }),
            Path::new("k/cm.yaml"),
            10,
        )
        .unwrap_err();
        assert_eq!(
            err[0],
            "k/cm.yaml:11: undefined variable ${db_hots} (did you mean \"db_host\"?)"
        );
        assert_eq!(err[1], "k/cm.yaml:12: ${token} is sensitive and may only be substituted into a Secret, not a ConfigMap");
        assert!(!err.join("").contains("s3cr3t"));
        let ok = substitute(
            "stringData:\n  t: ${token}\n",
            &vars(),
            Some(DocKind {
                api_version: "v1",
                kind: "Secret",
            }),
            Path::new("s.yaml"),
            1,
        )
        .unwrap();
        assert!(ok.contains("s3cr3t"));
        // A `kind: Secret` of another group is not a Secret: its fields are readable by anyone
        // who may read that resource, and strata's diff masks only core Secrets' data.
        let err = substitute(
            "spec:\n  t: ${token}\n",
            &vars(),
            Some(DocKind {
                api_version: "qa.example.com/v1",
                kind: "Secret",
            }),
            Path::new("s.yaml"),
            1,
        )
        .unwrap_err();
        assert_eq!(
            err,
            ["s.yaml:2: ${token} is sensitive and may only be substituted into a Secret, not a Secret of qa.example.com/v1"]
        );
    }
}
