//! The dashboard's front page as data (`GET /api/v1/overview`): the stack's graph in the waves
//! `strata graph` prints, and each layer's state in one word the page colours and spells out.
//! Built from what the agent knows of itself and what `status.json` remembers; nothing here
//! looks at the live system.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::agent::{AgentStatus, Awaiting};
use crate::engine::record::{CommitInfo, DriftState, Observation};
use crate::graph::GraphView;
use crate::server::running::Activity;
use crate::state::stack_status::{LayerState, Reason, StackState};

/// A layer's state on the dashboard, most pressing first when several hold (the order an
/// environment's tab counts them in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shown {
    /// The agent is running it now (planning, comparing with the cluster, or applying),
    /// whatever it was before.
    Applying,
    /// A plan waits for someone to approve it.
    AwaitingApproval,
    /// Its last apply failed or was interrupted.
    Failed,
    /// The live system differs from the revision last applied.
    Drifted,
    /// Its inputs are unknown until an upstream layer is applied.
    Waiting,
    /// Not run: an upstream layer failed or is held back.
    Held,
    /// Gone from the stack file while its resources remain.
    Orphaned,
    /// Never applied from this state dir.
    NeverApplied,
    /// Could not be observed (the cluster or terraform did not answer).
    Unknown,
    /// In sync with the revision last applied; a newer one is not applied yet.
    Pending,
    InSync,
}

impl Shown {
    /// `in sync`, `drifted`, ...: the state in words, for people and for screen readers.
    pub fn words(self) -> &'static str {
        match self {
            Shown::Applying => "applying",
            Shown::AwaitingApproval => "awaiting approval",
            Shown::Failed => "failed",
            Shown::Drifted => "drifted",
            Shown::Waiting => "waiting on an upstream output",
            Shown::Held => "held by an upstream layer",
            Shown::Orphaned => "orphaned",
            Shown::NeverApplied => "never applied",
            Shown::Unknown => "unknown",
            Shown::Pending => "pending revision",
            Shown::InSync => "in sync",
        }
    }

    /// The state of one layer: what waits on a person first, then what went wrong, then what
    /// was observed.
    pub fn of(
        name: &str,
        memory: Option<&LayerState>,
        reason: Option<&Reason>,
        observed: Option<&Observation>,
        awaiting: &[Awaiting],
    ) -> Shown {
        if awaiting.iter().any(|a| a.layer == name)
            || matches!(reason, Some(Reason::AwaitingApproval))
        {
            return Shown::AwaitingApproval;
        }
        let failed = memory.is_some_and(|m| m.last_result.as_deref() == Some("failed"));
        if failed || matches!(reason, Some(Reason::Failed { .. } | Reason::Interrupted)) {
            return Shown::Failed;
        }
        let drift = memory.and_then(|m| m.drift);
        if matches!(observed, Some(Observation::Drifted))
            || (observed.is_none() && drift == Some(DriftState::Drifted))
        {
            return Shown::Drifted;
        }
        match reason {
            Some(Reason::Waiting { .. }) => return Shown::Waiting,
            Some(Reason::UpstreamFailed { .. } | Reason::UpstreamHeld { .. }) => {
                return Shown::Held
            }
            Some(Reason::Orphaned { .. }) => return Shown::Orphaned,
            _ => {}
        }
        let applied = memory.is_some_and(|m| m.converged_revision.is_some());
        match observed {
            Some(Observation::NeverApplied) => Shown::NeverApplied,
            None if !applied => Shown::NeverApplied,
            Some(Observation::Unknown { .. }) => Shown::Unknown,
            Some(Observation::Pending { .. }) => Shown::Pending,
            _ if matches!(
                reason,
                Some(
                    Reason::PendingRevision { .. }
                        | Reason::Pinned { .. }
                        | Reason::RefusedRevision { .. }
                )
            ) =>
            {
                Shown::Pending
            }
            Some(Observation::InSync) => Shown::InSync,
            None if drift == Some(DriftState::InSync) => Shown::InSync,
            _ => Shown::Unknown,
        }
    }
}

/// One layer's box.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerCard {
    /// `kubernetes.apps`.
    pub layer: String,
    /// One-based; `None` for a layer the graph does not have (gone from the stack file).
    pub wave: Option<usize>,
    pub state: Shown,
    /// [`Shown::words`].
    pub words: &'static str,
    /// Why, in one line: the reason `strata status` gives, or why it could not be observed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// An edge of the graph: `to` reads `from`'s outputs or runs after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// `outputs.subnet_id`, `depends_on`, `cluster.main: outputs.kubeconfig`.
    pub labels: Vec<String>,
}

/// The graph of the revision the agent last converged (or attempted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Graph {
    /// Layer ids per wave, first wave first.
    pub waves: Vec<Vec<String>>,
    pub edges: Vec<Edge>,
}

impl From<&GraphView> for Graph {
    fn from(v: &GraphView) -> Graph {
        Graph {
            waves: v
                .waves
                .iter()
                .map(|w| w.iter().map(ToString::to_string).collect())
                .collect(),
            edges: v
                .edges
                .iter()
                .map(|e| Edge {
                    from: e.from.to_string(),
                    to: e.to.to_string(),
                    labels: e.labels.clone(),
                })
                .collect(),
        }
    }
}

/// The front page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    pub stack: String,
    /// The revision last converged (or attempted), and its commit.
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitInfo>,
    /// The newest revision seen on the source.
    pub latest_seen: Option<String>,
    /// The revision whose layers the agent is running now; the graph is then that revision's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applying_revision: Option<String>,
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ready: Option<String>,
    pub last_sync: Option<String>,
    pub last_drift_check: Option<String>,
    /// `None` when the revision's stack could not be read (see `graph_error`): the layers are
    /// then listed from `status.json`, without waves.
    pub graph: Option<Graph>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graph_error: Option<String>,
    /// In wave order, then the layers the graph does not have.
    pub layers: Vec<LayerCard>,
    /// The plans waiting for approval, with the digest an approval names.
    pub awaiting_approval: Vec<Awaiting>,
}

impl Overview {
    /// The front page from the agent's status, the stack's memory, the layers the agent runs
    /// now, the graph (or why there is none) and the commit of the agent's revision.
    pub fn build(
        agent: &AgentStatus,
        stack: &StackState,
        running: &BTreeMap<String, Activity>,
        graph: Result<Graph, String>,
        commit: Option<CommitInfo>,
    ) -> Overview {
        let views: BTreeMap<String, _> = stack
            .view(Some(agent))
            .into_iter()
            .map(|v| (v.layer.clone(), v))
            .collect();
        let (graph, graph_error) = match graph {
            Ok(g) => (Some(g), None),
            Err(e) => (None, Some(e)),
        };
        let mut order: Vec<(String, Option<usize>)> = Vec::new();
        if let Some(g) = &graph {
            for (i, wave) in g.waves.iter().enumerate() {
                order.extend(wave.iter().map(|l| (l.clone(), Some(i + 1))));
            }
        }
        for name in stack.layers.keys() {
            if !order.iter().any(|(l, _)| l == name) {
                order.push((name.clone(), None));
            }
        }
        let layers = order
            .into_iter()
            .map(|(layer, wave)| {
                let view = views.get(&layer);
                let reason = view.and_then(|v| v.reason.as_ref());
                let observed = agent.layers.get(&layer);
                // What runs now is the freshest fact there is: it wins over every memory.
                if let Some(a) = running.get(&layer) {
                    return LayerCard {
                        layer,
                        wave,
                        state: Shown::Applying,
                        words: Shown::Applying.words(),
                        detail: Some(format!("{} since {}", a.step.words(), a.since)),
                    };
                }
                let state = Shown::of(
                    &layer,
                    stack.layers.get(&layer),
                    reason,
                    observed,
                    &agent.awaiting_approval,
                );
                let detail = reason
                    .map(crate::report::status::reason)
                    .or_else(|| match observed {
                        Some(Observation::Unknown { reason }) => Some(reason.clone()),
                        _ => None,
                    });
                LayerCard {
                    layer,
                    wave,
                    state,
                    words: state.words(),
                    detail,
                }
            })
            .collect();
        Overview {
            stack: if agent.stack.is_empty() {
                stack.stack.clone()
            } else {
                agent.stack.clone()
            },
            revision: agent.revision.clone(),
            commit,
            latest_seen: agent.latest_seen.clone(),
            applying_revision: None,
            ready: agent.ready,
            not_ready: agent.not_ready.clone(),
            last_sync: agent.last_sync.clone(),
            last_drift_check: agent.last_drift_check.clone(),
            graph,
            graph_error,
            layers,
            awaiting_approval: agent.awaiting_approval.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory(result: &str, revision: Option<&str>) -> LayerState {
        LayerState {
            last_result: Some(result.into()),
            converged_revision: revision.map(str::to_string),
            ..Default::default()
        }
    }

    #[test]
    fn approval_and_failure_come_before_what_was_observed() {
        let awaiting = [Awaiting {
            layer: "terraform.gate".into(),
            plan: "p".into(),
            revision: None,
        }];
        let ok = memory("converged", Some("r1"));
        let drifted = Some(&Observation::Drifted);
        assert_eq!(
            Shown::of("terraform.gate", Some(&ok), None, drifted, &awaiting),
            Shown::AwaitingApproval
        );
        let failed = memory("failed", Some("r1"));
        assert_eq!(
            Shown::of("k.a", Some(&failed), None, drifted, &[]),
            Shown::Failed
        );
        assert_eq!(
            Shown::of("k.a", Some(&ok), None, drifted, &[]),
            Shown::Drifted
        );
        let waiting = Reason::Waiting { on: vec![] };
        assert_eq!(
            Shown::of("k.a", Some(&ok), Some(&waiting), None, &[]),
            Shown::Waiting
        );
        let held = Reason::UpstreamFailed {
            upstream: "terraform.net".into(),
        };
        assert_eq!(Shown::of("k.a", None, Some(&held), None, &[]), Shown::Held);
    }

    #[test]
    fn without_an_observation_the_memory_of_the_last_diff_is_used_and_nothing_is_in_sync_unseen() {
        assert_eq!(Shown::of("k.a", None, None, None, &[]), Shown::NeverApplied);
        let mut m = memory("converged", Some("r1"));
        assert_eq!(
            Shown::of("k.a", Some(&m), None, None, &[]),
            Shown::Unknown,
            "applied, never compared: not claimed in sync"
        );
        m.drift = Some(DriftState::InSync);
        assert_eq!(Shown::of("k.a", Some(&m), None, None, &[]), Shown::InSync);
        m.drift = Some(DriftState::Drifted);
        assert_eq!(Shown::of("k.a", Some(&m), None, None, &[]), Shown::Drifted);
        let unknown = Observation::Unknown {
            reason: "the cluster did not answer".into(),
        };
        assert_eq!(
            Shown::of("k.a", Some(&m), None, Some(&unknown), &[]),
            Shown::Unknown,
            "what the agent observed now wins over the memory"
        );
        let pending = Observation::Pending {
            revision: "r2".into(),
        };
        assert_eq!(
            Shown::of("k.a", Some(&m), None, Some(&pending), &[]),
            Shown::Pending
        );
    }

    #[test]
    fn layers_come_in_wave_order_then_those_the_graph_lacks_each_with_words() {
        let mut stack = StackState::default();
        stack
            .layers
            .insert("terraform.net".into(), memory("converged", Some("r1")));
        stack
            .layers
            .insert("kubernetes.gone".into(), memory("converged", Some("r1")));
        stack.layers.insert(
            "kubernetes.app".into(),
            LayerState {
                reason: Some(Reason::Failed {
                    error: "boom\nmore".into(),
                }),
                ..memory("failed", Some("r1"))
            },
        );
        let mut agent = AgentStatus {
            stack: "s".into(),
            revision: Some("r1".into()),
            ..Default::default()
        };
        agent
            .layers
            .insert("terraform.net".into(), Observation::InSync);
        let graph = Graph {
            waves: vec![
                vec!["terraform.net".into()],
                vec!["kubernetes.app".into(), "kubernetes.new".into()],
            ],
            edges: vec![Edge {
                from: "terraform.net".into(),
                to: "kubernetes.app".into(),
                labels: vec!["outputs.id".into()],
            }],
        };
        let o = Overview::build(&agent, &stack, &BTreeMap::new(), Ok(graph.clone()), None);
        let got: Vec<(&str, Option<usize>, &str)> = o
            .layers
            .iter()
            .map(|c| (c.layer.as_str(), c.wave, c.words))
            .collect();
        assert_eq!(
            got,
            [
                ("terraform.net", Some(1), "in sync"),
                ("kubernetes.app", Some(2), "failed"),
                ("kubernetes.new", Some(2), "never applied"),
                ("kubernetes.gone", None, "unknown"),
            ]
        );
        assert_eq!(o.layers[1].detail.as_deref(), Some("failed: boom"));
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["layers"][1]["state"], "failed");
        assert_eq!(v["graph"]["edges"][0]["labels"][0], "outputs.id");

        let running = BTreeMap::from([(
            "kubernetes.app".to_string(),
            Activity {
                step: crate::server::running::Step::Planning,
                since: "2026-01-01T00:00:00Z".into(),
            },
        )]);
        let o = Overview::build(&agent, &stack, &running, Ok(graph), None);
        assert_eq!(
            (o.layers[1].state, o.layers[1].words),
            (Shown::Applying, "applying"),
            "a failed layer run again is applying, not failed"
        );
        assert_eq!(
            o.layers[1].detail.as_deref(),
            Some("planning since 2026-01-01T00:00:00Z")
        );
        assert_eq!(o.layers[0].state, Shown::InSync, "only the running one");

        let o = Overview::build(
            &agent,
            &stack,
            &BTreeMap::new(),
            Err("no stack".into()),
            None,
        );
        assert_eq!(o.graph_error.as_deref(), Some("no stack"));
        assert_eq!(o.layers.len(), 3, "from status.json alone");
    }
}
