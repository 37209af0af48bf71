//! Just enough OpenAPI v3 for kubectl: per group-version documents whose PATCH operations carry
//! `x-kubernetes-group-version-kind` and the `fieldValidation` query parameter, which tells
//! kubectl the server validates fields itself (so it needs no client-side schemas). Schemas are
//! not published.

use serde_json::{json, Map, Value};

use super::registry::Registry;

/// `/openapi/v3` (the index, `rest` empty) or `/openapi/v3/<api/v1|apis/g/v>`.
pub fn v3(registry: &Registry, rest: &str) -> Option<Value> {
    let mut gvs: Vec<(String, String, String)> = Vec::new();
    for t in registry.all() {
        let path = if t.group.is_empty() {
            format!("api/{}", t.version)
        } else {
            format!("apis/{}/{}", t.group, t.version)
        };
        if !gvs.iter().any(|(p, _, _)| *p == path) {
            gvs.push((path, t.group.clone(), t.version.clone()));
        }
    }
    if rest.is_empty() {
        let paths: Map<String, Value> = gvs
            .iter()
            .map(|(p, _, _)| {
                (
                    p.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=devcluster")}),
                )
            })
            .collect();
        return Some(json!({"paths": paths}));
    }
    let (_, group, version) = gvs.iter().find(|(p, _, _)| p == rest)?;
    let mut paths = Map::new();
    for t in registry
        .all()
        .filter(|t| &t.group == group && &t.version == version)
    {
        let base = if t.group.is_empty() {
            format!("/api/{}", t.version)
        } else {
            format!("/apis/{}/{}", t.group, t.version)
        };
        let item = if t.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{base}/{}/{{name}}", t.plural)
        };
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
        paths.insert(
            item,
            json!({
                "get": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "get", "responses": {"200": {"description": "OK"}}},
                "put": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "put", "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation")], "responses": {"200": {"description": "OK"}}},
                "patch": {
                    "x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "patch",
                    "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation"), query("force")],
                    "responses": {"200": {"description": "OK"}},
                },
                "delete": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "delete", "responses": {"200": {"description": "OK"}}},
            }),
        );
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (strata devcluster)", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
