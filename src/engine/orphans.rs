//! Layers the stack had and no longer has. GitOps means what is not in Git does not exist, but a
//! layer that vanished from `strata.hcl` may be a typo'd rename: its resources are never
//! destroyed by default. Every plan and apply names each such layer as orphaned (typed, in the
//! JSON and the text), and `status` shows it orphaned rather than converged.

use serde::{Deserialize, Serialize};

use super::Engine;
use crate::stack::{LayerId, LayerKind};
use crate::state::stack_status::StackState;

/// A layer the state dir remembers as applied that the stack no longer declares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    pub layer: LayerId,
    /// The revision it last converged to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converged_revision: Option<String>,
    /// When a run first found it orphaned (RFC 3339).
    pub since: String,
    /// Found orphaned by this run for the first time: the one moment to alert on.
    pub new: bool,
    /// What is left behind and what to do about it.
    pub detail: String,
}

impl Orphan {
    fn detail(layer: &LayerId) -> String {
        match layer.kind {
            LayerKind::Terraform => format!(
                "removed from the stack file; its resources and state are kept, never destroyed \
                 without approval: put the layer back (under the same name) to manage them again, \
                 or destroy them with terraform from its last revision, then delete \
                 layers/{} from the state dir",
                layer.name
            ),
            LayerKind::Kubernetes => "removed from the stack file; its objects and inventory are \
                 still in the cluster: put the layer back (under the same name) to manage them \
                 again, or delete them with kubectl"
                .into(),
        }
    }
}

/// The orphans in `state` for a stack declaring `declared`; `now` dates the new ones.
pub fn find(state: &StackState, declared: &[LayerId], now: &str) -> Vec<Orphan> {
    state
        .layers
        .iter()
        .filter(|(_, l)| l.converged_revision.is_some() || l.orphaned_since.is_some())
        .filter_map(|(name, l)| {
            let id = LayerId::parse(name)?;
            (!declared.contains(&id)).then(|| Orphan {
                detail: Orphan::detail(&id),
                layer: id,
                converged_revision: l.converged_revision.clone(),
                since: l.orphaned_since.clone().unwrap_or_else(|| now.to_string()),
                new: l.orphaned_since.is_none(),
            })
        })
        .collect()
}

impl Engine {
    /// The layers this stack had and no longer declares, as the state dir remembers them.
    pub(super) fn orphans(&self, now: &str) -> Vec<Orphan> {
        let declared: Vec<LayerId> = self.stack.layers.iter().map(|l| l.id.clone()).collect();
        find(&self.state(), &declared, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::stack_status::LayerState;

    #[test]
    fn applied_layers_missing_from_the_stack_are_orphans_new_once() {
        let mut state = StackState::default();
        let applied = LayerState {
            converged_revision: Some("abc".into()),
            ..LayerState::default()
        };
        state.layers.insert("terraform.old".into(), applied.clone());
        state.layers.insert("terraform.kept".into(), applied);
        state
            .layers
            .insert("terraform.never".into(), LayerState::default());
        let declared = [LayerId::terraform("kept")];
        let found = find(&state, &declared, "T1");
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].layer, LayerId::terraform("old"));
        assert!(found[0].new);
        assert!(found[0].detail.contains("never destroyed"));
        state
            .layers
            .get_mut("terraform.old")
            .unwrap()
            .orphaned_since = Some("T1".into());
        let again = find(&state, &declared, "T2");
        assert!(!again[0].new, "alerted once");
        assert_eq!(again[0].since, "T1");
    }
}
