//! Server-side apply of a layer, staged as Flux's `ApplyAllStaged`: CRDs and Namespaces first
//! (waiting for CRDs to be established), then everything else. Every object is dry-run first
//! (the inventory is written at the same time); if any dry run fails, nothing is applied. Only
//! objects whose dry-run result differs from the live object are written, so a no-op run makes
//! zero writes; the writes go out in rounds ([`super::rounds`]).

use std::collections::BTreeMap;
use std::time::Duration;

use ::kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use super::changeset::ChangeSet;
use super::conflicts::{self, Kept, Taken};
use super::error::KubeError;
use super::last_applied::LastApplied;
use super::manifest::Manifest;
use super::object::ObjRef;
use super::order;
use super::owner::{adopt_annotated, owner_of, Owner, LABEL_STACK_ID};
use super::resolve::{Resolved, Resources};
use super::retry::retry;
use super::sanitize::{comparable, field_diffs};
use crate::util::retry::Backoff;

/// Labels strata puts on every object it applies.
pub const LABEL_STACK: &str = "strata.dev/stack";
pub const LABEL_LAYER: &str = "strata.dev/layer";
/// `strata.dev/recreate: allowed` lets strata delete and recreate an object whose immutable
/// fields changed.
pub const ANNOTATION_RECREATE: &str = "strata.dev/recreate";

/// How a layer is applied.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Field manager name. Default `strata`.
    pub field_manager: String,
    /// Force every field-manager conflict (the layer's `drift = "correct"`, or
    /// `--force-conflicts`); without it only fields Git changed since strata last applied the
    /// object are forced, and the others are left to their managers.
    pub force_conflicts: bool,
    /// Namespace for namespaced objects that name none; `default` when unset.
    pub namespace: Option<String>,
    pub stack: String,
    /// The stack's id ([`super::owner::derive_id`]), on every object as
    /// [`super::owner::LABEL_STACK_ID`]; the stack name when unset.
    pub stack_id: String,
    /// Take over objects another stack or no stack manages (`strata apply --adopt`); without it
    /// only desired objects annotated [`super::owner::ANNOTATION_ADOPT`] are taken over.
    pub adopt: bool,
    pub layer: String,
    /// How long to wait for new CRDs to be established. Default 60s.
    pub crd_timeout: Duration,
    pub backoff: Backoff,
    /// The age keys SOPS-encrypted manifests are decrypted with (`--age-key-file`).
    pub age_keys: Option<crate::secrets::AgeKeys>,
    /// The bounds on the layer's manifests (its and its stack's `limits` blocks).
    pub limits: super::limits::ManifestLimits,
    /// The run's read snapshot of the cluster, when the layer is part of a run.
    pub reads: Option<super::snapshot::Reads>,
}

impl ApplyOptions {
    pub fn new(stack: &str, layer: &str) -> ApplyOptions {
        ApplyOptions {
            field_manager: "strata".into(),
            force_conflicts: false,
            namespace: None,
            stack: stack.into(),
            stack_id: stack.into(),
            adopt: false,
            layer: layer.into(),
            crd_timeout: Duration::from_secs(60),
            backoff: Backoff::default(),
            age_keys: None,
            limits: super::limits::ManifestLimits::default(),
            reads: None,
        }
    }
}

/// A desired object made ready to send: namespace defaulted, labels added, resource resolved.
#[derive(Clone)]
pub struct Desired {
    pub object: Value,
    pub r: ObjRef,
    pub place: String,
    pub resolved: Resolved,
    /// The layer's sensitive values (shared by all its objects): masked in every diff and error.
    pub sensitive: std::sync::Arc<crate::redact::Redactor>,
}

/// The object may hold secrets: Debug names it and where it is declared, never its content.
impl std::fmt::Debug for Desired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Desired")
            .field("r", &self.r)
            .field("place", &self.place)
            .finish_non_exhaustive()
    }
}

impl Desired {
    pub fn api(&self, client: &::kube::Client) -> Api<DynamicObject> {
        if self.resolved.namespaced {
            Api::namespaced_with(client.clone(), &self.r.namespace, &self.resolved.resource)
        } else {
            Api::all_with(client.clone(), &self.resolved.resource)
        }
    }
}

/// Resolves, defaults, labels and orders the manifests.
///
/// # Errors
/// Kinds the cluster doesn't serve (and no CRD in the set defines), and duplicates (naming both
/// places).
pub fn prepare(
    manifests: &[Manifest],
    resources: &Resources,
    opts: &ApplyOptions,
) -> Result<Vec<Desired>, KubeError> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<(String, String, String, String), String> = BTreeMap::new();
    let mut out = Vec::new();
    for m in manifests {
        let mut obj = m.object.clone();
        let r0 = ObjRef::of(&obj);
        let Some(resolved) = resources.get(&r0.group, &r0.version, &r0.kind).cloned() else {
            problems.push(format!(
                "{}: {} {}: the cluster serves no such kind (and no CRD in this layer defines it)",
                m.place(),
                r0.api_version(),
                r0.kind
            ));
            continue;
        };
        let md = obj["metadata"]
            .as_object_mut()
            .expect("manifests have metadata");
        if resolved.namespaced {
            if md
                .get("namespace")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                let ns = opts.namespace.clone().unwrap_or_else(|| "default".into());
                md.insert("namespace".into(), Value::String(ns));
            }
        } else {
            md.remove("namespace");
        }
        let labels = md
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(l) = labels.as_object_mut() {
            l.insert(LABEL_STACK.into(), Value::String(opts.stack.clone()));
            l.insert(LABEL_STACK_ID.into(), Value::String(opts.stack_id.clone()));
            l.insert(LABEL_LAYER.into(), Value::String(opts.layer.clone()));
        }
        let r = ObjRef::of(&obj);
        if let Some(first) = seen.get(&r.key()) {
            problems.push(format!("{r} is declared twice: {first} and {}", m.place()));
            continue;
        }
        seen.insert(r.key(), m.place());
        out.push(Desired {
            object: obj,
            r,
            place: m.place(),
            resolved,
            sensitive: Default::default(),
        });
    }
    if !problems.is_empty() {
        return Err(KubeError::Load { problems });
    }
    out.sort_by_key(|d| order::key(&d.r));
    Ok(out)
}

/// The outcome of one object's dry run.
pub(super) enum Planned {
    Create,
    /// It exists and differs: the fields that change (live → desired), masked as in a diff.
    Configure(Vec<super::sanitize::FieldDiff>),
    /// It exists and another stack (or nobody strata knows) manages it; consent was given.
    Adopt(Owner),
    Unchanged,
    /// Its CRD or namespace is created in this run: it can only be dry-run once that exists.
    AfterCrd,
    Recreate,
}

/// How a planned object is sent: as Git declares it, or without the fields left to other
/// managers; forced or not.
#[derive(Debug, Default)]
pub(super) struct Sending {
    /// The object without the fields left to other managers; `None`: as Git declares it.
    object: Option<Value>,
    pub(super) force: bool,
    pub(super) kept: Vec<Kept>,
    pub(super) taken: Vec<Taken>,
}

impl Sending {
    pub(super) fn object<'a>(&'a self, d: &'a Desired) -> &'a Value {
        self.object.as_ref().unwrap_or(&d.object)
    }
}

/// A short reason from an API error.
pub(super) fn reason(e: &::kube::Error) -> String {
    match e {
        ::kube::Error::Api(s) => format!("{} ({})", s.message, s.reason),
        other => other.to_string(),
    }
}

fn is_conflict(e: &::kube::Error) -> bool {
    matches!(e, ::kube::Error::Api(s) if s.code == 409)
}

fn is_immutable(e: &::kube::Error) -> bool {
    matches!(e, ::kube::Error::Api(s) if s.code == 422 && s.message.contains("field is immutable"))
}

pub(super) async fn server_apply(
    d: &Desired,
    object: &Value,
    client: &::kube::Client,
    opts: &ApplyOptions,
    force: bool,
    dry_run: bool,
) -> Result<DynamicObject, ::kube::Error> {
    let api = d.api(client);
    let mut pp = PatchParams::apply(&opts.field_manager);
    if force {
        pp = pp.force();
    }
    if dry_run {
        pp = pp.dry_run();
    }
    let patch = Patch::Apply(object);
    retry(opts.backoff, || api.patch(&d.r.name, &pp, &patch)).await
}

fn to_value(o: &DynamicObject) -> Value {
    serde_json::to_value(o).unwrap_or_default()
}

/// Dry-runs one object and compares the result with the live object. Field-manager conflicts
/// are resolved against `last` (the object as Git declared it when strata last applied it): see
/// [`conflicts::resolve`].
async fn plan_one(
    d: &Desired,
    client: &::kube::Client,
    opts: &ApplyOptions,
    pending_crd: bool,
    last: Option<&Value>,
) -> Result<(Planned, Sending), String> {
    if pending_crd {
        return Ok((Planned::AfterCrd, Sending::default()));
    }
    let current = super::snapshot::live_or_get(d, client, opts)
        .await
        .map_err(|e| e.to_string())?;
    let adopting = match current
        .as_ref()
        .map(|l| owner_of(&to_value(l), &opts.stack, &opts.stack_id))
    {
        None | Some(Owner::Ours) => None,
        Some(owner) if opts.adopt || adopt_annotated(&d.object) => Some(owner),
        Some(owner) => {
            return Err(format!(
                "it already exists, {owner}; strata does not take it over silently: \
                 annotate it {}: \"true\" in Git or run `strata apply --adopt` to adopt it",
                super::owner::ANNOTATION_ADOPT
            ));
        }
    };
    // Adopting takes the fields over from their old managers: consent covers the conflicts.
    let force = opts.force_conflicts || adopting.is_some();
    let mut sending = Sending {
        force,
        ..Sending::default()
    };
    // An object strata owns whose live state already holds every field and value it applies,
    // owned by strata alone: no apply, forced or not, could change it (and no conflict can
    // arise, no field being another manager's), so its dry run is not sent. Anything else —
    // a changed or foreign field, a key left to the server's defaulting — is dry-run.
    if let (Some(l), None) = (&current, &adopting) {
        if super::owned::unchanged_by_apply(&d.object, &to_value(l), &opts.field_manager) {
            return Ok((Planned::Unchanged, sending));
        }
    }
    let mut result = server_apply(d, &d.object, client, opts, force, true).await;
    if let Err(::kube::Error::Api(s)) = &result {
        let found = conflicts::of_status(s);
        if s.code == 409 && !force && !found.is_empty() {
            let r = conflicts::resolve(&d.object, last, &found).map_err(|u| {
                format!(
                    "{} (strata can't find {} in the object it sends)",
                    s.message, u.path
                )
            })?;
            sending = Sending {
                object: Some(r.object),
                force: r.force,
                kept: r.kept,
                taken: r.taken,
            };
            result = server_apply(d, sending.object(d), client, opts, sending.force, true).await;
        }
    }
    let result = match result {
        Ok(r) => r,
        Err(e) if is_conflict(&e) && !sending.force => {
            return Err(format!(
                "{} (another manager took these fields while strata resolved its conflicts: \
                 run again)",
                reason(&e)
            ));
        }
        Err(e) if is_immutable(&e) => {
            let allowed = d.object["metadata"]["annotations"][ANNOTATION_RECREATE] == "allowed";
            if allowed {
                return Ok((Planned::Recreate, Sending::default()));
            }
            return Err(format!(
                "{}; annotate it {ANNOTATION_RECREATE}: allowed to let strata delete and recreate it",
                reason(&e)
            ));
        }
        Err(e) => return Err(reason(&e)),
    };
    // The run's snapshot and the dry run disagree on whether the object exists (only a stored
    // object's dry run has a resourceVersion): it was created or deleted since the snapshot.
    // Planned again from its own read, so that its owner is checked and the change is real.
    let stored = result
        .metadata
        .resource_version
        .as_deref()
        .is_some_and(|v| !v.is_empty());
    if current.is_some() != stored && opts.reads.is_some() {
        let alone = ApplyOptions {
            reads: None,
            ..opts.clone()
        };
        return Box::pin(plan_one(d, client, &alone, pending_crd, last)).await;
    }
    if let Some(owner) = adopting {
        return Ok((Planned::Adopt(owner), sending));
    }
    let planned = match current {
        None => Planned::Create,
        Some(l) if comparable(&to_value(&l)) == comparable(&to_value(&result)) => {
            Planned::Unchanged
        }
        Some(l) => Planned::Configure(super::diff::mask(
            &d.r,
            &d.sensitive,
            field_diffs(&comparable(&to_value(&l)), &comparable(&to_value(&result))),
        )),
    };
    Ok((planned, sending))
}

/// Dry-runs many objects, [`super::CONCURRENCY`] at a time, results in order.
async fn plan_all(
    client: &::kube::Client,
    objects: &[&Desired],
    opts: &ApplyOptions,
    pending: &[bool],
    last: &LastApplied,
) -> Vec<Result<(Planned, Sending), String>> {
    use futures::stream::{self, StreamExt};
    // Futures made first (not lazily in a closure), so the whole stays Send.
    let mut futures = Vec::with_capacity(objects.len());
    for (d, p) in objects.iter().zip(pending) {
        futures.push(plan_one(d, client, opts, *p, last.of(&d.r)));
    }
    stream::iter(futures)
        .buffered(super::CONCURRENCY)
        .collect()
        .await
}

/// Dry-runs the first stage (CRDs and Namespaces), then the rest: objects that can only be
/// dry-run once the first stage exists (kinds served by new CRDs, objects in namespaces this
/// run creates) are planned [`Planned::AfterCrd`].
///
/// # Errors
/// Every dry-run failure of both stages, as `Kind/ns/name: reason`; discovery failures.
async fn plan_stages(
    cluster: &super::Cluster,
    first: &[&Desired],
    rest: &[&Desired],
    opts: &ApplyOptions,
    last: &LastApplied,
) -> Result<(Vec<(Planned, Sending)>, Vec<(Planned, Sending)>), KubeError> {
    let client: &::kube::Client = cluster;
    let mut failures = Vec::new();
    let mut plans_first = Vec::new();
    for (d, result) in first
        .iter()
        .zip(plan_all(client, first, opts, &vec![false; first.len()], last).await)
    {
        match result {
            Ok(p) => plans_first.push(p),
            Err(e) => failures.push(format!("{}: {e}", d.r)),
        }
    }
    let served = cluster
        .served(
            rest.iter()
                .map(|d| (d.r.group.clone(), d.r.version.clone(), d.r.kind.clone())),
        )
        .await?;
    let new_namespaces: Vec<&str> = first
        .iter()
        .zip(&plans_first)
        .filter(|(d, p)| d.r.kind == "Namespace" && matches!(p.0, Planned::Create))
        .map(|(d, _)| d.r.name.as_str())
        .collect();
    let pending: Vec<bool> = rest
        .iter()
        .map(|d| {
            served.get(&d.r.group, &d.r.version, &d.r.kind).is_none()
                || (!d.r.namespace.is_empty() && new_namespaces.contains(&d.r.namespace.as_str()))
        })
        .collect();
    let mut plans_rest = Vec::new();
    for (d, result) in rest
        .iter()
        .zip(plan_all(client, rest, opts, &pending, last).await)
    {
        match result {
            Ok(p) => plans_rest.push(p),
            Err(e) => failures.push(format!("{}: {e}", d.r)),
        }
    }
    if !failures.is_empty() {
        return Err(KubeError::DryRun { failures });
    }
    Ok((plans_first, plans_rest))
}

/// Applies (or with `dry_run`, plans) the desired objects. `ahead` is the inventory to record
/// before the first write (and whether it replaces one named by the stack name alone); `None`
/// when the recorded one already covers every desired object. `last` is what strata last
/// applied to the layer, against which field-manager conflicts are resolved.
///
/// # Guarantees
/// - The inventory in `ahead` is written at the same time as the dry runs, and no object is
///   written unless every dry run passed AND that inventory write succeeded: a crash at any
///   point leaves every object this apply created in an inventory, and a failed inventory write
///   fails the layer with nothing written.
/// - A layer whose dry run fails may leave its inventory extended with objects it never wrote.
///   That is harmless: the inventory only says where to look (the same state a crash between
///   the inventory write and the first object write leaves), pruning deletes only objects
///   labelled as this stack's and drops from the inventory whatever is missing or someone
///   else's ([`super::prune`]), so the next apply narrows it back to what exists.
/// - Every object of the layer is dry-run before any is written (objects of kinds or
///   namespaces the first stage creates: before any of the later stage is written); one failure
///   and nothing is applied, and the error lists every failure as `Kind/ns/name: reason`.
/// - Objects are written in rounds ([`order::round`]): each kind up to Service in its own
///   round, in order, then every later kind of the stage in one round.
/// - Objects whose dry-run result equals the live object are not written (no resourceVersion
///   bump): a second run of the same layer makes zero writes. An object strata owns whose live
///   state already holds every field and value it applies, owned by strata alone, is not even
///   dry-run ([`super::owned::unchanged_by_apply`]): no apply could change it.
/// - Transient API errors (5xx, 429, connection) are retried with capped backoff; 4xx answers are
///   final.
/// - Without `force_conflicts`, a conflicting field is forced only when Git changed it since
///   `last`; the others are left out of what is sent, keep the other manager's value and are
///   reported (`kept`), and the rest of the object is applied.
///
/// # Errors
/// Dry-run failures, apply failures, CRDs that don't become established in time.
pub async fn apply(
    cluster: &super::Cluster,
    desired: &[Desired],
    opts: &ApplyOptions,
    dry_run: bool,
    ahead: Option<(&[ObjRef], bool)>,
    last: &LastApplied,
) -> Result<ChangeSet, KubeError> {
    let client: &::kube::Client = cluster;
    let mut cs = ChangeSet {
        dry_run,
        changes: Vec::new(),
    };
    let (first, rest): (Vec<&Desired>, Vec<&Desired>) =
        desired.iter().partition(|d| order::stage(&d.r) <= 1);

    // The inventory goes out beside the dry runs, not after them: it only has to be recorded
    // before the first write, and is harmless if no write follows (see the guarantees). Not
    // when the layer declares the records namespace itself: writing the inventory creates that
    // namespace (unlabelled) when it is missing, and the layer's own dry run of it would then
    // find a namespace it does not own; there the inventory waits for the dry runs, as before.
    let record_ahead = || async {
        match (ahead, dry_run) {
            (Some((entries, legacy)), false) => {
                super::inventory::write(client, opts, entries, legacy).await
            }
            _ => Ok(()),
        }
    };
    let declares_records_namespace = first
        .iter()
        .any(|d| d.r.kind == "Namespace" && d.r.name == super::inventory::NAMESPACE);
    let (recorded, planned) = if declares_records_namespace {
        let planned = plan_stages(cluster, &first, &rest, opts, last).await;
        let recorded = match planned {
            Ok(_) => record_ahead().await,
            Err(_) => Ok(()),
        };
        (recorded, planned)
    } else {
        futures::join!(
            record_ahead(),
            plan_stages(cluster, &first, &rest, opts, last)
        )
    };
    let (plans_first, plans_rest) = match (planned, recorded) {
        (Ok(plans), Ok(())) => plans,
        (Err(e), Ok(())) | (Ok(_), Err(e)) => return Err(e),
        // Both failed: say both, so that fixing the dry runs does not reveal the other.
        (Err(KubeError::DryRun { mut failures }), Err(inventory)) => {
            failures.push(format!("the layer's inventory: {inventory}"));
            return Err(KubeError::DryRun { failures });
        }
        (Err(e), Err(_)) => return Err(e),
    };

    super::rounds::write(client, &first, plans_first, opts, dry_run, &mut cs).await?;
    if !dry_run && first.iter().any(|d| d.r.kind == "CustomResourceDefinition") {
        super::wait::crds_established(client, &first, opts.crd_timeout).await?;
    }
    // Objects of new kinds can be dry-run now that their CRDs exist.
    let mut late_failures = Vec::new();
    let mut plans_rest2 = Vec::new();
    for (d, p) in rest.iter().zip(plans_rest) {
        match p {
            (Planned::AfterCrd, _) if !dry_run => {
                match plan_one(d, client, opts, false, last.of(&d.r)).await {
                    Ok(p) => plans_rest2.push(p),
                    Err(e) => late_failures.push(format!("{}: {e}", d.r)),
                }
            }
            other => plans_rest2.push(other),
        }
    }
    if !late_failures.is_empty() {
        return Err(KubeError::DryRun {
            failures: late_failures,
        });
    }
    super::rounds::write(client, &rest, plans_rest2, opts, dry_run, &mut cs).await?;
    Ok(cs)
}
