//! The result of applying a layer, and its outputs as read from `terraform output -json`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

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
