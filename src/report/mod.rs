//! Printing results: plans, applies, drift reports, status, history, sources and errors as text,
//! JSON or Markdown. Results are data ([`crate::engine::record`] and friends); this module only
//! renders them.

pub mod drift;
pub mod error;
pub mod history;
pub mod run;
pub mod source;
pub mod state_push;
pub mod status;

/// Any result as pretty JSON, with a final newline.
pub fn json<T: serde::Serialize>(value: &T) -> String {
    format!("{}\n", serde_json::to_string_pretty(value).expect("json"))
}
