//! Opening a stack: pinning the source to a revision, validating the stack (with the one check
//! that needs every layer's manifests: no object declared twice), and loading what the state dir
//! remembers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use super::{Engine, EngineError, EngineOptions, Source};
use crate::kube as k8s;
use crate::source::{Affected, Revision};
use crate::stack::{LayerId, LayerSpec, Stack};
use crate::state::stack_status::StackState;

impl Engine {
    /// Pins the source, validates the stack and loads what the state dir remembers.
    ///
    /// # Errors
    /// Source failures (unreachable without an earlier revision, refused signature, unsafe
    /// content) and every validation problem.
    pub async fn open(source: Source, opts: EngineOptions) -> Result<Engine, EngineError> {
        // Private before anything (a mirror, a revision, a kubeconfig) is written into it.
        crate::state::ensure_state_dir(&opts.state_dir)?;
        let rev = match &source {
            Source::Dir(_) => None,
            Source::Repo { spec, opts: sopts } => {
                let (spec2, sopts2) = (spec.clone(), sopts.clone());
                let rev =
                    tokio::task::spawn_blocking(move || crate::source::resolve(&spec2, &sopts2))
                        .await
                        .expect("source task")?;
                if let Some(stale) = &rev.stale {
                    tracing::warn!(
                        "the source could not be fetched ({}); using revision {} fetched {}s ago",
                        stale.error,
                        rev.commit,
                        stale.age_secs
                    );
                }
                Some(rev)
            }
        };
        Engine::open_revision(source, rev, opts).await
    }

    /// Like [`Engine::open`], with the Git revision already resolved (`None` for a directory).
    ///
    /// # Errors
    /// A Git source without a revision, the mirror failing to open, and every validation problem.
    pub async fn open_revision(
        source: Source,
        rev: Option<Revision>,
        opts: EngineOptions,
    ) -> Result<Engine, EngineError> {
        crate::state::ensure_state_dir(&opts.state_dir)?;
        let (root, revision, commit) = match (&source, rev) {
            (Source::Dir(d), _) => (d.clone(), dir_revision(d), None),
            (Source::Repo { .. }, Some(rev)) => {
                (rev.stack_dir.clone(), rev.commit.clone(), Some(rev))
            }
            (Source::Repo { spec, .. }, None) => {
                return Err(EngineError::Source(crate::source::SourceError::Fetch {
                    url: spec.url.clone(),
                    message: "no revision resolved".into(),
                }))
            }
        };
        // Problems in a commit's stack file are named by its path in the repository and the
        // commit, never by the materialised copy in the state dir.
        let shown = match &commit {
            Some(rev) => rev.shown(),
            None => crate::stack::Shown::file(root.join(crate::stack::STACK_FILE)),
        };
        let mut v = crate::validate_shown(&root, &shown).map_err(EngineError::Invalid)?;
        // One environment of the stack: its values in every expression, its own state.
        v.stack = v.stack.for_env(opts.env.as_deref())?;
        let mut opts = opts;
        if let Some(env) = &v.stack.env {
            opts.state_dir = env_state_dir(&opts.state_dir, env);
            crate::state::ensure_state_dir(&opts.state_dir)?;
        }
        let parsed = k8s::parsed::ParsedFiles::new();
        let declared = duplicate_objects(&v.stack, &root, &parsed).map_err(EngineError::Invalid)?;
        // A typo in `--reinit` must not pass silently as a run that re-inits nothing.
        for name in &opts.reinit {
            let known = v.stack.layers.iter().any(|l| {
                matches!(l.spec, LayerSpec::Terraform(_))
                    && (*name == l.id.name || *name == l.id.to_string())
            });
            if !known {
                return Err(EngineError::NoSuchLayer(name.clone()));
            }
        }
        crate::state::owner::claim(&opts.state_dir, &v.stack.name)?;
        let state = StackState::load(&opts.state_dir)?;
        let affected = match (&source, &commit, &state.converged_revision) {
            (Source::Repo { spec, opts: sopts }, Some(rev), Some(old)) if old != &rev.commit => {
                let repo = crate::source::open_mirror(&sopts.state_dir, &spec.url)?;
                let old_id = gix::ObjectId::from_hex(old.as_bytes()).ok();
                let new_id = gix::ObjectId::from_hex(rev.commit.as_bytes()).ok();
                match (old_id, new_id) {
                    (Some(o), Some(n)) => Some(crate::source::affected::affected(
                        &repo, o, n, &rev.path, &v.stack, &v.graph, &root,
                    )),
                    _ => None,
                }
            }
            (Source::Repo { .. }, Some(rev), Some(old)) if old == &rev.commit => {
                Some(Affected::default())
            }
            _ => None,
        };
        let approvals = crate::state::approvals::list(&opts.state_dir);
        let clusters = opts
            .clusters
            .clone()
            .unwrap_or_else(|| std::sync::Arc::new(k8s::Clusters::new(opts.cancel.clone())));
        Ok(Engine {
            clusters,
            declared,
            parsed,
            waves: Default::default(),
            kube_targets: Default::default(),
            stack_id: Default::default(),
            markers: v.markers,
            kube_ahead: Default::default(),
            opts,
            source,
            stack: v.stack,
            graph: v.graph,
            root,
            revision,
            commit,
            affected,
            state: Mutex::new(state),
            approvals,
            terraform: tokio::sync::OnceCell::new(),
            progress: Mutex::new(None),
        })
    }
}

/// Where an environment's state lives in the state dir: `envs/NAME` (records, locks, run
/// history, Terraform state, outputs); the source's mirror and revisions stay shared.
pub fn env_state_dir(state_dir: &Path, env: &str) -> std::path::PathBuf {
    state_dir.join("envs").join(env)
}

/// The content hash that names a directory revision: `dir-<12 hex>`.
fn dir_revision(root: &Path) -> String {
    let mut h = crate::hash::Hasher::new();
    let _ = h.tree("stack", root, &[".terraform", ".strata", ".git"]);
    format!("dir-{}", &h.finish()[..12])
}

/// Two Kubernetes layers must not declare the same object: each would undo the other. Returns
/// what the layers declare, by cluster (for the runs' snapshots, [`k8s::snapshot`]); the
/// files' parses are kept in `parsed` for the layers' loads.
fn duplicate_objects(
    stack: &Stack,
    root: &Path,
    parsed: &k8s::parsed::ParsedFiles,
) -> Result<super::Declared, crate::stack::Diagnostics> {
    let mut seen: BTreeMap<(String, String, String, String), (LayerId, String)> = BTreeMap::new();
    let mut declared = super::Declared::new();
    let mut diags = crate::stack::Diagnostics::default();
    for layer in &stack.layers {
        let LayerSpec::Kubernetes(k) = &layer.spec else {
            continue;
        };
        let on = declared.entry(k.cluster.clone()).or_default();
        let limits = k.limits.over(&stack.settings.limits);
        let found = k8s::manifest::identities(
            root,
            &layer.source,
            k.namespace.as_deref(),
            &limits,
            Some(parsed),
        );
        for (key, place) in found {
            let (group, kind, ns, name) = &key;
            on.entry((group.clone(), kind.clone(), ns.clone()))
                .or_default()
                .insert(name.clone());
            match seen.get(&key) {
                Some((other, first)) if *other != layer.id => {
                    let (_, kind, ns, name) = &key;
                    let object = if ns.is_empty() {
                        format!("{kind}/{name}")
                    } else {
                        format!("{kind}/{ns}/{name}")
                    };
                    diags.push(
                        layer.location.clone(),
                        format!("{object} is declared by two layers: {other} ({first}) and {} ({place})", layer.id),
                    );
                }
                Some(_) => {}
                None => {
                    seen.insert(key, (layer.id.clone(), place));
                }
            }
        }
    }
    if diags.is_empty() {
        Ok(declared)
    } else {
        Err(diags)
    }
}
