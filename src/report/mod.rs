//! Printing results: plans, applies, drift reports, status, history, sources and errors as text,
//! JSON or Markdown. Results are data ([`crate::engine::record`] and friends); this module only
//! renders them.

pub mod drift;
pub mod error;
pub mod history;
pub mod image;
pub mod orphans;
pub mod promote;
pub mod run;
pub mod source;
pub mod state_push;
pub mod status;

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

/// Longest value shown whole in a diff line.
pub const MAX_SHOWN_VALUE: usize = 200;
/// Characters of unchanged text kept on each side of a change in a shortened value.
const CONTEXT: usize = 40;

/// Two renderings of a changed value, shortened when long to the part around the change
/// (`…` marking what was cut, with the full length), so that a one-character change in a
/// 200 KB annotation prints a short line, not 400 KB.
pub fn shorten_change(before: &str, after: &str) -> (String, String) {
    if before.len() <= MAX_SHOWN_VALUE && after.len() <= MAX_SHOWN_VALUE {
        return (before.to_string(), after.to_string());
    }
    let a: Vec<char> = before.chars().collect();
    let b: Vec<char> = after.chars().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let max_suffix = a.len().min(b.len()) - prefix;
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(max_suffix)
        .take_while(|(x, y)| x == y)
        .count();
    let window = |s: &[char]| {
        let start = prefix.saturating_sub(CONTEXT);
        let changed_end = s.len() - suffix;
        // A long changed part is itself cut, so a line stays short.
        let changed_end = changed_end.min(prefix + MAX_SHOWN_VALUE);
        let end = (changed_end + CONTEXT).min(s.len());
        let mut out = String::new();
        if start > 0 {
            out.push('…');
        }
        out.extend(&s[start..end]);
        if end < s.len() {
            out.push('…');
        }
        if start > 0 || end < s.len() {
            out.push_str(&format!(" ({} bytes)", s.iter().collect::<String>().len()));
        }
        out
    };
    (window(&a), window(&b))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_value_is_shown_around_its_change() {
        let before = format!("\"{}a{}\"", "x".repeat(100_000), "y".repeat(100_000));
        let after = format!("\"{}b{}\"", "x".repeat(100_000), "y".repeat(100_000));
        let (l, r) = super::shorten_change(&before, &after);
        assert!(l.len() < 200 && r.len() < 200, "{l}\n{r}");
        assert!(l.contains("xa") && r.contains("xb"), "{l}\n{r}");
        assert!(l.starts_with('…') && l.contains("(200003 bytes)"), "{l}");
        let (l, r) = super::shorten_change("short", "shorter");
        assert_eq!((l.as_str(), r.as_str()), ("short", "shorter"));
    }

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
