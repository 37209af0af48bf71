//! Resolving a layer's inputs (vars, backend settings, cluster access) against the outputs known
//! so far, saying exactly what is still unknown.

use std::collections::BTreeMap;

use crate::kube::cluster::Access;
use crate::redact::Redacted;
use crate::stack::{Cluster, Expr};
use crate::value::{InputValue, Outputs};

/// A map of expressions, evaluated; the first evaluation error is returned as text.
pub fn eval_map(
    exprs: &BTreeMap<String, Expr>,
    known: &Outputs,
) -> Result<BTreeMap<String, InputValue>, String> {
    exprs
        .iter()
        .map(|(k, e)| {
            e.evaluate(known)
                .map(|v| (k.clone(), v))
                .map_err(|err| err.to_string())
        })
        .collect()
}

/// `waiting on terraform.cluster (outputs.kubeconfig unknown until applied)`, for every unknown
/// value among `values`; `None` when all are known.
pub fn waiting_on<'a>(values: impl Iterator<Item = &'a InputValue>) -> Option<String> {
    let mut missing: Vec<String> = values
        .filter_map(|v| match v {
            InputValue::Unknown(why) => Some(why.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    missing.sort();
    missing.dedup();
    if missing.is_empty() {
        return None;
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|m| match m.split_once(' ') {
            Some((layer, output)) => format!("{layer} ({output} unknown until applied)"),
            None => m.clone(),
        })
        .collect();
    Some(format!("waiting on {}", parts.join(", ")))
}

fn text(v: &InputValue) -> Option<Redacted<String>> {
    let s = match v.expose()? {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(Redacted::new(s))
}

/// How to reach a cluster block's cluster, or what it waits on.
pub fn cluster_access(
    cluster: &Cluster,
    known: &Outputs,
) -> Result<Result<Access, String>, String> {
    let eval = |e: &Option<Expr>| -> Result<Option<InputValue>, String> {
        e.as_ref()
            .map(|e| e.evaluate(known).map_err(|err| err.to_string()))
            .transpose()
    };
    let kubeconfig = eval(&cluster.kubeconfig)?;
    let path = eval(&cluster.kubeconfig_path)?;
    let context = eval(&cluster.context)?;
    if let Some(w) = waiting_on([&kubeconfig, &path, &context].into_iter().flatten()) {
        return Ok(Err(w));
    }
    let context = context.as_ref().and_then(text).map(|c| c.expose().clone());
    if let Some(k) = kubeconfig {
        let content = text(&k).unwrap_or_default();
        if content.expose().trim().is_empty() {
            return Err(format!(
                "cluster \"{}\": its kubeconfig is empty",
                cluster.name
            ));
        }
        return Ok(Ok(Access::Content { content, context }));
    }
    if let Some(p) = path.as_ref().and_then(text) {
        return Ok(Ok(Access::Path {
            path: p.expose().into(),
            context,
        }));
    }
    Err(format!("cluster \"{}\" has no kubeconfig", cluster.name))
}
