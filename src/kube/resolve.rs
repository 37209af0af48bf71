//! Finding each object's resource (plural, scope) through discovery, or through a CRD in the
//! same desired set when its kind is not served yet.

use std::collections::BTreeMap;

use ::kube::core::{ApiResource, GroupVersionKind};
use ::kube::discovery::Scope;
use serde_json::Value;

use super::error::KubeError;

/// A served (or about-to-be-served) resource type.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub resource: ApiResource,
    pub namespaced: bool,
    /// The server lists it (some types only take creates, like `TokenReview`).
    pub listable: bool,
}

/// The resource types a cluster serves, by (group, version, kind).
#[derive(Debug, Clone, Default)]
pub struct Resources {
    types: BTreeMap<(String, String, String), Resolved>,
}

impl Resources {
    /// The API of the object `r` on `client`; `None` when the cluster does not serve its kind
    /// (its CRD is gone, and its objects with it).
    pub fn api_of(
        &self,
        client: &::kube::Client,
        r: &super::ObjRef,
    ) -> Option<::kube::Api<::kube::api::DynamicObject>> {
        let resolved = self.get(&r.group, &r.version, &r.kind)?;
        Some(if resolved.namespaced {
            ::kube::Api::namespaced_with(client.clone(), &r.namespace, &resolved.resource)
        } else {
            ::kube::Api::all_with(client.clone(), &resolved.resource)
        })
    }

    /// Runs discovery.
    pub async fn discover(client: &::kube::Client) -> Result<Resources, KubeError> {
        let d = super::retry::retry(Default::default(), || {
            ::kube::discovery::Discovery::new(client.clone()).run()
        })
        .await
        .map_err(|e| KubeError::Read {
            what: "the cluster's API resources (discovery)".into(),
            message: super::error::describe(&e),
        })?;
        let mut types = BTreeMap::new();
        for group in d.groups() {
            for version in group.versions() {
                for (ar, caps) in group.versioned_resources(version) {
                    if ar.plural.contains('/') {
                        continue;
                    }
                    types.insert(
                        (ar.group.clone(), ar.version.clone(), ar.kind.clone()),
                        Resolved {
                            namespaced: caps.scope == Scope::Namespaced,
                            listable: caps.supports_operation(::kube::discovery::verbs::LIST),
                            resource: ar,
                        },
                    );
                }
            }
        }
        Ok(Resources { types })
    }

    pub fn get(&self, group: &str, version: &str, kind: &str) -> Option<&Resolved> {
        self.types
            .get(&(group.to_string(), version.to_string(), kind.to_string()))
    }

    /// One listable resource type per group and kind (the same objects are served in every
    /// version of a kind).
    pub fn listable_kinds(&self) -> Vec<&Resolved> {
        let mut seen = std::collections::BTreeSet::new();
        self.types
            .iter()
            .filter(|(_, r)| r.listable)
            .filter(|((g, _, k), _)| seen.insert((g.clone(), k.clone())))
            .map(|(_, r)| r)
            .collect()
    }

    /// A served version of a kind, whichever.
    pub fn any_version(&self, group: &str, kind: &str) -> Option<&Resolved> {
        self.types
            .iter()
            .find(|((g, _, k), _)| g == group && k == kind)
            .map(|(_, r)| r)
    }

    /// Adds the kinds that CRDs in the desired set will serve, so their objects can be placed
    /// (namespace defaults, ordering) before the CRDs exist.
    pub fn add_pending_crds<'a>(&mut self, objects: impl Iterator<Item = &'a Value>) {
        for crd in objects.filter(|o| {
            o["kind"] == "CustomResourceDefinition" && o["apiVersion"] == "apiextensions.k8s.io/v1"
        }) {
            let spec = &crd["spec"];
            let (Some(group), Some(kind), Some(plural)) = (
                spec["group"].as_str(),
                spec["names"]["kind"].as_str(),
                spec["names"]["plural"].as_str(),
            ) else {
                continue;
            };
            let namespaced = spec["scope"].as_str() != Some("Cluster");
            for v in spec["versions"].as_array().into_iter().flatten() {
                let Some(version) = v["name"].as_str() else {
                    continue;
                };
                let key = (group.to_string(), version.to_string(), kind.to_string());
                self.types.entry(key).or_insert_with(|| Resolved {
                    resource: ApiResource::from_gvk_with_plural(
                        &GroupVersionKind::gvk(group, version, kind),
                        plural,
                    ),
                    namespaced,
                    listable: true,
                });
            }
        }
    }
}
