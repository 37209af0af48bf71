//! Printing results: plans, applies, drift reports, status, history, sources and errors as text,
//! JSON or Markdown. Results are data ([`crate::engine::record`] and friends); this module only
//! renders them.

pub mod drift;
pub mod error;
pub mod history;
pub mod run;
pub mod source;
pub mod status;
pub mod store;

/// Any result as pretty JSON, with a final newline.
pub fn json<T: serde::Serialize>(value: &T) -> String {
    format!("{}\n", serde_json::to_string_pretty(value).expect("json"))
}

/// The one-line summary of a multi-line message: its first line, and when that line only
/// introduces what follows (`failed to load manifests:`), the first reason after it too, so that
/// a summary never ends in a bare colon. `(and N more)` counts the reasons left out.
pub fn summary_line(text: &str) -> String {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("");
    if !first.ends_with(':') {
        return first.to_string();
    }
    let rest: Vec<&str> = lines.collect();
    match rest.as_slice() {
        [] => first.trim_end_matches(':').to_string(),
        [one] => format!("{first} {one}"),
        [one, more @ ..] => format!("{first} {one} (and {} more)", more.len()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_summary_keeps_the_reason() {
        assert_eq!(
            super::summary_line("failed to load manifests:\n  a.yaml:3: bad\n  b.yaml:1: worse"),
            "failed to load manifests: a.yaml:3: bad (and 1 more)"
        );
        assert_eq!(super::summary_line("plain\nmore"), "plain");
        assert_eq!(super::summary_line("heading:"), "heading");
    }
}
