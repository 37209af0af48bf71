//! Kubernetes layers: load manifests, substitute upstream values, order them, server-side apply
//! them (dry-run first, only what changed), diff them against the cluster, prune what left Git,
//! and wait for readiness. Built on kube-rs with `DynamicObject` and discovery, after
//! fluxcd/pkg/ssa: a file per verb.

pub mod apply;
pub mod breaker;
pub mod changeset;
pub mod clients;
pub mod cluster;
pub mod conflicts;
pub mod contents;
pub mod diff;
pub mod encrypted;
pub mod error;
pub mod inflight;
pub mod inventory;
pub mod kustomize;
pub mod last_applied;
pub mod limits;
pub mod manifest;
pub mod object;
pub mod order;
pub mod owned;
pub mod owner;
pub mod parsed;
pub mod prune;
pub mod resolve;
pub mod retry;
pub mod rounds;
pub mod sanitize;
pub mod snapshot;
pub mod vars;
pub mod wait;
pub mod yaml;

use std::path::Path;
use std::time::Duration;

/// How many objects of a layer are dry-run or compared at once (requests in flight).
pub const CONCURRENCY: usize = 16;

pub use apply::{ApplyOptions, Desired};
pub use changeset::{Action, Change, ChangeSet};
pub use clients::{Cluster, Clusters};
pub use diff::{DiffState, KubeDiff, ObjectDiff};
pub use error::KubeError;
pub use manifest::Manifest;
pub use object::ObjRef;

/// What a layer run does besides applying.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub apply: ApplyOptions,
    /// Delete objects that left Git (the layer's `prune`).
    pub prune: bool,
    /// Wait for readiness (the layer's `wait`), up to `timeout`.
    pub wait: bool,
    pub timeout: Duration,
}

/// Reads a layer's desired objects: load (decrypting SOPS files with `opts.age_keys`),
/// substitute, resolve, default, label, order. Each object carries the layer's sensitive values.
///
/// # Errors
/// Load, decryption and discovery failures, naming files and objects; no sensitive value is in
/// them.
pub async fn desired(
    client: &Cluster,
    root: &Path,
    source: &Path,
    vars: &vars::Vars,
    opts: &ApplyOptions,
) -> Result<(Vec<Desired>, resolve::Resources), KubeError> {
    desired_parsed(client, root, source, vars, opts, None).await
}

/// [`desired`], taking the files' documents from `parsed` where it holds the parse of their
/// current text ([`parsed::ParsedFiles`]).
///
/// # Errors
/// As [`desired`].
pub async fn desired_parsed(
    client: &Cluster,
    root: &Path,
    source: &Path,
    vars: &vars::Vars,
    opts: &ApplyOptions,
    parsed: Option<&parsed::ParsedFiles>,
) -> Result<(Vec<Desired>, resolve::Resources), KubeError> {
    let loaded = manifest::load_layer(
        root,
        source,
        vars,
        opts.age_keys.as_ref(),
        &opts.limits,
        parsed,
    )?;
    let sensitive = std::sync::Arc::new(loaded.sensitive);
    let resources = client
        .resources_for(loaded.manifests.iter().map(|m| &m.object))
        .await
        .map_err(|e| e.redact(&sensitive))?;
    let mut desired =
        apply::prepare(&loaded.manifests, &resources, opts).map_err(|e| e.redact(&sensitive))?;
    for d in &mut desired {
        d.sensitive = sensitive.clone();
    }
    Ok((desired, resources))
}

/// The sensitive values of a layer's desired objects (they all share one set).
fn sensitive_of(desired: &[Desired]) -> std::sync::Arc<crate::redact::Redactor> {
    desired
        .first()
        .map(|d| d.sensitive.clone())
        .unwrap_or_default()
}

/// A layer applied, its prune (and the narrowing of its inventory) still to come.
#[derive(Debug, Clone)]
pub struct Applied {
    pub cs: ChangeSet,
    /// The inventory before this apply.
    pub previous: Vec<ObjRef>,
    /// The inventory as recorded now (sorted): `previous` plus every desired object.
    recorded: Vec<ObjRef>,
}

/// `previous` plus the desired objects (in the version Git names them), sorted.
fn union(previous: &[ObjRef], desired: &[Desired]) -> Vec<ObjRef> {
    let mut all: Vec<ObjRef> = desired.iter().map(|d| d.r.clone()).collect();
    let keys: std::collections::BTreeSet<_> = all.iter().map(ObjRef::key).collect();
    all.extend(
        previous
            .iter()
            .filter(|r| !keys.contains(&r.key()))
            .cloned(),
    );
    all.sort();
    all
}

/// Reads the layer's inventory.
///
/// # Errors
/// It exists but can't be read or parsed: nothing may be applied or pruned then.
pub async fn read_inventory(
    client: &::kube::Client,
    opts: &ApplyOptions,
) -> Result<inventory::Inventory, KubeError> {
    inventory::read(client, opts).await
}

/// Applies a layer and waits for it; its prune comes after, in [`finish`].
///
/// # Guarantees
/// - Nothing is applied when the desired set failed to load, any dry run failed, or the
///   inventory could not be written.
/// - Write-ahead inventory: written at the same time as the dry runs and before the first
///   object write, the inventory records everything it held plus every desired object, so a
///   crash at any point leaves every object strata created findable by the next run.
/// - A layer whose dry run fails may leave that inventory extended with objects never written:
///   harmless, as pruning deletes only objects labelled as this stack's and drops from the
///   inventory what is missing or someone else's, so the next apply narrows it again.
/// - Idempotent: a second run with the same desired set makes zero writes, the inventory
///   and the record of what was applied included.
/// - Field-manager conflicts are resolved against what strata last applied to the layer
///   ([`last_applied`]), which is recorded anew only once the apply (and wait) succeeded.
///
/// # Errors
/// Dry-run, inventory, record, apply and wait failures, each naming objects.
pub async fn apply_layer(
    client: &Cluster,
    desired: &[Desired],
    inventory: inventory::Inventory,
    opts: &SyncOptions,
) -> Result<Applied, KubeError> {
    let mut stored = inventory.entries.clone();
    stored.sort();
    let recorded = union(&inventory.entries, desired);
    let ahead =
        (recorded != stored || inventory.legacy).then_some((&recorded[..], inventory.legacy));
    let sensitive = sensitive_of(desired);
    let last = last_applied::read(client, &opts.apply).await?;
    let applied = apply::apply(client, desired, &opts.apply, false, ahead, &last).await;
    if desired
        .iter()
        .any(|d| d.r.kind == "CustomResourceDefinition")
    {
        // New kinds (or versions) may be served now, even after a partial apply.
        client.invalidate().await;
    }
    let cs = applied.map_err(|e| e.redact(&sensitive))?;
    if opts.wait {
        let all: Vec<&Desired> = desired.iter().collect();
        wait::ready(client, &all, opts.timeout)
            .await
            .map_err(|e| e.redact(&sensitive))?;
    }
    last_applied::write(client, &opts.apply, desired, &last).await?;
    Ok(Applied {
        cs,
        previous: inventory.entries,
        recorded,
    })
}

/// Prunes an applied layer (when its `prune` is on) against what the whole stack declares, then
/// narrows its inventory to what it declares and what was kept.
///
/// # Guarantees
/// - Runs only on a layer whose apply succeeded; never deletes what any layer of `stack`
///   declares, what another stack owns, or a Namespace or CRD holding anything not pruned.
/// - The inventory is narrowed only after pruning succeeded; unchanged, it is not written.
///
/// # Errors
/// Discovery, read, listing, deletion and inventory failures, each naming the object.
pub async fn finish(
    client: &Cluster,
    applied: Applied,
    desired: &[Desired],
    stack: &prune::Stackwide,
    opts: &SyncOptions,
) -> Result<ChangeSet, KubeError> {
    let a = &opts.apply;
    let Applied {
        mut cs,
        previous,
        recorded,
    } = applied;
    if !opts.prune {
        return Ok(cs);
    }
    // The apply may have added kinds (new CRDs, after which discovery is asked again): prune
    // with what the cluster serves now, asking again for any kind of the inventory not in it.
    let resources = client
        .served(
            previous
                .iter()
                .map(|r| (r.group.clone(), r.version.clone(), r.kind.clone())),
        )
        .await?;
    let pruned = prune::prune(client, &previous, stack, &resources, a, &mut cs).await;
    if cs
        .changes
        .iter()
        .any(|c| c.object.kind == "CustomResourceDefinition" && c.action == Action::Deleted)
    {
        client.invalidate().await;
    }
    let kept = pruned?;
    let mut record: Vec<ObjRef> = desired.iter().map(|d| d.r.clone()).collect();
    record.extend(kept);
    record.sort();
    if record != recorded {
        inventory::write(client, a, &record, false).await?;
    }
    Ok(cs)
}

/// Converges one layer on its own: apply, then prune what it alone no longer declares.
///
/// # Guarantees
/// As [`apply_layer`] and [`finish`]; pruning happens only after a successful apply and a
/// successful inventory read.
///
/// # Errors
/// Load, dry-run, apply, prune and wait failures, each naming objects.
pub async fn sync(
    client: &Cluster,
    desired: &[Desired],
    _resources: &resolve::Resources,
    opts: &SyncOptions,
) -> Result<ChangeSet, KubeError> {
    let inv = read_inventory(client, &opts.apply).await?;
    let layer = format!("kubernetes.{}", opts.apply.layer);
    let refs: Vec<ObjRef> = desired.iter().map(|d| d.r.clone()).collect();
    let stack = prune::Stackwide::of_layer(&layer, &refs, &inv.entries);
    let applied = apply_layer(client, desired, inv, opts).await?;
    finish(client, applied, desired, &stack, opts).await
}

/// Plans a layer's apply: what [`apply_layer`] would do, from dry runs; writes nothing.
///
/// # Errors
/// Record and dry-run failures, naming objects.
pub async fn plan_apply(
    client: &Cluster,
    desired: &[Desired],
    opts: &SyncOptions,
) -> Result<ChangeSet, KubeError> {
    let last = last_applied::read(client, &opts.apply).await?;
    apply::apply(client, desired, &opts.apply, true, None, &last)
        .await
        .map_err(|e| e.redact(&sensitive_of(desired)))
}

/// Plans a layer's prune into `cs` (when its `prune` is on): what [`finish`] would delete and
/// keep, with the same words; writes nothing.
///
/// # Errors
/// Read and listing failures, naming objects.
pub async fn plan_prune(
    client: &::kube::Client,
    previous: &[ObjRef],
    resources: &resolve::Resources,
    stack: &prune::Stackwide,
    opts: &SyncOptions,
    cs: &mut ChangeSet,
) -> Result<(), KubeError> {
    if opts.prune {
        prune::prune(client, previous, stack, resources, &opts.apply, cs).await?;
    }
    Ok(())
}

/// Plans one layer on its own: what `sync` would do, from dry runs; writes nothing.
///
/// # Errors
/// Inventory, dry-run and read failures, naming objects.
pub async fn plan(
    client: &Cluster,
    desired: &[Desired],
    resources: &resolve::Resources,
    opts: &SyncOptions,
) -> Result<ChangeSet, KubeError> {
    let inv = read_inventory(client, &opts.apply).await?;
    let mut cs = plan_apply(client, desired, opts).await?;
    let layer = format!("kubernetes.{}", opts.apply.layer);
    let refs: Vec<ObjRef> = desired.iter().map(|d| d.r.clone()).collect();
    let stack = prune::Stackwide::of_layer(&layer, &refs, &inv.entries);
    plan_prune(client, &inv.entries, resources, &stack, opts, &mut cs).await?;
    Ok(cs)
}

/// kubediff of a layer: desired objects against the cluster, and objects of its inventory that
/// Git no longer declares but the cluster still holds (including those a crashed apply left).
pub async fn diff(
    client: &Cluster,
    desired: &[Desired],
    resources: &resolve::Resources,
    opts: &SyncOptions,
) -> Result<KubeDiff, KubeError> {
    diff_by(client, desired, resources, opts, diff::Method::default()).await
}

/// [`diff`], reading the cluster the way `method` says (the tests hold the two against each
/// other).
pub async fn diff_by(
    client: &Cluster,
    desired: &[Desired],
    resources: &resolve::Resources,
    opts: &SyncOptions,
    method: diff::Method,
) -> Result<KubeDiff, KubeError> {
    let a = &opts.apply;
    let previous = read_inventory(client, a).await?.entries;
    diff::diff(client, desired, &previous, resources, a, method)
        .await
        .map_err(|e| e.redact(&sensitive_of(desired)))
}
