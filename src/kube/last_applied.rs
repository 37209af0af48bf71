//! What a layer's objects were in Git when strata last converged the layer: the base that tells
//! a field Git changed from a field someone changed out of band, when another field manager
//! holds it (see [`super::conflicts`]).
//!
//! It is kept in the cluster, beside the layer's inventory, so that every strata that applies
//! the layer (the agent, a person's `strata apply`, a fresh state dir) sees the same one. It is a
//! Secret (`strata-system/applied.<stack id>.<layer>`), because desired objects hold Secret
//! values and sensitive values; its one key is the objects' JSON, gzip-compressed.
//!
//! It is written only after a layer's apply (and wait) succeeded, in one request: a crash before
//! that leaves the previous record, against which the same revision's changes are taken again on
//! the next run (they already hold Git's values: idempotent); a record written ahead of the apply
//! would instead make a crashed run's changes look unchanged, and never be applied.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use ::kube::api::{Api, DynamicObject, Patch, PatchParams};
use ::kube::core::{ApiResource, GroupVersionKind};
use base64::Engine as _;
use serde_json::{json, Value};

use super::apply::{ApplyOptions, Desired};
use super::error::KubeError;
use super::inventory::NAMESPACE;
use super::object::ObjRef;
use super::retry::retry;
use super::snapshot::Record;

/// The Secret's key holding the record.
const KEY: &str = "objects.json.gz";

/// The largest record kept, compressed: a Secret holds at most 1 MiB. When a layer's objects
/// don't fit, the largest are left out (they then have no record: see
/// [`super::conflicts::KeptBecause::NoRecord`]).
pub const MAX_RECORD_BYTES: usize = 768 << 10;

/// A layer's record: each object (by `group/kind/namespace/name`) as Git declared it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LastApplied {
    pub objects: BTreeMap<String, Value>,
}

fn key(r: &ObjRef) -> String {
    format!("{}/{}/{}/{}", r.group, r.kind, r.namespace, r.name)
}

fn name(opts: &ApplyOptions) -> String {
    format!("applied.{}.{}", opts.stack_id, opts.layer)
}

fn what(opts: &ApplyOptions) -> String {
    format!(
        "Secret/{NAMESPACE}/{} (what strata last applied to the layer)",
        name(opts)
    )
}

impl LastApplied {
    /// The object as Git declared it when strata last applied it, if recorded.
    pub fn of(&self, r: &ObjRef) -> Option<&Value> {
        self.objects.get(&key(r))
    }

    /// The record of a layer's desired objects, as they are sent.
    pub fn of_desired(desired: &[Desired]) -> LastApplied {
        LastApplied {
            objects: desired
                .iter()
                .map(|d| (key(&d.r), d.object.clone()))
                .collect(),
        }
    }

    /// The record compressed, the largest objects left out until it fits `max` bytes; and the
    /// keys of those left out.
    pub fn encode(&self, max: usize) -> (Vec<u8>, Vec<String>) {
        let mut kept = self.objects.clone();
        let mut left_out = Vec::new();
        loop {
            let json = serde_json::to_vec(&kept).expect("json values serialize");
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(&json).expect("writing to memory");
            let bytes = gz.finish().expect("writing to memory");
            if bytes.len() <= max || kept.is_empty() {
                return (bytes, left_out);
            }
            let largest = kept
                .iter()
                .max_by_key(|(_, v)| v.to_string().len())
                .map(|(k, _)| k.clone())
                .expect("not empty");
            kept.remove(&largest);
            left_out.push(largest);
        }
    }

    /// The record from its compressed form.
    ///
    /// # Errors
    /// It is not gzip-compressed JSON of objects by key.
    pub fn decode(bytes: &[u8]) -> Result<LastApplied, String> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut json)
            .map_err(|e| format!("it is not gzip data: {e}"))?;
        let objects = serde_json::from_slice(&json)
            .map_err(|e| format!("it is not JSON of objects by key: {e}"))?;
        Ok(LastApplied { objects })
    }
}

fn secret_api(client: &::kube::Client) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Secret"), "secrets");
    Api::namespaced_with(client.clone(), NAMESPACE, &ar)
}

/// The layer's record; empty when there is none yet.
///
/// # Errors
/// The record exists but can't be read or decoded, naming the Secret and how to recover:
/// conflicts can't be decided without it (its absence is decided safely, its corruption is not
/// silently taken for absence).
pub async fn read(client: &::kube::Client, opts: &ApplyOptions) -> Result<LastApplied, KubeError> {
    let api = secret_api(client);
    let n = name(opts);
    let fail = |m: String| KubeError::Read {
        what: what(opts),
        message: m,
    };
    let snapshot = match &opts.reads {
        Some(r) => {
            r.snapshot
                .record(client, Record::Applied, &n, opts.backoff)
                .await
        }
        None => None,
    };
    let found = match snapshot {
        Some(found) => found,
        None => match retry(opts.backoff, || api.get_opt(&n)).await {
            Ok(found) => found.map(|s| s.data["data"].clone()),
            Err(::kube::Error::Api(s)) if s.code == 404 => None,
            Err(e) => return Err(fail(super::error::describe(&e))),
        },
    };
    let Some(data) = found else {
        return Ok(LastApplied::default());
    };
    let recover = "delete it to start afresh: conflicting fields of objects without a record \
                   are then left to their other managers until the next apply records them";
    let text = data[KEY]
        .as_str()
        .ok_or_else(|| fail(format!("it has no key {KEY}; {recover}")))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| fail(format!("its {KEY} is not base64: {e}; {recover}")))?;
    LastApplied::decode(&bytes).map_err(|m| fail(format!("{m}; {recover}")))
}

/// Records the layer's desired objects as what strata last applied, unless `previous` already
/// holds exactly them (a run with nothing to do writes nothing).
///
/// # Guarantees
/// One write of one Secret: the previous record or the new one, never a mix. Objects left out
/// for size are logged.
///
/// # Errors
/// The namespace or the Secret could not be written (after retries), naming it.
pub async fn write(
    client: &::kube::Client,
    opts: &ApplyOptions,
    desired: &[Desired],
    previous: &LastApplied,
) -> Result<(), KubeError> {
    let record = LastApplied::of_desired(desired);
    if record == *previous {
        return Ok(());
    }
    let (bytes, left_out) = record.encode(MAX_RECORD_BYTES);
    if !left_out.is_empty() {
        tracing::warn!(
            layer = %opts.layer,
            objects = %left_out.join(", "),
            "the record of what strata applied is limited to {MAX_RECORD_BYTES} bytes compressed: \
             these objects have none, and their conflicting fields are left to other managers"
        );
    }
    let fail = |e: ::kube::Error| KubeError::Apply {
        object: what(opts),
        message: super::error::describe(&e),
    };
    let n = name(opts);
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": n, "namespace": NAMESPACE,
                     "labels": {super::apply::LABEL_STACK: opts.stack,
                                super::owner::LABEL_STACK_ID: opts.stack_id,
                                super::apply::LABEL_LAYER: opts.layer}},
        "data": {KEY: base64::engine::general_purpose::STANDARD.encode(&bytes)},
    });
    let api = secret_api(client);
    let pp = PatchParams::apply("strata").force();
    let patch = Patch::Apply(&secret);
    super::inventory::in_records_namespace(client, opts, || {
        retry(opts.backoff, || api.patch(&n, &pp, &patch))
    })
    .await
    .map_err(fail)?;
    if let Some(r) = &opts.reads {
        r.snapshot
            .note_record(Record::Applied, &n, Some(secret["data"].clone()));
    }
    Ok(())
}

/// Deletes a removed layer's record, before its inventory (a crash between the two leaves the
/// inventory, and the next apply of the removed layer deletes both); a missing one is fine.
///
/// # Errors
/// The delete failed (after retries), naming the Secret.
pub async fn delete(client: &::kube::Client, opts: &ApplyOptions) -> Result<(), KubeError> {
    let api = secret_api(client);
    let n = name(opts);
    let dp = ::kube::api::DeleteParams::default();
    match retry(opts.backoff, || api.delete(&n, &dp)).await {
        Ok(_) => {
            if let Some(r) = &opts.reads {
                r.snapshot.note_record(Record::Applied, &n, None);
            }
            Ok(())
        }
        Err(::kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(KubeError::Prune {
            object: what(opts),
            message: super::error::describe(&e),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_leaves_out_the_largest_objects_to_fit() {
        let mut r = LastApplied::default();
        r.objects
            .insert("/ConfigMap/a/small".into(), json!({"data": {"k": "v"}}));
        // Incompressible: distinct numbers.
        let big: Vec<u64> = (0..40_000u64)
            .map(|i| i * 2_654_435_761 % 1_000_003)
            .collect();
        r.objects.insert(
            "apiextensions.k8s.io/CustomResourceDefinition//big".into(),
            json!(big),
        );
        let (bytes, left_out) = r.encode(usize::MAX);
        assert!(left_out.is_empty());
        assert_eq!(LastApplied::decode(&bytes).unwrap(), r);
        let (bytes, left_out) = r.encode(4096);
        assert_eq!(
            left_out,
            ["apiextensions.k8s.io/CustomResourceDefinition//big"]
        );
        let back = LastApplied::decode(&bytes).unwrap();
        assert_eq!(back.objects.len(), 1);
        assert!(back.objects.contains_key("/ConfigMap/a/small"));
        assert!(LastApplied::decode(b"not gzip").is_err());
    }
}
