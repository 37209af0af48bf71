//! Walking the layer graph: each layer starts as soon as all its upstream layers are done, at
//! most `parallelism` at once. A layer whose upstream failed (or was skipped) is skipped with the
//! root cause named, and is not an error of its own; independent branches go on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;

use futures::stream::{FuturesUnordered, StreamExt};

use super::dag::LayerGraph;
use crate::stack::LayerId;

/// How one layer's step ended. `H` is why a layer holds its dependents back: the caller's own
/// type, so that it can tell one hold from another without reading text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<H = String> {
    Done,
    /// The step failed; the message is in the caller's own records.
    Failed,
    /// Not run because of the root cause named.
    Skipped(Cause<H>),
    /// Ran but holds its dependents back (awaiting approval, waiting on unknown inputs); they are
    /// skipped with this layer and hold as their cause.
    Blocked(H),
}

impl<H> Outcome<H> {
    fn lets_dependents_run(&self) -> bool {
        matches!(self, Outcome::Done)
    }
}

/// Why a layer was skipped: the first ancestor that stopped, and how. Intermediate skipped layers
/// are never named, so every dependent points at the layer to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause<H = String> {
    /// `upstream terraform.cluster failed`.
    Failed(LayerId),
    /// `upstream terraform.gate: awaiting approval`.
    Blocked(LayerId, H),
}

impl<H: fmt::Display> fmt::Display for Cause<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Failed(layer) => write!(f, "upstream {layer} failed"),
            Cause::Blocked(layer, why) => write!(f, "upstream {layer}: {why}"),
        }
    }
}

/// Runs `step` for every layer of `graph` (restricted to `only` when given: other layers count
/// as done), respecting edges and `parallelism`. Returns each layer's outcome.
///
/// # Guarantees
/// - A layer starts only after every upstream layer ended with [`Outcome::Done`].
/// - Dependents of a failed layer are skipped with `upstream <root cause> failed`: the first
///   failing ancestor is named, not the intermediate skipped layers.
/// - At most `parallelism` steps run at once.
pub async fn walk<H, F, Fut>(
    graph: &LayerGraph,
    parallelism: usize,
    only: Option<&BTreeSet<LayerId>>,
    step: F,
) -> BTreeMap<LayerId, Outcome<H>>
where
    H: Clone,
    F: Fn(LayerId) -> Fut,
    Fut: Future<Output = Outcome<H>>,
{
    let parallelism = parallelism.max(1);
    let mut outcomes: BTreeMap<LayerId, Outcome<H>> = BTreeMap::new();
    // Why a layer is blocked: the root cause travels down.
    let mut root_cause: BTreeMap<LayerId, Cause<H>> = BTreeMap::new();
    let included = |id: &LayerId| only.is_none_or(|o| o.contains(id));
    for id in graph.layers() {
        if !included(id) {
            outcomes.insert(id.clone(), Outcome::Done);
        }
    }
    let mut running = FuturesUnordered::new();
    // Each layer's upstream layers, looked up once: the loop below looks at the layers not
    // started yet each time a step ends, and asking the graph each time (a sorted copy) made a
    // run of 1,000 layers quadratic in that cost.
    let upstream: BTreeMap<&LayerId, Vec<LayerId>> = graph
        .layers()
        .iter()
        .map(|id| (id, graph.upstream(id)))
        .collect();
    // Not started nor settled yet, in declaration order; a layer leaves it when it starts or
    // is skipped.
    let mut waiting: Vec<&LayerId> = graph
        .layers()
        .iter()
        .filter(|id| !outcomes.contains_key(*id))
        .collect();
    // Whether a layer that holds its dependents back settled since the last look: only then
    // can a look with every slot taken settle anything (by skipping them). Without it, each
    // step's end would look at every waiting layer, quadratic in a run of 1,000 layers.
    let mut held = false;
    loop {
        // Settle every layer whose upstreams are all settled.
        let mut progressed = true;
        while progressed {
            progressed = false;
            let mut i = 0;
            while i < waiting.len() {
                if running.len() >= parallelism && !held {
                    break;
                }
                let id = waiting[i];
                let ups = &upstream[id];
                if ups.iter().any(|u| !outcomes.contains_key(u)) {
                    i += 1;
                    continue;
                }
                if let Some(bad) = ups.iter().find(|u| !outcomes[*u].lets_dependents_run()) {
                    let cause =
                        root_cause
                            .get(bad)
                            .cloned()
                            .unwrap_or_else(|| match &outcomes[bad] {
                                Outcome::Failed => Cause::Failed((*bad).clone()),
                                Outcome::Blocked(why) => {
                                    Cause::Blocked((*bad).clone(), why.clone())
                                }
                                Outcome::Skipped(cause) => cause.clone(),
                                Outcome::Done => unreachable!("done lets dependents run"),
                            });
                    root_cause.insert(id.clone(), cause.clone());
                    outcomes.insert(id.clone(), Outcome::Skipped(cause));
                    waiting.remove(i);
                    held = true;
                    progressed = true;
                    continue;
                }
                if running.len() >= parallelism {
                    i += 1;
                    continue;
                }
                waiting.remove(i);
                let id2 = id.clone();
                let fut = step(id.clone());
                running.push(async move { (id2, fut.await) });
                progressed = true;
            }
        }
        match running.next().await {
            Some((id, outcome)) => {
                held = !outcome.lets_dependents_run();
                outcomes.insert(id, outcome);
            }
            None => break,
        }
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn tf(n: &str) -> LayerId {
        LayerId::terraform(n)
    }

    fn graph(nodes: &[&str], edges: &[(&str, &str)]) -> LayerGraph {
        LayerGraph::from_edges(
            nodes.iter().map(|n| tf(n)),
            edges
                .iter()
                .map(|(a, b)| (tf(a), tf(b), "depends_on".to_string())),
        )
    }

    #[tokio::test]
    async fn a_failure_skips_dependents_naming_the_root_cause_while_other_branches_run() {
        // a → b → c ; x → y
        let g = graph(
            &["a", "b", "c", "x", "y"],
            &[("a", "b"), ("b", "c"), ("x", "y")],
        );
        let ran = Arc::new(Mutex::new(Vec::new()));
        let out = walk(&g, 2, None, |id| {
            let ran = ran.clone();
            async move {
                ran.lock().unwrap().push(id.name.clone());
                if id.name == "a" {
                    Outcome::<String>::Failed
                } else {
                    Outcome::Done
                }
            }
        })
        .await;
        assert_eq!(out[&tf("a")], Outcome::Failed);
        assert_eq!(out[&tf("b")], Outcome::Skipped(Cause::Failed(tf("a"))));
        assert_eq!(out[&tf("c")], Outcome::Skipped(Cause::Failed(tf("a"))));
        let Outcome::Skipped(cause) = &out[&tf("c")] else {
            unreachable!("asserted above")
        };
        assert_eq!(cause.to_string(), "upstream terraform.a failed");
        assert_eq!(out[&tf("y")], Outcome::Done);
        let mut ran = ran.lock().unwrap().clone();
        ran.sort();
        assert_eq!(ran, ["a", "x", "y"]);
    }

    #[tokio::test]
    async fn layers_start_when_their_own_upstreams_finish_within_the_parallelism() {
        // slow → after_slow ; fast → after_fast: after_fast must not wait for slow.
        let g = graph(
            &["slow", "fast", "after_slow", "after_fast"],
            &[("slow", "after_slow"), ("fast", "after_fast")],
        );
        let order = Arc::new(Mutex::new(Vec::new()));
        let peak = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        walk(&g, 2, None, |id| {
            let (order, peak, now) = (order.clone(), peak.clone(), now.clone());
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                let ms = if id.name == "slow" { 300 } else { 20 };
                tokio::time::sleep(Duration::from_millis(ms)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                order.lock().unwrap().push(id.name.clone());
                Outcome::<String>::Done
            }
        })
        .await;
        let order = order.lock().unwrap().clone();
        assert!(peak.load(Ordering::SeqCst) <= 2);
        let pos = |n: &str| order.iter().position(|o| o == n).unwrap();
        assert!(pos("after_fast") < pos("slow"), "{order:?}");
    }

    #[tokio::test]
    async fn blocked_layers_hold_back_dependents_and_excluded_layers_count_as_done() {
        let g = graph(&["m", "d", "e"], &[("m", "d"), ("e", "d")]);
        let out = walk(&g, 4, None, |id| async move {
            if id.name == "m" {
                Outcome::Blocked("awaiting approval".to_string())
            } else {
                Outcome::Done
            }
        })
        .await;
        let cause = Cause::Blocked(tf("m"), "awaiting approval".to_string());
        assert_eq!(cause.to_string(), "upstream terraform.m: awaiting approval");
        assert_eq!(out[&tf("d")], Outcome::Skipped(cause));
        let only: BTreeSet<LayerId> = [tf("d")].into();
        let out = walk(&g, 4, Some(&only), |_| async { Outcome::<String>::Done }).await;
        assert_eq!(out.len(), 3);
    }
}
