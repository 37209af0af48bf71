//! Alerts with memory: one alert per condition until the condition changes, and a summary that
//! is always complete enough to act on.
//!
//! A condition is a key ("source", "sync", "cluster main", "diff kubernetes.app") and a
//! fingerprint of what it is now ("the stack is locked by another writer", "layer X failed at
//! R: Y"). Raising the same fingerprint again is silent; raising another one, or clearing it
//! and raising it again, alerts.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A condition the agent has alerted on and that still holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Active {
    /// What the condition is about: `source`, `sync`, `cluster main`, `diff kubernetes.app`.
    pub key: String,
    /// What it is now.
    pub fingerprint: String,
    /// When it was alerted (RFC 3339).
    pub since: String,
    #[serde(skip, default = "Instant::now")]
    at: Instant,
}

impl Active {
    /// When it was alerted, on this process's clock: from `since`, for a condition a previous
    /// agent alerted on (now when `since` does not parse, or lies in the future).
    fn alerted_at(since: &str) -> Instant {
        let age = since
            .parse::<jiff::Timestamp>()
            .ok()
            .and_then(|t| jiff::Timestamp::now().duration_since(t).try_into().ok())
            .unwrap_or(Duration::ZERO);
        Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
    }
}

/// The conditions alerted on and not cleared yet.
#[derive(Debug, Default, Clone)]
pub struct Conditions {
    active: BTreeMap<String, Active>,
}

impl Conditions {
    /// The conditions a previous agent on the same state dir alerted on and saved: a restart
    /// does not alert again on what is still the same (a revision, a failure, an outage), and
    /// still owes the `recovered` or `converged` that clears them.
    pub fn restore(saved: &[Active]) -> Conditions {
        Conditions {
            active: saved
                .iter()
                .map(|a| {
                    let mut a = a.clone();
                    a.at = Active::alerted_at(&a.since);
                    (a.key.clone(), a)
                })
                .collect(),
        }
    }

    /// Whether `fingerprint` under `key` is news: not alerted yet, or changed since. Remembers
    /// it when it is.
    pub fn raise(&mut self, key: &str, fingerprint: &str) -> bool {
        if self
            .active
            .get(key)
            .is_some_and(|a| a.fingerprint == fingerprint)
        {
            return false;
        }
        self.active.insert(
            key.to_string(),
            Active {
                key: key.to_string(),
                fingerprint: fingerprint.to_string(),
                since: crate::now_rfc3339(),
                at: Instant::now(),
            },
        );
        true
    }

    /// As [`Conditions::raise`], but a changed fingerprint is news only once `interval` has
    /// passed since the last alert under `key` (`diff` alerts: at most one per interval).
    pub fn raise_at_most_every(
        &mut self,
        key: &str,
        fingerprint: &str,
        interval: Duration,
    ) -> bool {
        if self
            .active
            .get(key)
            .is_some_and(|a| a.fingerprint == fingerprint || a.at.elapsed() < interval)
        {
            return false;
        }
        self.raise(key, fingerprint)
    }

    /// Forgets the condition; returns whether it had been alerted (and so deserves a
    /// `recovered` or `converged`).
    pub fn clear(&mut self, key: &str) -> bool {
        self.active.remove(key).is_some()
    }

    pub fn is_active(&self, key: &str) -> bool {
        self.active.contains_key(key)
    }

    /// The active keys starting with `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.active
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    pub fn active(&self) -> Vec<Active> {
        self.active.values().cloned().collect()
    }
}

/// The longest summary an alert carries; chat tools cut longer messages themselves, and not
/// in the middle.
pub const SUMMARY_MAX: usize = 600;

/// `text` on one line, shortened in the middle to at most `max` characters: the start says
/// what failed, the end usually says why.
pub fn shorten(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let chars: Vec<char> = one_line.chars().collect();
    if chars.len() <= max {
        return one_line;
    }
    let marker = " … ";
    let keep = max.saturating_sub(marker.chars().count()).max(2);
    let head: String = chars[..keep / 2].iter().collect();
    let tail: String = chars[chars.len() - (keep - keep / 2)..].iter().collect();
    format!("{head}{marker}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_alerts_once_until_it_changes_or_clears() {
        let mut c = Conditions::default();
        assert!(c.raise("sync", "locked"));
        assert!(!c.raise("sync", "locked"));
        assert!(c.raise("sync", "layer a failed"));
        assert!(c.clear("sync"));
        assert!(!c.clear("sync"));
        assert!(c.raise("sync", "layer a failed"));
    }

    #[test]
    fn a_changed_condition_waits_for_the_interval() {
        let mut c = Conditions::default();
        let hour = Duration::from_secs(3600);
        assert!(c.raise_at_most_every("diff a", "x", hour));
        assert!(!c.raise_at_most_every("diff a", "y", hour));
        assert!(c.raise_at_most_every("diff a", "y", Duration::ZERO));
    }

    #[test]
    fn long_summaries_are_shortened_in_the_middle_never_to_nothing() {
        let reason = format!(
            "kubernetes.app: dry-run failed, nothing applied:\n{}the real reason",
            "x".repeat(2000)
        );
        let s = shorten(&reason, 120);
        assert_eq!(s.chars().count(), 120);
        assert!(
            s.starts_with("kubernetes.app: dry-run failed, nothing applied: xx"),
            "{s}"
        );
        assert!(s.ends_with("the real reason"), "{s}");
        assert_eq!(shorten("short\nreason", 100), "short reason");
    }
}
