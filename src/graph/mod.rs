//! The layer graph: which layer runs after which, and why.

pub mod dag;
pub mod render;
pub mod walk;

pub use dag::{GraphEdge, LayerGraph};
pub use render::{render, GraphFormat, GraphView};
