//! Markers: `# strata:image web` (the whole `repository:tag`), `# strata:image web:tag` (the
//! tag) and `# strata:image web:name` (the repository), as a trailing comment (`#`, `//` or
//! `/* */`) on the line whose value they stand for, in any text file under the stack directory.
//!
//! The value is the last token before the comment: a quoted string, or a bare word. Files are
//! read as bytes and edits replace exactly the value's bytes, so everything else stays as it was.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;

use super::policy::valid_tag;
use crate::stack::images::Image;
use crate::stack::{Diagnostic, Diagnostics, Location, Shown, Stack};

/// Files larger than this are not looked into (no hand-written manifest is).
const MAX_FILE: u64 = 8 << 20;
/// Directories never looked into: Git's, strata's state, Terraform's working data.
const SKIP_DIRS: [&str; 3] = [".git", ".strata", ".terraform"];

/// Which part of the line's value a marker stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MarkerForm {
    /// `repository:tag`.
    Image,
    Tag,
    /// The repository, checked and never rewritten.
    Name,
}

/// One marker and the value it stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Marker {
    /// Relative to the scanned directory.
    pub file: PathBuf,
    pub line: usize,
    pub image: String,
    pub form: MarkerForm,
    /// The value as the file holds it.
    pub value: String,
    /// Where `value` is in the file, in bytes.
    #[serde(skip)]
    pub span: Range<usize>,
}

impl Marker {
    /// The tag the value names, for the image and tag forms.
    pub fn tag(&self) -> Option<&str> {
        match self.form {
            MarkerForm::Tag => Some(&self.value),
            MarkerForm::Image => self.value.rsplit_once(':').map(|(_, t)| t),
            MarkerForm::Name => None,
        }
    }

    /// The value this marker should hold for `image` at `tag` (the name form keeps its value).
    pub fn wanted(&self, image: &Image, tag: &str) -> String {
        match self.form {
            MarkerForm::Image => format!("{}:{tag}", image.repository),
            MarkerForm::Tag => tag.to_string(),
            MarkerForm::Name => self.value.clone(),
        }
    }
}

/// A marker that cannot be used, at its place relative to the scanned directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerProblem {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

/// Every marker under a directory and the problems of those that cannot be read.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub markers: Vec<Marker>,
    pub problems: Vec<MarkerProblem>,
}

fn marker_re() -> &'static regex::bytes::Regex {
    static RE: OnceLock<regex::bytes::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::bytes::Regex::new(r"(?m)(?:^|[ \t])(#|//|/\*)[ \t]*strata:image(?:[ \t]+([^\s]*))?")
            .expect("marker regex")
    })
}

/// Every marker in the text files under `root` (not following symlinks), in path order.
///
/// # Errors
/// None: an unreadable file or directory is a problem of the result, at its path.
pub fn scan(root: &Path) -> Found {
    let mut found = Found::default();
    walk(root, Path::new(""), &mut found);
    found
}

fn walk(root: &Path, rel: &Path, found: &mut Found) {
    let dir = root.join(rel);
    let mut entries: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(d) => d.flatten().collect(),
        Err(e) => {
            found.problems.push(MarkerProblem {
                file: rel.to_path_buf(),
                line: 1,
                message: format!("cannot read the directory to look for image markers: {e}"),
            });
            return;
        }
    };
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let path = rel.join(&name);
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if meta.is_dir() {
            if !SKIP_DIRS.iter().any(|s| name == *s) {
                walk(root, &path, found);
            }
        } else if meta.is_file() && meta.len() <= MAX_FILE {
            match std::fs::read(e.path()) {
                Ok(bytes) => scan_bytes(&path, &bytes, found),
                Err(err) => found.problems.push(MarkerProblem {
                    file: path,
                    line: 1,
                    message: format!("cannot read the file to look for image markers: {err}"),
                }),
            }
        }
    }
}

/// The markers in one file's bytes (a binary file has none).
pub fn scan_bytes(rel: &Path, bytes: &[u8], found: &mut Found) {
    if bytes.contains(&0) {
        return;
    }
    let mut line = 1;
    let mut counted = 0;
    for caps in marker_re().captures_iter(bytes) {
        let opener = caps.get(1).expect("group 1");
        line += bytes[counted..opener.start()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        counted = opener.start();
        let start = bytes[..opener.start()]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |p| p + 1);
        let problem = |message: String| MarkerProblem {
            file: rel.to_path_buf(),
            line,
            message,
        };
        let reference = caps.get(2).map_or(&b""[..], |m| m.as_bytes());
        let reference = reference.strip_suffix(b"*/").unwrap_or(reference);
        let reference = String::from_utf8_lossy(reference);
        let (image, form) = match reference.split_once(':') {
            None => (reference.as_ref(), MarkerForm::Image),
            Some((i, "tag")) => (i, MarkerForm::Tag),
            Some((i, "name")) => (i, MarkerForm::Name),
            Some((_, other)) => {
                found.problems.push(problem(format!(
                    "unknown image marker form \"strata:image {reference}\" (\":{other}\"): use NAME, NAME:tag or NAME:name"
                )));
                continue;
            }
        };
        let name_ok = image
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && image
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            found.problems.push(problem(format!(
                "image marker \"strata:image {reference}\" needs the name of an image block: `# strata:image NAME`"
            )));
            continue;
        }
        let Some(span) = value_span(bytes, start, opener.start()) else {
            found.problems.push(problem(format!(
                "image marker \"strata:image {reference}\" has no value before it on its line"
            )));
            continue;
        };
        let Ok(value) = std::str::from_utf8(&bytes[span.clone()]) else {
            found.problems.push(problem(format!(
                "the value before image marker \"strata:image {reference}\" is not UTF-8"
            )));
            continue;
        };
        found.markers.push(Marker {
            file: rel.to_path_buf(),
            line,
            image: image.to_string(),
            form,
            value: value.to_string(),
            span,
        });
    }
}

/// The last token of `bytes[start..end]`: a quoted string's inside, or a bare word.
fn value_span(bytes: &[u8], start: usize, end: usize) -> Option<Range<usize>> {
    let code = &bytes[start..end];
    let mut e = code.len();
    let trim = |e: &mut usize| {
        while *e > 0 && code[*e - 1].is_ascii_whitespace() {
            *e -= 1;
        }
    };
    trim(&mut e);
    if e > 0 && code[e - 1] == b',' {
        e -= 1;
        trim(&mut e);
    }
    if e == 0 {
        return None;
    }
    let last = code[e - 1];
    if last == b'"' || last == b'\'' {
        let open = code[..e - 1].iter().rposition(|b| *b == last)?;
        let inner = open + 1..e - 1;
        return (!inner.is_empty()).then(|| start + inner.start..start + inner.end);
    }
    let bare = |b: u8| !(b.is_ascii_whitespace() || b"\"'=,[{(".contains(&b));
    let mut s = e;
    while s > 0 && bare(code[s - 1]) {
        s -= 1;
    }
    (s < e).then(|| start + s..start + e)
}

/// Problems of markers against the stack's image blocks: a marker naming no block, a value that
/// is not of the block's repository, a tag that is no tag.
pub fn check(found: &Found, images: &[Image]) -> Vec<MarkerProblem> {
    let mut out = Vec::new();
    for m in &found.markers {
        let problem = |message: String| MarkerProblem {
            file: m.file.clone(),
            line: m.line,
            message,
        };
        let Some(image) = images.iter().find(|i| i.name == m.image) else {
            let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
            out.push(problem(format!(
                "image marker names image \"{}\", but the stack declares no image \"{}\"{}",
                m.image,
                m.image,
                crate::stack::diag::hint(&m.image, names)
            )));
            continue;
        };
        if let Some(message) = mismatch(m, image) {
            out.push(problem(message));
        }
    }
    out
}

/// Why `m`'s value does not fit `image`, if it does not.
fn mismatch(m: &Marker, image: &Image) -> Option<String> {
    let repo = &image.repository;
    let name = &m.image;
    match m.form {
        MarkerForm::Image => {
            if m.value.contains('@') {
                return Some(format!(
                    "image marker {name}: \"{}\" is pinned by digest; strata updates tags only (remove the digest)",
                    m.value
                ));
            }
            match m.value.strip_prefix(repo.as_str()).and_then(|t| t.strip_prefix(':')) {
                Some(tag) if valid_tag(tag) => None,
                Some(_) | None => Some(format!(
                    "image marker {name}: the line holds \"{}\", not {repo}:TAG (the repository of image \"{name}\")",
                    m.value
                )),
            }
        }
        MarkerForm::Name => (m.value != *repo).then(|| {
            format!(
                "image marker {name}:name: the line holds \"{}\", not {repo} (the repository of image \"{name}\")",
                m.value
            )
        }),
        MarkerForm::Tag => (!valid_tag(&m.value)).then(|| {
            format!(
                "image marker {name}:tag: the line holds \"{}\", which is not an image tag",
                m.value
            )
        }),
    }
}

/// The markers' problems and the image blocks no marker uses, as diagnostics of the stack in
/// `dir` named as `shown` says.
pub fn diagnostics(stack: &Stack, found: &Found, shown: &Shown) -> Diagnostics {
    let base = shown.file.parent().unwrap_or(Path::new("")).to_path_buf();
    let at = |p: &MarkerProblem| Location {
        file: base.join(&p.file),
        line: p.line,
        col: 1,
        revision: shown.revision.clone(),
    };
    let mut out: Vec<Diagnostic> = found
        .problems
        .iter()
        .chain(check(found, &stack.images).iter())
        .map(|p| Diagnostic::new(at(p), p.message.clone()))
        .collect();
    for image in &stack.images {
        if !found.markers.iter().any(|m| m.image == image.name) {
            out.push(Diagnostic::new(
                image.location.clone(),
                format!(
                    "image \"{}\" is used by no marker: add `# strata:image {}` to the line it should update, or remove the block",
                    image.name, image.name
                ),
            ));
        }
    }
    Diagnostics(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn markers(text: &str) -> Found {
        let mut f = Found::default();
        scan_bytes(Path::new("f"), text.as_bytes(), &mut f);
        f
    }

    #[test]
    fn the_three_forms_are_found_in_yaml_tfvars_and_hcl() {
        let text = "a: 1\nimage: registry.example.com/shop/web:1.0.0 # strata:image web\n  tag: \"1.0.0\"  # strata:image web:tag\nrepository: registry.example.com/shop/web # strata:image web:name\nimage_tag = \"1.0.0\" # strata:image web:tag\nimage = 'r.example.com/x:2' // strata:image x\n  - r.example.com/y:3, /* strata:image y */\n";
        let f = markers(text);
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        let got: Vec<(usize, &str, MarkerForm, &str)> = f
            .markers
            .iter()
            .map(|m| (m.line, m.image.as_str(), m.form, m.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    2,
                    "web",
                    MarkerForm::Image,
                    "registry.example.com/shop/web:1.0.0"
                ),
                (3, "web", MarkerForm::Tag, "1.0.0"),
                (4, "web", MarkerForm::Name, "registry.example.com/shop/web"),
                (5, "web", MarkerForm::Tag, "1.0.0"),
                (6, "x", MarkerForm::Image, "r.example.com/x:2"),
                (7, "y", MarkerForm::Image, "r.example.com/y:3"),
            ]
        );
        for m in &f.markers {
            assert_eq!(&text.as_bytes()[m.span.clone()], m.value.as_bytes());
        }
    }

    #[test]
    fn markers_without_a_value_or_with_a_bad_form_are_problems() {
        let f = markers("# strata:image web\nx: 1 # strata:image web:digest\ny: 2 # strata:image\nz: '' # strata:image web:tag\nurl: http://x#strata:image web\n");
        let lines: Vec<(usize, &str)> = f
            .problems
            .iter()
            .map(|p| (p.line, p.message.as_str()))
            .collect();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0].0 == 1 && lines[0].1.contains("no value before it"));
        assert!(lines[1].0 == 2 && lines[1].1.contains("unknown image marker form"));
        assert!(lines[2].0 == 3 && lines[2].1.contains("needs the name of an image block"));
        assert!(lines[3].0 == 4 && lines[3].1.contains("no value before it"));
    }

    #[test]
    fn binary_files_have_no_markers() {
        assert!(markers("x: 1 # strata:image web\0").markers.is_empty());
    }
}
