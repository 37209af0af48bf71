//! Values that flow between layers: Terraform outputs in, resolved inputs out.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::redact::Redacted;
use crate::stack::LayerId;

/// One output of an applied layer. Debug and Serialize print `***` for a sensitive value.
#[derive(Clone, PartialEq)]
pub struct Output {
    pub value: serde_json::Value,
    pub sensitive: bool,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Output");
        if self.sensitive {
            d.field("value", &crate::redact::MARKER);
        } else {
            d.field("value", &self.value);
        }
        d.field("sensitive", &self.sensitive).finish()
    }
}

/// Printed form: `{"value": ..., "sensitive": false}`, the value replaced by `***` when sensitive.
impl Serialize for Output {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Output", 2)?;
        if self.sensitive {
            st.serialize_field("value", crate::redact::MARKER)?;
        } else {
            st.serialize_field("value", &self.value)?;
        }
        st.serialize_field("sensitive", &self.sensitive)?;
        st.end()
    }
}

impl Output {
    pub fn plain(value: serde_json::Value) -> Output {
        Output {
            value,
            sensitive: false,
        }
    }

    pub fn sensitive(value: serde_json::Value) -> Output {
        Output {
            value,
            sensitive: true,
        }
    }

    /// The value as an input: wrapped in [`Redacted`] when sensitive.
    pub fn to_input(&self) -> InputValue {
        if self.sensitive {
            InputValue::Sensitive(Redacted::new(self.value.clone()))
        } else {
            InputValue::Known(self.value.clone())
        }
    }
}

/// The outputs of the layers that have been applied (or whose state is known), by layer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outputs {
    layers: BTreeMap<LayerId, BTreeMap<String, Output>>,
    /// Outputs of known layers whose new value is not known until the layer is applied.
    unknown: std::collections::BTreeSet<(LayerId, String)>,
}

impl Outputs {
    pub fn new() -> Outputs {
        Outputs::default()
    }

    /// Records the outputs of one layer, replacing what was known of it.
    pub fn insert(&mut self, layer: LayerId, outputs: BTreeMap<String, Output>) {
        self.unknown.retain(|(l, _)| *l != layer);
        self.layers.insert(layer, outputs);
    }

    /// Marks one output of a known layer as unknown until applied (a plan changes it).
    pub fn mark_unknown(&mut self, layer: &LayerId, output: &str) {
        self.unknown.insert((layer.clone(), output.to_string()));
    }

    /// Whether `output` of `layer` (any output when `None`) is marked unknown.
    pub fn is_unknown(&self, layer: &LayerId, output: Option<&str>) -> bool {
        self.unknown
            .iter()
            .any(|(l, o)| l == layer && output.is_none_or(|n| n == o))
    }

    /// The outputs of `layer`, or `None` while they are unknown (the layer has not been applied).
    pub fn layer(&self, layer: &LayerId) -> Option<&BTreeMap<String, Output>> {
        self.layers.get(layer)
    }

    pub fn remove(&mut self, layer: &LayerId) {
        self.unknown.retain(|(l, _)| l != layer);
        self.layers.remove(layer);
    }
}

/// The value of one input (a var, a backend setting, a kubeconfig) once references are resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum InputValue {
    Known(serde_json::Value),
    /// Derived from at least one sensitive output: never printed.
    Sensitive(Redacted<serde_json::Value>),
    /// Depends on outputs not known yet: every one of them, never empty.
    Unknown(Vec<Waiting>),
}

/// One input that is not known yet: an output of an upstream layer that has not been applied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Waiting {
    /// The upstream layer.
    pub on: LayerId,
    /// What is read from it: `outputs.kubeconfig`, or `outputs` for all of them.
    pub output: String,
}

impl Waiting {
    /// `terraform.cluster outputs.kubeconfig`, as messages name it.
    pub fn reference(&self) -> String {
        format!("{} {}", self.on, self.output)
    }
}

/// `terraform.cluster (outputs.kubeconfig unknown until applied)`.
impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} unknown until applied)", self.on, self.output)
    }
}

/// `terraform.cluster outputs.kubeconfig, terraform.db outputs.host`.
pub fn references(why: &[Waiting]) -> String {
    why.iter()
        .map(Waiting::reference)
        .collect::<Vec<_>>()
        .join(", ")
}

impl InputValue {
    pub fn is_unknown(&self) -> bool {
        matches!(self, InputValue::Unknown(_))
    }

    pub fn is_sensitive(&self) -> bool {
        matches!(self, InputValue::Sensitive(_))
    }

    /// The value, exposed: only for the places a secret may go (var files, Secret manifests).
    pub fn expose(&self) -> Option<&serde_json::Value> {
        match self {
            InputValue::Known(v) => Some(v),
            InputValue::Sensitive(v) => Some(v.expose()),
            InputValue::Unknown(_) => None,
        }
    }
}

/// Printed form: the value, `***`, or `(unknown until applied: ...)`.
impl Serialize for InputValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            InputValue::Known(v) => v.serialize(s),
            InputValue::Sensitive(v) => v.serialize(s),
            InputValue::Unknown(why) => s.collect_str(&format_args!(
                "(unknown until applied: {})",
                references(why)
            )),
        }
    }
}
