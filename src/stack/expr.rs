//! Expressions in the stack file: their references to other layers, and their evaluation once
//! the referenced outputs are known.

use hcl::edit::expr::{self as ed, Expression as EditExpr, TraversalOperator};
use hcl::edit::visit::{self, Visit};
use hcl::edit::Span;
use serde::Serialize;

use super::diag::{Diagnostics, Location, SourceMap};
use super::model::{LayerId, LayerKind, Reference};
use crate::redact::Redacted;
use crate::value::{InputValue, Outputs, Waiting};

/// An expression whose value may depend on other layers' outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub expr: hcl::Expression,
    /// The expression as written, for display.
    pub text: String,
    pub location: Location,
    /// Every `terraform.NAME.outputs[.X]` it reads.
    pub refs: Vec<Reference>,
    /// Every `env.name` / `env.vars.X` it reads.
    pub env_refs: Vec<EnvRef>,
    /// The environment it is evaluated in (`env`), once the stack is specialised for one.
    pub env: Option<std::sync::Arc<hcl::Value>>,
}

/// A read of the environment: `env.name` (`var: None`) or `env.vars.X`.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvRef {
    pub var: Option<String>,
    pub location: Location,
}

impl Serialize for Expr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Why an expression could not be evaluated, though all it reads is known.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct EvalError {
    pub location: Location,
    pub message: String,
}

impl Expr {
    /// Builds an expression, collecting its references. Problems (unknown roots, functions, bad
    /// traversals) go to `diags`; the expression is returned all the same so that validation can
    /// go on and report more.
    pub(crate) fn from_edit(expr: &EditExpr, map: &SourceMap, diags: &mut Diagnostics) -> Expr {
        let mut finder = RefFinder {
            map,
            diags,
            refs: Vec::new(),
            env_refs: Vec::new(),
            scopes: Vec::new(),
        };
        finder.visit_expr(expr);
        let (refs, env_refs) = (finder.refs, finder.env_refs);
        let text = expr
            .span()
            .and_then(|s| map.slice(s).map(str::to_string))
            .unwrap_or_default();
        Expr {
            expr: expr.clone().into(),
            text,
            location: map.locate_span(expr.span()),
            refs,
            env_refs,
            env: None,
        }
    }

    /// Whether the expression reads no other layer.
    pub fn is_literal(&self) -> bool {
        self.refs.is_empty()
    }

    /// Evaluates the expression against the outputs known so far.
    ///
    /// # Guarantees
    /// - Returns [`InputValue::Unknown`] (naming each missing output) when any referenced layer's
    ///   outputs are not known yet: nothing is guessed.
    /// - The result is [`InputValue::Sensitive`] when it reads any sensitive output.
    ///
    /// # Errors
    /// When a referenced layer is known but lacks the output, or the expression fails to evaluate
    /// (wrong operand types, say). Messages never include sensitive values.
    pub fn evaluate(&self, outputs: &Outputs) -> Result<InputValue, EvalError> {
        let mut unknown = Vec::new();
        let mut sensitive = false;
        let mut tf = hcl::Map::new();
        for r in &self.refs {
            let Some(layer_outputs) = outputs.layer(&r.target) else {
                unknown.push(Waiting {
                    on: r.target.clone(),
                    output: r.label(),
                });
                continue;
            };
            if outputs.is_unknown(&r.target, r.output.as_deref()) {
                unknown.push(Waiting {
                    on: r.target.clone(),
                    output: r.label(),
                });
                continue;
            }
            match &r.output {
                Some(name) => match layer_outputs.get(name) {
                    Some(o) => sensitive |= o.sensitive,
                    None => {
                        let known: Vec<&str> = layer_outputs.keys().map(String::as_str).collect();
                        return Err(EvalError {
                            location: r.location.clone(),
                            message: format!(
                                "{} has no output \"{name}\"{}",
                                r.target,
                                super::diag::hint(name, known)
                            ),
                        });
                    }
                },
                None => sensitive |= layer_outputs.values().any(|o| o.sensitive),
            }
            let values: hcl::Map<String, hcl::Value> = layer_outputs
                .iter()
                .map(|(k, o)| (k.clone(), json_to_hcl(&o.value)))
                .collect();
            let mut layer = hcl::Map::new();
            layer.insert("outputs".to_string(), hcl::Value::Object(values));
            tf.insert(r.target.name.clone(), hcl::Value::Object(layer));
        }
        if !unknown.is_empty() {
            unknown.dedup();
            return Ok(InputValue::Unknown(unknown));
        }
        let mut ctx = hcl::eval::Context::new();
        ctx.declare_var("terraform", hcl::Value::Object(tf));
        if let Some(first) = self.env_refs.first() {
            let Some(env) = &self.env else {
                return Err(EvalError {
                    location: first.location.clone(),
                    message: "reads env, but no environment is selected (--env NAME)".into(),
                });
            };
            ctx.declare_var("env", env.as_ref().clone());
        }
        let value = hcl::eval::Evaluate::evaluate(&self.expr, &ctx).map_err(|e| EvalError {
            location: self.location.clone(),
            // hcl's messages may quote operand values: keep them out when a secret is involved.
            message: if sensitive {
                "failed to evaluate an expression that reads a sensitive value".into()
            } else {
                format!("failed to evaluate: {e}")
            },
        })?;
        let json = serde_json::to_value(&value).unwrap_or(serde_json::Value::Null);
        Ok(if sensitive {
            InputValue::Sensitive(Redacted::new(json))
        } else {
            InputValue::Known(json)
        })
    }
}

fn json_to_hcl(v: &serde_json::Value) -> hcl::Value {
    hcl::to_value(v).unwrap_or(hcl::Value::Null)
}

/// Walks an expression for `terraform.NAME.outputs[.X]` and rejects everything strata can't
/// evaluate (other roots, functions).
struct RefFinder<'a> {
    map: &'a SourceMap,
    diags: &'a mut Diagnostics,
    refs: Vec<Reference>,
    env_refs: Vec<EnvRef>,
    /// Names bound by enclosing `for` expressions.
    scopes: Vec<Vec<String>>,
}

impl RefFinder<'_> {
    fn bound(&self, name: &str) -> bool {
        self.scopes.iter().flatten().any(|n| n == name)
    }

    fn root_error(&mut self, name: &str, at: Option<std::ops::Range<usize>>) {
        let location = self.map.locate_span(at);
        let message = match name {
            "kubernetes" => "kubernetes layers have no outputs; use `depends_on = [kubernetes.NAME]` to order layers".to_string(),
            "cluster" => "a cluster can only be named in a kubernetes layer's `cluster` attribute".to_string(),
            "env" => "write env.name or env.vars.NAME".to_string(),
            _ => format!(
                "unknown variable \"{name}\"{}: expressions can read only \
                 terraform.NAME.outputs.X, env.name and env.vars.NAME",
                super::diag::hint(name, ["terraform", "env"])
            ),
        };
        self.diags.push(location, message);
    }

    fn traversal(&mut self, t: &ed::Traversal) -> bool {
        let EditExpr::Variable(root) = &t.expr else {
            return false;
        };
        let root_name = root.as_str();
        if self.bound(root_name) {
            return false;
        }
        let attr = |i: usize| match t.operators.get(i).map(|o| o.value()) {
            Some(TraversalOperator::GetAttr(id)) => Some(id.as_str().to_string()),
            _ => None,
        };
        let location = self.map.locate_span(t.span());
        if root_name == "env" {
            match (attr(0).as_deref(), attr(1)) {
                (Some("name"), _) => self.env_refs.push(EnvRef {
                    var: None,
                    location,
                }),
                (Some("vars"), Some(var)) => self.env_refs.push(EnvRef {
                    var: Some(var),
                    location,
                }),
                _ => self.diags.push(
                    location,
                    "env has `name` and `vars`: write env.name or env.vars.NAME",
                ),
            }
            for op in &t.operators {
                if let TraversalOperator::Index(e) = op.value() {
                    self.visit_expr(e);
                }
            }
            return true;
        }
        if root_name != "terraform" {
            self.root_error(root_name, t.span());
            return true;
        }
        let Some(name) = attr(0) else {
            self.diags.push(
                location,
                "expected terraform.NAME.outputs.X after `terraform`",
            );
            return true;
        };
        if attr(1).as_deref() != Some("outputs") {
            self.diags.push(
                location,
                format!("terraform.{name} has only `outputs`: write terraform.{name}.outputs.NAME"),
            );
            return true;
        }
        self.refs.push(Reference {
            target: LayerId::new(LayerKind::Terraform, name),
            output: attr(2),
            location,
        });
        // Index expressions further along (`...outputs.list[0]`) may hold references too.
        for op in &t.operators {
            if let TraversalOperator::Index(e) = op.value() {
                self.visit_expr(e);
            }
        }
        true
    }
}

impl Visit for RefFinder<'_> {
    fn visit_traversal(&mut self, t: &ed::Traversal) {
        if !self.traversal(t) {
            visit::visit_traversal(self, t);
        }
    }

    fn visit_expr(&mut self, e: &EditExpr) {
        match e {
            EditExpr::Variable(v) if !self.bound(v.as_str()) => {
                self.root_error(v.as_str(), v.span());
            }
            _ => visit::visit_expr(self, e),
        }
    }

    fn visit_func_call(&mut self, call: &ed::FuncCall) {
        let location = self.map.locate_span(call.span());
        self.diags.push(
            location,
            format!(
                "function {}() is not available in strata.hcl",
                call.name.name.as_str()
            ),
        );
        visit::visit_func_call(self, call);
    }

    fn visit_for_expr(&mut self, f: &ed::ForExpr) {
        // The collection is evaluated outside the for's own scope.
        self.visit_expr(&f.intro.collection_expr);
        let mut names = vec![f.intro.value_var.as_str().to_string()];
        if let Some(k) = &f.intro.key_var {
            names.push(k.as_str().to_string());
        }
        self.scopes.push(names);
        if let Some(k) = &f.key_expr {
            self.visit_expr(k);
        }
        self.visit_expr(&f.value_expr);
        if let Some(c) = &f.cond {
            self.visit_expr(&c.expr);
        }
        self.scopes.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Output;
    use std::collections::BTreeMap;

    fn expr(text: &str) -> (Expr, Diagnostics) {
        let map = SourceMap::new("t.hcl", text);
        let parsed: EditExpr = hcl::edit::parser::parse_expr(text).unwrap();
        let mut d = Diagnostics::default();
        let e = Expr::from_edit(&parsed, &map, &mut d);
        (e, d)
    }

    fn outputs(layer: &str, items: &[(&str, serde_json::Value, bool)]) -> Outputs {
        let mut o = Outputs::new();
        let map: BTreeMap<String, Output> = items
            .iter()
            .map(|(k, v, s)| {
                (
                    k.to_string(),
                    Output {
                        value: v.clone(),
                        sensitive: *s,
                    },
                )
            })
            .collect();
        o.insert(LayerId::terraform(layer), map);
        o
    }

    #[test]
    fn references_are_found_with_their_output_name() {
        let (e, d) = expr(r#""${terraform.net.outputs.cidr}/x" == terraform.db.outputs.host"#);
        assert!(d.is_empty(), "{d}");
        let refs: Vec<String> = e
            .refs
            .iter()
            .map(|r| format!("{} {}", r.target, r.label()))
            .collect();
        assert_eq!(
            refs,
            ["terraform.net outputs.cidr", "terraform.db outputs.host"]
        );
    }

    #[test]
    fn unknown_outputs_stay_unknown_and_are_named() {
        let (e, _) = expr("terraform.cluster.outputs.kubeconfig");
        let v = e.evaluate(&Outputs::new()).unwrap();
        assert_eq!(
            v,
            InputValue::Unknown(vec![Waiting {
                on: LayerId::terraform("cluster"),
                output: "outputs.kubeconfig".into()
            }])
        );
    }

    #[test]
    fn known_outputs_evaluate_through_templates() {
        let (e, _) = expr(r#""${terraform.net.outputs.cidr}-x""#);
        let v = e
            .evaluate(&outputs("net", &[("cidr", "10.0.0.0/16".into(), false)]))
            .unwrap();
        assert_eq!(v, InputValue::Known("10.0.0.0/16-x".into()));
    }

    #[test]
    fn anything_read_from_a_sensitive_output_stays_sensitive() {
        let (e, _) = expr(r#""prefix-${terraform.c.outputs.token}""#);
        let v = e
            .evaluate(&outputs(
                "c",
                &[("token", "planted-secret-77".into(), true)],
            ))
            .unwrap();
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("planted-secret-77"));
        assert!(!serde_json::to_string(&v)
            .unwrap()
            .contains("planted-secret-77"));
    }

    #[test]
    fn a_missing_output_of_a_known_layer_is_an_error_with_a_hint() {
        let (e, _) = expr("terraform.net.outputs.subnet");
        let err = e
            .evaluate(&outputs("net", &[("subnet_id", "s-1".into(), false)]))
            .unwrap_err();
        assert_eq!(
            err.message,
            "terraform.net has no output \"subnet\" (did you mean \"subnet_id\"?)"
        );
    }

    #[test]
    fn other_roots_and_functions_are_refused() {
        let (_, d) = expr("var.x");
        assert!(d.to_string().contains("unknown variable \"var\""), "{d}");
        let (_, d) = expr("kubernetes.apps");
        assert!(
            d.to_string().contains("kubernetes layers have no outputs"),
            "{d}"
        );
        let (_, d) = expr("upper(\"x\")");
        assert!(
            d.to_string().contains("function upper() is not available"),
            "{d}"
        );
        let (_, d) = expr("terraform.net.subnet");
        assert!(
            d.to_string().contains("terraform.net has only `outputs`"),
            "{d}"
        );
    }

    #[test]
    fn for_expressions_bind_their_own_names() {
        let (e, d) = expr("[for s in terraform.net.outputs.subnets : upper_case_free(s)]");
        // The function is refused, but `s` is not an unknown variable.
        assert!(!d.to_string().contains("unknown variable"), "{d}");
        assert_eq!(e.refs.len(), 1);
        let (_, d) = expr("{ for k, v in terraform.net.outputs.m : k => v }");
        assert!(d.is_empty(), "{d}");
    }
}
