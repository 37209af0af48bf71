//! What strata reads from a layer's `.tf` files without running terraform: whether it declares a
//! backend, which local modules it calls (transitively), and what `terraform init` depends on.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use crate::hash::Hasher;

/// A Terraform configuration directory, as strata sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigInfo {
    /// The root module declares `backend` or `cloud` in a `terraform` block.
    pub has_backend: bool,
    /// Directories of local modules called from the root, directly or through other modules,
    /// relative to `base` (normally the stack root), sorted.
    pub local_modules: Vec<PathBuf>,
    /// A hash of everything `terraform init` acts on: `terraform` blocks, module sources and
    /// versions, the providers used; over the root and every local module.
    pub init_fingerprint: String,
}

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("module \"{name}\" in {} has source \"{source_path}\", which leaves the stack root", file.display())]
    Escapes {
        name: String,
        source_path: String,
        file: PathBuf,
    },
    #[error("failed to read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Reads the configuration in `base/dir`. Files strata cannot parse as HCL (JSON syntax, syntax
/// errors) are never skipped: they are hashed whole (so any change to them re-inits), the local
/// modules they name are found leniently, and their errors are left for terraform to report.
///
/// # Errors
/// A local module whose path climbs out of `base`, or an unreadable directory.
pub fn inspect(base: &Path, dir: &Path) -> Result<ConfigInfo, ModuleError> {
    let mut seen = BTreeSet::new();
    let mut fingerprint = Hasher::new();
    let mut has_backend = false;
    let mut todo = vec![normalize(dir)];
    let mut root = true;
    while let Some(rel) = todo.pop() {
        if !seen.insert(rel.clone()) {
            continue;
        }
        let info = read_module(base, &rel)?;
        if root {
            has_backend = info.backend;
            root = false;
        }
        fingerprint.part("module", rel.as_os_str().as_encoded_bytes());
        for item in &info.init_parts {
            fingerprint.part("init", item.as_bytes());
        }
        todo.extend(info.local_calls);
    }
    let root_dir = normalize(dir);
    let local_modules = seen.into_iter().filter(|m| *m != root_dir).collect();
    Ok(ConfigInfo {
        has_backend,
        local_modules,
        init_fingerprint: fingerprint.finish(),
    })
}

struct ModuleInfo {
    backend: bool,
    local_calls: Vec<PathBuf>,
    init_parts: Vec<String>,
}

fn read_module(base: &Path, rel: &Path) -> Result<ModuleInfo, ModuleError> {
    let dir = base.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(|source| ModuleError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".tf") || name.ends_with(".tf.json")
        })
        .collect();
    files.sort();
    let mut info = ModuleInfo {
        backend: false,
        local_calls: Vec::new(),
        init_parts: Vec::new(),
    };
    let mut providers = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| ModuleError::Io {
            path: file.clone(),
            source,
        })?;
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let body: hcl::Body = match (name.ends_with(".tf"), hcl::parse(&text)) {
            (true, Ok(b)) => b,
            (is_hcl, _) => {
                // Not read as HCL (JSON syntax, or a syntax error): hashed whole, and the local
                // modules it names are still found, so the working copy has them and terraform
                // reports the file's own problem rather than a missing module directory.
                info.init_parts.push(format!(
                    "file {name} {}",
                    crate::hash::sha256(text.as_bytes())
                ));
                let sources = if is_hcl {
                    lenient_sources(&text)
                } else {
                    json_sources(&text)
                };
                for source in sources {
                    let joined = normalize(&rel.join(&source));
                    if joined.components().next() != Some(Component::ParentDir) {
                        info.local_calls.push(joined);
                    }
                }
                continue;
            }
        };
        for block in body.blocks() {
            match block.identifier() {
                "terraform" => {
                    if block
                        .body()
                        .blocks()
                        .any(|b| matches!(b.identifier(), "backend" | "cloud"))
                    {
                        info.backend = true;
                    }
                    info.init_parts.push(format!(
                        "terraform {}",
                        hcl::to_string(block).unwrap_or_default()
                    ));
                }
                "module" => {
                    let mname = block
                        .labels()
                        .first()
                        .map(|l| l.as_str().to_string())
                        .unwrap_or_default();
                    let source = attr_string(block, "source").unwrap_or_default();
                    let version = attr_string(block, "version").unwrap_or_default();
                    info.init_parts
                        .push(format!("module {mname} {source} {version}"));
                    if is_local(&source) {
                        let joined = normalize(&rel.join(&source));
                        if joined.components().next() == Some(Component::ParentDir) {
                            return Err(ModuleError::Escapes {
                                name: mname,
                                source_path: source,
                                file,
                            });
                        }
                        info.local_calls.push(joined);
                    }
                }
                "resource" | "data" => {
                    if let Some(ty) = block.labels().first() {
                        let p = ty.as_str().split('_').next().unwrap_or("").to_string();
                        providers.insert(p);
                    }
                }
                "provider" => {
                    if let Some(p) = block.labels().first() {
                        providers.insert(p.as_str().to_string());
                    }
                }
                _ => {}
            }
        }
    }
    info.init_parts.push(format!(
        "providers {}",
        providers.into_iter().collect::<Vec<_>>().join(",")
    ));
    Ok(info)
}

/// Local module sources (`./…`, `../…`) in a `.tf` file that does not parse: every
/// `source = "…"` line, whatever block it is in. Finding one too many only copies a directory.
fn lenient_sources(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("source")?.trim_start();
            let rest = rest.strip_prefix('=')?.trim_start().strip_prefix('"')?;
            let value = &rest[..rest.find('"')?];
            is_local(value).then(|| value.to_string())
        })
        .collect()
}

/// Local module sources in a `.tf.json` file: `{"module": {"name": {"source": "…"}}}`, the
/// module object possibly in a list.
fn json_sources(text: &str) -> Vec<String> {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let modules: Vec<&serde_json::Value> = match json.get("module") {
        Some(serde_json::Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    modules
        .into_iter()
        .filter_map(serde_json::Value::as_object)
        .flat_map(|m| m.values())
        .flat_map(|call| match call {
            serde_json::Value::Array(items) => items.iter().collect::<Vec<_>>(),
            one => vec![one],
        })
        .filter_map(|call| call.get("source")?.as_str())
        .filter(|s| is_local(s))
        .map(str::to_string)
        .collect()
}

fn is_local(source: &str) -> bool {
    source.starts_with("./") || source.starts_with("../")
}

fn attr_string(block: &hcl::Block, key: &str) -> Option<String> {
    block
        .body()
        .attributes()
        .find(|a| a.key() == key)
        .and_then(|a| match a.expr() {
            hcl::Expression::String(s) => Some(s.clone()),
            _ => None,
        })
}

/// Resolves `.` and `..` lexically; a leading `..` that can't be resolved stays.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn local_modules_are_found_transitively_and_remote_ones_are_not() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "infra/app/main.tf", "module \"vpc\" {\n source = \"../modules/vpc\"\n}\nmodule \"r\" {\n source = \"hashicorp/consul/aws\"\n version = \"1.0\"\n}\nresource \"null_resource\" \"x\" {}\n");
        write(
            d.path(),
            "infra/modules/vpc/main.tf",
            "module \"tags\" {\n source = \"./tags\"\n}\n",
        );
        write(
            d.path(),
            "infra/modules/vpc/tags/main.tf",
            "output \"t\" { value = 1 }\n",
        );
        let info = inspect(d.path(), Path::new("infra/app")).unwrap();
        assert!(!info.has_backend);
        assert_eq!(
            info.local_modules,
            vec![
                PathBuf::from("infra/modules/vpc"),
                PathBuf::from("infra/modules/vpc/tags")
            ]
        );
    }

    #[test]
    fn the_init_fingerprint_ignores_resources_but_not_providers_or_modules() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "l/main.tf",
            "resource \"null_resource\" \"a\" {\n triggers = { x = 1 }\n}\n",
        );
        let a = inspect(d.path(), Path::new("l")).unwrap().init_fingerprint;
        write(
            d.path(),
            "l/main.tf",
            "resource \"null_resource\" \"a\" {\n triggers = { x = 2 }\n}\n",
        );
        let b = inspect(d.path(), Path::new("l")).unwrap().init_fingerprint;
        assert_eq!(a, b, "a changed attribute needs no init");
        write(d.path(), "l/main.tf", "resource \"random_id\" \"a\" {}\n");
        let c = inspect(d.path(), Path::new("l")).unwrap().init_fingerprint;
        assert_ne!(a, c, "a new provider needs init");
    }

    #[test]
    fn modules_called_from_files_that_do_not_parse_are_still_found() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "infra/net/main.tf",
            "module \"subnet\" {\n  source = \"../../modules/subnet\"\n\noutput \"x\" {\n  value = 1\n}\n",
        );
        write(
            d.path(),
            "infra/net/extra.tf.json",
            r#"{"module": {"tags": {"source": "./tags"}, "r": {"source": "hashicorp/consul/aws"}}}"#,
        );
        write(d.path(), "modules/subnet/main.tf", "variable \"cidr\" {}\n");
        write(d.path(), "infra/net/tags/main.tf", "");
        let info = inspect(d.path(), Path::new("infra/net")).unwrap();
        assert_eq!(
            info.local_modules,
            vec![
                PathBuf::from("infra/net/tags"),
                PathBuf::from("modules/subnet")
            ]
        );
    }

    #[test]
    fn backends_are_detected_and_escaping_modules_refused() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "l/main.tf", "terraform {\n backend \"pg\" {}\n}\nmodule \"m\" {\n source = \"../../elsewhere\"\n}\n");
        let err = inspect(d.path(), Path::new("l")).unwrap_err();
        assert!(err.to_string().contains("leaves the stack root"), "{err}");
        write(
            d.path(),
            "l/main.tf",
            "terraform {\n backend \"pg\" {}\n}\n",
        );
        assert!(inspect(d.path(), Path::new("l")).unwrap().has_backend);
    }
}
