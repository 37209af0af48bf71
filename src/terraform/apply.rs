//! The result of applying a layer, and its outputs as read from `terraform output -json`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::error::{Step, TerraformError};
use super::exec::Limits;
use super::{InitOutcome, Prepared, Terraform};
use crate::redact::Redactor;
use crate::stack::LayerId;
use crate::value::Output;

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Applied {
    pub layer: LayerId,
    pub revision: String,
    pub inputs_hash: String,
    /// The outputs after the apply; sensitive ones print as `***`.
    pub outputs: BTreeMap<String, Output>,
    #[serde(with = "crate::stack::model::duration_text")]
    pub duration: Duration,
}

impl Terraform {
    /// The layer's current outputs, from its state (for a layer that need not be applied).
    pub async fn outputs(
        &self,
        p: &mut Prepared,
        cancel: &CancellationToken,
    ) -> Result<BTreeMap<String, Output>, TerraformError> {
        let limits = self.limits(p, cancel);
        self.settle(p, &limits, false).await?;
        if p.init == InitOutcome::Pending {
            self.init(p, &limits).await?;
        }
        let mut outputs = self.read_outputs(p, &limits).await?;
        taint(&mut outputs, &p.redactor);
        Ok(outputs)
    }

    pub(super) async fn read_outputs(
        &self,
        p: &Prepared,
        limits: &Limits<'_>,
    ) -> Result<BTreeMap<String, Output>, TerraformError> {
        let args = vec!["output".into(), "-json".into(), "-no-color".into()];
        let out = self.run(p, Step::Output, args, false, limits).await?;
        if out.code != 0 {
            return Err(Self::failed(p, Step::Output, &out));
        }
        parse_outputs(&out.stdout).map_err(|message| TerraformError::Failed {
            layer: p.layer.clone(),
            step: Step::Output,
            message,
        })
    }
}

/// An output that carries a sensitive input's value is sensitive too, whether or not the module
/// says so.
pub(super) fn taint(outputs: &mut BTreeMap<String, Output>, redactor: &Redactor) {
    for o in outputs.values_mut() {
        if !o.sensitive && redactor.contains_secret(&o.value.to_string()) {
            o.sensitive = true;
        }
    }
}

/// Reads `terraform output -json`: `{"name": {"value": ..., "type": ..., "sensitive": bool}}`.
pub(crate) fn parse_outputs(stdout: &str) -> Result<BTreeMap<String, Output>, String> {
    let json: serde_json::Value = serde_json::from_str(stdout).map_err(|e| {
        format!("`terraform output -json` printed something that is not JSON ({e})")
    })?;
    let map = json
        .as_object()
        .ok_or("`terraform output -json` printed JSON that is not an object")?;
    Ok(map
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Output {
                    value: v["value"].clone(),
                    sensitive: v["sensitive"].as_bool().unwrap_or(false),
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_keep_their_sensitive_flag() {
        let o = parse_outputs(r#"{"a":{"value":"x","type":"string","sensitive":false},"s":{"value":"planted","type":"string","sensitive":true}}"#).unwrap();
        assert_eq!(o["a"], Output::plain("x".into()));
        assert!(o["s"].sensitive);
        assert!(!format!("{o:?}").contains("planted"));
        assert!(parse_outputs("nope").is_err());
    }
}
