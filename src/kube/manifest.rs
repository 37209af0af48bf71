//! Loading a Kubernetes layer's manifests: every `.yaml`, `.yml` and `.json` file under its
//! source directory (or the output of `kustomize build` when it holds a `kustomization.yaml`),
//! multi-document streams, `kind: List` items; decoding bounded against YAML bombs.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::error::KubeError;
use super::vars::{self, Vars};

/// Largest manifest file read (and largest kustomize output).
pub const MAX_FILE_BYTES: usize = 8 << 20;
/// Deepest nesting a document may have.
pub const MAX_DEPTH: usize = 64;

/// One desired object and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    pub object: Value,
    /// The file, relative to the stack root when it is under it.
    pub file: PathBuf,
    /// The line the object's document starts on (one-based).
    pub line: usize,
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

    /// `file:line`.
    pub fn place(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// YAML options matching how Kubernetes reads manifests as JSON: `true`/`false` only as
/// booleans (`on`, `NO` stay strings), numbers with leading zeros stay strings, merge keys merge,
/// and budgets against alias bombs and deep nesting.
pub fn yaml_options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.strict_booleans = true;
    o.leading_zero_numbers_as_strings = true;
    o.legacy_octal_numbers = false;
    let mut b = serde_saphyr::Budget::default();
    b.max_depth = MAX_DEPTH;
    b.max_aliases = 1_000;
    b.max_anchors = 1_000;
    b.max_events = 500_000;
    b.max_nodes = 250_000;
    b.max_total_scalar_bytes = MAX_FILE_BYTES;
    b.max_documents = 10_000;
    o.budget = Some(b);
    o.alias_limits.max_total_replayed_events = 100_000;
    o.alias_limits.max_alias_expansions_per_anchor = 100;
    o
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

/// Parses one document (YAML or JSON).
pub fn parse_document(text: &str) -> Result<Value, String> {
    if text.len() > MAX_FILE_BYTES {
        return Err(format!("document is larger than {MAX_FILE_BYTES} bytes"));
    }
    let v: Value = serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| {
        let msg = e.to_string();
        // The first line says what went wrong; the rest is a snippet.
        msg.lines().next().unwrap_or("invalid YAML").to_string()
    })?;
    if depth(&v) > MAX_DEPTH {
        return Err(format!("nesting is deeper than {MAX_DEPTH} levels"));
    }
    Ok(v)
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
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

/// Loads the manifests of `source` (relative to `root`), substituting `vars`.
///
/// # Errors
/// Every problem found, each naming its file and line: unreadable or oversized files, invalid or
/// bomb-like YAML, objects without apiVersion, kind or metadata.name, undefined variables, and
/// sensitive values outside Secrets. Nothing is returned when anything failed.
pub fn load(root: &Path, source: &Path, vars: &Vars) -> Result<Vec<Manifest>, KubeError> {
    let dir = root.join(source);
    let mut problems = Vec::new();
    let mut out = Vec::new();
    let kustomization = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file());
    let inputs: Vec<(PathBuf, String)> = match kustomization {
        Some(_) => vec![(source.join("kustomization.yaml"), kustomize(&dir)?)],
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
                    Ok(m) if m.len() as usize > MAX_FILE_BYTES => {
                        problems.push(format!(
                            "{}: larger than {MAX_FILE_BYTES} bytes",
                            shown.display()
                        ));
                        continue;
                    }
                    Err(e) => {
                        problems.push(format!("{}: {e}", shown.display()));
                        continue;
                    }
                    _ => {}
                }
                match std::fs::read_to_string(&f) {
                    Ok(t) => inputs.push((shown, t)),
                    Err(e) => problems.push(format!("{}: {e}", shown.display())),
                }
            }
            inputs
        }
    };
    for (file, text) in inputs {
        let is_json = file.extension().is_some_and(|e| e == "json");
        let docs = if is_json {
            vec![(1, text.clone())]
        } else {
            split_documents(&text)
        };
        for (line, doc) in docs {
            // The kind decides where sensitive values may go; read it before substituting.
            let kind_hint = parse_document(&doc)
                .ok()
                .and_then(|v| v["kind"].as_str().map(str::to_string));
            let substituted = match vars::substitute(&doc, vars, kind_hint.as_deref(), &file, line)
            {
                Ok(t) => t,
                Err(errs) => {
                    problems.extend(errs);
                    continue;
                }
            };
            let value = match parse_document(&substituted) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(format!("{}:{line}: {e}", file.display()));
                    continue;
                }
            };
            let objects = match value {
                Value::Null => continue,
                Value::Object(ref m) if m.get("kind").and_then(Value::as_str) == Some("List") => m
                    .get("items")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                Value::Object(_) => vec![value],
                _ => {
                    problems.push(format!(
                        "{}:{line}: a document must be an object",
                        file.display()
                    ));
                    continue;
                }
            };
            for object in objects {
                let m = Manifest {
                    object,
                    file: file.clone(),
                    line,
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
        return Err(KubeError::Load { problems });
    }
    Ok(out)
}

/// Renders a kustomization with `kustomize build` or `kubectl kustomize`.
fn kustomize(dir: &Path) -> Result<String, KubeError> {
    let (program, args): (PathBuf, Vec<&str>) = match (which::which("kustomize"), which::which("kubectl")) {
        (Ok(k), _) => (k, vec!["build"]),
        (_, Ok(k)) => (k, vec!["kustomize"]),
        _ => {
            return Err(KubeError::Load {
                problems: vec![format!(
                    "{}: has a kustomization.yaml, but neither kustomize nor kubectl is on PATH to render it",
                    dir.display()
                )],
            })
        }
    };
    let out = std::process::Command::new(&program)
        .args(&args)
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| KubeError::Load {
            problems: vec![format!("failed to run {}: {e}", program.display())],
        })?;
    if !out.status.success() {
        return Err(KubeError::Load {
            problems: vec![format!(
                "{}: {} {} failed: {}",
                dir.display(),
                program.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )],
        });
    }
    if out.stdout.len() > MAX_FILE_BYTES {
        return Err(KubeError::Load {
            problems: vec![format!(
                "{}: kustomize output is larger than {MAX_FILE_BYTES} bytes",
                dir.display()
            )],
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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
/// left for the layer's own load to report.
pub fn identities(
    root: &Path,
    source: &Path,
    default_namespace: Option<&str>,
) -> Vec<((String, String, String, String), String)> {
    let dir = root.join(source);
    let Ok(files) = manifest_files(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for f in files {
        let shown = f.strip_prefix(root).unwrap_or(&f).to_path_buf();
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        for (line, doc) in split_documents(&text) {
            let Ok(v) = parse_document(&doc) else {
                continue;
            };
            let items = if v["kind"] == "List" {
                v["items"].as_array().cloned().unwrap_or_default()
            } else {
                vec![v]
            };
            for o in items {
                let r = super::object::ObjRef::of(&o);
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
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_reads_as_kubernetes_reads_it() {
        let v = parse_document(
            "a: on\nb: NO\nc: 0755\nd: 1e3\ne: ~\nf: true\nbase: &b {x: 1}\ng:\n  <<: *b\n  y: 2\n",
        )
        .unwrap();
        assert_eq!(v["a"], "on");
        assert_eq!(v["b"], "NO");
        assert_eq!(v["c"], "0755");
        assert_eq!(v["d"].as_f64(), Some(1000.0));
        assert!(v["e"].is_null());
        assert_eq!(v["f"], true);
        assert_eq!(v["g"], serde_json::json!({"x": 1, "y": 2}));
    }

    #[test]
    fn a_yaml_bomb_is_refused() {
        let bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n";
        assert!(parse_document(bomb).is_err());
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(parse_document(&deep).is_err());
    }

    #[test]
    fn documents_split_with_their_first_lines() {
        let docs = split_documents("# c\na: 1\n---\nb: 2\n--- \n\n---\n# only a comment\n");
        assert_eq!(docs.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [1, 4]);
    }
}
