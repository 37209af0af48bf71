//! `status.json`: what the engine remembers per stack between runs: per layer the last converged
//! revision and inputs hash, the last result and drift state, why it is not converged, and (for
//! a Kubernetes layer) where it was applied, so that it can be pruned once it leaves the stack.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::file::{self, StateError};
use crate::engine::record::{DriftState, Observation};
use crate::engine::Waiting;
use crate::stack::LayerId;

/// One layer's memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LayerState {
    /// The revision the layer last converged to.
    pub converged_revision: Option<String>,
    /// Its inputs hash then (Terraform layers).
    pub inputs_hash: Option<String>,
    /// `converged`, `failed`, `awaiting_approval`, ...
    pub last_result: Option<String>,
    pub last_error: Option<String>,
    /// RFC 3339.
    pub last_run: Option<String>,
    /// From the last diff.
    pub drift: Option<DriftState>,
    /// When the current drift was first seen.
    pub drift_since: Option<String>,
    /// When a run first found the layer gone from the stack file while its resources remain
    /// (RFC 3339); cleared when it is declared again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphaned_since: Option<String>,
    /// The digest of the plan the layer waits with for approval (`apply = "manual"`, or an
    /// orphaned Terraform layer's destroy); `strata approve` takes only this one. Cleared by any
    /// other result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_plan: Option<String>,
    /// The revision that plan was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_revision: Option<String>,
    /// Why the last apply left it not converged; `None` when it converged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Where a Kubernetes layer applies, recorded before its first write: what pruning it needs
    /// once it is gone from the stack file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubeTarget>,
}

/// Where a Kubernetes layer was applied, and how it prunes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeTarget {
    /// The name of its `cluster` block.
    pub cluster: String,
    /// That cluster's API server then: a cluster block pointed elsewhere since is not trusted
    /// with the layer's inventory.
    pub server: String,
    /// The layer's `prune` setting.
    pub prune: bool,
}

/// Why a layer is not converged: typed, recorded by applies (and, for revisions the agent has
/// not applied, derived from what the agent saw), rendered by `strata status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// `apply = "manual"` (or an orphaned Terraform layer) and not approved.
    AwaitingApproval,
    /// Its inputs read outputs that are unknown until an upstream layer is applied.
    Waiting { on: Vec<Waiting> },
    /// Not run: an upstream layer failed.
    UpstreamFailed { upstream: String },
    /// Not run: an upstream layer holds it back (`awaiting approval`).
    UpstreamHeld { upstream: String, why: String },
    /// Its own step failed (the first line of the error).
    Failed { error: String },
    /// Stopped by a timeout or cancellation.
    Interrupted,
    /// Gone from the stack file while its resources remain.
    Orphaned { detail: String },
    /// A newer revision than the one last applied is not applied yet.
    PendingRevision { revision: String },
    /// The newest revision was refused (bad signature, invalid stack file).
    RefusedRevision { revision: String, reason: String },
    /// `strata rollback` pinned the agent here; newer commits wait for `strata resume`.
    Pinned {
        revision: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        newest: Option<String>,
    },
}

/// One layer as `strata status` shows it: what status.json remembers, what the agent observed,
/// and why it is not converged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerView {
    pub layer: String,
    pub converged_revision: Option<String>,
    pub last_result: Option<String>,
    pub drift: Option<DriftState>,
    /// What the agent's last drift check observed; `None` without an agent.
    pub observed: Option<Observation>,
    pub last_run: Option<String>,
    /// `None` when nothing holds it back.
    pub reason: Option<Reason>,
}

/// The whole stack's memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StackState {
    pub stack: String,
    /// The source (a directory or `url@ref:path`).
    pub source: Option<String>,
    /// The revision of the last run that converged every layer.
    pub converged_revision: Option<String>,
    /// The revision of the last run of any kind.
    pub last_revision: Option<String>,
    pub layers: BTreeMap<String, LayerState>,
    /// The tags the image markers carried at `converged_revision`: what the environment runs.
    /// `None` when not recorded (converged before strata recorded them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converged_images: Option<Vec<crate::images::running::RunningImage>>,
}

/// What one environment runs: the revision it last converged and the tags its image markers
/// carried there (`strata status` over every environment).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnvironmentRuns {
    pub env: String,
    pub converged_revision: Option<String>,
    /// `None` when not recorded (converged before strata recorded them).
    pub images: Option<Vec<crate::images::running::RunningImage>>,
}

/// What to do about a corrupt `status.json`.
const RECOVERY: &str = "restore it from a backup, or move it aside and strata will treat every \
layer as never applied (planning all of them; Terraform state and Kubernetes inventories are kept \
elsewhere and stay intact)";

impl StackState {
    /// What environment `env` runs, as this state remembers it.
    pub fn runs(&self, env: &str) -> EnvironmentRuns {
        EnvironmentRuns {
            env: env.to_string(),
            converged_revision: self.converged_revision.clone(),
            images: self.converged_images.clone(),
        }
    }

    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("status.json")
    }

    /// What the state dir remembers; empty when the stack never ran from it.
    ///
    /// # Errors
    /// [`StateError::Corrupt`] naming the file and how to recover when it exists but does not
    /// parse (never an empty state in its place); [`StateError::Io`] when it cannot be read.
    pub fn load(state_dir: &Path) -> Result<StackState, StateError> {
        Ok(file::read_json(&StackState::path(state_dir), RECOVERY)?.unwrap_or_default())
    }

    /// Re-reads `status.json` under its lock, lets `change` set the fields its caller owns, and
    /// writes the result back; returns it.
    ///
    /// # Guarantees
    /// Two updates never lose each other's fields: each reads what the other wrote (the lock
    /// orders them), so a caller that sets only its own fields never reverts anyone else's. The
    /// file is replaced atomically (0600); a crash leaves the old one or the new one.
    ///
    /// # Errors
    /// The file is corrupt or cannot be read, locked or written; nothing is written then.
    pub fn update(
        state_dir: &Path,
        change: impl FnOnce(&mut StackState),
    ) -> Result<StackState, StateError> {
        file::ensure_state_dir(state_dir)?;
        let path = StackState::path(state_dir);
        let _lock = file::FileLock::beside(&path)?;
        let mut state = StackState::load(state_dir)?;
        change(&mut state);
        file::write(&path, &serde_json::to_vec_pretty(&state).expect("json"))?;
        Ok(state)
    }

    pub fn layer(&self, id: &LayerId) -> Option<&LayerState> {
        self.layers.get(&id.to_string())
    }

    pub fn layer_mut(&mut self, id: &LayerId) -> &mut LayerState {
        self.layers.entry(id.to_string()).or_default()
    }

    /// Every layer as `strata status` shows it, with `agent` (when an agent runs on the state
    /// dir) adding what it observed and the revisions it has not applied.
    ///
    /// A reason the last apply recorded comes first; a layer that converged then is held back
    /// by a pin, then a refused revision, then a newer revision not applied yet.
    pub fn view(&self, agent: Option<&crate::agent::AgentStatus>) -> Vec<LayerView> {
        self.layers
            .iter()
            .map(|(name, l)| {
                let observed = agent.and_then(|a| a.layers.get(name).cloned());
                let reason = l.reason.clone().or_else(|| {
                    let a = agent?;
                    if let Some(pin) = &a.pinned {
                        let newest = a.latest_seen.clone().filter(|s| s != pin);
                        return Some(Reason::Pinned {
                            revision: pin.clone(),
                            newest,
                        });
                    }
                    if let Some(r) = &a.refused {
                        return Some(Reason::RefusedRevision {
                            revision: r.revision.clone(),
                            reason: r.reason.clone(),
                        });
                    }
                    if let Some(Observation::Pending { revision }) = &observed {
                        return Some(Reason::PendingRevision {
                            revision: revision.clone(),
                        });
                    }
                    let newest = a.latest_seen.as_ref()?;
                    (a.revision.as_ref() != Some(newest)).then(|| Reason::PendingRevision {
                        revision: newest.clone(),
                    })
                });
                LayerView {
                    layer: name.clone(),
                    converged_revision: l.converged_revision.clone(),
                    last_result: l.last_result.clone(),
                    drift: l.drift,
                    observed,
                    last_run: l.last_run.clone(),
                    reason,
                }
            })
            .collect()
    }

    /// `strata status --json` and `/api/v1/status`: this state, each layer with its
    /// [`LayerView::observed`] and [`LayerView::reason`] (recorded or derived from `agent`).
    pub fn to_json(&self, agent: Option<&crate::agent::AgentStatus>) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        for view in self.view(agent) {
            let l = &mut v["layers"][&view.layer];
            if let Some(o) = &view.observed {
                l["observed"] = serde_json::to_value(o).unwrap_or_default();
            }
            if let Some(r) = &view.reason {
                l["reason"] = serde_json::to_value(r).unwrap_or_default();
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_reason_comes_first_then_the_pin_the_refusal_and_a_pending_revision() {
        let mut state = StackState::default();
        state.layers.insert(
            "terraform.gate".into(),
            LayerState {
                reason: Some(Reason::AwaitingApproval),
                ..Default::default()
            },
        );
        state
            .layers
            .insert("kubernetes.apps".into(), LayerState::default());
        let reason = |agent: Option<&crate::agent::AgentStatus>, layer: &str| {
            state
                .view(agent)
                .into_iter()
                .find(|v| v.layer == layer)
                .unwrap()
                .reason
        };
        assert_eq!(reason(None, "kubernetes.apps"), None);
        let mut agent = crate::agent::AgentStatus {
            revision: Some("r1".into()),
            latest_seen: Some("r2".into()),
            pinned: Some("r1".into()),
            refused: Some(crate::agent::Refused {
                revision: "r2".into(),
                reason: "unsigned".into(),
            }),
            ..Default::default()
        };
        assert_eq!(
            reason(Some(&agent), "terraform.gate"),
            Some(Reason::AwaitingApproval)
        );
        assert_eq!(
            reason(Some(&agent), "kubernetes.apps"),
            Some(Reason::Pinned {
                revision: "r1".into(),
                newest: Some("r2".into())
            })
        );
        agent.pinned = None;
        assert!(matches!(
            reason(Some(&agent), "kubernetes.apps"),
            Some(Reason::RefusedRevision { .. })
        ));
        agent.refused = None;
        assert_eq!(
            reason(Some(&agent), "kubernetes.apps"),
            Some(Reason::PendingRevision {
                revision: "r2".into()
            })
        );
        agent.latest_seen = Some("r1".into());
        assert_eq!(reason(Some(&agent), "kubernetes.apps"), None, "converged");
        agent.layers.insert(
            "kubernetes.apps".into(),
            Observation::Pending {
                revision: "r3".into(),
            },
        );
        let view = state.view(Some(&agent));
        let apps = view.iter().find(|v| v.layer == "kubernetes.apps").unwrap();
        assert_eq!(
            apps.reason,
            Some(Reason::PendingRevision {
                revision: "r3".into()
            })
        );
        assert_eq!(
            state.to_json(Some(&agent))["layers"]["kubernetes.apps"]["observed"]["state"],
            "pending"
        );
    }

    #[test]
    fn concurrent_updates_of_different_fields_lose_none() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let dir = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    for n in 0..25 {
                        StackState::update(&dir, |s| {
                            s.layers.entry(format!("layer{i}")).or_default().last_run =
                                Some(n.to_string());
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let state = StackState::load(dir.path()).unwrap();
        assert_eq!(state.layers.len(), 8);
        assert!(state
            .layers
            .values()
            .all(|l| l.last_run.as_deref() == Some("24")));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with(".strata-tmp-")),
            "{names:?}"
        );
    }
}
