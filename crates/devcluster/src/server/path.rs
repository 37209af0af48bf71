//! Request paths: which discovery document, or which resource (type, namespace, name,
//! subresource) a Kubernetes API path names.

use serde_json::Value;

use super::discovery;
use crate::registry::ResourceType;
use crate::store::Store;

/// A parsed resource path.
pub struct Target {
    pub rt: ResourceType,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

pub enum Parsed {
    Resource(Box<Target>),
    Discovery(Value),
    NotFound,
}

pub fn parse(store: &Store, path: &str) -> Parsed {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api"] => return Parsed::Discovery(discovery::core_versions()),
        ["apis"] => return Parsed::Discovery(discovery::groups(store)),
        ["api", v] => return resources(store, "", v),
        ["apis", g] => {
            return match store.registry.groups().get(*g) {
                Some(vs) => Parsed::Discovery(discovery::group(g, vs)),
                None => Parsed::NotFound,
            }
        }
        ["apis", g, v] => return resources(store, g, v),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Parsed::NotFound,
    };
    let lookup = |plural: &str| store.registry.by_path(group, version, plural).cloned();
    let target = match rest {
        ["namespaces", ns, plural, tail @ ..] if lookup(plural).is_some_and(|t| t.namespaced) => {
            (lookup(plural), Some(ns.to_string()), tail)
        }
        [plural, tail @ ..] => (lookup(plural), None, tail),
        [] => return Parsed::NotFound,
    };
    let (Some(rt), namespace, tail) = target else {
        return Parsed::NotFound;
    };
    if rt.namespaced && namespace.is_none() && !tail.is_empty() {
        return Parsed::NotFound;
    }
    let (name, subresource) = match tail {
        [] => (None, None),
        [n] => (Some(n.to_string()), None),
        [n, s] if *s == "status" && rt.status_subresource => {
            (Some(n.to_string()), Some(s.to_string()))
        }
        _ => return Parsed::NotFound,
    };
    Parsed::Resource(Box::new(Target {
        rt,
        namespace,
        name,
        subresource,
    }))
}

fn resources(store: &Store, group: &str, version: &str) -> Parsed {
    discovery::resources(store, group, version).map_or(Parsed::NotFound, Parsed::Discovery)
}
