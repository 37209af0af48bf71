//! Fault injection: make matching requests fail, hang or slow down, to test strata's retries,
//! timeouts and "never prune after a failed listing".

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What happens to a matching request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer with this status (500, 429, 409, ...) instead of serving the request.
    Status(u16),
    /// Wait this long, then serve the request.
    Hang(#[serde(with = "millis")] Duration),
    /// Add this latency to every matching request (never used up).
    Latency(#[serde(with = "millis")] Duration),
}

/// A rule: which requests, what happens, how many times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`; any when
    /// unset.
    #[serde(default)]
    pub verb: Option<String>,
    /// The resource's plural (`configmaps`); any when unset. Discovery, `/version` and OpenAPI
    /// reads are `get`s of no resource: only a rule that names no resource reaches them (an
    /// API server that is down as a whole).
    #[serde(default)]
    pub resource: Option<String>,
    pub action: FaultAction,
    /// How many requests it applies to; every one when unset.
    #[serde(default)]
    pub count: Option<u32>,
    /// Only dry runs (`true`), only requests that change something (`false`); both when unset.
    #[serde(default)]
    pub dry_run: Option<bool>,
}

impl Fault {
    /// Fail the next `count` requests of `verb` on `resource` with `status`.
    pub fn fail(verb: &str, resource: &str, status: u16, count: u32) -> Fault {
        Fault {
            verb: Some(verb.into()),
            resource: Some(resource.into()),
            action: FaultAction::Status(status),
            count: Some(count),
            dry_run: None,
        }
    }

    fn matches(&self, verb: &str, resource: &str, dry_run: bool) -> bool {
        self.verb.as_deref().is_none_or(|v| v == verb)
            && self.resource.as_deref().is_none_or(|r| r == resource)
            && self.dry_run.is_none_or(|d| d == dry_run)
    }
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms: u64 = serde::Deserialize::deserialize(d)?;
        Ok(Duration::from_millis(ms))
    }
}

/// The rules in force.
#[derive(Debug, Default)]
pub struct Faults {
    rules: std::sync::Mutex<Vec<Fault>>,
}

impl Faults {
    pub fn inject(&self, fault: Fault) {
        self.rules.lock().expect("faults").push(fault);
    }

    pub fn clear(&self) {
        self.rules.lock().expect("faults").clear();
    }

    /// The actions for one request, using up counted rules.
    pub fn take(&self, verb: &str, resource: &str, dry_run: bool) -> Vec<FaultAction> {
        let mut rules = self.rules.lock().expect("faults");
        let mut out = Vec::new();
        for r in rules.iter_mut() {
            if !r.matches(verb, resource, dry_run) {
                continue;
            }
            match r.count {
                Some(0) => continue,
                Some(ref mut n) => *n -= 1,
                None => {}
            }
            out.push(r.action.clone());
        }
        rules.retain(|r| r.count != Some(0));
        out
    }
}
