//! The bounds on what a Kubernetes layer's manifests may be: one set, used by the loader, the
//! YAML decoder and kustomize, and documented in docs/security.md with the same numbers.

/// Bounds on a layer's manifests. The defaults accept every real install file we know of (the
/// largest, kube-prometheus' CRD bundle, is about 9 MB, and kubectl applies it) while refusing
/// YAML bombs; a library user can pass other bounds to [`super::manifest::load_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ManifestLimits {
    /// Largest manifest file read, and largest `kustomize build` output.
    pub max_file_bytes: usize,
    /// Most YAML documents in one file.
    pub max_documents: usize,
    /// Deepest nesting of maps and lists in one document.
    pub max_depth: usize,
    /// Most aliases (`*name`) in one document.
    pub max_aliases: usize,
    /// Most values one document may decode to, aliases expanded: what stops an alias bomb.
    pub max_nodes: usize,
}

impl Default for ManifestLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_documents: 10_000,
            max_depth: 128,
            max_aliases: 1_000,
            max_nodes: 1_000_000,
        }
    }
}

/// The default largest manifest file: 16 MiB, the same bound as any file of a revision.
pub const DEFAULT_MAX_FILE_BYTES: usize = 16 << 20;

/// One limit as `strata.hcl` names it, with the range it may be set to.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub name: &'static str,
    pub min: usize,
    pub max: usize,
}

/// Every limit a `limits { ... }` block may set. The upper bounds keep a layer from asking
/// strata for more memory than a machine has: 1 GiB is also the most a revision may hold.
pub const BOUNDS: [Bound; 5] = [
    Bound {
        name: "max_file_bytes",
        min: 1,
        max: 1 << 30,
    },
    Bound {
        name: "max_documents",
        min: 1,
        max: 1_000_000,
    },
    Bound {
        name: "max_depth",
        min: 1,
        max: 10_000,
    },
    Bound {
        name: "max_aliases",
        min: 0,
        max: 1_000_000,
    },
    Bound {
        name: "max_nodes",
        min: 1,
        max: 100_000_000,
    },
];

impl ManifestLimits {
    /// The limit named as in `strata.hcl`.
    pub fn get(&self, name: &str) -> Option<usize> {
        Some(match name {
            "max_file_bytes" => self.max_file_bytes,
            "max_documents" => self.max_documents,
            "max_depth" => self.max_depth,
            "max_aliases" => self.max_aliases,
            "max_nodes" => self.max_nodes,
            _ => return None,
        })
    }

    /// Sets the limit named as in `strata.hcl`; an unknown name changes nothing.
    pub fn set(&mut self, name: &str, v: usize) {
        match name {
            "max_file_bytes" => self.max_file_bytes = v,
            "max_documents" => self.max_documents = v,
            "max_depth" => self.max_depth = v,
            "max_aliases" => self.max_aliases = v,
            "max_nodes" => self.max_nodes = v,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of limits in docs/layers.md: `| `name` | default | ... |` rows.
    fn documented() -> Vec<(String, usize)> {
        include_str!("../../docs/layers.md")
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                BOUNDS.iter().find(|b| b.name == name)?;
                let default: usize = cells.get(2)?.replace(',', "").parse().ok()?;
                Some((name.to_string(), default))
            })
            .collect()
    }

    #[test]
    fn the_documented_defaults_are_the_code_defaults_and_every_limit_is_documented() {
        let docs = documented();
        let d = ManifestLimits::default();
        assert_eq!(docs.len(), BOUNDS.len(), "{docs:?}");
        for (name, default) in docs {
            assert_eq!(d.get(&name), Some(default), "{name}");
        }
        for b in BOUNDS {
            let mut l = d;
            l.set(b.name, b.max);
            assert_eq!(l.get(b.name), Some(b.max), "{}", b.name);
            assert!(
                (b.min..=b.max).contains(&d.get(b.name).unwrap()),
                "{}",
                b.name
            );
        }
    }
}
