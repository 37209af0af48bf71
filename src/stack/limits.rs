//! The `limits { ... }` block, in the `stack` block (for every Kubernetes layer) or in a
//! `kubernetes` block (for that layer): the bounds on a layer's manifests
//! ([`crate::kube::limits::ManifestLimits`]), each checked where it is written.

use hcl::edit::structure::{Block, Structure};
use hcl::edit::Span;
use serde::Serialize;

use super::diag::hint;
use super::parse::Parser;
use crate::kube::limits::{ManifestLimits, BOUNDS};

/// The limits a `limits` block sets; unset ones come from the stack, then the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LimitsOverride {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(String, usize)>,
}

impl LimitsOverride {
    /// `base` with this block's values.
    pub fn over(&self, base: &ManifestLimits) -> ManifestLimits {
        let mut out = *base;
        for (name, v) in &self.set {
            out.set(name, *v);
        }
        out
    }
}

impl Parser<'_> {
    /// The `limits` blocks among `block`'s nested blocks (at most one), read and checked.
    pub(super) fn limits_block(&mut self, block: &Block) -> LimitsOverride {
        let mut out = LimitsOverride::default();
        let mut seen = false;
        for s in block.body.iter() {
            let Structure::Block(b) = s else { continue };
            if b.ident.as_str() != "limits" {
                continue;
            }
            if seen {
                self.err(
                    b.ident.span(),
                    "a second limits block: set every limit in one",
                );
                continue;
            }
            seen = true;
            if let Some(l) = b.labels.first() {
                self.err(l.span(), "a limits block takes no name: `limits { ... }`");
            }
            for s in b.body.iter() {
                let a = match s {
                    Structure::Attribute(a) => a,
                    Structure::Block(inner) => {
                        self.err(
                            inner.ident.span(),
                            "unexpected block in limits: only attributes are allowed here",
                        );
                        continue;
                    }
                };
                let key = a.key.as_str();
                let Some(bound) = BOUNDS.iter().find(|b| b.name == key) else {
                    self.err(
                        a.key.span(),
                        format!(
                            "unknown limit \"{key}\"{}",
                            hint(key, BOUNDS.iter().map(|b| b.name))
                        ),
                    );
                    continue;
                };
                if out.set.iter().any(|(n, _)| n == key) {
                    self.err(a.key.span(), format!("limit \"{key}\" set twice"));
                    continue;
                }
                let Some(n) = self.number(a) else { continue };
                if n < bound.min as u64 || n > bound.max as u64 {
                    self.err(
                        a.value.span(),
                        format!(
                            "limit \"{key}\" must be between {} and {}, found {n}",
                            bound.min, bound.max
                        ),
                    );
                    continue;
                }
                out.set.push((key.to_string(), n as usize));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::kube::limits::ManifestLimits;
    use crate::stack::{LayerSpec, Stack};

    fn parse(text: &str) -> (Stack, Vec<String>) {
        let (stack, diags) = Stack::from_text(
            text,
            Path::new("s/strata.hcl"),
            Path::new("/nonexistent-root"),
        )
        .unwrap();
        let problems = diags
            .0
            .iter()
            .filter(|d| !d.message.contains("source"))
            .map(|d| d.to_string())
            .collect();
        (stack, problems)
    }

    const LAYER: &str = "cluster \"c\" { kubeconfig_path = \"k\" }\nkubernetes \"k\" {\n  source = \"k\"\n  cluster = cluster.c\n  limits {\n    max_documents = 20000\n  }\n}\n";

    #[test]
    fn a_layer_limit_overrides_the_stack_limit_which_overrides_the_default() {
        let (s, problems) = parse(&format!(
            "stack \"x\" {{\n  limits {{\n    max_file_bytes = 33554432\n    max_documents = 5\n  }}\n}}\n{LAYER}"
        ));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.settings.limits.max_file_bytes, 32 << 20);
        assert_eq!(s.settings.limits.max_documents, 5);
        let LayerSpec::Kubernetes(k) = &s.layers[0].spec else {
            panic!("kubernetes layer")
        };
        let l = k.limits.over(&s.settings.limits);
        assert_eq!(
            l,
            ManifestLimits {
                max_file_bytes: 32 << 20,
                max_documents: 20_000,
                ..ManifestLimits::default()
            }
        );
    }

    #[test]
    fn bad_limits_are_refused_at_their_file_and_line() {
        let (_, problems) = parse(
            "stack \"x\" {\n  limits {\n    max_file_bytes = 0\n    max_dpeth = 3\n    max_nodes = \"many\"\n  }\n  limits {}\n}\ncluster \"c\" { kubeconfig_path = \"k\" }\n",
        );
        let text = problems.join("\n");
        assert!(
            text.contains("s/strata.hcl:3:")
                && text
                    .contains("limit \"max_file_bytes\" must be between 1 and 1073741824, found 0"),
            "{text}"
        );
        assert!(
            text.contains("s/strata.hcl:4:")
                && text.contains("unknown limit \"max_dpeth\"")
                && text.contains("max_depth"),
            "{text}"
        );
        assert!(
            text.contains("s/strata.hcl:5:")
                && text.contains("\"max_nodes\" must be a whole number"),
            "{text}"
        );
        assert!(
            text.contains("s/strata.hcl:7:") && text.contains("a second limits block"),
            "{text}"
        );
        // A Terraform layer has no manifests to bound.
        let (_, problems) =
            parse("stack \"x\" {}\nterraform \"t\" {\n  source = \"t\"\n  limits {}\n}\n");
        assert!(
            problems.iter().any(|p| p.contains("s/strata.hcl:4:") && p.contains("unexpected block \"limits\"")),
            "{problems:?}"
        );
    }
}
