//! A run's read snapshot of one cluster, shared by every Kubernetes layer of the run: what a
//! thousand layers would each ask the cluster for (their inventory, their record of what was
//! applied, their objects) is read with a few paged LISTs instead of requests per layer.
//!
//! - **Records**: every ConfigMap and Secret of the records namespace is listed once, on first
//!   need, and the inventories and records of this stack (under its id, and inventories under
//!   its name alone, from before stack ids) are kept. Listed without a label selector, so that
//!   the snapshot holds whatever a GET by name would find.
//! - **Live objects**: where the stack declares at least [`super::diff::LIST_FROM`] objects of
//!   one kind in one namespace, across all its layers, they are read with one paged LIST, on
//!   first need; the others are read with a GET each, as a layer alone would.
//! - Every write strata makes through it is noted (the server's answer), so a later reader in
//!   the same run sees it.
//!
//! It may only add work, never hide it: a listing is used by a layer only when it was taken
//! after every layer that layer depends on had finished (anything those did, a Terraform
//! provisioner or a controller they deployed, is in it); otherwise the layer reads its objects
//! itself. A list that fails (a missing permission, a kind not served) is no error here: the
//! layer reads for itself, and that read's error is the one reported.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ::kube::api::{Api, DynamicObject, ListParams};
use ::kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;
use tokio::sync::OnceCell;

use super::apply::{ApplyOptions, Desired};
use super::inventory::NAMESPACE;
use super::retry::retry;
use crate::util::retry::Backoff;

/// Items per page of a LIST.
const PAGE: u32 = 500;

/// How long a listing of live objects answers for the layers of a run. A layer queued long
/// behind others (a pool full of slow layers) reads its objects itself instead of judging them
/// from a listing taken at the start of a long run: the window in which an edit made by someone
/// else goes unseen until the next run stays short, whatever the run's length.
pub const MAX_LISTING_AGE: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether a listing taken at `taken` may answer, at `now`, for a layer that became ready at
/// `ready`: taken once everything the layer depends on had finished, and not too long ago.
fn answers(taken: Instant, ready: Instant, now: Instant) -> bool {
    taken >= ready && now.saturating_duration_since(taken) <= MAX_LISTING_AGE
}

/// (group, kind, namespace): what the stack's declared objects are counted by.
pub type Place = (String, String, String);

/// Which of strata's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Record {
    /// A layer's inventory (a ConfigMap).
    Inventory,
    /// What strata last applied to a layer (a Secret).
    Applied,
}

/// One cluster's snapshot for one run of one stack.
pub struct Snapshot {
    stack: String,
    stack_id: String,
    /// The names the stack declares, by kind and namespace: the places listed, and the only
    /// names a listing keeps.
    declared: HashMap<Place, HashSet<String>>,
    /// The stack's records by kind and name (their `data`); `None`: the lists failed.
    records: OnceCell<Option<Mutex<Records>>>,
    listings: Mutex<HashMap<ListKey, Arc<OnceCell<Option<Listing>>>>>,
    /// Whether a record was written in this run, so the records namespace is known to exist.
    records_namespace: tokio::sync::Mutex<bool>,
}

/// Records' `data` by kind and name.
type Records = HashMap<(Record, String), Value>;

/// (group, version, kind, namespace) of a listing.
type ListKey = (String, String, String, String);

struct Listing {
    taken: Instant,
    objects: Mutex<HashMap<String, DynamicObject>>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("stack_id", &self.stack_id)
            .finish_non_exhaustive()
    }
}

/// A layer's view of its run's snapshot: the snapshot, and when the layer became ready (every
/// layer it depends on had finished), before which a listing is too old for it.
#[derive(Debug, Clone)]
pub struct Reads {
    pub snapshot: Arc<Snapshot>,
    pub ready: Instant,
}

impl Snapshot {
    /// A snapshot for stack `stack` (its label) with id `stack_id`, whose layers declare the
    /// objects `declared` names (by kind and namespace).
    pub fn new(stack: &str, stack_id: &str, declared: HashMap<Place, HashSet<String>>) -> Snapshot {
        Snapshot {
            stack: stack.to_string(),
            stack_id: stack_id.to_string(),
            declared,
            records: OnceCell::new(),
            listings: Mutex::new(HashMap::new()),
            records_namespace: tokio::sync::Mutex::new(false),
        }
    }

    /// The run's first record write holds it (see `inventory::in_records_namespace`).
    pub(super) fn records_namespace(&self) -> &tokio::sync::Mutex<bool> {
        &self.records_namespace
    }

    fn ours(&self, record: Record, name: &str) -> bool {
        let prefix = match record {
            Record::Inventory => "inventory.",
            Record::Applied => "applied.",
        };
        let Some(rest) = name.strip_prefix(prefix) else {
            return false;
        };
        let under = |id: &str| rest.strip_prefix(id).is_some_and(|r| r.starts_with('.'));
        under(&self.stack_id) || (record == Record::Inventory && under(&self.stack))
    }

    /// The `data` of record `name`: `Some(None)` when there is none, `None` when the snapshot
    /// can't say (its lists failed) and the caller reads it itself.
    ///
    /// # Guarantees
    /// The first call lists (once for the run); a record is said absent only when a complete
    /// list of its kind in the records namespace did not hold it and strata did not write it
    /// since.
    pub async fn record(
        &self,
        client: &::kube::Client,
        record: Record,
        name: &str,
        backoff: Backoff,
    ) -> Option<Option<Value>> {
        let records = self
            .records
            .get_or_init(|| async {
                match self.list_records(client, backoff).await {
                    Ok(found) => Some(Mutex::new(found)),
                    Err(e) => {
                        tracing::debug!("reading each layer's records itself: {e}");
                        None
                    }
                }
            })
            .await
            .as_ref()?;
        let records = records.lock().expect("records");
        Some(records.get(&(record, name.to_string())).cloned())
    }

    /// Notes what strata wrote to record `name` (its `data`; `None`: deleted).
    pub fn note_record(&self, record: Record, name: &str, data: Option<Value>) {
        let Some(Some(records)) = self.records.get() else {
            return;
        };
        let mut records = records.lock().expect("records");
        let key = (record, name.to_string());
        match data {
            Some(d) => records.insert(key, d),
            None => records.remove(&key),
        };
    }

    async fn list_records(
        &self,
        client: &::kube::Client,
        backoff: Backoff,
    ) -> Result<Records, ::kube::Error> {
        let mut found = HashMap::new();
        for (record, kind, plural) in [
            (Record::Inventory, "ConfigMap", "configmaps"),
            (Record::Applied, "Secret", "secrets"),
        ] {
            let ar =
                ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", kind), plural);
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &ar);
            let items = paged(&api, backoff, |o| {
                o.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| self.ours(record, n))
            })
            .await?;
            for o in items {
                let name = o.metadata.name.clone().unwrap_or_default();
                found.insert((record, name), o.data["data"].clone());
            }
        }
        Ok(found)
    }

    /// The live state of `d` from the run's listing of its kind and namespace: `Some(None)`
    /// when it does not exist; `None` when the snapshot can't say for this layer (too few
    /// objects declared there to list them, a listing older than `ready`, a failed list).
    ///
    /// # Guarantees
    /// Only a listing taken at or after `ready`, and at most [`MAX_LISTING_AGE`] ago, answers.
    async fn live(
        &self,
        client: &::kube::Client,
        d: &Desired,
        ready: Instant,
        backoff: Backoff,
    ) -> Option<Option<DynamicObject>> {
        let place = (d.r.group.clone(), d.r.kind.clone(), d.r.namespace.clone());
        let names = self
            .declared
            .get(&place)
            .filter(|n| n.len() >= super::diff::LIST_FROM)?;
        let key = (
            d.r.group.clone(),
            d.r.version.clone(),
            d.r.kind.clone(),
            d.r.namespace.clone(),
        );
        let cell = self
            .listings
            .lock()
            .expect("listings")
            .entry(key)
            .or_default()
            .clone();
        let listing = cell
            .get_or_init(|| async {
                let taken = Instant::now();
                let api = d.api(client);
                let types = ::kube::api::TypeMeta {
                    api_version: d.r.api_version(),
                    kind: d.r.kind.clone(),
                };
                match paged(&api, backoff, |o| {
                    o.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| names.contains(n))
                })
                .await
                {
                    Ok(items) => Some(Listing {
                        taken,
                        objects: Mutex::new(
                            items
                                .into_iter()
                                .map(|mut o| {
                                    // Items of a list carry no apiVersion and kind on a real
                                    // server; a GET's answer does, and comparisons see them.
                                    o.types = Some(types.clone());
                                    (o.metadata.name.clone().unwrap_or_default(), o)
                                })
                                .collect(),
                        ),
                    }),
                    Err(e) => {
                        tracing::debug!("reading each {} itself: {e}", d.r.kind);
                        None
                    }
                }
            })
            .await
            .as_ref()?;
        if !answers(listing.taken, ready, Instant::now()) {
            return None;
        }
        let objects = listing.objects.lock().expect("listing");
        Some(objects.get(&d.r.name).cloned())
    }

    /// Notes the server's answer to a write of `d` (`None`: deleted) in its listing, if any.
    pub fn note_live(&self, d: &Desired, written: Option<&DynamicObject>) {
        let key = (
            d.r.group.clone(),
            d.r.version.clone(),
            d.r.kind.clone(),
            d.r.namespace.clone(),
        );
        let cell = self.listings.lock().expect("listings").get(&key).cloned();
        let Some(Some(listing)) = cell.as_ref().and_then(|c| c.get()) else {
            return;
        };
        let mut objects = listing.objects.lock().expect("listing");
        match written {
            Some(o) => objects.insert(d.r.name.clone(), o.clone()),
            None => objects.remove(&d.r.name),
        };
    }
}

/// Every item of `api` that `keep` keeps, read page by page (one consistent list). A LIST
/// whose continue token expired mid-way (410) fails like any other refused list: the snapshot
/// then has no listing there and the layers read for themselves.
async fn paged(
    api: &Api<DynamicObject>,
    backoff: Backoff,
    keep: impl Fn(&DynamicObject) -> bool,
) -> Result<Vec<DynamicObject>, ::kube::Error> {
    let read = || async {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(PAGE);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = match api.list(&lp).await {
                // A namespace that does not exist holds nothing. Only that 404: one for a kind
                // the server does not serve is a failed list (the layers read for themselves).
                Err(::kube::Error::Api(s))
                    if s.code == 404
                        && token.is_none()
                        && s.message.starts_with("namespaces \"") =>
                {
                    return Ok(found)
                }
                other => other?,
            };
            token = page.metadata.continue_.clone().filter(|t| !t.is_empty());
            found.extend(page.items.into_iter().filter(|o| keep(o)));
            if token.is_none() {
                return Ok(found);
            }
        }
    };
    retry(backoff, read).await
}

/// The live state of `d`: from the snapshot of `opts` where it can say (there is none outside
/// a run), else with a GET.
///
/// # Errors
/// The GET failed after the retries, naming the object.
pub(super) async fn live_or_get(
    d: &Desired,
    client: &::kube::Client,
    opts: &ApplyOptions,
) -> Result<Option<DynamicObject>, super::KubeError> {
    if let Some(reads) = &opts.reads {
        let found = reads
            .snapshot
            .live(client, d, reads.ready, opts.backoff)
            .await;
        if let Some(found) = found {
            return Ok(found);
        }
    }
    let api = d.api(client);
    retry(opts.backoff, || api.get_opt(&d.r.name))
        .await
        .map_err(|e| super::KubeError::Read {
            what: d.r.to_string(),
            message: super::apply::reason(&e),
        })
}

/// Notes the server's answer to a write of `d` (`None`: deleted) in the snapshot of `opts`.
pub fn note(opts: &ApplyOptions, d: &Desired, written: Option<&DynamicObject>) {
    if let Some(reads) = &opts.reads {
        reads.snapshot.note_live(d, written);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_listing_answers_only_after_the_layers_dependencies_and_while_it_is_fresh() {
        let start = Instant::now();
        let later = start + Duration::from_secs(5);
        assert!(
            answers(later, start, later),
            "taken after the layer was ready"
        );
        assert!(
            !answers(start, later, later),
            "taken before a dependency finished"
        );
        assert!(
            answers(start, start, start + MAX_LISTING_AGE),
            "at its age limit"
        );
        assert!(
            !answers(
                start,
                start,
                start + MAX_LISTING_AGE + Duration::from_millis(1)
            ),
            "older than the limit: the layer reads for itself"
        );
    }
}
