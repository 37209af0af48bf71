//! The validation a real API server would do for the kinds strata applies, enough that an invalid
//! manifest fails its dry-run: names, labels, workload selectors and templates, service ports,
//! and immutable fields.

use serde_json::Value;

use crate::registry::ResourceType;

/// One invalid field: `spec.selector: Required value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub field: String,
    pub message: String,
}

fn cause(field: &str, message: impl Into<String>) -> Cause {
    Cause {
        field: field.into(),
        message: message.into(),
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

fn is_label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain) && !name.is_empty() && is_label_value(name)
}

/// The most bytes all annotations of an object may hold together (keys and values), as in
/// Kubernetes.
pub const TOTAL_ANNOTATION_SIZE: usize = 256 << 10;

/// Why `name` is not a valid path segment (Kubernetes' rule for RBAC object names).
fn path_segment_problem(name: &str) -> Option<String> {
    if name == "." || name == ".." {
        return Some(format!("may not be '{name}'"));
    }
    ["/", "%"]
        .iter()
        .find(|c| name.contains(*c))
        .map(|c| format!("may not contain '{c}'"))
}

/// Problems with `obj` as a new or updated object of type `rt`.
pub fn validate(rt: &ResourceType, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    if name.is_empty() {
        out.push(cause(
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    } else {
        let label_named = matches!(rt.kind.as_str(), "Namespace" | "Service");
        let ok = if rt.group == "rbac.authorization.k8s.io" && rt.crd.is_none() {
            // RBAC names are path segments, as in Kubernetes: `system:metrics-server` is valid.
            if let Some(why) = path_segment_problem(name) {
                out.push(cause(
                    "metadata.name",
                    format!("Invalid value: \"{name}\": {why}"),
                ));
            }
            true
        } else if label_named {
            is_dns_label(name)
        } else {
            is_dns_subdomain(name)
        };
        if !ok {
            let what = if label_named {
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
            } else {
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            };
            out.push(cause(
                "metadata.name",
                format!("Invalid value: \"{name}\": {what}"),
            ));
        }
    }
    if let Some(labels) = obj["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            if !is_label_key(k) {
                out.push(cause("metadata.labels", format!("Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.'")));
            }
            match v.as_str() {
                Some(s) if is_label_value(s) => {}
                _ => out.push(cause("metadata.labels", format!("Invalid value: {v}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.'"))),
            }
        }
    }
    if let Some(ann) = obj["metadata"]["annotations"].as_object() {
        let total: usize = ann
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if total > TOTAL_ANNOTATION_SIZE {
            out.push(cause(
                "metadata.annotations",
                format!("Too long: may not be more than {TOTAL_ANNOTATION_SIZE} bytes"),
            ));
        }
        for (k, v) in ann {
            if !v.is_string() {
                out.push(cause(
                    &format!("metadata.annotations.{k}"),
                    format!("Invalid value: {v}: must be a string"),
                ));
            }
        }
    }
    let spec = &obj["spec"];
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") => {
            if !spec["selector"].is_object() {
                out.push(cause("spec.selector", "Required value"));
            } else if let Some(ml) = spec["selector"]["matchLabels"].as_object() {
                let tl = &spec["template"]["metadata"]["labels"];
                if ml.iter().any(|(k, v)| tl.get(k) != Some(v)) {
                    out.push(cause(
                        "spec.template.metadata.labels",
                        "Invalid value: `selector` does not match template `labels`",
                    ));
                }
            }
            pod_template(&spec["template"], "spec.template", &mut out);
            if let Some(r) = spec.get("replicas") {
                if !r.is_i64() || r.as_i64() < Some(0) {
                    out.push(cause(
                        "spec.replicas",
                        format!("Invalid value: {r}: must be greater than or equal to 0"),
                    ));
                }
            }
        }
        ("batch", "Job") => pod_template(&spec["template"], "spec.template", &mut out),
        ("batch", "CronJob") => {
            if !spec["schedule"].is_string() {
                out.push(cause("spec.schedule", "Required value"));
            }
            pod_template(
                &spec["jobTemplate"]["spec"]["template"],
                "spec.jobTemplate.spec.template",
                &mut out,
            );
        }
        ("", "Service") => {
            for (i, p) in spec["ports"].as_array().into_iter().flatten().enumerate() {
                match p["port"].as_i64() {
                    Some(1..=65535) => {}
                    _ => out.push(cause(
                        &format!("spec.ports[{i}].port"),
                        format!(
                            "Invalid value: {}: must be between 1 and 65535, inclusive",
                            p["port"]
                        ),
                    )),
                }
            }
        }
        ("", "ConfigMap") => {
            for (k, v) in obj["data"].as_object().into_iter().flatten() {
                if !v.is_string() {
                    out.push(cause(
                        &format!("data[{k}]"),
                        format!("Invalid value: {v}: must be a string"),
                    ));
                }
            }
        }
        ("", "Secret") => {
            use base64::Engine;
            for (k, v) in obj["data"].as_object().into_iter().flatten() {
                let ok = v
                    .as_str()
                    .is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
                if !ok {
                    out.push(cause(
                        &format!("data[{k}]"),
                        "Invalid value: must be base64-encoded",
                    ));
                }
            }
        }
        _ => {}
    }
    out
}

fn pod_template(t: &Value, at: &str, out: &mut Vec<Cause>) {
    if !t.is_object() {
        out.push(cause(at, "Required value"));
        return;
    }
    let containers = t["spec"]["containers"].as_array();
    match containers {
        Some(cs) if !cs.is_empty() => {
            for (i, c) in cs.iter().enumerate() {
                if !c["name"].is_string() {
                    out.push(cause(
                        &format!("{at}.spec.containers[{i}].name"),
                        "Required value",
                    ));
                }
                if !c["image"].is_string() {
                    out.push(cause(
                        &format!("{at}.spec.containers[{i}].image"),
                        "Required value",
                    ));
                }
            }
        }
        _ => out.push(cause(&format!("{at}.spec.containers"), "Required value")),
    }
}

/// Fields that may not change once set.
pub fn immutable(rt: &ResourceType, old: &Value, new: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let mut same = |path: &str, field: &str| {
        let pointer = format!("/{}", path.replace('.', "/"));
        let (a, b) = (old.pointer(&pointer), new.pointer(&pointer));
        if a.is_some() && a != b {
            let shown = b.map_or("null".into(), |v| v.to_string());
            out.push(cause(
                field,
                format!("Invalid value: {shown}: field is immutable"),
            ));
        }
    };
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") => {
            same("spec.selector", "spec.selector")
        }
        ("batch", "Job") => {
            same("spec.selector", "spec.selector");
            same("spec.template", "spec.template");
        }
        ("", "Service") => same("spec.clusterIP", "spec.clusterIP"),
        ("", "PersistentVolumeClaim") => {
            same("spec.storageClassName", "spec.storageClassName");
            same("spec.accessModes", "spec.accessModes");
        }
        ("", "ConfigMap" | "Secret") if old["immutable"] == true => {
            same("data", "data");
            same("binaryData", "binaryData");
        }
        _ => {}
    }
    out
}
