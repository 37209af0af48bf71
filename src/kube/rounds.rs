//! Writing a layer's planned objects, round by round ([`super::order::round`]): the kinds that
//! others need when they are created each have their own round, in order, and every later kind
//! of a stage goes out in one round, so a layer costs as few sequential round trips as its
//! dependencies allow.

use std::time::Duration;

use ::kube::api::DeleteParams;

use super::apply::{reason, server_apply, ApplyOptions, Desired, Planned, Sending};
use super::changeset::{Action, Change, ChangeSet};
use super::error::KubeError;
use super::order;
use super::retry::retry;

/// Writes a stage's planned objects (with `dry_run`, reports them), round by round
/// ([`order::round`]), recording each change in `cs` in the sorted order.
///
/// # Guarantees
/// A round starts only once every write of the round before it was answered; the objects of a
/// round go out [`super::CONCURRENCY`] at a time.
///
/// - A write that failed does not cut the others of its round short: every write of the round
///   runs to its end (an object being recreated is deleted, then created again) before the
///   failure is returned.
///
/// # Errors
/// The first write of the round that failed (after retries), naming the object and every other
/// write of the round that failed; earlier rounds, and the other writes of its round, stay
/// written.
pub(super) async fn write(
    client: &::kube::Client,
    objects: &[&Desired],
    plans: Vec<(Planned, Sending)>,
    opts: &ApplyOptions,
    dry_run: bool,
    cs: &mut ChangeSet,
) -> Result<(), KubeError> {
    use futures::stream::{self, StreamExt};
    // The objects of one round go out together (CONCURRENCY at a time), reported in their
    // sorted order; the next round starts once every write of this one is answered.
    let items: Vec<(&Desired, (Planned, Sending))> = objects.iter().copied().zip(plans).collect();
    let mut start = 0;
    while start < items.len() {
        let round = order::round(&items[start].0.r);
        let end = items[start..]
            .iter()
            .position(|(d, _)| order::round(&d.r) != round)
            .map_or(items.len(), |p| start + p);
        let mut futures = Vec::with_capacity(end - start);
        for (d, (plan, sending)) in &items[start..end] {
            futures.push(apply_one(client, d, plan, sending, opts, dry_run));
        }
        // Every write of the round is awaited, failed or not: stopping at the first failure
        // would drop the writes still in flight, and a recreate dropped between its delete and
        // its create leaves the object deleted.
        let done: Vec<Result<(Action, Option<String>), KubeError>> = stream::iter(futures)
            .buffered(super::CONCURRENCY)
            .collect()
            .await;
        let mut failed = Vec::new();
        for ((d, (plan, sending)), result) in items[start..end].iter().zip(done) {
            let (action, reason) = match result {
                Ok(done) => done,
                Err(e) => {
                    failed.push(e);
                    continue;
                }
            };
            let fields = match plan {
                Planned::Configure(fields) => fields.clone(),
                _ => Vec::new(),
            };
            cs.changes.push(Change {
                object: d.r.clone(),
                action,
                reason,
                fields,
                kept: sending.kept.clone(),
                taken: sending.taken.clone(),
            });
        }
        if !failed.is_empty() {
            return Err(all_of(failed));
        }
        start = end;
    }
    Ok(())
}

/// The failures of one round as one error: the first, naming the others, so that fixing one
/// does not reveal the next only on the following run.
fn all_of(failed: Vec<KubeError>) -> KubeError {
    let mut failed = failed.into_iter();
    let first = failed.next().expect("at least one failure");
    let others: Vec<String> = failed.map(|e| e.to_string()).collect();
    match first {
        KubeError::Apply { object, message } if !others.is_empty() => KubeError::Apply {
            object,
            message: format!(
                "{message}; the other writes of the same round that failed: {}",
                others.join("; ")
            ),
        },
        first => first,
    }
}

/// Writes one object as planned; returns what happened.
async fn apply_one(
    client: &::kube::Client,
    d: &Desired,
    plan: &Planned,
    sending: &Sending,
    opts: &ApplyOptions,
    dry_run: bool,
) -> Result<(Action, Option<String>), KubeError> {
    let failed = |e: ::kube::Error| KubeError::Apply {
        object: d.r.to_string(),
        message: reason(&e),
    };
    Ok(match plan {
        Planned::Unchanged if !sending.kept.is_empty() => (
            Action::Unchanged,
            Some("unchanged but for fields left to other managers (drift)".into()),
        ),
        Planned::Unchanged => (Action::Unchanged, None),
        Planned::AfterCrd => (
            Action::Created,
            Some("planned after its CRD or namespace, which this layer creates first".into()),
        ),
        Planned::Create | Planned::Configure(_) | Planned::Adopt(_) => {
            if !dry_run {
                let written =
                    server_apply(d, sending.object(d), client, opts, sending.force, false)
                        .await
                        .map_err(failed)?;
                super::snapshot::note(opts, d, Some(&written));
            }
            match plan {
                Planned::Create => (Action::Created, None),
                Planned::Adopt(owner) => {
                    (Action::Configured, Some(format!("adopted: it was {owner}")))
                }
                _ => (Action::Configured, None),
            }
        }
        Planned::Recreate => {
            if !dry_run {
                let api = d.api(client);
                let dp = DeleteParams::foreground();
                retry(opts.backoff, || api.delete(&d.r.name, &dp))
                    .await
                    .map_err(failed)?;
                super::wait::gone(client, d, Duration::from_secs(60)).await?;
                let written = server_apply(d, &d.object, client, opts, opts.force_conflicts, false)
                    .await
                    .map_err(failed)?;
                super::snapshot::note(opts, d, Some(&written));
            }
            (Action::Recreated, Some("an immutable field changed".into()))
        }
    })
}
