//! Just enough OpenAPI v3 for kubectl: per group-version documents whose PATCH operations carry
//! `x-kubernetes-group-version-kind` and the `fieldValidation` query parameter, which tells
//! kubectl the server validates fields itself (so it needs no client-side schemas). Schemas are
//! not published.

use serde_json::{json, Map, Value};

use crate::registry::Registry;

/// `/openapi/v2`: an empty Swagger document (no schemas), as protobuf when asked for (kubectl
/// asks for nothing else) or JSON. With no schema for a kind, kubectl validates nothing on its
/// side, as it does for custom resources without schemas.
pub fn v2(headers: &axum::http::HeaderMap) -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("protobuf") {
        // openapi.v2.Document { swagger: "2.0", info: Info { title, version } }
        let title = b"strata devcluster";
        let version = b"v1.33.0";
        let mut info = vec![0x0a, title.len() as u8];
        info.extend_from_slice(title);
        info.extend_from_slice(&[0x12, version.len() as u8]);
        info.extend_from_slice(version);
        let mut doc = vec![0x0a, 3, b'2', b'.', b'0', 0x12, info.len() as u8];
        doc.extend_from_slice(&info);
        let mut r = doc.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
                .parse()
                .expect("header"),
        );
        return r;
    }
    super::response::json(
        axum::http::StatusCode::OK,
        json!({"swagger": "2.0", "info": {"title": "strata devcluster", "version": "v1.33.0"}, "paths": {}, "definitions": {}}),
    )
}

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
