//! Reading one attribute of a stack block into a typed value (string, bool, number, duration,
//! choice, map of expressions, `depends_on`, cluster reference), reporting a typed error at the
//! attribute's place when it does not fit.

use std::collections::BTreeMap;
use std::time::Duration;

use hcl::edit::expr::{Expression as EditExpr, ObjectKey, TraversalOperator};
use hcl::edit::structure::Attribute;
use hcl::edit::Span;

use super::diag::{hint, Diagnostics, Location};
use super::expr::Expr;
use super::model::*;
use super::parse::Parser;
use crate::util::duration::parse_duration;

impl Parser<'_> {
    /// A value that must be known before any layer runs: no references, no functions.
    pub(super) fn literal(&mut self, a: &Attribute) -> Option<hcl::Value> {
        let mut scratch = Diagnostics::default();
        let e = Expr::from_edit(&a.value, self.map, &mut scratch);
        if !e.refs.is_empty() || !scratch.is_empty() {
            self.err(
                a.value.span(),
                format!(
                    "\"{}\" must be a literal value: it is read before any layer runs",
                    a.key.as_str()
                ),
            );
            return None;
        }
        match hcl::eval::Evaluate::evaluate(&e.expr, &hcl::eval::Context::new()) {
            Ok(v) => Some(v),
            Err(err) => {
                self.err(
                    a.value.span(),
                    format!("invalid value for \"{}\": {err}", a.key.as_str()),
                );
                None
            }
        }
    }

    pub(super) fn type_error(&mut self, a: &Attribute, expected: &str, found: &hcl::Value) {
        self.err(
            a.value.span(),
            format!(
                "\"{}\" must be {expected}, found {}",
                a.key.as_str(),
                type_name(found)
            ),
        );
    }

    pub(super) fn string(&mut self, a: &Attribute) -> Option<String> {
        match self.literal(a)? {
            hcl::Value::String(s) => Some(s),
            other => {
                self.type_error(a, "a string", &other);
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, a: &Attribute) -> Option<bool> {
        match self.literal(a)? {
            hcl::Value::Bool(b) => Some(b),
            other => {
                self.type_error(a, "true or false", &other);
                None
            }
        }
    }

    pub(super) fn number(&mut self, a: &Attribute) -> Option<u64> {
        match self.literal(a)? {
            hcl::Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            other => {
                self.type_error(a, "a whole number", &other);
                None
            }
        }
    }

    pub(super) fn duration(&mut self, a: &Attribute) -> Option<Duration> {
        let text = match self.literal(a)? {
            hcl::Value::String(s) => s,
            other => {
                self.type_error(a, "a duration such as \"30s\" or \"10m\"", &other);
                return None;
            }
        };
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(a.value.span(), format!("\"{}\": {e}", a.key.as_str()));
                None
            }
        }
    }

    pub(super) fn choice(
        &mut self,
        a: &Attribute,
        options: &[&'static str],
    ) -> Option<&'static str> {
        let text = self.string(a)?;
        match options.iter().find(|o| **o == text) {
            Some(o) => Some(o),
            None => {
                // `"a" or "b"`, `"a", "b" or "c"`.
                let quoted: Vec<String> = options.iter().map(|o| format!("\"{o}\"")).collect();
                let list = match quoted.split_last() {
                    Some((last, rest)) if !rest.is_empty() => {
                        format!("{} or {last}", rest.join(", "))
                    }
                    _ => quoted.join(""),
                };
                self.err(
                    a.value.span(),
                    format!(
                        "\"{}\" must be {list}, found \"{text}\"{}",
                        a.key.as_str(),
                        hint(&text, options.iter().copied())
                    ),
                );
                None
            }
        }
    }

    /// `{ key = expr, ... }`, each value an expression that may read upstream outputs.
    pub(super) fn map_expr(&mut self, a: &Attribute) -> BTreeMap<String, Expr> {
        let mut out = BTreeMap::new();
        let EditExpr::Object(obj) = &a.value else {
            self.err(
                a.value.span(),
                format!(
                    "\"{}\" must be an object: `{{ name = value, ... }}`",
                    a.key.as_str()
                ),
            );
            return out;
        };
        for (key, value) in obj.iter() {
            let (name, span) = match key {
                ObjectKey::Ident(id) => (id.as_str().to_string(), id.span()),
                ObjectKey::Expression(EditExpr::String(s)) => (s.as_str().to_string(), s.span()),
                ObjectKey::Expression(e) => {
                    self.err(
                        e.span(),
                        format!("keys of \"{}\" must be names or strings", a.key.as_str()),
                    );
                    continue;
                }
            };
            if out.contains_key(&name) {
                self.err(
                    span,
                    format!("\"{name}\" set twice in \"{}\"", a.key.as_str()),
                );
                continue;
            }
            let e = Expr::from_edit(value.expr(), self.map, self.diags);
            out.insert(name, e);
        }
        out
    }

    /// `[terraform.a, kubernetes.b]`.
    pub(super) fn depends_on(&mut self, a: &Attribute) -> Vec<DependsOn> {
        let EditExpr::Array(items) = &a.value else {
            self.err(
                a.value.span(),
                "\"depends_on\" must be a list of layers: `[terraform.NAME, kubernetes.NAME]`",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items.iter() {
            match traversal_path(item) {
                Some(path) if path.len() == 2 && LayerKind::parse(&path[0]).is_some() => {
                    let kind = LayerKind::parse(&path[0]).expect("checked");
                    out.push(DependsOn {
                        target: LayerId::new(kind, path[1].clone()),
                        location: self.at(item.span()),
                    });
                }
                _ => self.err(
                    item.span(),
                    "depends_on entries must be layers: terraform.NAME or kubernetes.NAME",
                ),
            }
        }
        out
    }

    /// `cluster.NAME`.
    pub(super) fn cluster_ref(&mut self, a: &Attribute) -> Option<(String, Location)> {
        match traversal_path(&a.value) {
            Some(path) if path.len() == 2 && path[0] == "cluster" => {
                Some((path[1].clone(), self.at(a.value.span())))
            }
            _ => {
                self.err(
                    a.value.span(),
                    "\"cluster\" must name a cluster block: `cluster = cluster.NAME`",
                );
                None
            }
        }
    }
}

/// `a.b.c` as `["a", "b", "c"]`, for plain attribute traversals only.
fn traversal_path(e: &EditExpr) -> Option<Vec<String>> {
    match e {
        EditExpr::Variable(v) => Some(vec![v.as_str().to_string()]),
        EditExpr::Traversal(t) => {
            let mut path = traversal_path(&t.expr)?;
            for op in &t.operators {
                match op.value() {
                    TraversalOperator::GetAttr(id) => path.push(id.as_str().to_string()),
                    _ => return None,
                }
            }
            Some(path)
        }
        _ => None,
    }
}

fn type_name(v: &hcl::Value) -> &'static str {
    match v {
        hcl::Value::Null => "null",
        hcl::Value::Bool(_) => "a bool",
        hcl::Value::Number(_) => "a number",
        hcl::Value::String(_) => "a string",
        hcl::Value::Array(_) => "a list",
        hcl::Value::Object(_) => "an object",
    }
}
