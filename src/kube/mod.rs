//! Kubernetes layers: load manifests, substitute upstream values, order them, server-side apply
//! them (dry-run first, only what changed), diff them against the cluster, prune what left Git,
//! and wait for readiness. Built on kube-rs with `DynamicObject` and discovery, after
//! fluxcd/pkg/ssa: a file per verb.

pub mod apply;
pub mod changeset;
pub mod cluster;
pub mod diff;
pub mod error;
pub mod inventory;
pub mod limits;
pub mod manifest;
pub mod object;
pub mod order;
pub mod prune;
pub mod resolve;
pub mod retry;
pub mod sanitize;
pub mod vars;
pub mod wait;
pub mod yaml;

use std::path::Path;
use std::time::Duration;

/// How many objects of a layer are dry-run or compared at once (requests in flight).
pub const CONCURRENCY: usize = 16;

pub use apply::{ApplyOptions, Desired};
pub use changeset::{Action, Change, ChangeSet};
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

/// Reads a layer's desired objects: load, substitute, resolve, default, label, order.
pub async fn desired(
    client: &::kube::Client,
    root: &Path,
    source: &Path,
    vars: &vars::Vars,
    opts: &ApplyOptions,
) -> Result<(Vec<Desired>, resolve::Resources), KubeError> {
    let manifests = manifest::load(root, source, vars)?;
    let mut resources = resolve::Resources::discover(client).await?;
    resources.add_pending_crds(manifests.iter().map(|m| &m.object));
    let desired = apply::prepare(&manifests, &resources, opts)?;
    Ok((desired, resources))
}

/// Converges a layer: apply, then (when asked) prune against the previous inventory, record the
/// new inventory, and wait.
///
/// # Guarantees
/// - Nothing is applied when the desired set failed to load or any dry run failed.
/// - Pruning happens only after a successful apply and a successful inventory read.
/// - Idempotent: a second run with the same desired set makes zero writes, the inventory
///   included.
///
/// # Errors
/// Load, dry-run, apply, prune and wait failures, each naming objects.
pub async fn sync(
    client: &::kube::Client,
    desired: &[Desired],
    resources: &resolve::Resources,
    opts: &SyncOptions,
) -> Result<ChangeSet, KubeError> {
    let a = &opts.apply;
    let previous = inventory::read(client, &a.stack, &a.layer, a.backoff).await?;
    let mut stored = previous.clone();
    stored.sort();
    let mut cs = apply::apply(client, desired, a, false).await?;
    let refs: Vec<ObjRef> = desired.iter().map(|d| d.r.clone()).collect();
    let mut record = refs.clone();
    if opts.prune {
        let resources = resolve::Resources::discover(client)
            .await
            .unwrap_or_else(|_| resources.clone());
        let kept = prune::prune(
            client, &previous, &refs, &resources, &a.layer, a.backoff, &mut cs,
        )
        .await?;
        record.extend(kept);
    } else {
        let keys: std::collections::BTreeSet<_> = refs.iter().map(ObjRef::key).collect();
        record.extend(previous.into_iter().filter(|r| !keys.contains(&r.key())));
    }
    record.sort();
    if record != stored {
        inventory::write(client, &a.stack, &a.layer, &record, a.backoff).await?;
    }
    if opts.wait {
        let all: Vec<&Desired> = desired.iter().collect();
        wait::ready(client, &all, opts.timeout).await?;
    }
    Ok(cs)
}

/// Plans a layer: what `sync` would do, from dry runs; writes nothing.
pub async fn plan(
    client: &::kube::Client,
    desired: &[Desired],
    resources: &resolve::Resources,
    opts: &SyncOptions,
) -> Result<ChangeSet, KubeError> {
    let a = &opts.apply;
    let previous = inventory::read(client, &a.stack, &a.layer, a.backoff).await?;
    let mut cs = apply::apply(client, desired, a, true).await?;
    if opts.prune {
        let refs: Vec<ObjRef> = desired.iter().map(|d| d.r.clone()).collect();
        prune::prune(
            client, &previous, &refs, resources, &a.layer, a.backoff, &mut cs,
        )
        .await?;
    }
    Ok(cs)
}

/// kubediff of a layer.
pub async fn diff(
    client: &::kube::Client,
    desired: &[Desired],
    resources: &resolve::Resources,
    opts: &SyncOptions,
) -> Result<KubeDiff, KubeError> {
    let a = &opts.apply;
    let previous = inventory::read(client, &a.stack, &a.layer, a.backoff).await?;
    diff::diff(client, desired, &previous, resources, a).await
}
