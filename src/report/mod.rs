//! Printing results: plans, applies, drift reports, status and history as text, JSON or Markdown.
//! Results are data ([`crate::engine::record`]); this module only renders them.

pub mod drift;
pub mod history;
pub mod run;
pub mod status;
pub mod store;

/// Any result as pretty JSON, with a final newline.
pub fn json<T: serde::Serialize>(value: &T) -> String {
    format!("{}\n", serde_json::to_string_pretty(value).expect("json"))
}
