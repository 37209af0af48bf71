//! Diagnostics: problems found in a stack file, each with the place it was found.

use std::fmt;
use std::path::{Path, PathBuf};

/// A place in a stack file: `file:line:col`, one-based, column counted in characters; for a file
/// read from a Git commit, its path in the repository and the commit (`strata.hcl:5:13 (at
/// e8d049b)`), never the materialised copy in the state dir.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    /// The short commit the file was read at, for a Git source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)?;
        match &self.revision {
            Some(r) => write!(f, " (at {r})"),
            None => Ok(()),
        }
    }
}

/// Turns byte offsets of one file into [`Location`]s.
#[derive(Debug, Clone)]
pub struct SourceMap {
    file: PathBuf,
    revision: Option<String>,
    text: String,
    line_starts: Vec<usize>,
}

impl SourceMap {
    pub fn new(file: impl Into<PathBuf>, text: impl Into<String>) -> SourceMap {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceMap {
            file: file.into(),
            revision: None,
            text,
            line_starts,
        }
    }

    /// The places of this map are in a file read at `revision` (a short commit).
    pub fn at_revision(mut self, revision: Option<String>) -> SourceMap {
        self.revision = revision;
        self
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn revision(&self) -> Option<&str> {
        self.revision.as_deref()
    }

    /// The location of a byte offset; offsets past the end point at the end.
    pub fn locate(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        Location {
            file: self.file.clone(),
            line: line + 1,
            col,
            revision: self.revision.clone(),
        }
    }

    /// The text of a byte range, if it lies within the file on character boundaries.
    pub fn slice(&self, span: std::ops::Range<usize>) -> Option<&str> {
        self.text.get(span)
    }

    /// The location of the start of a span, or of the file's start when the span is unknown.
    pub fn locate_span(&self, span: Option<std::ops::Range<usize>>) -> Location {
        self.locate(span.map_or(0, |s| s.start))
    }
}

/// One problem, at one place.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub location: Location,
    pub message: String,
}

impl Diagnostic {
    pub fn new(location: Location, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            location,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every problem found in a stack, in file order. Validation never stops at the first one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, location: Location, message: impl Into<String>) {
        self.0.push(Diagnostic::new(location, message));
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }

    /// Sorts by place (file, line, column) and drops exact repeats.
    pub fn sort(&mut self) {
        self.0
            .sort_by(|a, b| (&a.location, &a.message).cmp(&(&b.location, &b.message)));
        self.0.dedup();
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Edit distance between two short names, for "did you mean" hints: insertions, deletions,
/// substitutions and swaps of neighbouring characters ("mian" is one step from "main").
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The closest candidate to `name`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a, I>(name: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (name.chars().count() / 3).max(1);
    // A name cut short ("subnet" for "subnet_id") is a likely typo too.
    let truncated = |c: &str| name.len() >= 3 && (c.starts_with(name) || name.starts_with(c));
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= limit || (truncated(c) && c.len() >= 3))
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

/// `" (did you mean \"x\"?)"` or nothing.
pub fn hint<'a, I>(name: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    did_you_mean(name, candidates)
        .map(|c| format!(" (did you mean \"{c}\"?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_one_based_and_count_characters() {
        let map = SourceMap::new("s.hcl", "ab\nçd = 1\n");
        assert_eq!(map.locate(0).to_string(), "s.hcl:1:1");
        assert_eq!(map.locate(3).to_string(), "s.hcl:2:1");
        // 'ç' is two bytes: the byte after it is the second character.
        assert_eq!(map.locate(5).to_string(), "s.hcl:2:2");
        assert_eq!(map.locate(999).line, 3);
    }

    #[test]
    fn typos_get_a_suggestion_and_strangers_do_not() {
        assert_eq!(
            did_you_mean("netwrk", ["network", "cluster"]),
            Some("network")
        );
        assert_eq!(did_you_mean("zzz", ["network", "cluster"]), None);
        assert_eq!(did_you_mean("mian", ["main"]), Some("main"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            hint("paralelism", ["parallelism"]),
            " (did you mean \"parallelism\"?)"
        );
    }
}
