//! Loading a Kubernetes layer's manifests: every `.yaml`, `.yml` and `.json` file under its
//! source directory (or the output of `kustomize build` when it holds a `kustomization.yaml`),
//! multi-document streams, `kind: List` items; decoding bounded against YAML bombs.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::error::KubeError;
use super::limits::ManifestLimits;
use super::parsed::{Documents, ParsedFiles};
use super::vars::{self, Vars};
use super::yaml::{self, YamlError};
use crate::redact::Redactor;
use crate::secrets::AgeKeys;

/// One desired object and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    pub object: Value,
    /// The file, relative to the stack root when it is under it.
    pub file: PathBuf,
    /// The line the object's document starts on (one-based); for a kustomization, the line of
    /// `kustomize build`'s output, since the kustomization file itself has no such line.
    pub line: usize,
    /// The object came from `kustomize build` of `file`, not from `file` itself.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub rendered: bool,
}

impl Manifest {
    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or("")
    }

    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or("")
    }

    pub fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"]
            .as_str()
            .filter(|s| !s.is_empty())
    }

    /// `file:line`, or for a kustomization `file (kustomize output line N)`.
    pub fn place(&self) -> String {
        place(&self.file, self.line, self.rendered)
    }
}

/// Splits a YAML stream at `---` lines: (first line, text) per document.
pub fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut start = 1;
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let is_sep = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_sep {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 2;
            let rest = line[3..].trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                current.push_str(rest);
                current.push('\n');
                start = i + 1;
            }
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs.push((start, current));
    docs.into_iter()
        .filter(|(_, d)| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// The documents of a manifest file's text: one for JSON, `---`-separated for YAML.
pub fn documents(text: &str, json: bool) -> Vec<(usize, String)> {
    if json {
        vec![(1, text.to_string())]
    } else {
        split_documents(text)
    }
}

fn place(file: &Path, line: usize, rendered: bool) -> String {
    if rendered {
        format!("{} (kustomize output line {line})", file.display())
    } else {
        format!("{}:{line}", file.display())
    }
}

/// Parses one document (YAML or JSON) as kubectl reads it; see [`super::yaml`].
///
/// # Errors
/// Invalid or bomb-like YAML, and values JSON can't hold; the line is within `text`.
pub fn parse_document(text: &str, limits: &ManifestLimits) -> Result<Value, YamlError> {
    if text.len() > limits.max_file_bytes {
        return Err(YamlError {
            line: None,
            message: format!("document is larger than {} bytes", limits.max_file_bytes),
        });
    }
    yaml::parse(text, limits)
}

/// The objects a document holds: itself, or the items of a typed list (`kind: List`,
/// `ConfigMapList`, any `*List` with `items`), which kubectl applies one by one.
///
/// # Errors
/// A document that is not an object, or a list without an `items` list.
pub fn objects_of(value: Value) -> Result<Vec<Value>, String> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Object(ref m)
            if m.get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List")) =>
        {
            let kind = m["kind"].as_str().unwrap_or_default();
            match m.get("items") {
                Some(Value::Array(items)) => Ok(items.clone()),
                Some(Value::Null) | None => Ok(Vec::new()),
                Some(_) => Err(format!("a {kind} whose `items` is not a list")),
            }
        }
        Value::Object(_) => Ok(vec![value]),
        _ => Err("a document must be an object".into()),
    }
}

/// [`objects_of`] by reference, a malformed list holding none: for reading identities without
/// copying the parse kept for the load.
fn objects_in(value: &Value) -> Vec<&Value> {
    match value {
        Value::Object(m)
            if m.get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List")) =>
        {
            match m.get("items") {
                Some(Value::Array(items)) => items.iter().collect(),
                _ => Vec::new(),
            }
        }
        Value::Object(_) => vec![value],
        _ => Vec::new(),
    }
}

/// Every manifest file under `dir`, sorted by path; hidden directories are skipped.
fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let ty = e.file_type()?;
            if ty.is_dir() {
                todo.push(e.path());
            } else if name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json") {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A layer's manifests and the values in them that are sensitive by provenance.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub manifests: Vec<Manifest>,
    /// Every sensitive var's value and every value SOPS decrypted: masked wherever it appears.
    pub sensitive: Redactor,
}

/// Loads the manifests of `source` (relative to `root`), substituting `vars`.
///
/// # Errors
/// Every problem found, each naming its file and line: unreadable or oversized files, invalid or
/// bomb-like YAML, objects without apiVersion, kind or metadata.name, undefined variables, and
/// sensitive values outside Secrets. Nothing is returned when anything failed.
pub fn load(root: &Path, source: &Path, vars: &Vars) -> Result<Vec<Manifest>, KubeError> {
    load_with(root, source, vars, &ManifestLimits::default())
}

/// [`load`] within other [`ManifestLimits`].
///
/// # Errors
/// As [`load`].
pub fn load_with(
    root: &Path,
    source: &Path,
    vars: &Vars,
    limits: &ManifestLimits,
) -> Result<Vec<Manifest>, KubeError> {
    Ok(load_layer(root, source, vars, None, limits, None)?.manifests)
}

/// [`load_with`], decrypting SOPS-encrypted files with `keys` (see [`super::encrypted`]), and
/// knowing which values are sensitive. A file's documents are taken from `parsed` when it holds
/// the parse of the very text read now (see [`ParsedFiles`]), else parsed here.
///
/// # Guarantees
/// Decrypted text exists only in memory, and is never kept in `parsed`. A file that fails to
/// decrypt fails the whole load, so nothing of the layer is applied. What is loaded does not
/// depend on `parsed`: a document is parsed once, and again only when substituting vars
/// changed its text.
///
/// # Errors
/// As [`load`], and files that fail to decrypt, naming them.
pub fn load_layer(
    root: &Path,
    source: &Path,
    vars: &Vars,
    keys: Option<&AgeKeys>,
    limits: &ManifestLimits,
    parsed: Option<&ParsedFiles>,
) -> Result<Loaded, KubeError> {
    let dir = root.join(source);
    let mut sensitive = Redactor::new();
    for v in vars.values() {
        if let crate::value::InputValue::Sensitive(s) = v {
            sensitive.add_json(s.expose());
        }
    }
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let kustomization = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file());
    let rendered = kustomization.is_some();
    let inputs: Vec<(PathBuf, Documents)> = match kustomization {
        Some(k) => {
            let name = k.file_name().map(PathBuf::from).unwrap_or_default();
            let file = source.join(name);
            let text = super::kustomize::build(&dir, &file, limits)?;
            vec![(file, Documents::parse(&text, false, limits))]
        }
        None => {
            let files = manifest_files(&dir).map_err(|e| KubeError::Load {
                problems: vec![format!(
                    "{}: failed to read the directory: {e}",
                    source.display()
                )],
            })?;
            let mut inputs = Vec::new();
            for f in files {
                let shown = f.strip_prefix(root).unwrap_or(&f).to_path_buf();
                match std::fs::metadata(&f) {
                    Ok(m) if m.len() > limits.max_file_bytes as u64 => {
                        problems.push(format!(
                            "{}: larger than {} bytes (the per-file limit)",
                            shown.display(),
                            limits.max_file_bytes
                        ));
                        continue;
                    }
                    Err(e) => {
                        problems.push(format!("{}: {e}", shown.display()));
                        continue;
                    }
                    _ => {}
                }
                let text = match std::fs::read_to_string(&f) {
                    Ok(t) => t,
                    Err(e) => {
                        problems.push(format!("{}: {e}", shown.display()));
                        continue;
                    }
                };
                let raw = read_documents(&f, &text, limits, parsed);
                match super::encrypted::plaintext(&f, &shown, raw, keys, limits, &mut sensitive) {
                    Ok(docs) => inputs.push((shown, docs)),
                    Err(e) => problems.push(e),
                }
            }
            inputs
        }
    };
    for (file, docs) in inputs {
        if docs.texts.len() > limits.max_documents {
            problems.push(format!(
                "{}: more than {} documents (the per-file limit)",
                file.display(),
                limits.max_documents
            ));
            continue;
        }
        for ((line, doc), before) in docs.texts.into_iter().zip(docs.parsed) {
            // The kind decides where sensitive values may go; read it before substituting.
            let kind_hint = before.as_ref().ok().and_then(|v| {
                Some(vars::DocKind {
                    api_version: v["apiVersion"].as_str().unwrap_or(""),
                    kind: v["kind"].as_str()?,
                })
            });
            // Only `${` starts a substitution (or an escape): without one the text is unchanged,
            // and so is its parse.
            let parsed_value = if doc.contains("${") {
                let substituted = match vars::substitute(&doc, vars, kind_hint, &file, line) {
                    Ok(t) => t,
                    Err(errs) => {
                        problems.extend(errs);
                        continue;
                    }
                };
                if substituted == doc {
                    before
                } else {
                    parse_document(&substituted, limits)
                }
            } else {
                before
            };
            let value = match parsed_value {
                Ok(v) => v,
                Err(e) => {
                    let at = line + e.line.unwrap_or(1) - 1;
                    problems.push(format!("{}: {}", place(&file, at, rendered), e.message));
                    continue;
                }
            };
            if crate::secrets::sops::is_encrypted(&value) {
                // Only files read from the layer's directory are decrypted; applying one still
                // encrypted would put ciphertext (and its `sops` map) into the cluster.
                problems.push(format!(
                    "{}: SOPS-encrypted, but kustomize output is not decrypted: keep encrypted files in a layer without a kustomization.yaml",
                    place(&file, line, rendered)
                ));
                continue;
            }
            let objects = match objects_of(value) {
                Ok(o) => o,
                Err(e) => {
                    problems.push(format!("{}: {e}", place(&file, line, rendered)));
                    continue;
                }
            };
            for object in objects {
                let m = Manifest {
                    object,
                    file: file.clone(),
                    line,
                    rendered,
                };
                let mut missing = Vec::new();
                if m.api_version().is_empty() {
                    missing.push("apiVersion");
                }
                if m.kind().is_empty() {
                    missing.push("kind");
                }
                if m.name().is_empty() {
                    missing.push("metadata.name");
                }
                if !missing.is_empty() {
                    problems.push(format!(
                        "{}: object without {}",
                        m.place(),
                        missing.join(", ")
                    ));
                    continue;
                }
                out.push(m);
            }
        }
    }
    if !problems.is_empty() {
        // strata writes these messages itself and never quotes a value in them (substitution
        // errors name the variable, YAML errors the line), so they are left whole.
        return Err(KubeError::Load { problems });
    }
    Ok(Loaded {
        manifests: out,
        sensitive,
    })
}

/// `f`'s documents (its content is `text`): the parse `parsed` kept of this very text, else
/// parsed now.
fn read_documents(
    f: &Path,
    text: &str,
    limits: &ManifestLimits,
    parsed: Option<&ParsedFiles>,
) -> Documents {
    let json = f.extension().is_some_and(|e| e == "json");
    match parsed.and_then(|p| p.take(f, text, limits)) {
        Some(kept) => {
            let texts = documents(text, json);
            // The same text splits the same way; anything else is parsed afresh.
            if kept.len() == texts.len() {
                return Documents {
                    texts,
                    parsed: kept,
                };
            }
            Documents::parse(text, json, limits)
        }
        None => Documents::parse(text, json, limits),
    }
}

/// Kinds known to be cluster-scoped, for identifying objects before the cluster is reachable.
const CLUSTER_SCOPED: [&str; 11] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "APIService",
    "Node",
];

/// The identities (`group/kind/namespace/name`) of a layer's objects and where each is declared,
/// read without substituting variables or reaching the cluster; documents that can't be read are
/// left for the layer's own load to report. Each file is parsed within `limits` (the layer's),
/// and its parse kept in `parsed` for the layer's load, unless the layer is rendered by
/// kustomize (its load reads kustomize's output, not these files).
pub fn identities(
    root: &Path,
    source: &Path,
    default_namespace: Option<&str>,
    limits: &ManifestLimits,
    parsed: Option<&ParsedFiles>,
) -> Vec<((String, String, String, String), String)> {
    let dir = root.join(source);
    let Ok(files) = manifest_files(&dir) else {
        return Vec::new();
    };
    let rendered = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .any(|f| dir.join(f).is_file());
    let mut out = Vec::new();
    for f in files {
        let shown = f.strip_prefix(root).unwrap_or(&f).to_path_buf();
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let json = f.extension().is_some_and(|e| e == "json");
        let docs = Documents::parse(&text, json, limits);
        for ((line, _), v) in docs.texts.iter().zip(&docs.parsed) {
            let Ok(v) = v else {
                continue;
            };
            for o in objects_in(v) {
                let r = super::object::ObjRef::of(o);
                if r.kind.is_empty() || r.name.is_empty() {
                    continue;
                }
                let ns = if CLUSTER_SCOPED.contains(&r.kind.as_str()) {
                    String::new()
                } else if r.namespace.is_empty() {
                    default_namespace.unwrap_or("default").to_string()
                } else {
                    r.namespace.clone()
                };
                out.push((
                    (r.group, r.kind, ns, r.name),
                    format!("{}:{line}", shown.display()),
                ));
            }
        }
        if let (Some(p), false) = (parsed, rendered) {
            p.keep(&f, &text, limits, docs.parsed);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_reads_as_kubernetes_reads_it() {
        let v = parse_document(
            "a: on\nb: NO\nc: 0755\nd: 1e3\ne: ~\nf: true\nbase: &b {x: 1}\ng:\n  <<: *b\n  z: 2\n",
            &ManifestLimits::default(),
        )
        .unwrap();
        assert_eq!(v["a"], true);
        assert_eq!(v["b"], false);
        assert_eq!(v["c"], 493);
        assert_eq!(v["d"], 1000);
        assert!(v["e"].is_null());
        assert_eq!(v["f"], true);
        assert_eq!(v["g"], serde_json::json!({"x": 1, "z": 2}));
    }

    #[test]
    fn typed_lists_expand_into_their_items() {
        let items = objects_of(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMapList",
            "items": [{"kind": "ConfigMap"}, {"kind": "ConfigMap"}]
        }))
        .unwrap();
        assert_eq!(items.len(), 2);
        assert!(objects_of(serde_json::json!({"kind": "List", "items": 3})).is_err());
        assert_eq!(
            objects_of(serde_json::json!({"kind": "Pod"}))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_yaml_bomb_is_refused() {
        let bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n";
        assert!(parse_document(bomb, &ManifestLimits::default()).is_err());
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(parse_document(&deep, &ManifestLimits::default()).is_err());
    }

    #[test]
    fn documents_split_with_their_first_lines() {
        let docs = split_documents("# c\na: 1\n---\nb: 2\n--- \n\n---\n# only a comment\n");
        assert_eq!(docs.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [1, 4]);
    }
}
