//! kubediff: the live cluster against what Git says, per field, with Secret values redacted.

use serde::Serialize;
use serde_json::Value;

use super::apply::{ApplyOptions, Desired};
use super::error::KubeError;
use super::object::ObjRef;
use super::resolve::Resources;
use super::retry::retry;
use super::sanitize::{comparable, field_diffs, FieldDiff};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffState {
    /// Desired, not in the cluster.
    Missing,
    /// In the cluster, different from Git.
    Changed,
    /// Applied before, no longer desired, still in the cluster.
    Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectDiff {
    pub object: ObjRef,
    pub state: DiffState,
    /// For `Changed`: the fields that differ (live → desired); Secret values are `*** (changed)`.
    pub fields: Vec<FieldDiff>,
}

/// A layer's kubediff.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KubeDiff {
    pub objects: Vec<ObjectDiff>,
    /// How many desired objects match the cluster.
    pub unchanged: usize,
}

impl KubeDiff {
    pub fn has_drift(&self) -> bool {
        !self.objects.is_empty()
    }

    /// Plain text; with `color`, ANSI red and green for live and desired values.
    pub fn to_text(&self, color: bool) -> String {
        let (red, green, reset) = if color {
            ("\x1b[31m", "\x1b[32m", "\x1b[0m")
        } else {
            ("", "", "")
        };
        let show = |v: &Option<Value>| v.as_ref().map_or("(absent)".to_string(), |v| v.to_string());
        let mut out = String::new();
        for o in &self.objects {
            match o.state {
                DiffState::Missing => out.push_str(&format!(
                    "{green}+ {}{reset}: missing from the cluster\n",
                    o.object
                )),
                DiffState::Extra => {
                    out.push_str(&format!("{red}- {}{reset}: no longer in Git\n", o.object))
                }
                DiffState::Changed => {
                    out.push_str(&format!("~ {}\n", o.object));
                    for f in &o.fields {
                        let (live, desired) =
                            crate::report::shorten_change(&show(&f.live), &show(&f.desired));
                        out.push_str(&format!(
                            "    {}: {red}{live}{reset} → {green}{desired}{reset}\n",
                            f.path,
                        ));
                    }
                }
            }
        }
        out
    }
}

/// Marks every Secret value under `.data` / `.stringData` as changed without showing it.
fn redact_secret(r: &ObjRef, fields: Vec<FieldDiff>) -> Vec<FieldDiff> {
    if !(r.kind == "Secret" && r.group.is_empty()) {
        return fields;
    }
    let marker = Some(Value::String(format!(
        "{} (changed)",
        crate::redact::MARKER
    )));
    fields
        .into_iter()
        .map(|mut f| {
            if f.path.starts_with(".data") || f.path.starts_with(".stringData") {
                f.live = f.live.map(|_| Value::String(crate::redact::MARKER.into()));
                f.desired = f.desired.map(|_| marker.clone().expect("marker"));
            }
            f
        })
        .collect()
}

/// One object against the cluster: `None` when it matches.
async fn diff_one(
    client: &::kube::Client,
    d: &Desired,
    served: &Resources,
    opts: &ApplyOptions,
) -> Result<Option<ObjectDiff>, KubeError> {
    let missing = || {
        Ok(Some(ObjectDiff {
            object: d.r.clone(),
            state: DiffState::Missing,
            fields: vec![],
        }))
    };
    if served.get(&d.r.group, &d.r.version, &d.r.kind).is_none() {
        return missing();
    }
    let api = d.api(client);
    let live = retry(opts.backoff, || api.get_opt(&d.r.name))
        .await
        .map_err(|e| KubeError::Read {
            what: d.r.to_string(),
            message: e.to_string(),
        })?;
    let Some(live) = live else {
        return missing();
    };
    let pp = ::kube::api::PatchParams::apply(&opts.field_manager)
        .force()
        .dry_run();
    let patch = ::kube::api::Patch::Apply(&d.object);
    let dry = retry(opts.backoff, || api.patch(&d.r.name, &pp, &patch))
        .await
        .map_err(|e| KubeError::DryRun {
            failures: vec![format!("{}: {e}", d.r)],
        })?;
    let a = comparable(&serde_json::to_value(&live).unwrap_or_default());
    let b = comparable(&serde_json::to_value(&dry).unwrap_or_default());
    let fields = redact_secret(&d.r, field_diffs(&a, &b));
    Ok((!fields.is_empty()).then(|| ObjectDiff {
        object: d.r.clone(),
        state: DiffState::Changed,
        fields,
    }))
}

/// Compares every desired object with the cluster (through a forced server-side dry run, so the
/// comparison includes server defaults), and lists inventory objects that are no longer desired.
///
/// # Guarantees
/// Writes nothing. Secret values never appear in the result.
pub async fn diff(
    client: &::kube::Client,
    desired: &[Desired],
    previous: &[ObjRef],
    resources: &Resources,
    opts: &ApplyOptions,
) -> Result<KubeDiff, KubeError> {
    let mut out = KubeDiff::default();
    let served = Resources::discover(client).await?;
    use futures::stream::{self, StreamExt, TryStreamExt};
    let mut futures = Vec::with_capacity(desired.len());
    for d in desired {
        futures.push(diff_one(client, d, &served, opts));
    }
    let results: Vec<Option<ObjectDiff>> = stream::iter(futures)
        .buffered(super::CONCURRENCY)
        .try_collect()
        .await?;
    for r in results {
        match r {
            Some(d) => out.objects.push(d),
            None => out.unchanged += 1,
        }
    }
    let keys: std::collections::BTreeSet<_> = desired.iter().map(|d| d.r.key()).collect();
    for r in previous.iter().filter(|r| !keys.contains(&r.key())) {
        let Some(res) = resources
            .get(&r.group, &r.version, &r.kind)
            .or(served.get(&r.group, &r.version, &r.kind))
        else {
            continue;
        };
        let api: ::kube::api::Api<::kube::api::DynamicObject> = if res.namespaced {
            ::kube::api::Api::namespaced_with(client.clone(), &r.namespace, &res.resource)
        } else {
            ::kube::api::Api::all_with(client.clone(), &res.resource)
        };
        if let Ok(Some(_)) = retry(opts.backoff, || api.get_opt(&r.name)).await {
            out.objects.push(ObjectDiff {
                object: r.clone(),
                state: DiffState::Extra,
                fields: vec![],
            });
        }
    }
    Ok(out)
}
