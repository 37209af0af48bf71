//! kubediff: the live cluster against what Git says, per field, with Secret values redacted.

use serde::Serialize;
use serde_json::Value;

use super::apply::{ApplyOptions, Desired};
use super::error::KubeError;
use super::object::ObjRef;
use super::resolve::Resources;
use super::retry::retry;
pub use super::sanitize::FieldDiff;
use super::sanitize::{comparable, field_diffs};
use crate::redact::Redactor;

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
    /// For `Changed`: the fields that differ (live → desired); Secret values and sensitive values
    /// are `*** (changed)` (see [`mask`]).
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

/// The annotation `kubectl apply` keeps the whole applied object in: a Secret's data, base64.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Whether the field at `path` of a core `v1` Secret holds its values: all of `data`,
/// `stringData` and the last-applied annotation (which copies them).
fn secret_field(path: &str) -> bool {
    let under = |p: &str| {
        path == p || path.starts_with(&format!("{p}.")) || path.starts_with(&format!("{p}["))
    };
    under(".data")
        || under(".stringData")
        || path == format!(".metadata.annotations.{LAST_APPLIED}")
}

/// `v` with every part that is a secret replaced by the marker: whole subtrees at Secret value
/// fields (when `secret` is set), and any string or number holding a sensitive value.
fn scrub(v: &Value, path: &mut String, secret: bool, sensitive: &Redactor) -> Value {
    let marker = || Value::String(crate::redact::MARKER.into());
    if secret && secret_field(path) {
        return marker();
    }
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let len = path.len();
                    path.push('.');
                    path.push_str(k);
                    let out = scrub(v, path, secret, sensitive);
                    path.truncate(len);
                    (k.clone(), out)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    let out = scrub(v, path, secret, sensitive);
                    path.truncate(len);
                    out
                })
                .collect(),
        ),
        Value::String(_) | Value::Number(_) if sensitive.contains_secret(&text(v)) => marker(),
        other => other.clone(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Masks what a diff must not show, by where a value came from and what it is: any field of any
/// kind whose value holds a sensitive value (a sensitive Terraform output, a SOPS-decrypted
/// value), and for core `v1` Secrets (group `""` only) all of `data`, `stringData` and the
/// last-applied annotation. A masked field shows only that it changed.
pub(crate) fn mask(r: &ObjRef, sensitive: &Redactor, fields: Vec<FieldDiff>) -> Vec<FieldDiff> {
    let secret = r.kind == "Secret" && r.group.is_empty();
    fields
        .into_iter()
        .map(|mut f| {
            let held = |v: &Option<Value>| {
                v.as_ref().is_some_and(|v| {
                    sensitive.contains_secret(&v.to_string()) || sensitive.contains_secret(&text(v))
                })
            };
            if (secret && secret_field(&f.path)) || held(&f.live) || held(&f.desired) {
                let whole = !matches!(
                    (&f.live, &f.desired),
                    (Some(Value::Object(_) | Value::Array(_)), _)
                        | (_, Some(Value::Object(_) | Value::Array(_)))
                ) || (secret && secret_field(&f.path));
                if whole {
                    f.live = f.live.map(|_| Value::String(crate::redact::MARKER.into()));
                    f.desired = f
                        .desired
                        .map(|_| Value::String(format!("{} (changed)", crate::redact::MARKER)));
                    return f;
                }
            }
            let mut path = f.path.clone();
            f.live = f.live.map(|v| scrub(&v, &mut path, secret, sensitive));
            f.desired = f.desired.map(|v| scrub(&v, &mut path, secret, sensitive));
            f
        })
        .collect()
}

/// How kubediff reads the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// Objects of one kind and namespace read with one paged LIST where Git declares at least
    /// [`LIST_FROM`] of them (one GET each otherwise); a dry run only for objects the forced apply
    /// could change ([`super::owned::unchanged_by_apply`] cannot rule it out).
    #[default]
    Lists,
    /// [`Method::Lists`] with pages of this many items instead of [`PAGE`]: how tests split a
    /// LIST over many pages without creating thousands of objects.
    ListsPaged(u32),
    /// One GET and one server-side dry run per object: the reference the lists are checked
    /// against.
    DryRunEach,
}

impl Method {
    /// Items per page of a LIST; `None` when this method reads no lists.
    fn page(self) -> Option<u32> {
        match self {
            Method::Lists => Some(PAGE),
            Method::ListsPaged(n) => Some(n.max(1)),
            Method::DryRunEach => None,
        }
    }
}

/// From how many desired objects of one kind and namespace one LIST reads them.
pub const LIST_FROM: usize = 20;

/// Items per page of a LIST.
pub const PAGE: u32 = 500;

/// How a desired object's live state is read.
enum Live {
    /// Read on its own (GET).
    Get,
    /// Read by a LIST: the object, or `None` when the list did not hold it.
    Listed(Option<Value>),
    /// Read by a LIST and judged there, page by page, by
    /// [`super::owned::unchanged_by_apply`]: the forced apply would change nothing. The live
    /// object is not kept, so memory follows the objects that drifted, not those listed.
    Unchanged,
}

/// One object against the cluster: `None` when it matches.
async fn diff_one(
    client: &::kube::Client,
    d: &Desired,
    served: &Resources,
    opts: &ApplyOptions,
    method: Method,
    live: Live,
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
    let live = match live {
        Live::Unchanged => return Ok(None),
        Live::Listed(live) => live,
        Live::Get => retry(opts.backoff, || api.get_opt(&d.r.name))
            .await
            .map_err(|e| KubeError::Read {
                what: d.r.to_string(),
                message: super::error::describe(&e),
            })?
            .map(|o| serde_json::to_value(&o).unwrap_or_default()),
    };
    let Some(live) = live else {
        return missing();
    };
    if method.page().is_some()
        && super::owned::unchanged_by_apply(&d.object, &live, &opts.field_manager)
    {
        return Ok(None);
    }
    let pp = ::kube::api::PatchParams::apply(&opts.field_manager)
        .force()
        .dry_run();
    let patch = ::kube::api::Patch::Apply(&d.object);
    let dry = retry(opts.backoff, || api.patch(&d.r.name, &pp, &patch))
        .await
        .map_err(|e| KubeError::DryRun {
            failures: vec![format!("{}: {e}", d.r)],
        })?;
    let a = comparable(&live);
    let b = comparable(&serde_json::to_value(&dry).unwrap_or_default());
    let fields = mask(&d.r, &d.sensitive, field_diffs(&a, &b));
    Ok((!fields.is_empty()).then(|| ObjectDiff {
        object: d.r.clone(),
        state: DiffState::Changed,
        fields,
    }))
}

/// The live state of the desired objects `group` names (one kind, one namespace or
/// cluster-wide), read with a LIST of `page` items a page and judged page by page: an object the
/// forced apply would leave as it is becomes [`Live::Unchanged`] and is dropped at once; only
/// the others are kept for their dry run. Objects Git does not name are dropped too, so memory
/// follows the drifted objects, not the namespace nor the layer. The answer is in `group`'s
/// order.
///
/// # Errors
/// A page the server does not give after the retries ([`KubeError::Read`]).
async fn list_named(
    client: &::kube::Client,
    desired: &[Desired],
    group: &[usize],
    page: u32,
    opts: &ApplyOptions,
) -> Result<Vec<Live>, KubeError> {
    let first = &desired[group[0]];
    let api = first.api(client);
    let what = || {
        format!(
            "the {} objects of {} in namespace {:?}",
            first.r.kind, first.r.version, first.r.namespace
        )
    };
    let at: std::collections::HashMap<&str, usize> = group
        .iter()
        .enumerate()
        .map(|(pos, &i)| (desired[i].r.name.as_str(), pos))
        .collect();
    // A paged LIST is one snapshot; when its continue token expires mid-way, read it again.
    let read = || async {
        let mut found: Vec<Live> = group.iter().map(|_| Live::Listed(None)).collect();
        let mut token: Option<String> = None;
        loop {
            let mut lp = ::kube::api::ListParams::default().limit(page);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let listed = api.list(&lp).await?;
            token = listed.metadata.continue_.clone().filter(|t| !t.is_empty());
            for mut o in listed.items {
                let Some(&pos) = o.metadata.name.as_deref().and_then(|n| at.get(n)) else {
                    continue;
                };
                // Items of a list carry no apiVersion and kind on a real server; the dry
                // run's answer does, and the comparison must not see that as a change.
                o.types = Some(::kube::api::TypeMeta {
                    api_version: first.r.api_version(),
                    kind: first.r.kind.clone(),
                });
                let live = serde_json::to_value(&o).unwrap_or_default();
                let d = &desired[group[pos]];
                found[pos] =
                    if super::owned::unchanged_by_apply(&d.object, &live, &opts.field_manager) {
                        Live::Unchanged
                    } else {
                        Live::Listed(Some(live))
                    };
            }
            if token.is_none() {
                return Ok(found);
            }
        }
    };
    retry(opts.backoff, read)
        .await
        .map_err(|e: ::kube::Error| KubeError::Read {
            what: what(),
            message: super::error::describe(&e),
        })
}

/// Compares every desired object with the cluster (through a forced server-side dry run, so the
/// comparison includes server defaults, except where the live object shows that the apply
/// would change nothing), and lists inventory objects that are no longer desired.
///
/// # Guarantees
/// Writes nothing. Secret values never appear in the result. [`Method::Lists`] gives the same
/// verdict and the same fields as [`Method::DryRunEach`]: it skips a dry run only where the
/// live object already holds every field and value strata applies, owned by strata and nothing
/// more (a mutating admission webhook that changes objects on every write is not seen there).
///
/// # Errors
/// Reads and dry runs that fail after the retries, naming the objects.
pub async fn diff(
    cluster: &super::Cluster,
    desired: &[Desired],
    previous: &[ObjRef],
    resources: &Resources,
    opts: &ApplyOptions,
    method: Method,
) -> Result<KubeDiff, KubeError> {
    let mut out = KubeDiff::default();
    let client: &::kube::Client = cluster;
    let served = cluster
        .served(
            desired
                .iter()
                .map(|d| (d.r.group.clone(), d.r.version.clone(), d.r.kind.clone())),
        )
        .await?;
    use futures::stream::{self, StreamExt, TryStreamExt};
    let mut live: Vec<Live> = desired.iter().map(|_| Live::Get).collect();
    if let Some(page) = method.page() {
        let mut groups: std::collections::BTreeMap<_, Vec<usize>> = Default::default();
        for (i, d) in desired.iter().enumerate() {
            if served.get(&d.r.group, &d.r.version, &d.r.kind).is_some() {
                let key = (&d.r.group, &d.r.version, &d.r.kind, &d.r.namespace);
                groups.entry(key).or_default().push(i);
            }
        }
        // Futures collected first (as below): a stream over a lazy `map` of closures makes
        // the whole future lose `Send`, which the agent needs.
        let mut lists = Vec::new();
        for g in groups.into_values().filter(|g| g.len() >= LIST_FROM) {
            lists.push(async move {
                let found = list_named(client, desired, &g, page, opts).await?;
                Ok::<_, KubeError>((g, found))
            });
        }
        let lists: Vec<_> = stream::iter(lists)
            .buffer_unordered(super::CONCURRENCY)
            .try_collect()
            .await?;
        for (g, found) in lists {
            for (i, l) in g.into_iter().zip(found) {
                live[i] = l;
            }
        }
    }
    let mut futures = Vec::with_capacity(desired.len());
    for (d, live) in desired.iter().zip(live) {
        futures.push(diff_one(client, d, &served, opts, method, live));
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(group: &str, kind: &str) -> ObjRef {
        ObjRef::of(
            &json!({"apiVersion": if group.is_empty() { "v1".to_string() } else { format!("{group}/v1") },
            "kind": kind, "metadata": {"name": "s", "namespace": "ns"}}),
        )
    }

    #[test]
    fn sensitive_values_are_masked_in_any_field_and_core_secret_values_always() {
        let mut sensitive = Redactor::new();
        sensitive.add("tok-planted-1");
        let live = json!({"metadata": {"annotations": {"note": "old", LAST_APPLIED: "{\"data\":{\"p\":\"b2xk\"}}"}}, "data": {"p": "b2xk"}});
        let desired = json!({"metadata": {"annotations": {"note": "uses tok-planted-1", LAST_APPLIED: "{\"data\":{\"p\":\"bmV3\"}}"}}, "data": {"p": "bmV3"}});
        let shown = serde_json::to_string(&mask(
            &obj("", "Secret"),
            &sensitive,
            field_diffs(&live, &desired),
        ))
        .unwrap();
        for leak in ["tok-planted-1", "b2xk", "bmV3", "old"] {
            assert!(!shown.contains(leak), "{leak} in {shown}");
        }
        assert!(shown.contains("*** (changed)"), "{shown}");

        // A `kind: Secret` of another group is an ordinary object: its fields show, except what
        // holds a sensitive value.
        let live = json!({"spec": {"a": "1", "t": "x"}, "metadata": {"annotations": {}}});
        let desired = json!({"spec": {"a": "2", "t": "tok-planted-1"}, "metadata": {"annotations": {"k": {"nested": "tok-planted-1"}}}});
        let d = mask(
            &obj("qa.example.com", "Secret"),
            &sensitive,
            field_diffs(&live, &desired),
        );
        let shown = serde_json::to_string(&d).unwrap();
        assert!(!shown.contains("tok-planted-1"), "{shown}");
        assert_eq!(
            d.iter().find(|f| f.path == ".spec.a").unwrap().desired,
            Some(json!("2"))
        );
    }
}
