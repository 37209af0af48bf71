//! Printing results: plans, applies, drift reports, status and history as text, JSON or Markdown.
//! Results are data ([`crate::engine::record`]); this module only renders them.

pub mod drift;
pub mod run;
pub mod store;
