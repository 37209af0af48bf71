//! One change of a plan, an apply or a drift check, in a form a program can read: what it
//! touches (a Terraform resource or output, a Kubernetes object), what happens to it, and why.
//! Both layer kinds speak their own vocabulary; this is the one the reports share.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::kube::{self as k8s, DiffState, ObjRef};
use crate::terraform::{self as tf, OutputChange, ResourceChange};

/// What a change does, whatever the layer kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeAction {
    Create,
    Update,
    Delete,
    /// Delete and create again, in either order.
    Replace,
    /// A data source read.
    Read,
    /// Listed but left alone, with a reason (a Kubernetes object that is not pruned).
    Noop,
}

impl From<tf::Action> for ChangeAction {
    fn from(a: tf::Action) -> ChangeAction {
        match a {
            tf::Action::Create => ChangeAction::Create,
            tf::Action::Update => ChangeAction::Update,
            tf::Action::Delete => ChangeAction::Delete,
            tf::Action::Replace => ChangeAction::Replace,
            tf::Action::Read => ChangeAction::Read,
            tf::Action::NoOp => ChangeAction::Noop,
        }
    }
}

impl From<k8s::Action> for ChangeAction {
    fn from(a: k8s::Action) -> ChangeAction {
        match a {
            k8s::Action::Created => ChangeAction::Create,
            k8s::Action::Configured => ChangeAction::Update,
            k8s::Action::Deleted => ChangeAction::Delete,
            k8s::Action::Recreated => ChangeAction::Replace,
            k8s::Action::Unchanged | k8s::Action::Skipped => ChangeAction::Noop,
        }
    }
}

/// What a change touches. Serialized untagged: the fields say which kind it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Target {
    /// A Terraform resource, by its full address (`module.db.null_resource.server[0]`).
    Resource { address: String },
    /// A root-module output of a Terraform layer.
    Output { output: String },
    /// A Kubernetes object.
    Object {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        api_version: Option<String>,
        kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
        name: String,
    },
}

impl From<&ObjRef> for Target {
    fn from(r: &ObjRef) -> Target {
        let some = |s: String| (!s.is_empty()).then_some(s);
        Target::Object {
            api_version: some(r.api_version()),
            kind: r.kind.clone(),
            namespace: some(r.namespace.clone()),
            name: r.name.clone(),
        }
    }
}

/// `null_resource.server`, `output.subnet_id`, `ConfigMap/platform/settings`, `Namespace/apps`.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Resource { address } => f.write_str(address),
            Target::Output { output } => write!(f, "output.{output}"),
            Target::Object {
                kind,
                namespace: Some(ns),
                name,
                ..
            } => write!(f, "{kind}/{ns}/{name}"),
            Target::Object { kind, name, .. } => write!(f, "{kind}/{name}"),
        }
    }
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub target: Target,
    pub action: ChangeAction,
    /// Terraform's `action_reason` (`replace_because_tainted`), or the Kubernetes layer's own
    /// reason (`an immutable field changed`, `not pruned: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Terraform's own `actions` list, as its plan gives it (`["delete", "create"]`), so that
    /// the order of a replacement is not lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terraform_actions: Option<Vec<String>>,
    /// For an updated Kubernetes object: each field that changes, before (`live`) → after
    /// (`desired`); Secret values and sensitive values are masked (`***`, `*** (changed)`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<k8s::diff::FieldDiff>,
    /// For a replaced Terraform resource: the attributes that force the replacement (the plan's
    /// `replace_paths`, by top-level attribute).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forces_replacement: Vec<String>,
    /// For a Kubernetes object: fields another manager changed out of band and Git did not,
    /// left to it (`drift = "report"`); they show as drift.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<k8s::conflicts::Kept>,
    /// For a Kubernetes object: fields another manager held and Git changed, taken from it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taken: Vec<k8s::conflicts::Taken>,
}

impl From<&ResourceChange> for Change {
    fn from(r: &ResourceChange) -> Change {
        Change {
            target: Target::Resource {
                address: r.address.clone(),
            },
            action: r.action.into(),
            reason: r.reason.clone(),
            terraform_actions: Some(r.terraform_actions.clone()),
            fields: Vec::new(),
            forces_replacement: r
                .attributes
                .iter()
                .filter(|a| a.forces_replacement)
                .map(|a| a.name.clone())
                .collect(),
            kept: Vec::new(),
            taken: Vec::new(),
        }
    }
}

impl From<&OutputChange> for Change {
    fn from(o: &OutputChange) -> Change {
        Change {
            target: Target::Output {
                output: o.name.clone(),
            },
            action: o.action.into(),
            reason: None,
            terraform_actions: Some(o.terraform_actions.clone()),
            fields: Vec::new(),
            forces_replacement: Vec::new(),
            kept: Vec::new(),
            taken: Vec::new(),
        }
    }
}

impl From<&k8s::Change> for Change {
    fn from(c: &k8s::Change) -> Change {
        Change {
            target: (&c.object).into(),
            action: c.action.into(),
            reason: c.reason.clone(),
            terraform_actions: None,
            fields: c.fields.clone(),
            forces_replacement: Vec::new(),
            kept: c.kept.clone(),
            taken: c.taken.clone(),
        }
    }
}

impl From<&k8s::ObjectDiff> for Change {
    /// What an apply would do about a drifted object.
    fn from(o: &k8s::ObjectDiff) -> Change {
        let (action, reason) = match o.state {
            DiffState::Missing => (ChangeAction::Create, "missing from the cluster"),
            DiffState::Changed => (ChangeAction::Update, "changed in the cluster"),
            DiffState::Extra => (ChangeAction::Delete, "no longer in Git"),
        };
        Change {
            target: (&o.object).into(),
            action,
            reason: Some(reason.into()),
            terraform_actions: None,
            fields: o.fields.clone(),
            forces_replacement: Vec::new(),
            kept: Vec::new(),
            taken: Vec::new(),
        }
    }
}

/// A Terraform plan's changes: resources first, then outputs, in plan order.
pub fn of_terraform(plan: &tf::LayerPlan) -> Vec<Change> {
    let resources = plan.resources.iter().map(Change::from);
    resources
        .chain(plan.outputs.iter().map(Change::from))
        .collect()
}

/// A Kubernetes change set's changes, unchanged objects left out (but for those with fields left
/// to other managers: that drift is shown).
pub fn of_kubernetes(cs: &k8s::ChangeSet) -> Vec<Change> {
    cs.changes
        .iter()
        .filter(|c| c.action != k8s::Action::Unchanged || !c.kept.is_empty())
        .map(Change::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn resource(actions: &[&str]) -> Change {
        let list: Vec<Value> = actions.iter().map(|a| json!(a)).collect();
        let r = ResourceChange {
            address: "module.app.null_resource.server[\"a\"]".into(),
            action: tf::Action::from_actions(&list),
            reason: None,
            terraform_actions: actions.iter().map(|a| a.to_string()).collect(),
            attributes: vec![],
        };
        Change::from(&r)
    }

    #[test]
    fn every_terraform_action_list_maps_to_one_action_and_is_kept_as_given() {
        let cases: [(&[&str], ChangeAction, &str); 7] = [
            (&["create"], ChangeAction::Create, "create"),
            (&["update"], ChangeAction::Update, "update"),
            (&["delete"], ChangeAction::Delete, "delete"),
            (&["delete", "create"], ChangeAction::Replace, "replace"),
            (&["create", "delete"], ChangeAction::Replace, "replace"),
            (&["read"], ChangeAction::Read, "read"),
            (&["no-op"], ChangeAction::Noop, "noop"),
        ];
        for (actions, action, name) in cases {
            let c = resource(actions);
            assert_eq!(c.action, action, "{actions:?}");
            let v = serde_json::to_value(&c).unwrap();
            assert_eq!(v["action"], name, "{actions:?}");
            assert_eq!(v["terraform_actions"], json!(actions), "{actions:?}");
            assert_eq!(
                v["target"],
                json!({"address": "module.app.null_resource.server[\"a\"]"})
            );
            assert_eq!(serde_json::from_value::<Change>(v).unwrap(), c);
        }
    }

    #[test]
    fn kubernetes_objects_name_their_kind_namespace_and_api_version() {
        let mut cs = k8s::ChangeSet::default();
        let obj = |api: &str, kind: &str, ns: &str| {
            ObjRef::of(&json!({"apiVersion": api, "kind": kind,
                               "metadata": {"name": "web", "namespace": ns}}))
        };
        cs.push(
            obj("apps/v1", "Deployment", "apps"),
            k8s::Action::Recreated,
            Some("an immutable field changed".into()),
        );
        cs.push(obj("v1", "Namespace", ""), k8s::Action::Unchanged, None);
        cs.push(
            obj("v1", "ConfigMap", "apps"),
            k8s::Action::Skipped,
            Some("not pruned: another layer applies it now".into()),
        );
        let changes = of_kubernetes(&cs);
        assert_eq!(changes.len(), 2, "unchanged objects are left out");
        let v = serde_json::to_value(&changes[0]).unwrap();
        assert_eq!(
            v,
            json!({"target": {"api_version": "apps/v1", "kind": "Deployment", "namespace": "apps", "name": "web"},
                   "action": "replace", "reason": "an immutable field changed"})
        );
        assert_eq!(changes[0].target.to_string(), "Deployment/apps/web");
        assert_eq!(changes[1].action, ChangeAction::Noop);
        let ns = Target::from(&obj("v1", "Namespace", ""));
        assert_eq!(ns.to_string(), "Namespace/web");
        assert_eq!(
            serde_json::to_value(&ns).unwrap(),
            json!({"api_version": "v1", "kind": "Namespace", "name": "web"})
        );
        for c in &changes {
            let back: Change = serde_json::from_value(serde_json::to_value(c).unwrap()).unwrap();
            assert_eq!(&back, c);
        }
    }
}
