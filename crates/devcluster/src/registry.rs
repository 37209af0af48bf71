//! The kinds a devcluster serves: every built-in kind (see [`crate::builtin`]), and custom
//! resources from CRDs.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// One served resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// `""` for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// The URL segment: `deployments`.
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// Has a `/status` subresource: spec writes ignore status and status writes ignore the rest.
    pub status_subresource: bool,
    /// Set for kinds defined by a CustomResourceDefinition (its name).
    pub crd: Option<String>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key of this type: group and plural (one served version per resource).
    pub fn key(&self) -> (String, String) {
        (self.group.clone(), self.plural.clone())
    }

    /// `deployments.apps`, as Kubernetes names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn discovery(&self) -> Value {
        let mut verbs = vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        if self.kind == "Namespace" {
            verbs.retain(|v| *v != "deletecollection");
        }
        json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
            "shortNames": self.short_names,
        })
    }
}

/// What a CRD object defines, or why it can't be served.
pub fn from_crd(crd: &Value) -> Result<ResourceType, String> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().ok_or("spec.group: Required value")?;
    let names = &spec["names"];
    let plural = names["plural"]
        .as_str()
        .ok_or("spec.names.plural: Required value")?;
    let kind = names["kind"]
        .as_str()
        .ok_or("spec.names.kind: Required value")?;
    let expected = format!("{plural}.{group}");
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if name != expected {
        return Err(format!("metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group (\"{expected}\")"));
    }
    let scope = spec["scope"].as_str().unwrap_or("Namespaced");
    if scope != "Namespaced" && scope != "Cluster" {
        return Err(format!("spec.scope: Unsupported value: \"{scope}\": supported values: \"Cluster\", \"Namespaced\""));
    }
    let versions = spec["versions"]
        .as_array()
        .ok_or("spec.versions: Required value")?;
    let served: Vec<&Value> = versions
        .iter()
        .filter(|v| v["served"].as_bool().unwrap_or(false))
        .collect();
    let version = served
        .iter()
        .find(|v| v["storage"].as_bool().unwrap_or(false))
        .or(served.first())
        .ok_or("spec.versions: Invalid value: no served version")?;
    Ok(ResourceType {
        group: group.into(),
        version: version["name"].as_str().unwrap_or("v1").into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: names["singular"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_lowercase()),
        namespaced: scope == "Namespaced",
        short_names: names["shortNames"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        status_subresource: version["subresources"]["status"].is_object(),
        crd: Some(name.to_string()),
    })
}

/// Every served type, looked up by URL (group, version, plural) or by kind.
#[derive(Debug, Clone)]
pub struct Registry {
    types: BTreeMap<(String, String), ResourceType>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut r = Registry {
            types: BTreeMap::new(),
        };
        for t in crate::builtin::builtins() {
            r.types.insert(t.key(), t);
        }
        r
    }
}

impl Registry {
    pub fn by_path(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .get(&(group.to_string(), plural.to_string()))
            .filter(|t| t.version == version)
    }

    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .values()
            .find(|t| t.group == group && t.kind == kind)
    }

    pub fn insert(&mut self, t: ResourceType) {
        self.types.insert(t.key(), t);
    }

    pub fn remove_crd(&mut self, crd_name: &str) -> Option<ResourceType> {
        let key = self
            .types
            .iter()
            .find(|(_, t)| t.crd.as_deref() == Some(crd_name))
            .map(|(k, _)| k.clone())?;
        self.types.remove(&key)
    }

    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }

    /// Group → versions served, core group first.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut g: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in self.types.values() {
            let versions = g.entry(t.group.clone()).or_default();
            if !versions.contains(&t.version) {
                versions.push(t.version.clone());
            }
        }
        g
    }
}
