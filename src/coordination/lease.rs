//! The Lease objects: their names, what a replica reads from one, and how it writes one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

/// The label every Lease strata writes carries, with what it is for (`stack` or `replica`).
pub const KIND_LABEL: &str = "strata.dev/lease";

/// The Lease of stack `name` (stack names are DNS labels already).
pub fn stack_lease_name(stack: &str) -> String {
    format!("strata-{stack}")
}

/// The heartbeat Lease of replica `id`: the id made a DNS label (lowercase letters, digits and
/// '-'), cut to fit a name.
pub fn replica_lease_name(id: &str) -> String {
    let mut label: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    label.truncate(200);
    format!("strata-replica-{}", label.trim_matches('-'))
}

/// A Lease as this replica last read it, and since when (on its own clock) it has been
/// unchanged.
#[derive(Debug, Clone)]
pub struct Seen {
    pub resource_version: String,
    pub holder: Option<String>,
    pub duration: Duration,
    /// When this replica first saw this resourceVersion.
    pub since: Instant,
    pub lease: Lease,
}

impl Seen {
    /// Whether the Lease is held by someone: a holder that renewed it within its duration (as
    /// seen here: unchanged for less than the duration since this replica first saw it).
    pub fn held_at(&self, now: Instant) -> Option<&str> {
        let holder = self.holder.as_deref().filter(|h| !h.is_empty())?;
        (now.saturating_duration_since(self.since) < self.duration).then_some(holder)
    }
}

/// Folds a listing into what was seen before: a Lease whose resourceVersion did not change
/// keeps the instant it was first seen; a changed or new one is seen from `now`.
pub fn observe(seen: &mut BTreeMap<String, Seen>, listed: Vec<Lease>, now: Instant) {
    let mut next = BTreeMap::new();
    for lease in listed {
        let Some(name) = lease.metadata.name.clone() else {
            continue;
        };
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        let spec = lease.spec.clone().unwrap_or_default();
        let since = match seen.get(&name) {
            Some(s) if s.resource_version == rv => s.since,
            _ => now,
        };
        let duration = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(15).max(1)).unwrap_or(15),
        );
        next.insert(
            name,
            Seen {
                resource_version: rv,
                holder: spec.holder_identity,
                duration,
                since,
                lease,
            },
        );
    }
    *seen = next;
}

/// A new Lease `name` held by `holder` (to create).
pub fn new_lease(
    name: &str,
    namespace: &str,
    kind: &str,
    holder: &str,
    duration: Duration,
) -> Lease {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (KIND_LABEL.to_string(), kind.to_string()),
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    "strata".to_string(),
                ),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.to_string()),
            lease_duration_seconds: Some(seconds(duration)),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    }
}

/// `lease` taken by `holder` (from no one, or from a holder whose Lease lapsed), keeping its
/// resourceVersion so that the update fails if anyone wrote it since.
pub fn taken(lease: &Lease, holder: &str, duration: Duration) -> Lease {
    let mut l = lease.clone();
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let spec = l.spec.get_or_insert_with(LeaseSpec::default);
    let changed = spec.holder_identity.as_deref() != Some(holder);
    spec.holder_identity = Some(holder.to_string());
    spec.lease_duration_seconds = Some(seconds(duration));
    spec.acquire_time = Some(now.clone());
    spec.renew_time = Some(now);
    if changed {
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    l
}

/// `lease` renewed by its holder.
pub fn renewed(lease: &Lease) -> Lease {
    let mut l = lease.clone();
    let spec = l.spec.get_or_insert_with(LeaseSpec::default);
    spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
    l
}

/// `lease` given back: no holder, so another replica takes it at once.
pub fn released(lease: &Lease) -> Lease {
    let mut l = lease.clone();
    let spec = l.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = None;
    spec.acquire_time = None;
    spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
    l
}

fn seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(name: &str, rv: &str, holder: Option<&str>) -> Lease {
        let mut l = new_lease(name, "ns", "stack", "x", Duration::from_secs(10));
        l.metadata.resource_version = Some(rv.into());
        l.spec.as_mut().expect("spec").holder_identity = holder.map(str::to_string);
        l
    }

    #[test]
    fn a_lease_lapses_after_its_duration_unchanged_on_this_clock() {
        let t0 = Instant::now();
        let mut seen = BTreeMap::new();
        observe(&mut seen, vec![lease("strata-a", "1", Some("r1"))], t0);
        assert_eq!(seen["strata-a"].held_at(t0), Some("r1"));
        let later = t0 + Duration::from_secs(9);
        observe(&mut seen, vec![lease("strata-a", "1", Some("r1"))], later);
        assert_eq!(seen["strata-a"].held_at(later), Some("r1"));
        let lapsed = t0 + Duration::from_secs(10);
        assert_eq!(seen["strata-a"].held_at(lapsed), None);
        // A renewal (new resourceVersion) is seen from when it was read.
        observe(&mut seen, vec![lease("strata-a", "2", Some("r1"))], lapsed);
        assert_eq!(seen["strata-a"].held_at(lapsed), Some("r1"));
        observe(&mut seen, vec![lease("strata-a", "3", None)], lapsed);
        assert_eq!(seen["strata-a"].held_at(lapsed), None, "released");
    }

    #[test]
    fn replica_names_are_dns_labels() {
        assert_eq!(
            replica_lease_name("Host_1.x-42"),
            "strata-replica-host-1-x-42"
        );
        assert_eq!(stack_lease_name("shop"), "strata-shop");
    }
}
