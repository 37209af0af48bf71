//! Naming objects: `Kind/namespace/name`, and the group/kind/namespace/name identity used for
//! duplicates, inventories and pruning.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An object's identity in a cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjRef {
    pub group: String,
    pub version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
}

impl ObjRef {
    pub fn of(obj: &Value) -> ObjRef {
        let api = obj["apiVersion"].as_str().unwrap_or("");
        let (group, version) = match api.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api.to_string()),
        };
        ObjRef {
            group,
            version,
            kind: obj["kind"].as_str().unwrap_or("").to_string(),
            namespace: obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            name: obj["metadata"]["name"].as_str().unwrap_or("").to_string(),
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Identity without the version: the same object whatever version it is written in.
    pub fn key(&self) -> (String, String, String, String) {
        (
            self.group.clone(),
            self.kind.clone(),
            self.namespace.clone(),
            self.name.clone(),
        )
    }
}

/// `Deployment/apps/web`, or `Namespace/apps` for cluster-scoped objects.
impl fmt::Display for ObjRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}/{}", self.kind, self.name)
        } else {
            write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
        }
    }
}
