//! Layers the stack had and no longer has. GitOps means what is not in Git does not exist, but a
//! layer that vanished from `strata.hcl` may be a typo'd rename: its resources are never
//! destroyed by default. Every plan and apply names each such layer as orphaned (typed, in the
//! JSON and the text), and `status` shows it orphaned rather than converged; a Terraform layer's
//! resources are destroyed, from the working copy of its last apply, only when an apply approves
//! it by name (`--approve terraform.old`). A Kubernetes layer's objects are pruned by an apply
//! like any object that left Git, with the same safety rules ([`super::kube_orphans`]).

use serde::{Deserialize, Serialize};

use super::change::Change;
use super::Engine;
use crate::stack::{LayerId, LayerKind};
use crate::state::stack_status::{Reason, StackState};
use crate::terraform::PlanMode;

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
    /// What is left behind and what to do about it, or what the destroy did.
    pub detail: String,
    /// Whether this run destroyed (or pruned) it.
    #[serde(default)]
    pub status: OrphanStatus,
    /// The digest of its destroy, which an approval names ([`super::orphan_plan`]).
    #[serde(default)]
    pub plan: String,
    /// A Kubernetes layer's objects: what its prune deleted and kept (or, in a plan, would).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
}

/// What a run did about an orphaned layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrphanStatus {
    /// Left alone: not approved for destruction (or a plan).
    #[default]
    Orphaned,
    /// Its resources were destroyed (approved in this apply); the state dir forgets it.
    Destroyed,
    /// A Kubernetes layer: every object of its inventory was deleted or handed over to another
    /// layer, and its inventory deleted; the state dir forgets it.
    Pruned,
    /// The destroy or prune failed; `detail` says why.
    Failed,
}

impl OrphanStatus {
    /// Nothing of the layer is left to manage: the state dir forgets it.
    pub fn gone(self) -> bool {
        matches!(self, OrphanStatus::Destroyed | OrphanStatus::Pruned)
    }
}

impl Orphan {
    fn detail(layer: &LayerId) -> String {
        match layer.kind {
            LayerKind::Terraform => format!(
                "orphaned — resources will be destroyed when approved: strata apply --approve \
                 {layer} (never without; put the layer back under the same name to keep them)"
            ),
            LayerKind::Kubernetes => "removed from the stack file: the next apply prunes its \
                 objects that no layer declares (put the layer back under the same name to keep \
                 them)"
                .into(),
        }
    }

    /// Why `status` shows it not converged.
    pub fn reason(&self) -> Reason {
        match self.status {
            OrphanStatus::Failed => Reason::Failed {
                error: self.detail.clone(),
            },
            _ => Reason::Orphaned {
                detail: self.detail.clone(),
            },
        }
    }
}

/// The orphans in `state` for a stack declaring `declared`; `now` dates the new ones.
pub fn find(state: &StackState, declared: &[LayerId], now: &str) -> Vec<Orphan> {
    state
        .layers
        .iter()
        // A Kubernetes layer whose first apply did not finish may have written objects too.
        .filter(|(_, l)| {
            l.converged_revision.is_some() || l.orphaned_since.is_some() || l.kubernetes.is_some()
        })
        .filter_map(|(name, l)| {
            let id = LayerId::parse(name)?;
            (!declared.contains(&id)).then(|| {
                let mut o = Orphan {
                    detail: Orphan::detail(&id),
                    layer: id,
                    converged_revision: l.converged_revision.clone(),
                    since: l.orphaned_since.clone().unwrap_or_else(|| now.to_string()),
                    new: l.orphaned_since.is_none(),
                    status: OrphanStatus::Orphaned,
                    plan: String::new(),
                    counts: None,
                    changes: Vec::new(),
                };
                o.plan = super::orphan_plan(&o);
                o
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

    /// Destroys the approved Terraform orphans (an apply only), from the working copy of each
    /// one's last apply, with its backend and workspace.
    ///
    /// # Guarantees
    /// - Nothing is destroyed unless this run approves its destroy (by the digest of that
    ///   destroy, or `--approve` naming the layer); a cancelled run destroys nothing more.
    /// - A layer without a kept working copy is not guessed at: it fails, saying so.
    pub(super) async fn destroy_orphans(&self, orphans: &mut [Orphan]) {
        for o in orphans.iter_mut() {
            if o.layer.kind != LayerKind::Terraform
                || self.approves(&o.layer, &o.plan).is_err()
                || self.opts.cancel.is_cancelled()
            {
                continue;
            }
            self.progress(&o.layer, super::progress::Event::Applying);
            match self.destroy_one(&o.layer).await {
                Ok(counts) => {
                    o.status = OrphanStatus::Destroyed;
                    o.detail = format!("destroyed ({counts})");
                }
                Err(e) => {
                    o.status = OrphanStatus::Failed;
                    o.detail = format!("destroy failed: {e}");
                }
            }
        }
    }

    async fn destroy_one(&self, id: &LayerId) -> Result<String, String> {
        let tf = self.terraform().await.map_err(|e| e.to_string())?;
        let Some(mut p) = tf
            .prepare_last_applied(id)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Err(format!(
                "no working copy of its last apply was kept (it was applied by an older \
                 strata): put {id} back in the stack file and apply once, then remove it again"
            ));
        };
        let plan = tf
            .plan(&mut p, PlanMode::Destroy, &self.opts.cancel)
            .await
            .map_err(|e| e.to_string())?;
        if plan.has_changes {
            tf.apply(&p, &plan, &self.opts.cancel)
                .await
                .map_err(|e| e.to_string())?;
        }
        tf.forget_applied(id);
        Ok(plan.counts.to_string())
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
        assert!(
            found[0]
                .detail
                .contains("destroyed when approved: strata apply --approve terraform.old"),
            "{}",
            found[0].detail
        );
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
