//! A run's parsed manifest files. Opening a stack parses every Kubernetes layer's files (no
//! object may be declared by two layers); each layer's load then takes its files' documents
//! from here instead of parsing them again. An entry answers only for the exact text it was
//! parsed from, within the same limits: a file edited since (a directory source is live) is
//! parsed again, never loaded from a stale parse.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::limits::ManifestLimits;
use super::manifest::{documents, parse_document};
use super::yaml::YamlError;

/// Each document of a file parsed, in the order [`documents`] splits it.
pub type Parses = Vec<Result<Value, YamlError>>;

/// A manifest file's documents: (first line, text) and each one parsed, in the same order.
pub struct Documents {
    pub texts: Vec<(usize, String)>,
    pub parsed: Parses,
}

impl Documents {
    /// Splits `text` ([`documents`]) and parses each document within `limits`.
    pub fn parse(text: &str, json: bool, limits: &ManifestLimits) -> Documents {
        let texts = documents(text, json);
        let parsed = texts
            .iter()
            .map(|(_, d)| parse_document(d, limits))
            .collect();
        Documents { texts, parsed }
    }
}

/// The most manifest text (bytes) whose parse is kept from the stack's opening to the layers'
/// loads. A layer's parse is held until its step takes it, so a stack of many large layers
/// would otherwise hold all of them at once where each layer's step held only its own; past
/// this, files are parsed again by their layer (as every file was before).
pub const BUDGET_BYTES: usize = 16 << 20;

struct Entry {
    digest: [u8; 32],
    limits: ManifestLimits,
    docs: Parses,
}

/// Parsed manifest files by path, for one run.
#[derive(Default)]
pub struct ParsedFiles {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    files: HashMap<PathBuf, Entry>,
    /// Text bytes of the files ever kept (taken ones included): the budget is for the run.
    kept: usize,
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl ParsedFiles {
    pub fn new() -> ParsedFiles {
        ParsedFiles::default()
    }

    /// Keeps `docs`, the parse of `path`'s `text` within `limits`, unless that would pass
    /// [`BUDGET_BYTES`].
    pub fn keep(&self, path: &Path, text: &str, limits: &ManifestLimits, docs: Parses) {
        let mut inner = self.inner.lock().expect("parsed files");
        if inner.kept + text.len() > BUDGET_BYTES {
            return;
        }
        inner.kept += text.len();
        inner.files.insert(
            path.to_path_buf(),
            Entry {
                digest: digest(text),
                limits: *limits,
                docs,
            },
        );
    }

    /// The documents of `path` parsed from exactly `text` within `limits`, if kept; the entry
    /// leaves the cache, so that the objects are held once (a second load parses again).
    pub fn take(&self, path: &Path, text: &str, limits: &ManifestLimits) -> Option<Parses> {
        let entry = self
            .inner
            .lock()
            .expect("parsed files")
            .files
            .remove(path)?;
        (entry.limits == *limits && entry.digest == digest(text)).then_some(entry.docs)
    }

    /// How many files are kept and not yet taken.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("parsed files").files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry not taken (layers that did not load in this run).
    pub fn clear(&self) {
        self.inner.lock().expect("parsed files").files.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_answers_once_and_only_for_its_text_and_limits() {
        let cache = ParsedFiles::new();
        let limits = ManifestLimits::default();
        let path = Path::new("/s/k/cm.yaml");
        let docs = || vec![Ok(serde_json::json!({"kind": "ConfigMap"}))];
        cache.keep(path, "kind: ConfigMap\n", &limits, docs());
        assert_eq!(cache.take(path, "kind: ConfigMap\n", &limits), Some(docs()));
        assert_eq!(cache.take(path, "kind: ConfigMap\n", &limits), None);

        cache.keep(path, "kind: ConfigMap\n", &limits, docs());
        assert_eq!(cache.take(path, "kind: Secret\n", &limits), None);
        assert!(cache.is_empty(), "a stale entry is dropped");

        cache.keep(path, "kind: ConfigMap\n", &limits, docs());
        let other = ManifestLimits {
            max_depth: 3,
            ..limits
        };
        assert_eq!(cache.take(path, "kind: ConfigMap\n", &other), None);
    }

    /// Stands in for what opening the stack parsed, with a marker no file holds: a load that
    /// returns the marker took the kept parse instead of parsing the file again.
    fn plant(cache: &ParsedFiles, path: &Path, limits: &ManifestLimits, names: &[&str]) {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(cache.take(path, &text, limits).is_some(), "opening kept it");
        let docs = names
            .iter()
            .map(|n| {
                Ok(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": n}, "data": {"from": "kept-parse"}}))
            })
            .collect();
        cache.keep(path, &text, limits, docs);
    }

    fn load(root: &Path, cache: &ParsedFiles) -> Vec<serde_json::Value> {
        let vars = super::super::vars::Vars::from([(
            "color".to_string(),
            crate::value::InputValue::Known("red".into()),
        )]);
        let limits = ManifestLimits::default();
        super::super::manifest::load_layer(root, Path::new("k"), &vars, None, &limits, Some(cache))
            .unwrap()
            .manifests
            .into_iter()
            .map(|m| m.object)
            .collect()
    }

    #[test]
    fn a_load_takes_what_opening_parsed_but_substitutes_and_rereads_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("k")).unwrap();
        let plain = root.join("k/a.yaml");
        let with_vars = root.join("k/b.yaml");
        std::fs::write(
            &plain,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  v: one\n",
        )
        .unwrap();
        std::fs::write(&with_vars, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  color: ${color}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n").unwrap();
        let limits = ManifestLimits::default();
        let cache = ParsedFiles::new();
        let found =
            super::super::manifest::identities(root, Path::new("k"), None, &limits, Some(&cache));
        assert_eq!(found.len(), 3);
        assert_eq!(cache.len(), 2, "each file's parse is kept");

        plant(&cache, &plain, &limits, &["a"]);
        plant(&cache, &with_vars, &limits, &["b", "c"]);
        let objects = load(root, &cache);
        assert!(cache.is_empty(), "taken, so held once");
        assert_eq!(objects[0]["data"]["from"], "kept-parse", "not parsed again");
        // A document vars change is parsed from its substituted text, never taken as kept.
        assert_eq!(objects[1]["data"], serde_json::json!({"color": "red"}));
        assert_eq!(objects[2]["data"]["from"], "kept-parse");

        // Edited after the parse was kept: read as it is now.
        let found =
            super::super::manifest::identities(root, Path::new("k"), None, &limits, Some(&cache));
        assert_eq!(found.len(), 3);
        plant(&cache, &plain, &limits, &["a"]);
        std::fs::write(
            &plain,
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  v: two\n",
        )
        .unwrap();
        let objects = load(root, &cache);
        assert_eq!(objects[0]["data"], serde_json::json!({"v": "two"}));
    }

    #[test]
    fn errors_from_a_kept_parse_name_the_same_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("k")).unwrap();
        std::fs::write(
            root.join("k/bad.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\nkind: [unclosed\n",
        )
        .unwrap();
        let limits = ManifestLimits::default();
        let vars = super::super::vars::Vars::new();
        let load = |cache: Option<&ParsedFiles>| {
            super::super::manifest::load_layer(root, Path::new("k"), &vars, None, &limits, cache)
                .unwrap_err()
                .to_string()
        };
        let fresh = load(None);
        let cache = ParsedFiles::new();
        super::super::manifest::identities(root, Path::new("k"), None, &limits, Some(&cache));
        assert_eq!(cache.len(), 1);
        assert_eq!(load(Some(&cache)), fresh);
        assert!(fresh.contains("k/bad.yaml:6"), "{fresh}");
    }

    #[test]
    fn a_kustomized_layer_keeps_no_parse() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("k")).unwrap();
        std::fs::write(root.join("k/kustomization.yaml"), "resources: [cm.yaml]\n").unwrap();
        std::fs::write(
            root.join("k/cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
        )
        .unwrap();
        let cache = ParsedFiles::new();
        let found = super::super::manifest::identities(
            root,
            Path::new("k"),
            None,
            &ManifestLimits::default(),
            Some(&cache),
        );
        assert_eq!(found.len(), 1);
        assert!(cache.is_empty(), "its load reads kustomize's output");
    }

    #[test]
    fn files_past_the_budget_are_not_kept() {
        let cache = ParsedFiles::new();
        let limits = ManifestLimits::default();
        let big = "a".repeat(BUDGET_BYTES - 10);
        cache.keep(Path::new("/a"), &big, &limits, Vec::new());
        cache.keep(Path::new("/b"), "0123456789x", &limits, Vec::new());
        cache.keep(Path::new("/c"), "0123456789", &limits, Vec::new());
        assert!(cache
            .take(Path::new("/b"), "0123456789x", &limits)
            .is_none());
        assert!(cache.take(Path::new("/c"), "0123456789", &limits).is_some());
    }
}
