//! A Terraform layer's plan as data, read from `terraform show -json PLANFILE`. Sensitive values
//! never enter it: they are replaced by [`Shown::Sensitive`] while reading.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use crate::stack::LayerId;

/// What a plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanMode {
    /// Converge to the configuration (with refresh: this is also terradiff).
    #[default]
    Normal,
    /// Destroy everything the layer manages.
    Destroy,
}

/// What happens to one resource or output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Create,
    Update,
    Delete,
    /// Delete then create, or create then delete (`create_before_destroy`).
    Replace,
    Read,
    NoOp,
}

impl Action {
    /// From terraform's `actions` list: `["create"]`, `["update"]`, `["delete"]`, `["read"]`,
    /// `["delete", "create"]` or `["create", "delete"]` (replace), `["no-op"]`. A list terraform
    /// does not document counts as no-op.
    pub fn from_actions(actions: &[Value]) -> Action {
        let a: Vec<&str> = actions.iter().filter_map(Value::as_str).collect();
        match a.as_slice() {
            ["create"] => Action::Create,
            ["update"] => Action::Update,
            ["delete"] => Action::Delete,
            ["delete", "create"] | ["create", "delete"] => Action::Replace,
            ["read"] => Action::Read,
            _ => Action::NoOp,
        }
    }

    /// `+`, `~`, `-`, `-/+`, `<=`, or a space for no-op.
    pub fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Delete => "-",
            Action::Replace => "-/+",
            Action::Read => "<=",
            Action::NoOp => " ",
        }
    }
}

/// A value as strata may show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shown {
    Value(Value),
    /// Marked sensitive by terraform: never shown.
    Sensitive,
    /// Known only after apply.
    Unknown,
    /// Not there (before a create, after a delete).
    Absent,
}

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shown::Value(v) => write!(f, "{v}"),
            Shown::Sensitive => f.write_str("(sensitive value)"),
            Shown::Unknown => f.write_str("(known after apply)"),
            Shown::Absent => f.write_str("(none)"),
        }
    }
}

/// One top-level attribute that changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeChange {
    pub name: String,
    pub before: Shown,
    pub after: Shown,
    /// This attribute forces the resource to be replaced.
    pub forces_replacement: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceChange {
    pub address: String,
    pub action: Action,
    /// terraform's `action_reason`, when it gives one (`replace_because_tainted`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// terraform's own `actions` list, as given (`["delete", "create"]`).
    pub terraform_actions: Vec<String>,
    pub attributes: Vec<AttributeChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputChange {
    pub name: String,
    pub action: Action,
    /// terraform's own `actions` list, as given.
    pub terraform_actions: Vec<String>,
    pub sensitive: bool,
    pub before: Shown,
    pub after: Shown,
}

/// Counts as terraform's summary gives them: a replace counts as one add and one destroy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Counts {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
    pub replace: usize,
    pub read: usize,
}

impl std::fmt::Display for Counts {
    /// `+3 ~1 -0`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "+{} ~{} -{}", self.add, self.change, self.destroy)
    }
}

/// The plan of one Terraform layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerPlan {
    pub layer: LayerId,
    pub mode: PlanMode,
    /// The revision and inputs the plan was made from; applying it elsewhere is refused.
    pub revision: String,
    pub inputs_hash: String,
    /// terraform's `-detailed-exitcode` said 2.
    pub has_changes: bool,
    pub counts: Counts,
    /// Resources with an action other than no-op.
    pub resources: Vec<ResourceChange>,
    /// Outputs with an action other than no-op.
    pub outputs: Vec<OutputChange>,
    pub terraform_version: String,
    /// What an approval names: the digest of every change this plan makes (see
    /// [`crate::hash::plan_digest`]).
    pub digest: String,
    /// Every root-module output as it will be once this plan is applied, when the plan knows
    /// them all: the apply then need not run `terraform output`. Held in memory only; a
    /// sensitive value stays wrapped ([`crate::value::Output`] prints `***`).
    #[serde(skip)]
    pub(crate) known_outputs: Option<KnownOutputs>,
    #[serde(skip)]
    pub(crate) plan_file: PathBuf,
}

impl LayerPlan {
    /// Reads `show -json` output. Nothing sensitive is kept.
    pub(crate) fn from_show_json(
        json: &Value,
        layer: LayerId,
        mode: PlanMode,
        revision: String,
        inputs_hash: String,
        has_changes: bool,
        plan_file: PathBuf,
    ) -> LayerPlan {
        let mut counts = Counts::default();
        let mut resources = Vec::new();
        for rc in json["resource_changes"].as_array().into_iter().flatten() {
            let change = &rc["change"];
            let action = Action::from_actions(change["actions"].as_array().map_or(&[][..], |v| v));
            match action {
                Action::Create => counts.add += 1,
                Action::Update => counts.change += 1,
                Action::Delete => counts.destroy += 1,
                Action::Replace => {
                    counts.add += 1;
                    counts.destroy += 1;
                    counts.replace += 1;
                }
                Action::Read => counts.read += 1,
                Action::NoOp => continue,
            }
            resources.push(ResourceChange {
                address: rc["address"].as_str().unwrap_or_default().to_string(),
                action,
                reason: rc["action_reason"].as_str().map(str::to_string),
                terraform_actions: action_list(&change["actions"]),
                attributes: attribute_changes(change),
            });
        }
        let mut outputs = Vec::new();
        if let Some(map) = json["output_changes"].as_object() {
            for (name, oc) in map {
                let action = Action::from_actions(oc["actions"].as_array().map_or(&[][..], |v| v));
                if action == Action::NoOp {
                    continue;
                }
                let sensitive = truthy(&oc["before_sensitive"]) || truthy(&oc["after_sensitive"]);
                let (before, after) = if sensitive {
                    (Shown::Sensitive, Shown::Sensitive)
                } else {
                    (
                        shown(
                            &oc["before"],
                            &Value::Bool(false),
                            &Value::Bool(false),
                            oc.get("before").is_some(),
                        ),
                        shown(
                            &oc["after"],
                            &Value::Bool(false),
                            &oc["after_unknown"],
                            true,
                        ),
                    )
                };
                outputs.push(OutputChange {
                    name: name.clone(),
                    action,
                    terraform_actions: action_list(&oc["actions"]),
                    sensitive,
                    before,
                    after,
                });
            }
        }
        LayerPlan {
            digest: digest(json, &layer),
            known_outputs: known_outputs(json),
            layer,
            mode,
            revision,
            inputs_hash,
            has_changes,
            counts,
            resources,
            outputs,
            terraform_version: json["terraform_version"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            plan_file,
        }
    }
}

/// Outputs a plan knows. Debug names them only: a value derived from a sensitive input is not
/// marked sensitive until the apply taints it, and plans are printed in tests and logs.
#[derive(Clone, PartialEq)]
pub(crate) struct KnownOutputs(pub(crate) std::collections::BTreeMap<String, crate::value::Output>);

impl std::fmt::Debug for KnownOutputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// The root module's outputs after the plan is applied, from its `planned_values`; `None` when
/// any of them (or any part of one) is unknown until apply, or the plan says nothing of them.
/// terraform refuses an apply whose results differ from the known planned values, so these are
/// what `terraform output` would print afterwards.
fn known_outputs(json: &Value) -> Option<KnownOutputs> {
    let planned = json.get("planned_values")?;
    if let Some(changes) = json["output_changes"].as_object() {
        if changes.values().any(|c| truthy(&c["after_unknown"])) {
            return None;
        }
    }
    let empty = serde_json::Map::new();
    let outputs = planned
        .get("outputs")
        .map_or(Some(&empty), Value::as_object)?;
    outputs
        .iter()
        .map(|(name, o)| {
            // Sensitive when the module says so, or when terraform found a sensitive value in it.
            let sensitive = o["sensitive"].as_bool().unwrap_or(false)
                || truthy(&json["output_changes"][name.as_str()]["after_sensitive"]);
            Some((
                name.clone(),
                crate::value::Output {
                    value: o.get("value")?.clone(),
                    sensitive,
                },
            ))
        })
        .collect::<Option<_>>()
        .map(KnownOutputs)
}

/// The digest of what a plan does: each resource change (address, actions, before, after,
/// what stays unknown) and each output change, no-ops left out. Two plans that would do the same
/// to the same state have the same digest, whenever and wherever they were made; any other
/// difference (a value, an action, a resource refreshed differently) changes it. Sensitive
/// values are hashed with the rest and never kept.
fn digest(json: &Value, layer: &LayerId) -> String {
    let mut h = crate::hash::Hasher::new();
    h.part("layer", layer.to_string().as_bytes());
    let noop = |c: &Value| c["actions"] == serde_json::json!(["no-op"]);
    for rc in json["resource_changes"].as_array().into_iter().flatten() {
        let c = &rc["change"];
        if noop(c) {
            continue;
        }
        let address = rc["address"].as_str().unwrap_or_default();
        h.part("resource", address.as_bytes());
        h.part("change", &what_changes(c));
    }
    if let Some(map) = json["output_changes"].as_object() {
        let mut names: Vec<&String> = map.keys().collect();
        names.sort();
        for name in names {
            if noop(&map[name]) {
                continue;
            }
            h.part("output", name.as_bytes());
            h.part("change", &what_changes(&map[name]));
        }
    }
    crate::hash::plan_digest(&h)
}

/// What one change of a plan does, for its digest: actions, before, after, what stays unknown.
fn what_changes(c: &Value) -> Vec<u8> {
    serde_json::json!({
        "actions": c["actions"],
        "before": c["before"],
        "after": c["after"],
        "after_unknown": c["after_unknown"],
    })
    .to_string()
    .into_bytes()
}

impl LayerPlan {
    /// Hides every shown value that holds a secret strata knows of (a sensitive input that the
    /// module did not mark sensitive itself).
    pub(crate) fn scrub(&mut self, redactor: &crate::redact::Redactor) {
        let hide = |s: &mut Shown| {
            if let Shown::Value(v) = s {
                if redactor.contains_secret(&v.to_string()) {
                    *s = Shown::Sensitive;
                }
            }
        };
        for r in &mut self.resources {
            for a in &mut r.attributes {
                hide(&mut a.before);
                hide(&mut a.after);
            }
        }
        for o in &mut self.outputs {
            hide(&mut o.before);
            hide(&mut o.after);
            if matches!(o.after, Shown::Sensitive) {
                o.sensitive = true;
            }
        }
    }
}

/// terraform's `actions` list as strings.
fn action_list(actions: &Value) -> Vec<String> {
    actions
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// Whether a sensitivity or unknown marker says "yes" anywhere inside.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Array(a) => a.iter().any(truthy),
        Value::Object(o) => o.values().any(truthy),
        _ => false,
    }
}

fn shown(value: &Value, sensitive: &Value, unknown: &Value, present: bool) -> Shown {
    if truthy(sensitive) {
        Shown::Sensitive
    } else if truthy(unknown) {
        Shown::Unknown
    } else if !present || value.is_null() {
        Shown::Absent
    } else {
        Shown::Value(value.clone())
    }
}

/// The top-level attributes whose value changes, sensitive ones hidden.
fn attribute_changes(change: &Value) -> Vec<AttributeChange> {
    let empty = serde_json::Map::new();
    let before = change["before"].as_object().unwrap_or(&empty);
    let after = change["after"].as_object().unwrap_or(&empty);
    let replace_paths: Vec<String> = change["replace_paths"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_array()?.first()?.as_str().map(str::to_string))
        .collect();
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    if let Some(u) = change["after_unknown"].as_object() {
        names.extend(u.keys());
    }
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let b = before.get(name).unwrap_or(&Value::Null);
        let a = after.get(name).unwrap_or(&Value::Null);
        let unknown = &change["after_unknown"][name.as_str()];
        if b == a && !truthy(unknown) {
            continue;
        }
        out.push(AttributeChange {
            name: name.clone(),
            before: shown(
                b,
                &change["before_sensitive"][name.as_str()],
                &Value::Bool(false),
                before.contains_key(name),
            ),
            after: shown(
                a,
                &change["after_sensitive"][name.as_str()],
                unknown,
                after.contains_key(name),
            ),
            forces_replacement: replace_paths.iter().any(|p| p == name),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(json: Value) -> LayerPlan {
        LayerPlan::from_show_json(
            &json,
            LayerId::terraform("t"),
            PlanMode::Normal,
            "rev".into(),
            "h".into(),
            true,
            PathBuf::new(),
        )
    }

    #[test]
    fn outputs_the_plan_knows_spare_a_terraform_output() {
        let known = plan(json!({
            "planned_values": {"outputs": {
                "id": {"sensitive": false, "value": "abc"},
                "token": {"sensitive": true, "value": "planted"}
            }},
            "output_changes": {"id": {"actions": ["create"], "after": "abc", "after_unknown": false}}
        }));
        let o = &known.known_outputs.as_ref().unwrap().0;
        assert_eq!(o["id"], crate::value::Output::plain(json!("abc")));
        assert!(o["token"].sensitive);
        assert!(!format!("{known:?}").contains("planted"), "{known:?}");
        let shown = format!("{:?}", known.known_outputs);
        assert_eq!(shown, r#"Some({"id", "token"})"#, "names only");
        // Made sensitive by a sensitive input, though the module did not say so.
        let derived = plan(json!({
            "planned_values": {"outputs": {"echo": {"sensitive": false, "value": "planted"}}},
            "output_changes": {"echo": {"actions": ["create"], "after": "planted", "after_unknown": false, "after_sensitive": true}}
        }));
        assert!(derived.known_outputs.unwrap().0["echo"].sensitive);
        // No outputs at all: known, and empty.
        let none = plan(json!({"planned_values": {"root_module": {}}}));
        assert_eq!(none.known_outputs.map(|o| o.0.len()), Some(0));
        // One unknown until apply (absent value, or an unknown part): read after the apply.
        let unknown = plan(json!({
            "planned_values": {"outputs": {"id": {"sensitive": false}}},
            "output_changes": {"id": {"actions": ["create"], "after_unknown": true}}
        }));
        assert!(unknown.known_outputs.is_none());
        let partly = plan(json!({
            "planned_values": {"outputs": {"o": {"sensitive": false, "value": {"a": 1}}}},
            "output_changes": {"o": {"actions": ["create"], "after": {"a": 1}, "after_unknown": {"b": true}}}
        }));
        assert!(partly.known_outputs.is_none());
        assert!(plan(json!({})).known_outputs.is_none(), "no planned values");
    }

    #[test]
    fn the_digest_names_what_the_plan_does_and_nothing_else() {
        let base = json!({
            "terraform_version": "1.0.3",
            "resource_changes": [
                {"address": "a.x", "change": {"actions": ["update"], "before": {"k": 1}, "after": {"k": 2}}},
                {"address": "a.z", "change": {"actions": ["no-op"], "before": {"n": 1}, "after": {"n": 1}}}
            ],
            "output_changes": {"o": {"actions": ["update"], "before": "a", "after": "b"}}
        });
        let d = plan(base.clone()).digest;
        assert_eq!(d.len(), 16);
        let mut other_version = base.clone();
        other_version["terraform_version"] = json!("1.11.0");
        other_version["resource_changes"][1]["change"]["before"] = json!({"n": 2});
        assert_eq!(
            plan(other_version).digest,
            d,
            "no-ops and versions are not the plan"
        );
        for (path, value) in [
            ("/resource_changes/0/change/after/k", json!(3)),
            ("/resource_changes/0/change/before/k", json!(0)),
            (
                "/resource_changes/0/change/actions",
                json!(["delete", "create"]),
            ),
            ("/output_changes/o/after", json!("c")),
        ] {
            let mut changed = base.clone();
            *changed.pointer_mut(path).unwrap() = value;
            assert_ne!(plan(changed).digest, d, "{path}");
        }
        let other_layer = LayerPlan::from_show_json(
            &base,
            LayerId::terraform("u"),
            PlanMode::Normal,
            "rev".into(),
            "h".into(),
            true,
            PathBuf::new(),
        );
        assert_ne!(other_layer.digest, d, "a digest is one layer's");
    }

    #[test]
    fn actions_are_counted_like_terraforms_summary() {
        let p = plan(json!({"resource_changes": [
            {"address": "a.x", "change": {"actions": ["create"], "before": null, "after": {"k": 1}, "after_unknown": {"id": true}}},
            {"address": "a.y", "change": {"actions": ["delete", "create"], "before": {"k": 1}, "after": {"k": 2}, "replace_paths": [["k"]]}},
            {"address": "a.z", "change": {"actions": ["no-op"], "before": {}, "after": {}}},
            {"address": "a.w", "change": {"actions": ["update"], "before": {"k": 1}, "after": {"k": 3}}}
        ]}));
        assert_eq!(
            p.counts,
            Counts {
                add: 2,
                change: 1,
                destroy: 1,
                replace: 1,
                read: 0
            }
        );
        assert_eq!(p.counts.to_string(), "+2 ~1 -1");
        assert_eq!(p.resources.len(), 3);
        let y = &p.resources[1];
        assert_eq!(y.action, Action::Replace);
        assert_eq!(y.terraform_actions, ["delete", "create"]);
        assert_eq!(y.attributes[0].name, "k");
        assert!(y.attributes[0].forces_replacement);
        assert_eq!(
            p.resources[0]
                .attributes
                .iter()
                .find(|a| a.name == "id")
                .unwrap()
                .after,
            Shown::Unknown
        );
    }

    #[test]
    fn every_documented_action_list_has_one_action() {
        let cases: [(Value, Action); 7] = [
            (json!(["create"]), Action::Create),
            (json!(["update"]), Action::Update),
            (json!(["delete"]), Action::Delete),
            (json!(["delete", "create"]), Action::Replace),
            (json!(["create", "delete"]), Action::Replace),
            (json!(["read"]), Action::Read),
            (json!(["no-op"]), Action::NoOp),
        ];
        for (list, action) in cases {
            assert_eq!(
                Action::from_actions(list.as_array().unwrap()),
                action,
                "{list}"
            );
        }
    }

    #[test]
    fn sensitive_values_never_enter_the_plan() {
        let p = plan(json!({
            "resource_changes": [{"address": "a.s", "change": {
                "actions": ["update"],
                "before": {"password": "old-planted-secret", "name": "n"},
                "after": {"password": "new-planted-secret", "name": "m"},
                "before_sensitive": {"password": true}, "after_sensitive": {"password": true}}}],
            "output_changes": {"token": {"actions": ["create"], "before": null, "after": "planted-token",
                                         "before_sensitive": false, "after_sensitive": true}}
        }));
        let text = format!("{p:?} {}", serde_json::to_string(&p).unwrap());
        for secret in ["old-planted-secret", "new-planted-secret", "planted-token"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(p.outputs[0].after, Shown::Sensitive);
        assert_eq!(p.resources[0].attributes[0].name, "name");
        assert_eq!(p.resources[0].attributes[1].before, Shown::Sensitive);
    }
}
