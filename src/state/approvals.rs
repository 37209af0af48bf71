//! `approvals/<kind>.<name>`: approvals of the plans that `apply = "manual"` layers (and
//! orphaned Terraform layers) wait with, given by `strata approve` or the agent's HTTP API.
//!
//! An approval names a layer with its kind and the digest of one plan. It is given only while
//! that layer waits with that plan (`status.json` records the waiting plan's digest), taken by
//! the apply of exactly that plan, and dropped by the first run that finds the layer applied or
//! waiting with another plan. So an approval never outlives the plan it was given for, and never
//! approves a change nobody has seen.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::file::StateError;
use super::stack_status::StackState;
use crate::stack::LayerId;

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("approvals")
}

/// One approval, as its file holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// `terraform.gate`.
    pub layer: String,
    /// The digest of the plan it approves.
    pub plan: String,
    /// The revision that plan was made from, when it was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// RFC 3339.
    pub approved_at: String,
}

/// Why an approval was not taken.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("nothing waits for approval on {0}")]
    NothingWaits(LayerId),
    #[error(
        "plan {given} is not the plan waiting on {layer} (plan {waiting} waits): review it \
         (strata status, strata plan) and approve that one"
    )]
    PlanDiffers {
        layer: LayerId,
        given: String,
        waiting: String,
    },
    #[error(transparent)]
    State(#[from] StateError),
}

/// A layer named for approval, with its kind (`terraform.gate`, `kubernetes.apps`).
///
/// # Errors
/// The name has no kind, or characters a layer name cannot have; the message says how to write it.
pub fn parse_layer(s: &str) -> Result<LayerId, String> {
    let id = LayerId::parse(s).filter(|id| {
        id.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    id.ok_or_else(|| {
        format!(
            "\"{s}\" is not a layer address: name the layer with its kind, as \
             terraform.NAME or kubernetes.NAME"
        )
    })
}

/// Approves the plan `layer` waits with now, or the one named by `plan`.
///
/// # Guarantees
/// - Nothing is written unless `status.json` records `layer` as waiting for approval, and (when
///   given) `plan` is the digest of the plan it waits with: an approval never waits on disk for
///   a plan nobody has seen.
/// - The file is replaced atomically (0600); a second approval of the same layer replaces the
///   first.
///
/// # Errors
/// [`Refusal::NothingWaits`], [`Refusal::PlanDiffers`], or the state could not be read or
/// written.
pub fn give(state_dir: &Path, layer: &LayerId, plan: Option<&str>) -> Result<Approval, Refusal> {
    let state = StackState::load(state_dir)?;
    let waiting = state
        .layer(layer)
        .and_then(|l| l.awaiting_plan.clone())
        .ok_or_else(|| Refusal::NothingWaits(layer.clone()))?;
    if let Some(given) = plan {
        if given != waiting {
            return Err(Refusal::PlanDiffers {
                layer: layer.clone(),
                given: given.to_string(),
                waiting,
            });
        }
    }
    let approval = Approval {
        layer: layer.to_string(),
        plan: waiting,
        revision: state.layer(layer).and_then(|l| l.awaiting_revision.clone()),
        approved_at: crate::now_rfc3339(),
    };
    super::file::ensure_state_dir(state_dir)?;
    super::file::ensure_dir(&dir(state_dir))?;
    let json = serde_json::to_vec_pretty(&approval).expect("an approval serializes");
    super::file::write(&dir(state_dir).join(layer.to_string()), &json)?;
    Ok(approval)
}

/// The approvals on disk now, by layer. A file that does not hold an approval (a leftover of an
/// older strata, a junk name) approves nothing, and is removed.
pub fn list(state_dir: &Path) -> BTreeMap<LayerId, Approval> {
    let mut found = BTreeMap::new();
    // Temporary files of a write in progress, or left by a crash, are no approvals: not listed.
    let names = match super::file::list(&dir(state_dir)) {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!("{e}");
            return found;
        }
    };
    for name in names {
        let path = dir(state_dir).join(&name);
        let parsed = parse_layer(&name).ok().and_then(|id| {
            let a: Approval = serde_json::from_slice(&super::file::read(&path).ok()??).ok()?;
            (a.layer == name).then_some((id, a))
        });
        match parsed {
            Some((id, a)) => {
                found.insert(id, a);
            }
            None => {
                tracing::warn!(file = %path.display(), "not an approval of a plan: removed");
                let _ = super::file::remove(&path);
            }
        }
    }
    found
}

/// Removes `approval` once a run took it or found it stale, unless it was replaced since it was
/// read (a newer approval given while the run ran is kept for the next one).
pub fn consume(state_dir: &Path, layer: &LayerId, approval: &Approval) {
    let path = dir(state_dir).join(layer.to_string());
    let same = super::file::read(&path)
        .ok()
        .flatten()
        .and_then(|b| serde_json::from_slice::<Approval>(&b).ok())
        .is_some_and(|now| now == *approval);
    if same {
        let _ = super::file::remove(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(state_dir: &Path, layer: &LayerId, plan: &str) {
        StackState::update(state_dir, |s| {
            let l = s.layer_mut(layer);
            l.awaiting_plan = Some(plan.into());
            l.awaiting_revision = Some("r2".into());
        })
        .unwrap();
    }

    #[test]
    fn an_approval_is_refused_while_nothing_waits_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let gate = LayerId::terraform("gate");
        let e = give(dir.path(), &gate, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "nothing waits for approval on terraform.gate"
        );
        assert!(list(dir.path()).is_empty());
    }

    #[test]
    fn an_approval_names_the_kind_and_binds_the_waiting_plan() {
        let dir = tempfile::tempdir().unwrap();
        let gate = LayerId::terraform("gate");
        waiting(dir.path(), &gate, "aaaa");
        // The Kubernetes layer of the same name waits for nothing.
        let kube = LayerId::new(crate::stack::LayerKind::Kubernetes, "gate");
        assert!(matches!(
            give(dir.path(), &kube, None),
            Err(Refusal::NothingWaits(_))
        ));
        let e = give(dir.path(), &gate, Some("bbbb")).unwrap_err();
        assert!(matches!(e, Refusal::PlanDiffers { .. }), "{e}");
        assert!(list(dir.path()).is_empty());
        let a = give(dir.path(), &gate, Some("aaaa")).unwrap();
        assert_eq!(
            (a.plan.as_str(), a.revision.as_deref()),
            ("aaaa", Some("r2"))
        );
        assert_eq!(list(dir.path()).get(&gate), Some(&a));
    }

    #[test]
    fn a_consumed_approval_is_removed_but_a_newer_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let gate = LayerId::terraform("gate");
        waiting(dir.path(), &gate, "aaaa");
        let first = give(dir.path(), &gate, None).unwrap();
        let mut newer = first.clone();
        newer.approved_at = "later".into();
        std::fs::write(
            dir.path().join("approvals/terraform.gate"),
            serde_json::to_vec(&newer).unwrap(),
        )
        .unwrap();
        consume(dir.path(), &gate, &first);
        assert_eq!(list(dir.path()).get(&gate), Some(&newer));
        consume(dir.path(), &gate, &newer);
        assert!(list(dir.path()).is_empty());
    }

    #[test]
    fn junk_files_approve_nothing_and_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("approvals")).unwrap();
        for name in ["gate", "terraform.gate", "x..y"] {
            std::fs::write(dir.path().join("approvals").join(name), "2026-01-01").unwrap();
        }
        assert!(list(dir.path()).is_empty());
        assert_eq!(
            std::fs::read_dir(dir.path().join("approvals"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn layer_addresses_need_their_kind() {
        assert!(parse_layer("gate").is_err());
        assert!(parse_layer("terraform.a/b").is_err());
        assert_eq!(
            parse_layer("kubernetes.apps").unwrap().to_string(),
            "kubernetes.apps"
        );
    }
}
