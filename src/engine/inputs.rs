//! Resolving a layer's inputs (vars, backend settings, cluster access) against the outputs known
//! so far, saying exactly what is still unknown.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::kube::cluster::Access;
use crate::redact::Redacted;
use crate::stack::{Cluster, Expr};
pub use crate::value::Waiting;
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

/// Everything a layer waits on; never empty, sorted, without repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WaitingOn(pub Vec<Waiting>);

/// `waiting on terraform.cluster (outputs.kubeconfig unknown until applied), ...`.
impl fmt::Display for WaitingOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("waiting on ")?;
        for (i, w) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{w}")?;
        }
        Ok(())
    }
}

/// Every unknown value among `values`; `None` when all are known.
/// A Terraform layer's inputs: its `vars` and its `backend_config`, resolved.
pub type TerraformInputs = (BTreeMap<String, InputValue>, BTreeMap<String, InputValue>);

/// Evaluates a Terraform layer's `vars` and `backend_config` against `known`; `Ok(Err(why))`
/// while any of them waits on an upstream output (nothing is guessed).
///
/// # Errors
/// An expression failed to evaluate (its place and why).
pub fn terraform_inputs(
    layer: &crate::stack::Layer,
    known: &Outputs,
) -> Result<Result<TerraformInputs, WaitingOn>, String> {
    let crate::stack::LayerSpec::Terraform(spec) = &layer.spec else {
        return Err(format!("{} is not a Terraform layer", layer.id));
    };
    let vars = eval_map(&layer.vars, known)?;
    let backend = eval_map(&spec.backend_config, known)?;
    Ok(match waiting_on(vars.values().chain(backend.values())) {
        Some(why) => Err(why),
        None => Ok((vars, backend)),
    })
}

pub fn waiting_on<'a>(values: impl Iterator<Item = &'a InputValue>) -> Option<WaitingOn> {
    let mut missing: Vec<Waiting> = values
        .filter_map(|v| match v {
            InputValue::Unknown(why) => Some(why.iter().cloned()),
            _ => None,
        })
        .flatten()
        .collect();
    missing.sort();
    missing.dedup();
    (!missing.is_empty()).then_some(WaitingOn(missing))
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
) -> Result<Result<Access, WaitingOn>, String> {
    if cluster.in_cluster {
        return Ok(Ok(Access::InCluster));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::LayerId;

    #[test]
    fn waiting_is_rendered_from_what_is_unknown_sorted_and_once() {
        let w = |layer: &str, output: &str| Waiting {
            on: LayerId::terraform(layer),
            output: output.into(),
        };
        let values = [
            InputValue::Unknown(vec![
                w("cluster", "outputs.kubeconfig"),
                w("network", "outputs"),
            ]),
            InputValue::Known(serde_json::json!("x")),
            InputValue::Unknown(vec![w("cluster", "outputs.kubeconfig")]),
        ];
        let w = waiting_on(values.iter()).unwrap();
        assert_eq!(
            w.0,
            [
                Waiting {
                    on: LayerId::terraform("cluster"),
                    output: "outputs.kubeconfig".into()
                },
                Waiting {
                    on: LayerId::terraform("network"),
                    output: "outputs".into()
                },
            ]
        );
        assert_eq!(
            w.to_string(),
            "waiting on terraform.cluster (outputs.kubeconfig unknown until applied), \
             terraform.network (outputs unknown until applied)"
        );
        assert_eq!(
            serde_json::to_value(&w).unwrap(),
            serde_json::json!([
                {"on": "terraform.cluster", "output": "outputs.kubeconfig"},
                {"on": "terraform.network", "output": "outputs"}
            ])
        );
        assert!(waiting_on([InputValue::Known(serde_json::json!(1))].iter()).is_none());
    }
}
