//! The layer graph printed for people and tools: text, Graphviz DOT, Mermaid and JSON.

use std::fmt::Write;

use serde::Serialize;

use super::dag::{GraphEdge, LayerGraph};
use crate::stack::{LayerId, LayerKind, Stack};

/// Output formats of `strata graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum GraphFormat {
    #[default]
    Text,
    Dot,
    Mermaid,
    Json,
}

/// The graph as data: what `--format json` prints.
#[derive(Debug, Serialize)]
pub struct GraphView {
    pub stack: String,
    pub layers: Vec<LayerView>,
    /// Layer ids per wave, first wave first.
    pub waves: Vec<Vec<LayerId>>,
    pub edges: Vec<GraphEdge>,
}

#[derive(Debug, Serialize)]
pub struct LayerView {
    pub id: LayerId,
    pub kind: LayerKind,
    pub name: String,
    pub source: String,
    /// One-based, as printed.
    pub wave: usize,
    pub upstream: Vec<LayerId>,
}

impl GraphView {
    pub fn new(stack: &Stack, graph: &LayerGraph) -> GraphView {
        let waves = graph.waves();
        let wave_of = |id: &LayerId| {
            waves
                .iter()
                .position(|w| w.contains(id))
                .map_or(0, |w| w + 1)
        };
        let layers = stack
            .layers
            .iter()
            .map(|l| LayerView {
                id: l.id.clone(),
                kind: l.id.kind,
                name: l.id.name.clone(),
                source: l.source.display().to_string(),
                wave: wave_of(&l.id),
                upstream: graph.upstream(&l.id),
            })
            .collect();
        GraphView {
            stack: stack.name.clone(),
            layers,
            waves,
            edges: graph.edges(),
        }
    }
}

/// Renders the graph of `stack` in `format`, ending with a newline.
pub fn render(stack: &Stack, graph: &LayerGraph, format: GraphFormat) -> String {
    let view = GraphView::new(stack, graph);
    match format {
        GraphFormat::Text => text(&view),
        GraphFormat::Dot => dot(&view),
        GraphFormat::Mermaid => mermaid(&view),
        GraphFormat::Json => {
            let mut s = serde_json::to_string_pretty(&view).expect("graph view serialises");
            s.push('\n');
            s
        }
    }
}

/// `N layers, M waves`, the one-line summary `strata validate` prints.
pub fn summary(layers: usize, waves: usize) -> String {
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    format!("{}, {}", plural(layers, "layer"), plural(waves, "wave"))
}

fn text(view: &GraphView) -> String {
    let mut out = format!(
        "stack \"{}\": {}\n",
        view.stack,
        summary(view.layers.len(), view.waves.len())
    );
    let width = view
        .layers
        .iter()
        .map(|l| l.id.to_string().len())
        .max()
        .unwrap_or(0);
    for (i, wave) in view.waves.iter().enumerate() {
        let _ = writeln!(out, "\nwave {}", i + 1);
        for id in wave {
            let ups: Vec<String> = view
                .edges
                .iter()
                .filter(|e| &e.to == id)
                .map(|e| format!("{} ({})", e.from, e.labels.join(", ")))
                .collect();
            if ups.is_empty() {
                let _ = writeln!(out, "  {id}");
            } else {
                let _ = writeln!(out, "  {:width$}  ← {}", id.to_string(), ups.join("; "));
            }
        }
    }
    out
}

fn dot_quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn dot(view: &GraphView) -> String {
    let mut out = format!("digraph {} {{\n", dot_quote(&view.stack));
    out.push_str("  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n");
    for l in &view.layers {
        let shape = match l.kind {
            LayerKind::Terraform => "box",
            LayerKind::Kubernetes => "component",
        };
        let label = format!("{}\n{}", l.id, l.source);
        let _ = writeln!(
            out,
            "  {} [label={}, shape={shape}];",
            dot_quote(&l.id.to_string()),
            dot_quote(&label)
        );
    }
    for (i, wave) in view.waves.iter().enumerate() {
        let ids: Vec<String> = wave.iter().map(|id| dot_quote(&id.to_string())).collect();
        let _ = writeln!(
            out,
            "  {{ rank=same; {}; }} // wave {}",
            ids.join("; "),
            i + 1
        );
    }
    for e in &view.edges {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}];",
            dot_quote(&e.from.to_string()),
            dot_quote(&e.to.to_string()),
            dot_quote(&e.labels.join("\n"))
        );
    }
    out.push_str("}\n");
    out
}

/// Mermaid text inside `"..."`: quotes become an entity, as Mermaid documents.
fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
}

fn mermaid(view: &GraphView) -> String {
    // Node ids are positional (n0, n1, ...): layer names may hold characters Mermaid reserves.
    let node = |id: &LayerId| {
        let i = view.layers.iter().position(|l| &l.id == id).unwrap_or(0);
        format!("n{i}")
    };
    let mut out = String::from("flowchart LR\n");
    for (i, wave) in view.waves.iter().enumerate() {
        let _ = writeln!(out, "  subgraph wave{} [\"wave {}\"]", i + 1, i + 1);
        for id in wave {
            let _ = writeln!(
                out,
                "    {}[\"{}\"]",
                node(id),
                mermaid_text(&id.to_string())
            );
        }
        out.push_str("  end\n");
    }
    for e in &view.edges {
        let _ = writeln!(
            out,
            "  {} -->|\"{}\"| {}",
            node(&e.from),
            mermaid_text(&e.labels.join(", ")),
            node(&e.to)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_strings_are_escaped() {
        assert_eq!(dot_quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }

    #[test]
    fn summaries_count_in_words() {
        assert_eq!(summary(1, 1), "1 layer, 1 wave");
        assert_eq!(summary(7, 4), "7 layers, 4 waves");
    }
}
