//! The `image "NAME" { ... }` and `writeback { ... }` blocks: which registry repositories the
//! agent watches, how it picks a tag, and how it commits the new tags to Git (see
//! [`crate::images`]). Each value is checked where it is written.

use std::path::PathBuf;
use std::time::Duration;

use hcl::edit::structure::Block;
use hcl::edit::Span;
use serde::Serialize;

use super::diag::Location;
use super::model::duration_text;
use super::parse::Parser;
use crate::images::policy::{TagOrder, TagPolicy};
use crate::images::registry::Repository;

pub(super) const IMAGE_ATTRS: [&str; 7] = [
    "repository",
    "policy",
    "interval",
    "credentials_file",
    "ca_file",
    "insecure_http",
    "timeout",
];
pub(super) const WRITEBACK_ATTRS: [&str; 4] = ["branch", "push_branch", "author", "message"];

/// An `image "NAME"` block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Image {
    pub name: String,
    pub location: Location,
    /// `host[:port]/path`, no tag.
    pub repository: String,
    pub policy: TagPolicy,
    /// How often the agent lists tags. Default 5m.
    #[serde(with = "duration_text")]
    pub interval: Duration,
    /// `{"username": ..., "password": ...}` or `{"token": ...}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<PathBuf>,
    /// A PEM file of CA certificates to trust for the registry's TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Plain HTTP (local registries only).
    pub insecure_http: bool,
    /// Bounds each request to the registry. Default 30s.
    #[serde(with = "duration_text")]
    pub timeout: Duration,
}

/// Who commits image updates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Author {
    pub name: String,
    pub email: String,
}

impl Author {
    /// Parses `Name <email>`.
    pub fn parse(text: &str) -> Option<Author> {
        let (name, rest) = text.split_once('<')?;
        let email = rest.strip_suffix('>')?;
        let name = name.trim();
        let ok = |s: &str| !s.is_empty() && !s.contains(['<', '>', '\n']);
        (ok(name) && ok(email)).then(|| Author {
            name: name.to_string(),
            email: email.trim().to_string(),
        })
    }
}

/// The `writeback` block; its defaults when the stack has none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Writeback {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// The branch commits are made on. Default: the ref the source tracks.
    pub branch: Option<String>,
    /// Push here instead of `branch`, for review.
    pub push_branch: Option<String>,
    pub author: Author,
    /// `{{changes}}` becomes `web 1.0.0 → 1.2.0, api …`.
    pub message: String,
}

impl Default for Writeback {
    fn default() -> Writeback {
        Writeback {
            location: None,
            branch: None,
            push_branch: None,
            author: Author {
                name: "strata".into(),
                email: "strata@localhost".into(),
            },
            message: "images: {{changes}}".into(),
        }
    }
}

/// A name git accepts as a branch: no spaces, no `..`, no control characters, no leading `-`.
fn valid_branch(b: &str) -> bool {
    !b.is_empty()
        && !b.starts_with(['-', '/'])
        && !b.ends_with(['/', '.'])
        && !b.contains("..")
        && !b.contains("//")
        && !b.contains("@{")
        && !b.ends_with(".lock")
        && b.chars()
            .all(|c| !c.is_control() && !" ~^:?*[\\".contains(c))
}

impl Parser<'_> {
    pub(super) fn image(
        &mut self,
        block: &Block,
        name: String,
        location: Location,
    ) -> Option<Image> {
        let f = self.fields(block, &IMAGE_ATTRS, &[]);
        let repository = match f.get("repository") {
            Some(a) => {
                let text = self.string(a)?;
                if let Err(e) = Repository::parse(&text) {
                    self.err(a.value.span(), format!("image \"{name}\": {e}"));
                    return None;
                }
                text
            }
            None => {
                self.diags.push(
                    location,
                    format!("image \"{name}\" is missing the required attribute \"repository\" (host[:port]/path)"),
                );
                return None;
            }
        };
        let Some(a) = f.get("policy") else {
            self.diags.push(
                location,
                format!("image \"{name}\" is missing the required attribute \"policy\": `policy = {{ semver = \">=1.0.0\" }}`"),
            );
            return None;
        };
        let policy = self.policy(a, &name)?;
        let interval = f
            .get("interval")
            .and_then(|a| self.duration(a))
            .unwrap_or(Duration::from_secs(300));
        let timeout = f
            .get("timeout")
            .and_then(|a| self.duration(a))
            .unwrap_or(Duration::from_secs(30));
        for (attr, d) in [("interval", interval), ("timeout", timeout)] {
            if d.is_zero() {
                if let Some(a) = f.get(attr) {
                    self.err(a.value.span(), format!("\"{attr}\" must be more than 0s"));
                }
            }
        }
        Some(Image {
            name,
            location,
            repository,
            policy,
            interval,
            credentials_file: f
                .get("credentials_file")
                .and_then(|a| self.string(a))
                .map(PathBuf::from),
            ca_file: f
                .get("ca_file")
                .and_then(|a| self.string(a))
                .map(PathBuf::from),
            insecure_http: f
                .get("insecure_http")
                .and_then(|a| self.boolean(a))
                .unwrap_or(false),
            timeout,
        })
    }

    fn policy(&mut self, a: &hcl::edit::structure::Attribute, name: &str) -> Option<TagPolicy> {
        let span = a.value.span();
        let hcl::Value::Object(obj) = self.literal(a)? else {
            self.err(
                span,
                "\"policy\" must be an object: `{ semver = \">=1.0.0\" }` or `{ regex = \"...\", order = \"numerical\" }`",
            );
            return None;
        };
        let text = |key: &str| match obj.get(key) {
            Some(hcl::Value::String(s)) => Ok(Some(s.clone())),
            None => Ok(None),
            Some(_) => Err(format!("policy \"{key}\" must be a string")),
        };
        let unknown: Vec<&String> = obj
            .keys()
            .filter(|k| !["semver", "regex", "order"].contains(&k.as_str()))
            .collect();
        if let Some(k) = unknown.first() {
            self.err(
                span,
                format!("unknown policy key \"{k}\": use semver, or regex with order"),
            );
            return None;
        }
        let policy = match (text("semver"), text("regex"), text("order")) {
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                self.err(span, e);
                return None;
            }
            (Ok(Some(range)), Ok(None), Ok(None)) => TagPolicy::Semver { range },
            (Ok(None), Ok(Some(pattern)), Ok(order)) => {
                let order = match order.as_deref() {
                    None => TagOrder::Alphabetical,
                    Some(o) => match TagOrder::parse(o) {
                        Some(o) => o,
                        None => {
                            self.err(
                                span,
                                format!("policy order must be \"numerical\" or \"alphabetical\", found \"{o}\""),
                            );
                            return None;
                        }
                    },
                };
                TagPolicy::Regex { pattern, order }
            }
            (Ok(Some(_)), Ok(_), Ok(Some(_))) => {
                self.err(span, "policy \"order\" goes with regex, not semver");
                return None;
            }
            _ => {
                self.err(
                    span,
                    "policy needs exactly one of semver or regex: `{ semver = \">=1.0.0\" }`",
                );
                return None;
            }
        };
        if let Err(e) = policy.check() {
            self.err(span, format!("image \"{name}\": policy: {e}"));
            return None;
        }
        Some(policy)
    }

    pub(super) fn writeback(&mut self, block: &Block, location: Location) -> Writeback {
        let f = self.fields(block, &WRITEBACK_ATTRS, &[]);
        if let Some(l) = block.labels.first() {
            self.err(
                l.span(),
                "a writeback block takes no name: `writeback { ... }`",
            );
        }
        let mut w = Writeback {
            location: Some(location),
            ..Writeback::default()
        };
        for (attr, slot) in [
            ("branch", &mut w.branch),
            ("push_branch", &mut w.push_branch),
        ] {
            let Some(a) = f.get(attr) else { continue };
            let Some(b) = self.string(a) else { continue };
            let b = b.strip_prefix("refs/heads/").unwrap_or(&b).to_string();
            if valid_branch(&b) {
                *slot = Some(b);
            } else {
                self.err(
                    a.value.span(),
                    format!("\"{attr}\" is not a valid branch name: \"{b}\""),
                );
            }
        }
        if let Some(a) = f.get("author") {
            if let Some(text) = self.string(a) {
                match Author::parse(&text) {
                    Some(author) => w.author = author,
                    None => self.err(
                        a.value.span(),
                        format!("\"author\" must be `Name <email>`, found \"{text}\""),
                    ),
                }
            }
        }
        if let Some(m) = f.get("message").and_then(|a| self.string(a)) {
            if m.trim().is_empty() {
                if let Some(a) = f.get("message") {
                    self.err(a.value.span(), "\"message\" must not be empty");
                }
            } else {
                w.message = m;
            }
        }
        w
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::images::policy::{TagOrder, TagPolicy};
    use crate::stack::Stack;

    fn parse(text: &str) -> (Stack, String) {
        let (stack, diags) = Stack::from_text(
            text,
            Path::new("s/strata.hcl"),
            Path::new("/nonexistent-root"),
        )
        .unwrap();
        let problems: Vec<String> = diags
            .0
            .iter()
            .filter(|d| !d.message.contains("source"))
            .map(|d| d.to_string())
            .collect();
        (stack, problems.join("\n"))
    }

    #[test]
    fn image_and_writeback_blocks_are_read_with_their_defaults() {
        let (s, p) = parse(
            "stack \"x\" {}\nimage \"web\" {\n  repository = \"registry.example.com:5000/shop/web\"\n  policy = { semver = \">=1.0.0 <2.0.0\" }\n  interval = \"1m\"\n}\nimage \"api\" {\n  repository = \"127.0.0.1:5000/api\"\n  policy = { regex = \"^main-(?P<ts>[0-9]+)$\", order = \"numerical\" }\n  insecure_http = true\n}\nwriteback {\n  push_branch = \"strata/images\"\n  author = \"Bot <bot@example.com>\"\n}\n",
        );
        assert!(p.is_empty(), "{p}");
        assert_eq!(s.images.len(), 2);
        assert_eq!(s.images[0].interval.as_secs(), 60);
        assert_eq!(s.images[1].interval.as_secs(), 300);
        assert_eq!(
            s.images[1].policy,
            TagPolicy::Regex {
                pattern: "^main-(?P<ts>[0-9]+)$".into(),
                order: TagOrder::Numerical
            }
        );
        let w = s.writeback.unwrap();
        assert_eq!(w.branch, None);
        assert_eq!(w.push_branch.as_deref(), Some("strata/images"));
        assert_eq!(w.author.email, "bot@example.com");
        assert_eq!(w.message, "images: {{changes}}");
    }

    #[test]
    fn bad_image_and_writeback_blocks_are_refused_at_their_line() {
        let (_, p) = parse(
            "stack \"x\" {}\nimage \"a\" {\n  repository = \"shop/web:1.0\"\n  policy = { semver = \">=1\" }\n}\nimage \"b\" {\n  repository = \"r.example.com/b\"\n  policy = { semver = \">= x\" }\n}\nimage \"c\" {\n  repository = \"r.example.com/c\"\n  policy = { regex = \"(\", order = \"random\" }\n}\nimage \"d\" {\n  policy = { semver = \"1\" }\n}\nwriteback {\n  branch = \"a..b\"\n  author = \"nobody\"\n}\nwriteback {}\nimage \"a\" {\n  repository = \"r.example.com/a\"\n  policy = { semver = \"1\" }\n}\n",
        );
        for want in [
            "s/strata.hcl:3:16: image \"a\": repository",
            "s/strata.hcl:8:12: image \"b\": policy:",
            "s/strata.hcl:12:12: policy order must be",
            "s/strata.hcl:14:1: image \"d\" is missing the required attribute \"repository\"",
            "s/strata.hcl:18:12: \"branch\" is not a valid branch name",
            "s/strata.hcl:19:12: \"author\" must be `Name <email>`",
            "s/strata.hcl:21:1: a second writeback block",
            "s/strata.hcl:22:1: duplicate image \"a\"",
        ] {
            assert!(p.contains(want), "missing {want:?} in\n{p}");
        }
    }
}
