//! A layer's page as data (`GET /api/v1/layers/{kind}.{name}`): what it last converged to and
//! with which commit, what is pending, its last run's changes, its drift field by field, its last
//! error in full and its runs; and the history page (`GET /api/v1/history`).
//!
//! Every value shown comes from files that already hold it masked as the CLI prints it (the
//! drift report, the run reports): a sensitive value is `***` or `(sensitive value)` here too.

use serde::Serialize;

use super::overview::{LayerCard, Shown};
use crate::agent::{AgentStatus, Awaiting};
use crate::engine::change::{Change, ChangeAction};
use crate::engine::record::{CommitInfo, Observation, RunRecord};
use crate::state::alerts::AlertRecord;
use crate::state::layer_runs::LayerRun;
use crate::state::reports::{LatestDrift, LatestLayerDrift};
use crate::state::stack_status::{Reason, StackState};

/// One field that changes: before → after, as `strata diff` and `strata plan` print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// `.data.color`, or a Terraform attribute's name.
    pub path: String,
    pub before: String,
    pub after: String,
}

/// One change, with the line the CLI prints for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeView {
    pub action: ChangeAction,
    /// `ConfigMap/default/app`, `null_resource.server`.
    pub target: String,
    /// `~ ConfigMap/default/app`.
    pub line: String,
    pub fields: Vec<FieldChange>,
    /// Field-manager conflicts: what was taken, what was left to another manager.
    pub notes: Vec<String>,
}

impl ChangeView {
    fn of(c: &Change) -> ChangeView {
        let show = |v: &Option<serde_json::Value>| {
            v.as_ref()
                .map_or_else(|| "(absent)".to_string(), ToString::to_string)
        };
        ChangeView {
            action: c.action,
            target: c.target.to_string(),
            line: crate::report::run::change_line(c),
            fields: c
                .fields
                .iter()
                .map(|f| {
                    let (before, after) =
                        crate::report::shorten_change(&show(&f.live), &show(&f.desired));
                    FieldChange {
                        path: f.path.clone(),
                        before,
                        after,
                    }
                })
                .collect(),
            notes: crate::report::run::conflict_lines(c),
        }
    }
}

/// The layer's last plan or apply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastRun {
    pub run_id: String,
    pub command: String,
    pub revision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitInfo>,
    pub finished: String,
    /// `applied +1 ~0 -0`, `awaiting approval: ...`, `failed: ...`.
    pub summary: String,
    pub changes: Vec<ChangeView>,
    /// The digest of its plan, when it changes anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

impl From<&LayerRun> for LastRun {
    fn from(r: &LayerRun) -> LastRun {
        LastRun {
            run_id: r.run_id.clone(),
            command: r.command.clone(),
            revision: r.revision.clone(),
            commit: r.commit.clone(),
            finished: r.finished.clone(),
            summary: crate::report::run::final_line(&r.report),
            changes: r.report.changes.iter().map(ChangeView::of).collect(),
            plan: r.report.plan.clone(),
        }
    }
}

/// The layer in the latest drift report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftView {
    pub checked_at: String,
    /// The revision the live system was compared with.
    pub against: Option<String>,
    pub observed: Observation,
    /// Each drifted object or resource, with its fields before (live) → after (Git).
    pub changes: Vec<ChangeView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl From<(&LatestDrift, &LatestLayerDrift)> for DriftView {
    fn from((report, l): (&LatestDrift, &LatestLayerDrift)) -> DriftView {
        let mut changes: Vec<ChangeView> = l.changes.iter().map(ChangeView::of).collect();
        // terradiff's changes name resources; their attributes are in the plan beside them.
        for r in l.terraform.iter().flat_map(|t| &t.resources) {
            let fields = r.attributes.iter().map(|a| {
                let before = crate::terraform::Shown::from(a.before.clone()).to_string();
                let after = crate::terraform::Shown::from(a.after.clone()).to_string();
                let (before, after) = crate::report::shorten_change(&before, &after);
                FieldChange {
                    path: a.name.clone(),
                    before,
                    after,
                }
            });
            match changes.iter_mut().find(|c| c.target == r.address) {
                Some(c) => c.fields.extend(fields),
                None => changes.push(ChangeView {
                    action: ChangeAction::Update,
                    target: r.address.clone(),
                    line: format!("~ {}", r.address),
                    fields: fields.collect(),
                    notes: vec![],
                }),
            }
        }
        DriftView {
            checked_at: report.checked_at.clone(),
            against: l.revision.clone(),
            observed: l.observed.clone(),
            changes,
            detail: l.detail.clone(),
        }
    }
}

/// One run of the layer, from `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerRunEntry {
    pub run_id: String,
    pub command: String,
    pub revision: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitInfo>,
    pub finished: String,
    /// `applied`, `unchanged`, `failed`, ...
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counts: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A layer's page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerPage {
    #[serde(flatten)]
    pub card: LayerCard,
    /// The revision it last converged to, and that commit.
    pub converged_revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub converged_commit: Option<CommitInfo>,
    /// A newer revision not applied to it yet (the one its waiting plan was made from, while
    /// it waits for approval).
    pub pending_revision: Option<String>,
    /// The plan waiting for approval: its digest is what the Approve button sends.
    pub awaiting: Option<Awaiting>,
    pub last_run: Option<LastRun>,
    pub drift: Option<DriftView>,
    /// The last error in full (several lines, as the step printed it).
    pub last_error: Option<String>,
    /// Newest first.
    pub history: Vec<LayerRunEntry>,
}

/// The commit a revision was made from, from the runs that applied or planned it.
pub fn commit_of(runs: &[RunRecord], revision: &str) -> Option<CommitInfo> {
    runs.iter()
        .rev()
        .find(|r| r.revision == revision && r.commit.is_some())
        .and_then(|r| r.commit.clone())
}

/// Everything the page of `card`'s layer shows.
pub fn layer_page(
    card: LayerCard,
    agent: &AgentStatus,
    stack: &StackState,
    last_run: Option<&LayerRun>,
    drift: Option<&LatestDrift>,
    runs: &[RunRecord],
) -> LayerPage {
    let name = card.layer.clone();
    let memory = stack.layers.get(&name);
    let converged = memory.and_then(|m| m.converged_revision.clone());
    let awaiting = agent
        .awaiting_approval
        .iter()
        .find(|a| a.layer == name)
        .cloned()
        .or_else(|| {
            let m = memory?;
            Some(Awaiting {
                layer: name.clone(),
                plan: m.awaiting_plan.clone()?,
                revision: m.awaiting_revision.clone(),
            })
        });
    let reason = stack
        .view(Some(agent))
        .into_iter()
        .find(|v| v.layer == name)
        .and_then(|v| v.reason);
    let pending = awaiting
        .as_ref()
        .and_then(|a| a.revision.clone())
        .or(match reason {
            Some(Reason::PendingRevision { revision }) => Some(revision),
            _ => None,
        })
        .or(match agent.layers.get(&name) {
            Some(Observation::Pending { revision }) => Some(revision.clone()),
            _ => None,
        })
        .filter(|p| Some(p) != converged.as_ref());
    let drift = drift.and_then(|d| {
        d.layers
            .iter()
            .find(|l| l.layer == name)
            .map(|l| DriftView::from((d, l)))
    });
    let history = runs
        .iter()
        .rev()
        .filter_map(|r| {
            let l = r.layers.iter().find(|l| l.layer == name)?;
            Some(LayerRunEntry {
                run_id: r.run_id.clone(),
                command: r.command.clone(),
                revision: r.revision.clone(),
                commit: r.commit.clone(),
                finished: r.finished.clone(),
                action: l.action.clone(),
                counts: l.counts.clone(),
                error: l.error.clone(),
            })
        })
        .collect();
    LayerPage {
        converged_commit: converged.as_deref().and_then(|c| commit_of(runs, c)),
        converged_revision: converged,
        pending_revision: pending,
        awaiting: awaiting.filter(|_| card.state == Shown::AwaitingApproval),
        last_run: last_run.map(LastRun::from),
        drift,
        last_error: memory.and_then(|m| m.last_error.clone()),
        history,
        card,
    }
}

/// The history page: recent runs and alerts, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    pub runs: Vec<RunRecord>,
    pub alerts: Vec<AlertRecord>,
}

impl History {
    /// From the logs as read (oldest first).
    pub fn newest_first(mut runs: Vec<RunRecord>, mut alerts: Vec<AlertRecord>) -> History {
        runs.reverse();
        alerts.reverse();
        History { runs, alerts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::record::LayerRecord;
    use crate::kube::diff::FieldDiff;

    fn run(id: &str, revision: &str, layer: &str, action: &str) -> RunRecord {
        RunRecord {
            run_id: id.into(),
            command: "apply".into(),
            revision: revision.into(),
            commit: Some(CommitInfo {
                author: "Ana".into(),
                summary: format!("commit {revision}"),
            }),
            started: "t0".into(),
            finished: "t1".into(),
            result: crate::engine::record::RunResult::Ok,
            layers: vec![LayerRecord {
                layer: layer.into(),
                action: action.into(),
                counts: None,
                duration_ms: 1,
                error: None,
            }],
        }
    }

    /// The drift report as the drift check writes it: a ConfigMap's field and a Secret's
    /// masked value, and a Terraform attribute Terraform marked sensitive.
    const DRIFT: &str = r#"{
      "schema_version": 1, "stack": "s", "revision": "r1", "checked_at": "2026-01-01T00:00:00Z",
      "layers": [
        {"layer": "kubernetes.app", "state": "drifted", "observed": {"state": "drifted"},
         "revision": "r1",
         "changes": [{"target": {"api_version": "v1", "kind": "ConfigMap", "namespace": "default",
                       "name": "app"}, "action": "update", "reason": "changed in the cluster",
                      "fields": [{"path": ".data.color", "live": "red", "desired": "blue"}]},
                     {"target": {"api_version": "v1", "kind": "Secret", "namespace": "default",
                       "name": "creds"}, "action": "update",
                      "fields": [{"path": ".data.token", "live": "*** (changed)",
                                  "desired": "*** (changed)"}]}]},
        {"layer": "terraform.db", "state": "drifted", "observed": {"state": "drifted"},
         "changes": [{"target": {"address": "null_resource.db"}, "action": "update"}],
         "terraform": {"layer": "terraform.db", "resources": [{"address": "null_resource.db",
           "action": "update", "terraform_actions": ["update"], "attributes": [
             {"name": "password", "before": "sensitive", "after": "sensitive",
              "forces_replacement": false},
             {"name": "size", "before": {"value": 1}, "after": {"value": 2},
              "forces_replacement": false}]}]}}
      ]
    }"#;

    #[test]
    fn drift_is_shown_field_by_field_masked_as_the_cli_masks_it() {
        let d: LatestDrift = serde_json::from_str(DRIFT).unwrap();
        let app = DriftView::from((&d, &d.layers[0]));
        assert_eq!(
            app.changes[0].line,
            "~ ConfigMap/default/app (changed in the cluster)"
        );
        assert_eq!(
            app.changes[0].fields,
            [FieldChange {
                path: ".data.color".into(),
                before: "\"red\"".into(),
                after: "\"blue\"".into()
            }]
        );
        assert_eq!(app.changes[1].fields[0].before, "\"*** (changed)\"");
        let db = DriftView::from((&d, &d.layers[1]));
        assert_eq!(db.changes.len(), 1, "one resource, its attributes under it");
        let fields: Vec<(&str, &str, &str)> = db.changes[0]
            .fields
            .iter()
            .map(|f| (f.path.as_str(), f.before.as_str(), f.after.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("password", "(sensitive value)", "(sensitive value)"),
                ("size", "1", "2")
            ]
        );
        // The same line the CLI prints for the field.
        let cli = crate::report::run::field_line(&FieldDiff {
            path: ".data.color".into(),
            live: Some("red".into()),
            desired: Some("blue".into()),
        });
        let f = &app.changes[0].fields[0];
        assert_eq!(cli, format!("{}: {} → {}", f.path, f.before, f.after));
    }

    #[test]
    fn a_layers_page_has_its_commit_its_waiting_plan_and_its_runs_newest_first() {
        let mut stack = StackState::default();
        stack.layers.insert(
            "terraform.gate".into(),
            crate::state::stack_status::LayerState {
                converged_revision: Some("r1".into()),
                last_result: Some("awaiting_approval".into()),
                last_error: Some("line one\nline two".into()),
                awaiting_plan: Some("digest".into()),
                awaiting_revision: Some("r2".into()),
                reason: Some(Reason::AwaitingApproval),
                ..Default::default()
            },
        );
        let agent = AgentStatus {
            revision: Some("r2".into()),
            latest_seen: Some("r2".into()),
            ..Default::default()
        };
        let runs = vec![
            run("1", "r1", "terraform.gate", "applied"),
            run("2", "r2", "kubernetes.other", "applied"),
            run("3", "r2", "terraform.gate", "awaiting approval"),
        ];
        let card = LayerCard {
            layer: "terraform.gate".into(),
            wave: Some(1),
            state: Shown::AwaitingApproval,
            words: Shown::AwaitingApproval.words(),
            detail: None,
        };
        let page = layer_page(card, &agent, &stack, None, None, &runs);
        assert_eq!(page.converged_revision.as_deref(), Some("r1"));
        assert_eq!(
            page.converged_commit.as_ref().map(|c| c.summary.as_str()),
            Some("commit r1")
        );
        assert_eq!(page.pending_revision.as_deref(), Some("r2"));
        assert_eq!(
            page.awaiting.as_ref().map(|a| a.plan.as_str()),
            Some("digest")
        );
        assert_eq!(page.last_error.as_deref(), Some("line one\nline two"));
        let ids: Vec<&str> = page.history.iter().map(|h| h.run_id.as_str()).collect();
        assert_eq!(ids, ["3", "1"]);
        let v = serde_json::to_value(&page).unwrap();
        assert_eq!(v["layer"], "terraform.gate", "the card is flattened: {v}");
        assert_eq!(v["state"], "awaiting_approval");
    }
}
