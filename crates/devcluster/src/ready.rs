//! Simulated controllers: after a delay, workloads report ready for their current generation,
//! Jobs complete and claims bind. No pods run.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::WriteOptions;
use crate::store::{now_rfc3339, Store};

/// The manager name status writes are recorded under.
pub const MANAGER: &str = "devcluster-controller";

/// The ready status for a workload object, or `None` for kinds that have none.
fn ready_status(group: &str, kind: &str, obj: &Value) -> Option<Value> {
    let generation = obj["metadata"]["generation"].clone();
    let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
    let t = now_rfc3339();
    Some(match (group, kind) {
        ("apps", "Deployment") => json!({
            "observedGeneration": generation, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability.", "lastTransitionTime": t, "lastUpdateTime": t},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": "ReplicaSet has successfully progressed.", "lastTransitionTime": t, "lastUpdateTime": t},
            ],
        }),
        ("apps", "StatefulSet") => json!({
            "observedGeneration": generation, "replicas": replicas, "readyReplicas": replicas,
            "currentReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas,
            "currentRevision": "r1", "updateRevision": "r1",
        }),
        ("apps", "ReplicaSet") => json!({
            "observedGeneration": generation, "replicas": replicas, "readyReplicas": replicas,
            "availableReplicas": replicas, "fullyLabeledReplicas": replicas,
        }),
        ("apps", "DaemonSet") => json!({
            "observedGeneration": generation, "desiredNumberScheduled": 1, "currentNumberScheduled": 1,
            "numberReady": 1, "updatedNumberScheduled": 1, "numberAvailable": 1, "numberMisscheduled": 0,
        }),
        ("batch", "Job") => json!({
            "succeeded": 1, "startTime": t, "completionTime": t,
            "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": t, "lastTransitionTime": t}],
        }),
        ("", "PersistentVolumeClaim") => {
            json!({"phase": "Bound", "accessModes": obj["spec"]["accessModes"]})
        }
        _ => return None,
    })
}

/// One pass: every object that changed at least `delay` ago and is not ready for its
/// generation gets its ready status.
pub fn tick(store: &mut Store, delay: Duration) {
    let now = Instant::now();
    let due: Vec<_> = store
        .changed_at
        .iter()
        .filter(|(_, at)| now.duration_since(**at) >= delay)
        .map(|(k, _)| k.clone())
        .collect();
    for k in due {
        store.changed_at.remove(&k);
        let Some(obj) = store.objects.get(&k).cloned() else {
            continue;
        };
        let Some(rt) = store
            .registry
            .all()
            .find(|t| t.group == k.0 && t.plural == k.1)
            .cloned()
        else {
            continue;
        };
        let Some(status) = ready_status(&rt.group, &rt.kind, &obj) else {
            continue;
        };
        let mut next = obj.clone();
        next["status"] = status;
        let opts = WriteOptions {
            dry_run: false,
            manager: MANAGER.into(),
            force: false,
            subresource: Some("status".into()),
        };
        if let Err(e) = store.update(&rt, &k.2, &k.3, next, &opts) {
            tracing::debug!(
                "simulated status for {}/{} failed: {}",
                rt.kind,
                k.3,
                e.message
            );
        }
        // A status write changes no generation: don't come back to it.
        store.changed_at.remove(&k);
    }
}
