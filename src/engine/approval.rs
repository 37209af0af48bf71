//! Which plans of `apply = "manual"` layers (and orphaned Terraform layers' destroys) this run
//! may apply, and what becomes of the approvals it was given.
//!
//! Two ways approve: `--approve LAYER` on the command that runs (its operator watches that run,
//! so it approves whatever plan the run makes), and an approval in the state dir
//! ([`crate::state::approvals`]), which names one plan by its digest and approves only that plan.

use std::collections::BTreeMap;

use super::orphans::{Orphan, OrphanStatus};
use super::record::{LayerStatus, RunReport};
use super::Engine;
use serde_json::Value;

use crate::kube::ObjRef;
use crate::stack::{ApplyPolicy, LayerId};
use crate::state::approvals::Approval;

impl Engine {
    /// Whether this run may apply the plan `digest` that `id` has now.
    ///
    /// # Errors
    /// What the layer's report says instead: the plan awaits approval (and how to give it), or
    /// the approval on record is for another plan.
    pub(super) fn approves(&self, id: &LayerId, digest: &str) -> Result<(), String> {
        let by_flag = self
            .opts
            .approve
            .iter()
            .any(|a| *a == id.name || *a == id.to_string());
        if by_flag {
            return Ok(());
        }
        let how = format!("strata approve {id} --plan {digest}, or --approve {id} on an apply");
        let policy = match self.stack.layer(id).map(|l| l.apply) {
            Some(ApplyPolicy::Safe) => "apply = \"safe\", and the plan deletes or replaces",
            Some(_) => "apply = \"manual\"",
            None => "removed from the stack file",
        };
        match self.approvals.get(id) {
            Some(a) if a.plan == digest => Ok(()),
            Some(a) => Err(format!(
                "{policy}: the approval was given for plan {}, and the plan is now {digest} (it \
                 changed since): approve again: {how}",
                a.plan
            )),
            None => Err(format!("{policy}: plan {digest} awaits approval: {how}")),
        }
    }

    /// Drops the approvals this run took or found stale (an apply only).
    ///
    /// # Guarantees
    /// An approval is kept only when its layer did not get as far as planning (skipped after an
    /// upstream failure, waiting on unknown inputs, a cancelled run) or still waits with the
    /// very plan it approves; one replaced on disk while the run ran is never removed.
    pub(super) fn settle_approvals(&self, report: &RunReport) {
        for (id, a) in &self.approvals {
            if !spent(id, a, report) {
                continue;
            }
            let taken = report
                .layers
                .iter()
                .any(|l| l.layer == *id && l.status == LayerStatus::Applied)
                || report
                    .orphaned
                    .iter()
                    .any(|o| o.layer == *id && o.status != OrphanStatus::Orphaned);
            if !taken {
                tracing::warn!(
                    layer = %id,
                    "the approval of plan {} was not used: the layer no longer waits with that plan",
                    a.plan
                );
            }
            crate::state::approvals::consume(&self.opts.state_dir, id, a);
        }
    }
}

/// Whether a plan's changes delete or replace anything (what `apply = "safe"` asks approval
/// for): a Terraform delete or replace, a Kubernetes delete or recreate. A Kubernetes layer's
/// prunes are counted by its step.
pub(super) fn destructive(changes: &[super::Change]) -> Vec<String> {
    use super::ChangeAction;
    changes
        .iter()
        .filter(|c| matches!(c.action, ChangeAction::Delete | ChangeAction::Replace))
        .map(|c| c.target.to_string())
        .collect()
}

/// Whether the run in `report` used approval `a` of `id` or made it stale.
fn spent(id: &LayerId, a: &Approval, report: &RunReport) -> bool {
    if let Some(l) = report.layers.iter().find(|l| l.layer == *id) {
        return match l.status {
            LayerStatus::Skipped | LayerStatus::Waiting | LayerStatus::Interrupted => false,
            LayerStatus::AwaitingApproval => l.plan.as_deref() != Some(a.plan.as_str()),
            _ => true,
        };
    }
    if let Some(o) = report.orphaned.iter().find(|o| o.layer == *id) {
        return o.status != OrphanStatus::Orphaned || o.plan != a.plan;
    }
    // The layer is gone from the stack and from the state: nothing is left to approve.
    true
}

/// The digest of a Kubernetes layer's plan: each object the dry run found to change (its
/// address, what happens, and the whole desired object), and each object of the layer's
/// inventory it no longer declares (a prune candidate). The same commit against the same
/// cluster gives the same digest; another desired value, or another object to delete, another.
pub(super) fn kubernetes_plan<'a>(
    id: &LayerId,
    changes: &crate::kube::ChangeSet,
    desired: impl IntoIterator<Item = (&'a ObjRef, &'a Value)>,
    previous: &[ObjRef],
) -> String {
    let mut h = crate::hash::Hasher::new();
    h.part("layer", id.to_string().as_bytes());
    let by_ref: BTreeMap<&ObjRef, &Value> = desired.into_iter().collect();
    let mut lines: Vec<(String, Vec<u8>)> = changes
        .changes
        .iter()
        .filter(|c| c.action != crate::kube::Action::Unchanged)
        .map(|c| {
            let object = by_ref
                .get(&c.object)
                .map(|object| object.to_string().into_bytes())
                .unwrap_or_default();
            (format!("{:?} {}", c.action, c.object), object)
        })
        .collect();
    lines.extend(
        previous
            .iter()
            .filter(|r| !by_ref.contains_key(r))
            .map(|r| (format!("prune {r}"), Vec::new())),
    );
    lines.sort();
    lines.dedup();
    for (what, object) in &lines {
        h.part("change", what.as_bytes());
        h.part("object", object);
    }
    crate::hash::plan_digest(&h)
}

/// The digest of an orphaned Terraform layer's destroy: the layer, the revision it last
/// converged to and since when it is orphaned. Its resources are those of that apply, which
/// nothing changes while it is orphaned; should it come back and leave again, the digest
/// differs and an old approval approves nothing.
pub fn orphan_plan(o: &Orphan) -> String {
    let mut h = crate::hash::Hasher::new();
    h.part("destroy", o.layer.to_string().as_bytes());
    h.part(
        "revision",
        o.converged_revision
            .as_deref()
            .unwrap_or_default()
            .as_bytes(),
    );
    h.part("since", o.since.as_bytes());
    crate::hash::plan_digest(&h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::{Action, ChangeSet};

    fn r(name: &str) -> ObjRef {
        ObjRef {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "apps".into(),
            name: name.into(),
        }
    }

    fn desired(name: &str, value: &str) -> (ObjRef, Value) {
        let object = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "apps"},
            "data": {"k": value}
        });
        (r(name), object)
    }

    fn plan(id: &LayerId, cs: &ChangeSet, d: &[(ObjRef, Value)], previous: &[ObjRef]) -> String {
        kubernetes_plan(id, cs, d.iter().map(|(r, v)| (r, v)), previous)
    }

    #[test]
    fn a_kubernetes_plan_digest_binds_values_and_prunes() {
        let id = LayerId::new(crate::stack::LayerKind::Kubernetes, "apps");
        let mut cs = ChangeSet::default();
        cs.push(r("a"), Action::Configured, None);
        cs.push(r("b"), Action::Unchanged, None);
        let d = plan(&id, &cs, &[desired("a", "1"), desired("b", "x")], &[r("a")]);
        // An unchanged object's content is not part of the plan.
        assert_eq!(
            plan(&id, &cs, &[desired("a", "1"), desired("b", "y")], &[r("a")]),
            d
        );
        assert_ne!(
            plan(&id, &cs, &[desired("a", "2"), desired("b", "x")], &[r("a")]),
            d,
            "another desired value"
        );
        assert_ne!(
            plan(
                &id,
                &cs,
                &[desired("a", "1"), desired("b", "x")],
                &[r("a"), r("c")]
            ),
            d,
            "another object to prune"
        );
        let other = LayerId::new(crate::stack::LayerKind::Kubernetes, "other");
        assert_ne!(
            plan(
                &other,
                &cs,
                &[desired("a", "1"), desired("b", "x")],
                &[r("a")]
            ),
            d
        );
    }
}
