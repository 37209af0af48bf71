//! Waiting for applied objects to be ready: Deployments available and updated for their
//! generation, StatefulSets and DaemonSets rolled out, Jobs complete, CRDs established,
//! Namespaces active, claims bound; anything else is ready once it exists.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::apply::Desired;
use super::error::KubeError;

const POLL: Duration = Duration::from_millis(250);

fn condition(obj: &Value, kind: &str) -> Option<bool> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .map(|c| c["status"] == "True")
}

/// `None` when ready, else why not.
pub fn not_ready(obj: &Value) -> Option<String> {
    let kind = obj["kind"].as_str().unwrap_or("");
    let group = obj["apiVersion"]
        .as_str()
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("");
    let status = &obj["status"];
    let generation = obj["metadata"]["generation"].as_i64().unwrap_or(0);
    let observed = status["observedGeneration"].as_i64().unwrap_or(-1);
    let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    let n = |k: &str| status[k].as_i64().unwrap_or(0);
    match (group, kind) {
        ("apps", "Deployment") => {
            if observed < generation {
                Some(format!(
                    "generation {generation} not observed yet (observed {observed})"
                ))
            } else if n("updatedReplicas") < want || n("availableReplicas") < want {
                Some(format!(
                    "{} of {want} replicas updated, {} available",
                    n("updatedReplicas"),
                    n("availableReplicas")
                ))
            } else if condition(obj, "Available") == Some(false) {
                Some("condition Available is False".into())
            } else {
                None
            }
        }
        ("apps", "StatefulSet") => {
            if observed < generation {
                Some(format!("generation {generation} not observed yet"))
            } else if n("readyReplicas") < want || n("updatedReplicas") < want {
                Some(format!(
                    "{} of {want} replicas ready, {} updated",
                    n("readyReplicas"),
                    n("updatedReplicas")
                ))
            } else {
                None
            }
        }
        ("apps", "DaemonSet") => {
            let desired = n("desiredNumberScheduled");
            if observed < generation {
                Some(format!("generation {generation} not observed yet"))
            } else if n("numberReady") < desired
                || n("updatedNumberScheduled") < desired
                || status.get("desiredNumberScheduled").is_none()
            {
                Some(format!("{} of {desired} pods ready", n("numberReady")))
            } else {
                None
            }
        }
        ("batch", "Job") => {
            if condition(obj, "Failed") == Some(true) {
                Some("the job failed".into())
            } else if condition(obj, "Complete") == Some(true) {
                None
            } else {
                Some("not complete".into())
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => match condition(obj, "Established")
        {
            Some(true) => None,
            _ => Some("not established".into()),
        },
        ("v1", "Namespace") => match status["phase"].as_str() {
            Some("Active") | None => None,
            Some(p) => Some(format!("phase {p}")),
        },
        ("v1", "PersistentVolumeClaim") => match status["phase"].as_str() {
            Some("Bound") => None,
            p => Some(format!("phase {}", p.unwrap_or("Pending"))),
        },
        _ => None,
    }
}

/// Waits until every object is ready, or the timeout.
///
/// # Errors
/// On timeout, each object not ready and why.
pub async fn ready(
    client: &::kube::Client,
    objects: &[&Desired],
    timeout: Duration,
) -> Result<(), KubeError> {
    let started = Instant::now();
    loop {
        let mut pending = Vec::new();
        for d in objects {
            let api = d.api(client);
            match api.get_opt(&d.r.name).await {
                Ok(Some(o)) => {
                    let v = serde_json::to_value(&o).unwrap_or_default();
                    if let Some(why) = not_ready(&v) {
                        pending.push(format!("{}: {why}", d.r));
                    }
                }
                Ok(None) => pending.push(format!("{}: does not exist", d.r)),
                Err(e) => pending.push(format!("{}: {e}", d.r)),
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(KubeError::WaitTimeout {
                after: crate::util::duration::format_duration(timeout),
                pending,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits for the CRDs among `objects` to be established.
pub async fn crds_established(
    client: &::kube::Client,
    objects: &[&Desired],
    timeout: Duration,
) -> Result<(), KubeError> {
    let crds: Vec<&Desired> = objects
        .iter()
        .copied()
        .filter(|d| d.r.kind == "CustomResourceDefinition")
        .collect();
    ready(client, &crds, timeout).await
}

/// Waits for an object to be gone (after a delete).
pub async fn gone(
    client: &::kube::Client,
    d: &Desired,
    timeout: Duration,
) -> Result<(), KubeError> {
    let started = Instant::now();
    let api = d.api(client);
    while started.elapsed() < timeout {
        if matches!(api.get_opt(&d.r.name).await, Ok(None)) {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
    Err(KubeError::WaitTimeout {
        after: crate::util::duration::format_duration(timeout),
        pending: vec![format!("{}: still there after delete", d.r)],
    })
}

/// Waits until every object of `refs` is gone (deleted, finalizers done), or `timeout`.
///
/// # Errors
/// [`KubeError::WaitTimeout`] naming what is still there; a cancelled wait says so the same
/// way (nothing more is waited for).
pub async fn all_gone(
    client: &::kube::Client,
    refs: &[super::ObjRef],
    resources: &super::resolve::Resources,
    timeout: Duration,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(), KubeError> {
    let started = Instant::now();
    let mut left: Vec<&super::ObjRef> = refs.iter().collect();
    loop {
        let mut still = Vec::new();
        for r in left {
            // A kind the cluster no longer serves (its CRD went first) took its objects along.
            let Some(api) = resources.api_of(client, r) else {
                continue;
            };
            match api.get_opt(&r.name).await {
                Ok(None) => {}
                Err(::kube::Error::Api(s)) if s.code == 404 => {}
                _ => still.push(r),
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= timeout || cancel.is_cancelled() {
            return Err(KubeError::WaitTimeout {
                after: crate::util::duration::format_duration(started.elapsed()),
                pending: still
                    .iter()
                    .map(|r| format!("{r}: still there after delete"))
                    .collect(),
            });
        }
        left = still;
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = cancel.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn readiness_per_kind() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "updatedReplicas": 2, "availableReplicas": 2}});
        assert_eq!(
            not_ready(&d).unwrap(),
            "generation 2 not observed yet (observed 1)"
        );
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "updatedReplicas": 2, "availableReplicas": 2}});
        assert_eq!(not_ready(&d), None);
        let j = json!({"apiVersion": "batch/v1", "kind": "Job", "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        assert_eq!(not_ready(&j).unwrap(), "the job failed");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        assert_eq!(not_ready(&cm), None);
    }
}
