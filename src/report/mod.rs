//! Printing results: plans, applies, drift reports, status and history as text, JSON or Markdown.
//! Results are data ([`crate::engine::record`]); this module only renders them.

pub mod drift;
pub mod error;
pub mod history;
pub mod run;
pub mod source;
pub mod status;
pub mod store;
