//! The layer DAG: edges from references, `depends_on` and clusters; cycles; waves.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeRef, IntoEdgeReferences};
use petgraph::Direction;
use serde::Serialize;

use crate::stack::{Diagnostics, LayerId, LayerSpec, Location, Stack};

/// Most cycles listed for one stack; a graph with more has bigger problems than a list shows.
const MAX_CYCLES: usize = 100;

/// An edge `from → to`: `to` reads `from`'s outputs or must run after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphEdge {
    pub from: LayerId,
    pub to: LayerId,
    /// What created the edge: `outputs.subnet_id`, `depends_on`, `cluster.main: outputs.kubeconfig`.
    pub labels: Vec<String>,
}

/// The layers of a stack and the order between them.
#[derive(Debug, Clone)]
pub struct LayerGraph {
    graph: StableDiGraph<LayerId, Vec<String>>,
    index: BTreeMap<LayerId, NodeIndex>,
    /// Declaration order, which breaks ties everywhere an order is shown.
    order: Vec<LayerId>,
}

impl LayerGraph {
    /// Builds the graph of a stack.
    ///
    /// # Errors
    /// Every dependency cycle, as its full path, at the declaration of the cycle's first layer.
    /// References to layers that don't exist are left out here ([`Stack::load`] reports them).
    pub fn build(stack: &Stack) -> Result<LayerGraph, Diagnostics> {
        let graph = LayerGraph::from_stack(stack);
        let cycles = graph.cycles();
        if cycles.is_empty() {
            return Ok(graph);
        }
        let mut diags = Diagnostics::default();
        for cycle in cycles {
            let at: Location = stack
                .layer(&cycle[0])
                .map(|l| l.location.clone())
                .unwrap_or_else(|| Location {
                    file: stack.file.clone(),
                    line: 1,
                    col: 1,
                    revision: None,
                });
            let path: Vec<String> = cycle
                .iter()
                .chain(std::iter::once(&cycle[0]))
                .map(ToString::to_string)
                .collect();
            diags.push(at, format!("dependency cycle: {}", path.join(" → ")));
        }
        Err(diags)
    }

    /// The graph of a stack without checking it for cycles.
    pub fn from_stack(stack: &Stack) -> LayerGraph {
        let mut edges: Vec<(LayerId, LayerId, String)> = Vec::new();
        for layer in &stack.layers {
            for r in layer.references() {
                edges.push((r.target.clone(), layer.id.clone(), r.label()));
            }
            for d in &layer.depends_on {
                edges.push((d.target.clone(), layer.id.clone(), "depends_on".into()));
            }
            if let LayerSpec::Kubernetes(k) = &layer.spec {
                if let Some(c) = stack.cluster(&k.cluster) {
                    for r in c.references() {
                        let label = format!("cluster.{}: {}", c.name, r.label());
                        edges.push((r.target.clone(), layer.id.clone(), label));
                    }
                }
            }
        }
        LayerGraph::from_edges(stack.layers.iter().map(|l| l.id.clone()), edges)
    }

    /// A graph of the given layers (in declaration order) and labelled edges. Edges that name a
    /// layer not in `layers` are dropped.
    pub fn from_edges<L, E>(layers: L, edges: E) -> LayerGraph
    where
        L: IntoIterator<Item = LayerId>,
        E: IntoIterator<Item = (LayerId, LayerId, String)>,
    {
        let mut graph = StableDiGraph::new();
        let mut index = BTreeMap::new();
        let mut order = Vec::new();
        for id in layers {
            if index.contains_key(&id) {
                continue;
            }
            index.insert(id.clone(), graph.add_node(id.clone()));
            order.push(id);
        }
        for (from, to, label) in edges {
            let (Some(&a), Some(&b)) = (index.get(&from), index.get(&to)) else {
                continue;
            };
            match graph.find_edge(a, b) {
                Some(e) => {
                    let labels: &mut Vec<String> = &mut graph[e];
                    if !labels.contains(&label) {
                        labels.push(label);
                    }
                }
                None => {
                    graph.add_edge(a, b, vec![label]);
                }
            }
        }
        LayerGraph {
            graph,
            index,
            order,
        }
    }

    /// The layers, in declaration order.
    pub fn layers(&self) -> &[LayerId] {
        &self.order
    }

    pub fn contains(&self, id: &LayerId) -> bool {
        self.index.contains_key(id)
    }

    /// A layer's place in declaration order. Nodes are added in that order and never removed,
    /// so a node's index is its place (a scan of `order` made sorting quadratic).
    fn rank(&self, id: &LayerId) -> usize {
        self.index.get(id).map_or(usize::MAX, |n| n.index())
    }

    fn sorted(&self, mut ids: Vec<LayerId>) -> Vec<LayerId> {
        ids.sort_by_key(|id| self.rank(id));
        ids.dedup();
        ids
    }

    fn neighbours(&self, id: &LayerId, dir: Direction) -> Vec<LayerId> {
        let Some(&n) = self.index.get(id) else {
            return Vec::new();
        };
        self.sorted(
            self.graph
                .neighbors_directed(n, dir)
                .map(|m| self.graph[m].clone())
                .collect(),
        )
    }

    /// The layers `id` depends on directly.
    pub fn upstream(&self, id: &LayerId) -> Vec<LayerId> {
        self.neighbours(id, Direction::Incoming)
    }

    /// The layers that depend on `id` directly.
    pub fn downstream(&self, id: &LayerId) -> Vec<LayerId> {
        self.neighbours(id, Direction::Outgoing)
    }

    /// Every layer that depends on `id`, directly or through others.
    pub fn dependents(&self, id: &LayerId) -> BTreeSet<LayerId> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![id.clone()];
        while let Some(next) = todo.pop() {
            for d in self.downstream(&next) {
                if seen.insert(d.clone()) {
                    todo.push(d);
                }
            }
        }
        seen
    }

    /// Every edge, ordered by its ends' declaration order.
    pub fn edges(&self) -> Vec<GraphEdge> {
        let mut out: Vec<GraphEdge> = self
            .graph
            .edge_references()
            .map(|e| GraphEdge {
                from: self.graph[e.source()].clone(),
                to: self.graph[e.target()].clone(),
                labels: e.weight().clone(),
            })
            .collect();
        out.sort_by_key(|e| (self.rank(&e.to), self.rank(&e.from)));
        out
    }

    /// Every elementary cycle (up to a hundred), each listed from its earliest-declared layer.
    pub fn cycles(&self) -> Vec<Vec<LayerId>> {
        let mut cycles = Vec::new();
        for scc in petgraph::algo::tarjan_scc(&self.graph) {
            let self_loop = scc.len() == 1 && self.graph.find_edge(scc[0], scc[0]).is_some();
            if scc.len() < 2 && !self_loop {
                continue;
            }
            let mut members: Vec<NodeIndex> = scc;
            members.sort_by_key(|n| self.rank(&self.graph[*n]));
            for (i, &start) in members.iter().enumerate() {
                // Cycles through `start` using only later members: each cycle is found once.
                let allowed: BTreeSet<NodeIndex> = members[i..].iter().copied().collect();
                let mut path = vec![start];
                self.cycles_from(start, start, &allowed, &mut path, &mut cycles);
                if cycles.len() >= MAX_CYCLES {
                    break;
                }
            }
        }
        cycles.sort_by_key(|c: &Vec<LayerId>| c.iter().map(|id| self.rank(id)).collect::<Vec<_>>());
        cycles
    }

    fn cycles_from(
        &self,
        start: NodeIndex,
        at: NodeIndex,
        allowed: &BTreeSet<NodeIndex>,
        path: &mut Vec<NodeIndex>,
        out: &mut Vec<Vec<LayerId>>,
    ) {
        let mut next: Vec<NodeIndex> = self
            .graph
            .neighbors_directed(at, Direction::Outgoing)
            .collect();
        next.sort_by_key(|n| self.rank(&self.graph[*n]));
        next.dedup();
        for n in next {
            if out.len() >= MAX_CYCLES {
                return;
            }
            if n == start {
                out.push(path.iter().map(|p| self.graph[*p].clone()).collect());
            } else if allowed.contains(&n) && !path.contains(&n) {
                path.push(n);
                self.cycles_from(start, n, allowed, path, out);
                path.pop();
            }
        }
    }

    /// The layers grouped in waves: every layer of a wave depends only on layers of earlier waves,
    /// and sits in the earliest wave it can. Layers on a cycle are left out.
    pub fn waves(&self) -> Vec<Vec<LayerId>> {
        let mut wave_of: BTreeMap<NodeIndex, usize> = BTreeMap::new();
        let mut remaining: BTreeMap<NodeIndex, usize> = self
            .graph
            .node_indices()
            .map(|n| {
                let ups: BTreeSet<NodeIndex> = self
                    .graph
                    .neighbors_directed(n, Direction::Incoming)
                    .collect();
                (n, ups.len())
            })
            .collect();
        let mut ready: Vec<NodeIndex> = remaining
            .iter()
            .filter(|(_, &c)| c == 0)
            .map(|(&n, _)| n)
            .collect();
        while let Some(n) = ready.pop() {
            let wave = self
                .graph
                .neighbors_directed(n, Direction::Incoming)
                .filter_map(|u| wave_of.get(&u))
                .map(|w| w + 1)
                .max()
                .unwrap_or(0);
            wave_of.insert(n, wave);
            let downs: BTreeSet<NodeIndex> = self
                .graph
                .neighbors_directed(n, Direction::Outgoing)
                .collect();
            for d in downs {
                if let Some(c) = remaining.get_mut(&d) {
                    *c -= 1;
                    if *c == 0 {
                        ready.push(d);
                    }
                }
            }
        }
        let count = wave_of.values().max().map_or(0, |m| m + 1);
        let mut waves = vec![Vec::new(); count];
        for (n, w) in wave_of {
            waves[w].push(self.graph[n].clone());
        }
        waves.into_iter().map(|w| self.sorted(w)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn names(ids: &[LayerId]) -> Vec<String> {
        ids.iter().map(|i| i.name.clone()).collect()
    }

    #[test]
    fn waves_place_each_layer_after_all_it_depends_on() {
        // a → b → d, a → c, e alone; d also needs c.
        let g = graph(
            &["a", "b", "c", "d", "e"],
            &[("a", "b"), ("b", "d"), ("a", "c"), ("c", "d")],
        );
        let waves: Vec<Vec<String>> = g.waves().iter().map(|w| names(w)).collect();
        assert_eq!(waves, vec![vec!["a", "e"], vec!["b", "c"], vec!["d"]]);
        assert!(g.cycles().is_empty());
    }

    #[test]
    fn a_layer_waits_for_its_longest_chain() {
        let g = graph(&["a", "b", "c"], &[("a", "b"), ("b", "c"), ("a", "c")]);
        let waves: Vec<Vec<String>> = g.waves().iter().map(|w| names(w)).collect();
        assert_eq!(waves, vec![vec!["a"], vec!["b"], vec!["c"]]);
    }

    #[test]
    fn every_cycle_is_reported_as_a_full_path() {
        // Two cycles sharing b: a → b → a and b → c → b; plus a self-loop on d.
        let g = graph(
            &["a", "b", "c", "d", "e"],
            &[
                ("a", "b"),
                ("b", "a"),
                ("b", "c"),
                ("c", "b"),
                ("d", "d"),
                ("c", "e"),
            ],
        );
        let cycles: Vec<Vec<String>> = g.cycles().iter().map(|c| names(c)).collect();
        assert_eq!(cycles, vec![vec!["a", "b"], vec!["b", "c"], vec!["d"]]);
    }

    #[test]
    fn a_triangle_with_a_chord_has_both_its_cycles() {
        let g = graph(
            &["a", "b", "c"],
            &[("a", "b"), ("b", "c"), ("c", "a"), ("b", "a")],
        );
        let cycles: Vec<Vec<String>> = g.cycles().iter().map(|c| names(c)).collect();
        assert_eq!(cycles, vec![vec!["a", "b"], vec!["a", "b", "c"]]);
    }

    #[test]
    fn dependents_are_transitive_and_exclude_the_layer() {
        let g = graph(&["a", "b", "c", "x"], &[("a", "b"), ("b", "c")]);
        let d: Vec<String> = g
            .dependents(&tf("a"))
            .iter()
            .map(|i| i.name.clone())
            .collect();
        assert_eq!(d, ["b", "c"]);
        assert!(g.dependents(&tf("x")).is_empty());
        assert_eq!(names(&g.upstream(&tf("b"))), ["a"]);
        assert_eq!(names(&g.downstream(&tf("b"))), ["c"]);
    }

    #[test]
    fn repeated_edges_merge_their_labels() {
        let g = LayerGraph::from_edges(
            [tf("a"), tf("b")],
            [
                (tf("a"), tf("b"), "outputs.x".to_string()),
                (tf("a"), tf("b"), "outputs.y".to_string()),
                (tf("a"), tf("b"), "outputs.x".to_string()),
                (tf("a"), tf("zzz"), "outputs.x".to_string()),
            ],
        );
        let e = g.edges();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].labels, ["outputs.x", "outputs.y"]);
    }
}
