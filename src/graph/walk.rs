//! Walking the layer graph: each layer starts as soon as all its upstream layers are done, within
//! the bound of its kind (Terraform layers are heavy processes, Kubernetes layers are network-bound
//! requests, so each kind has its own pool). A layer whose upstream failed (or was skipped) is
//! skipped with the root cause named, and is not an error of its own; independent branches go on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;

use futures::stream::{FuturesUnordered, StreamExt};

use super::dag::LayerGraph;
use crate::stack::{LayerId, LayerKind, StackSettings};

/// How many layers of each kind may run at once. A Terraform layer runs processes and providers
/// (CPU and memory); a Kubernetes layer mostly waits on its cluster's API server, whose own bound
/// on requests in flight is the client's (see `kube::clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parallelism {
    pub terraform: usize,
    pub kubernetes: usize,
}

impl Parallelism {
    /// The stack's `parallelism` (Terraform) and `kubernetes_parallelism`.
    pub fn of(settings: &StackSettings) -> Parallelism {
        Parallelism {
            terraform: settings.parallelism,
            kubernetes: settings.kubernetes_parallelism,
        }
    }

    /// The same bound for every kind.
    pub fn uniform(n: usize) -> Parallelism {
        Parallelism {
            terraform: n,
            kubernetes: n,
        }
    }

    /// The bound of one kind, never below 1 (a bound of 0 would never start anything).
    fn limit(&self, kind: LayerKind) -> usize {
        match kind {
            LayerKind::Terraform => self.terraform,
            LayerKind::Kubernetes => self.kubernetes,
        }
        .max(1)
    }
}

/// Steps running now, per kind.
#[derive(Default)]
struct Busy {
    terraform: usize,
    kubernetes: usize,
}

impl Busy {
    fn slot(&mut self, kind: LayerKind) -> &mut usize {
        match kind {
            LayerKind::Terraform => &mut self.terraform,
            LayerKind::Kubernetes => &mut self.kubernetes,
        }
    }

    fn of(&self, kind: LayerKind) -> usize {
        match kind {
            LayerKind::Terraform => self.terraform,
            LayerKind::Kubernetes => self.kubernetes,
        }
    }

    fn full(&self, kind: LayerKind, limits: &Parallelism) -> bool {
        self.of(kind) >= limits.limit(kind)
    }
}

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
/// as done), respecting edges and each kind's bound in `parallelism`. Returns each layer's outcome.
///
/// # Guarantees
/// - A layer starts only after every upstream layer ended with [`Outcome::Done`].
/// - Dependents of a failed layer are skipped with `upstream <root cause> failed`: the first
///   failing ancestor is named, not the intermediate skipped layers.
/// - At most `parallelism.terraform` Terraform steps and at most `parallelism.kubernetes`
///   Kubernetes steps run at once; a full pool never holds back a layer of the other kind.
pub async fn walk<H, F, Fut>(
    graph: &LayerGraph,
    parallelism: Parallelism,
    only: Option<&BTreeSet<LayerId>>,
    step: F,
) -> BTreeMap<LayerId, Outcome<H>>
where
    H: Clone,
    F: Fn(LayerId) -> Fut,
    Fut: Future<Output = Outcome<H>>,
{
    let mut busy = Busy::default();
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
    // Whether a layer that holds its dependents back settled in this walk: only then can a look
    // with every slot taken settle anything (by skipping them), and from then on it may at any
    // step's end. Without it, each step's end would look at every waiting layer, quadratic in a
    // run of 1,000 layers.
    let mut held = false;
    // How many layers of each kind wait: a kind with none cannot start anything, whether its
    // pool is full or not (a stack of Kubernetes layers only never fills the Terraform pool).
    let mut left = Busy::default();
    for id in &waiting {
        *left.slot(id.kind) += 1;
    }
    loop {
        // Settle every layer whose upstreams are all settled.
        let mut progressed = true;
        while progressed {
            progressed = false;
            let mut i = 0;
            while i < waiting.len() {
                // Every pool full, or without a layer waiting for it: nothing can start, and
                // nothing can settle unless a layer holding its dependents back just did.
                let stuck = |kind| left.of(kind) == 0 || busy.full(kind, &parallelism);
                if !held && stuck(LayerKind::Terraform) && stuck(LayerKind::Kubernetes) {
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
                    *left.slot(id.kind) -= 1;
                    held = true;
                    progressed = true;
                    continue;
                }
                if busy.full(id.kind, &parallelism) {
                    i += 1;
                    continue;
                }
                waiting.remove(i);
                *left.slot(id.kind) -= 1;
                *busy.slot(id.kind) += 1;
                let id2 = id.clone();
                let fut = step(id.clone());
                running.push(async move { (id2, fut.await) });
                progressed = true;
            }
        }
        match running.next().await {
            Some((id, outcome)) => {
                *busy.slot(id.kind) -= 1;
                // Once a layer held its dependents back, a layer of any kind may be waiting to
                // be skipped as soon as its other upstreams settle, pool full or not: look
                // every time from then on (a run with a failure looks at every waiting layer).
                held |= !outcome.lets_dependents_run();
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
        let out = walk(&g, Parallelism::uniform(2), None, |id| {
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
        walk(&g, Parallelism::uniform(2), None, |id| {
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
        let out = walk(&g, Parallelism::uniform(4), None, |id| async move {
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
        let out = walk(&g, Parallelism::uniform(4), Some(&only), |_| async {
            Outcome::<String>::Done
        })
        .await;
        assert_eq!(out.len(), 3);
    }

    fn mixed(nodes: &[&str], edges: &[(&str, &str)]) -> LayerGraph {
        let id = |n: &str| LayerId::parse(n).expect("layer id");
        LayerGraph::from_edges(
            nodes.iter().map(|n| id(n)),
            edges
                .iter()
                .map(|(a, b)| (id(a), id(b), "depends_on".to_string())),
        )
    }

    /// Steps running now and the most seen at once, per kind and in all.
    #[derive(Default)]
    struct Gauge {
        now: [AtomicUsize; 3],
        peak: [AtomicUsize; 3],
    }

    impl Gauge {
        fn enter(&self, kind: LayerKind) {
            for i in [kind as usize, 2] {
                let n = self.now[i].fetch_add(1, Ordering::SeqCst) + 1;
                self.peak[i].fetch_max(n, Ordering::SeqCst);
            }
        }

        fn leave(&self, kind: LayerKind) {
            for i in [kind as usize, 2] {
                self.now[i].fetch_sub(1, Ordering::SeqCst);
            }
        }

        fn peak(&self, i: usize) -> usize {
            self.peak[i].load(Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn each_kind_fills_its_own_pool_and_never_exceeds_it() {
        // Six independent layers of each kind, Terraform one at a time, Kubernetes three at
        // once. Each step holds its slot until both pools were seen full (bounded polling, no
        // timing assumed), so the peaks below are what the walk allowed, not what a fast
        // machine happened to overlap.
        let names: Vec<String> = (0..6)
            .flat_map(|i| [format!("terraform.t{i}"), format!("kubernetes.k{i}")])
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let g = mixed(&names, &[]);
        let gauge = Gauge::default();
        let limits = Parallelism {
            terraform: 1,
            kubernetes: 3,
        };
        let out = walk(&g, limits, None, |id| {
            let gauge = &gauge;
            async move {
                gauge.enter(id.kind);
                for _ in 0..2000 {
                    if gauge.peak(LayerKind::Terraform as usize) >= 1
                        && gauge.peak(LayerKind::Kubernetes as usize) >= 3
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                gauge.leave(id.kind);
                Outcome::<String>::Done
            }
        })
        .await;
        assert!(out.values().all(|o| *o == Outcome::Done), "{out:?}");
        assert_eq!(gauge.peak(LayerKind::Terraform as usize), 1);
        assert_eq!(gauge.peak(LayerKind::Kubernetes as usize), 3);
        // A Terraform layer ran beside a full Kubernetes pool: neither holds the other back.
        assert_eq!(gauge.peak(2), 4);
    }

    #[tokio::test]
    async fn a_chain_across_kinds_runs_in_order_and_a_failure_skips_the_other_kind() {
        // terraform.a → kubernetes.b → terraform.c → kubernetes.d, with room for many
        // Kubernetes layers: the edges, not the pools, order them.
        let chain = ["terraform.a", "kubernetes.b", "terraform.c", "kubernetes.d"];
        let g = mixed(
            &chain,
            &[
                ("terraform.a", "kubernetes.b"),
                ("kubernetes.b", "terraform.c"),
                ("terraform.c", "kubernetes.d"),
            ],
        );
        let limits = Parallelism {
            terraform: 1,
            kubernetes: 16,
        };
        let order = Arc::new(Mutex::new(Vec::new()));
        let gauge = Gauge::default();
        let out = walk(&g, limits, None, |id| {
            let (order, gauge) = (order.clone(), &gauge);
            async move {
                gauge.enter(id.kind);
                tokio::time::sleep(Duration::from_millis(5)).await;
                order.lock().unwrap().push(id.to_string());
                gauge.leave(id.kind);
                Outcome::<String>::Done
            }
        })
        .await;
        assert!(out.values().all(|o| *o == Outcome::Done), "{out:?}");
        assert_eq!(*order.lock().unwrap(), chain);
        assert_eq!(gauge.peak(2), 1);

        let out = walk(&g, limits, None, |id| async move {
            if id.name == "b" {
                Outcome::<String>::Failed
            } else {
                Outcome::Done
            }
        })
        .await;
        let b = LayerId::kubernetes("b");
        assert_eq!(out[&LayerId::terraform("a")], Outcome::Done);
        assert_eq!(
            out[&LayerId::terraform("c")],
            Outcome::Skipped(Cause::Failed(b.clone()))
        );
        assert_eq!(
            out[&LayerId::kubernetes("d")],
            Outcome::Skipped(Cause::Failed(b))
        );
    }

    #[tokio::test]
    async fn kubernetes_layers_alone_fill_their_pool_and_a_failure_skips_only_its_dependents() {
        // 40 Kubernetes layers, no Terraform layer (its pool never fills): k0 → k1 → k2, the
        // rest independent; k0 fails.
        let names: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        let g = LayerGraph::from_edges(
            names.iter().map(LayerId::kubernetes),
            [("k0", "k1"), ("k1", "k2")].iter().map(|(a, b)| {
                (
                    LayerId::kubernetes(*a),
                    LayerId::kubernetes(*b),
                    "depends_on".to_string(),
                )
            }),
        );
        let limits = Parallelism {
            terraform: 4,
            kubernetes: 3,
        };
        let gauge = Gauge::default();
        let out = walk(&g, limits, None, |id| {
            let gauge = &gauge;
            async move {
                gauge.enter(id.kind);
                tokio::time::sleep(Duration::from_millis(2)).await;
                gauge.leave(id.kind);
                if id.name == "k0" {
                    Outcome::<String>::Failed
                } else {
                    Outcome::Done
                }
            }
        })
        .await;
        let k0 = LayerId::kubernetes("k0");
        assert_eq!(out[&k0], Outcome::Failed);
        for skipped in ["k1", "k2"] {
            assert_eq!(
                out[&LayerId::kubernetes(skipped)],
                Outcome::Skipped(Cause::Failed(k0.clone()))
            );
        }
        assert_eq!(
            out.values().filter(|o| **o == Outcome::Done).count(),
            37,
            "{out:?}"
        );
        assert_eq!(gauge.peak(2), 3);
    }
}
