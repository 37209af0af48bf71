//! Terraform layers: strata drives the real `terraform` (or `tofu`) binary through init, plan,
//! show, apply and output, with state that survives revisions and restarts.
//!
//! A run of one layer is: [`Terraform::prepare`] (a writable working copy of the layer and its
//! local modules, a 0600 var file) → [`Terraform::plan`] (init when needed, workspace, plan,
//! show) → [`Terraform::apply`] (the saved plan, then outputs).
//!
//! terraform outlives strata: its output goes to files, not pipes, so a strata killed mid-apply
//! leaves a terraform that finishes and saves its state; the next strata waits for it
//! ([`orphans`]). State terraform could not save to its backend is kept ([`errored`]) and blocks
//! the layer until [`Terraform::push_state`] has pushed it.

pub mod apply;
pub mod backend;
pub mod binary;
mod cache_lock;
mod encrypted_vars;
pub mod error;
pub mod errored;
mod exec;
mod init;
mod last_applied;
mod locate;
pub mod modules;
mod orphans;
pub mod plan;
mod planned;
mod recovery;
pub mod workdir;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use apply::Applied;
pub use binary::{Flavour, TerraformBinary};
pub use error::{Step, TerraformError};
pub use plan::{Action, Counts, LayerPlan, OutputChange, PlanMode, ResourceChange, Shown};
pub use planned::Planned;
pub use recovery::{PushedState, StatePush};

use crate::redact::Redactor;
use crate::stack::{Layer, LayerId, LayerSpec};
use crate::util::duration::format_duration;
use crate::value::InputValue;
use cache_lock::{Access, CacheLock};
use exec::{Invocation, Limits};
use modules::ConfigInfo;
use workdir::{LayerPaths, RunDir};

/// How strata runs terraform.
#[derive(Debug, Clone)]
pub struct TerraformOptions {
    /// strata's state directory: layers' data dirs, local state, the plugin cache.
    pub state_dir: PathBuf,
    /// After SIGINT, how long terraform gets to stop before SIGKILL. Default 30s.
    pub grace: Duration,
    /// Extra environment for every terraform command.
    pub env: Vec<(OsString, OsString)>,
    /// The age keys SOPS-encrypted `*.tfvars.json` files are decrypted with.
    pub age_keys: Option<crate::secrets::AgeKeys>,
}

impl TerraformOptions {
    pub fn new(state_dir: impl Into<PathBuf>) -> TerraformOptions {
        TerraformOptions {
            state_dir: state_dir.into(),
            grace: Duration::from_secs(30),
            env: Vec::new(),
            age_keys: None,
        }
    }
}

/// What one layer run needs from the stack and the engine.
#[derive(Debug, Clone)]
pub struct LayerInput<'a> {
    pub layer: &'a Layer,
    /// The directory the layer's `source` is relative to (a materialised revision, or a stack
    /// directory).
    pub stack_root: &'a Path,
    /// The revision the configuration comes from (a commit id, or a label for a directory).
    pub revision: &'a str,
    /// The layer's `vars`, resolved.
    pub vars: BTreeMap<String, InputValue>,
    /// The layer's `backend_config`, resolved.
    pub backend_config: BTreeMap<String, InputValue>,
}

/// Whether `terraform init` ran for a prepared layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitOutcome {
    /// Not needed yet (before the first plan).
    Pending,
    Ran,
    /// The lock file, modules and backend were unchanged since the last init.
    Skipped,
}

/// A layer ready to plan and apply: its working copy lives until this is dropped.
#[derive(Debug)]
pub struct Prepared {
    pub layer: LayerId,
    pub revision: String,
    pub inputs_hash: String,
    pub workspace: String,
    pub config: ConfigInfo,
    pub init: InitOutcome,
    pub paths: LayerPaths,
    work_dir: PathBuf,
    var_file: PathBuf,
    backend_file: Option<PathBuf>,
    init_fingerprint: String,
    redactor: Redactor,
    timeout: Duration,
    lock_timeout: Duration,
    /// The layer's directory, relative to the stack root.
    source: PathBuf,
    /// Throw the data dir away and init afresh before the next plan (`apply --reinit`).
    reinit: bool,
    /// The resolved `backend_config` as JSON, and the sensitive inputs' values: kept with the
    /// last applied copy.
    backend_json: String,
    sensitive: Vec<serde_json::Value>,
    run: RunDir,
}

impl Prepared {
    /// The writable working directory terraform runs in.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// The secrets this layer's output is scrubbed of.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Makes the next plan start from an empty data dir (providers and modules installed
    /// afresh, the backend initialised again); the layer's state is kept.
    pub fn request_reinit(&mut self) {
        self.reinit = true;
    }

    /// The root of the run's working copy, which mirrors the stack root.
    fn tree(&self) -> PathBuf {
        self.run.path().join("tree")
    }
}

/// Drives one terraform binary for any number of layers.
#[derive(Debug)]
pub struct Terraform {
    bin: TerraformBinary,
    opts: TerraformOptions,
    /// The shared plugin cache, which terraform does not lock: an init rewrites cache entries
    /// that other layers' commands are reading, so inits run alone (write) and every other
    /// command shares the cache (read).
    cache_lock: tokio::sync::RwLock<()>,
    invocations: AtomicUsize,
}

impl Terraform {
    pub fn new(bin: TerraformBinary, mut opts: TerraformOptions) -> Terraform {
        // terraform runs in the layer's working copy: every path handed to it must be absolute.
        if let Ok(abs) = std::path::absolute(&opts.state_dir) {
            opts.state_dir = abs;
        }
        Terraform {
            bin,
            opts,
            cache_lock: tokio::sync::RwLock::new(()),
            invocations: AtomicUsize::new(0),
        }
    }

    pub fn binary(&self) -> &TerraformBinary {
        &self.bin
    }

    /// How many terraform commands this instance has started.
    pub fn invocations(&self) -> usize {
        self.invocations.load(Ordering::Relaxed)
    }

    /// Makes a writable working copy of the layer and its local modules, and writes its var file
    /// (mode 0600, never passed as `-var` arguments, which `ps` would show).
    ///
    /// # Errors
    /// An input still unknown, a local module outside the stack root, or a filesystem error.
    pub async fn prepare(&self, input: LayerInput<'_>) -> Result<Prepared, TerraformError> {
        let layer = input.layer;
        let id = layer.id.clone();
        let LayerSpec::Terraform(spec) = &layer.spec else {
            return Err(TerraformError::Config {
                layer: id,
                message: "not a terraform layer".into(),
            });
        };
        let io =
            |action: &'static str, path: &std::path::Path| TerraformError::io(&id, action, path);
        let config = modules::inspect(input.stack_root, &layer.source).map_err(|e| {
            TerraformError::Config {
                layer: id.clone(),
                message: e.to_string(),
            }
        })?;
        let paths = LayerPaths::new(&self.opts.state_dir, &id);
        // The layer's dir holds its state, outputs and backend settings: owner only.
        crate::util::fs::create_private_dir_all(&paths.dir).map_err(io("create", &paths.dir))?;
        let run = RunDir::create(&paths.runs).map_err(io("create", &paths.runs))?;
        let tree = run.path().join("tree");
        for rel in std::iter::once(&layer.source).chain(&config.local_modules) {
            workdir::copy_tree(input.stack_root, &tree, rel)
                .map_err(io("copy", &input.stack_root.join(rel)))?;
        }
        let work_dir = tree.join(&layer.source);

        let mut redactor = Redactor::new();
        let unknown = |(name, why): (String, String)| TerraformError::UnknownInput {
            layer: id.clone(),
            name,
            why,
        };
        encrypted_vars::decrypt_in_place(
            &work_dir,
            &layer.source,
            self.opts.age_keys.as_ref(),
            &mut redactor,
        )
        .map_err(|message| TerraformError::Config {
            layer: id.clone(),
            message,
        })?;
        let vars = workdir::inputs_json(&input.vars, &mut redactor).map_err(unknown)?;
        let backend =
            workdir::inputs_json(&input.backend_config, &mut redactor).map_err(unknown)?;
        let vars_text = serde_json::to_vec_pretty(&vars).expect("json");
        let var_file = run.path().join("strata.tfvars.json");
        workdir::write_scratch(&var_file, &vars_text).map_err(io("write", &var_file))?;

        let backend_text = serde_json::to_vec(&backend).expect("json");
        let own = (!config.has_backend)
            .then(|| backend::own_backend(&paths))
            .transpose()
            .map_err(|message| TerraformError::Config {
                layer: id.clone(),
                message,
            })?;
        let own_config = own.as_ref().and_then(|o| o.config_text.as_deref());
        let backend_file = if let Some(text) = own_config {
            let f = run.path().join("backend.tfbackend");
            workdir::write_scratch(&f, text.as_bytes()).map_err(io("write", &f))?;
            Some(f)
        } else if config.has_backend && !backend.is_empty() {
            let f = run.path().join("backend.tfbackend");
            let text =
                backend::config_file(&backend).map_err(|message| TerraformError::Config {
                    layer: id.clone(),
                    message,
                })?;
            workdir::write_scratch(&f, text.as_bytes()).map_err(io("write", &f))?;
            Some(f)
        } else {
            None
        };
        if let Some(own) = &own {
            let f = work_dir.join(backend::BACKEND_OVERRIDE);
            std::fs::write(&f, &own.override_text).map_err(io("write", &f))?;
        }
        let lock_in_tree = work_dir.join(workdir::LOCK_FILE);
        if !lock_in_tree.exists() && paths.lock_copy.exists() {
            std::fs::copy(&paths.lock_copy, &lock_in_tree).map_err(io("copy", &paths.lock_copy))?;
        }
        let init_fingerprint = self.init_fingerprint(&config, &backend_text, &paths);
        let sensitive = input
            .vars
            .values()
            .chain(input.backend_config.values())
            .filter_map(|v| match v {
                InputValue::Sensitive(s) => Some(s.expose().clone()),
                _ => None,
            })
            .collect();
        let inputs_hash = workdir::inputs_hash(
            input.stack_root,
            &layer.source,
            &config,
            &vars_text,
            &backend_text,
            &spec.workspace,
        )
        .map_err(io("hash", &input.stack_root.join(&layer.source)))?;

        Ok(Prepared {
            layer: id,
            revision: input.revision.to_string(),
            inputs_hash,
            workspace: spec.workspace.clone(),
            config,
            init: InitOutcome::Pending,
            paths,
            work_dir,
            var_file,
            backend_file,
            init_fingerprint,
            redactor,
            timeout: layer.timeout,
            // Only an unset lock_timeout gets the pg backend's wait: an explicit one, even
            // "0s" (fail at once rather than wait), is what the stack file asked for.
            lock_timeout: match spec.lock_timeout {
                Some(set) => set,
                None if own_config.is_some() => backend::OWN_PG_LOCK_TIMEOUT,
                None => Duration::ZERO,
            },
            source: layer.source.clone(),
            reinit: false,
            backend_json: String::from_utf8_lossy(&backend_text).into_owned(),
            sensitive,
            run,
        })
    }

    /// What a successful init depends on besides the lock file.
    fn init_fingerprint(
        &self,
        config: &ConfigInfo,
        backend_text: &[u8],
        paths: &LayerPaths,
    ) -> String {
        crate::hash::Hasher::new()
            .part("config", config.init_fingerprint.as_bytes())
            .part("backend", backend_text)
            .part("has_backend", &[u8::from(config.has_backend)])
            .part("terraform", self.bin.version.as_bytes())
            .part("state_dir", paths.dir.as_os_str().as_encoded_bytes())
            .finish()
    }

    fn cache_dir(&self) -> PathBuf {
        self.opts.state_dir.join("plugin-cache")
    }

    fn env(&self, p: &Prepared) -> Vec<(OsString, OsString)> {
        let cache = self.cache_dir();
        let mut env: Vec<(OsString, OsString)> = vec![
            ("TF_DATA_DIR".into(), p.paths.data_dir.clone().into()),
            ("TF_PLUGIN_CACHE_DIR".into(), cache.into()),
            ("TF_IN_AUTOMATION".into(), "1".into()),
            ("TF_INPUT".into(), "0".into()),
            ("CHECKPOINT_DISABLE".into(), "1".into()),
        ];
        env.extend(self.opts.env.iter().cloned());
        env
    }

    async fn run(
        &self,
        p: &Prepared,
        step: Step,
        args: Vec<OsString>,
        log_stdout: bool,
        limits: &Limits<'_>,
    ) -> Result<exec::Finished, TerraformError> {
        self.run_in(p.run.path(), false, p, step, args, log_stdout, limits)
            .await
    }

    /// [`Self::run`] with the command's output files and pid record in `run_dir`: a command
    /// running beside another of the same run (a `show` beside an `apply`) records itself apart,
    /// so the apply's record, which a later strata waits on, is neither overwritten nor removed;
    /// `background` lowers its CPU priority (see [`Invocation::background`]).
    #[allow(clippy::too_many_arguments)]
    async fn run_in(
        &self,
        run_dir: &Path,
        background: bool,
        p: &Prepared,
        step: Step,
        args: Vec<OsString>,
        log_stdout: bool,
        limits: &Limits<'_>,
    ) -> Result<exec::Finished, TerraformError> {
        // Inits hold the cache exclusively already (see `init`); everything else shares it.
        let _shared = match step {
            Step::Init => None,
            _ => Some((
                self.cache_lock.read().await,
                CacheLock::acquire(&self.cache_dir().join(".lock"), Access::Shared).await,
            )),
        };
        let seq = self.invocations.fetch_add(1, Ordering::Relaxed);
        let env = self.env(p);
        let out = exec::run(
            &self.bin.path,
            Invocation {
                layer: &p.layer,
                step,
                args,
                cwd: &p.work_dir,
                env: &env,
                log_stdout,
                run_dir,
                seq,
                background,
            },
            limits,
            &p.redactor,
        )
        .await?;
        match recovery::keep_errored_state(p, step, &out) {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// terraform's first error, redacted, with the files it names given by their repository
    /// path rather than their place in the run's working copy.
    fn failed(p: &Prepared, step: Step, out: &exec::Finished) -> TerraformError {
        let tail = p.redactor.redact(&out.stdout);
        let text = exec::error_text(&out.stderr, &tail);
        TerraformError::Failed {
            layer: p.layer.clone(),
            step,
            message: locate::to_repository(&text, &p.tree(), &p.source, &p.revision),
        }
    }

    fn limits<'a>(&self, p: &Prepared, cancel: &'a CancellationToken) -> Limits<'a> {
        Limits {
            deadline: Instant::now() + p.timeout,
            timeout: p.timeout,
            cancel,
            grace: self.opts.grace,
        }
    }

    fn lock_timeout_arg(p: &Prepared) -> OsString {
        format!("-lock-timeout={}", format_duration(p.lock_timeout)).into()
    }

    async fn select_workspace(
        &self,
        p: &Prepared,
        limits: &Limits<'_>,
    ) -> Result<(), TerraformError> {
        let current = std::fs::read_to_string(p.paths.data_dir.join("environment"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "default".into());
        if current == p.workspace {
            return Ok(());
        }
        let select = vec![
            "workspace".into(),
            "select".into(),
            "-no-color".into(),
            p.workspace.clone().into(),
        ];
        let out = self.run(p, Step::Workspace, select, true, limits).await?;
        if out.code == 0 {
            return Ok(());
        }
        let new = vec![
            "workspace".into(),
            "new".into(),
            "-no-color".into(),
            Self::lock_timeout_arg(p),
            p.workspace.clone().into(),
        ];
        let out = self.run(p, Step::Workspace, new, true, limits).await?;
        if out.code != 0 {
            return Err(Self::failed(p, Step::Workspace, &out));
        }
        Ok(())
    }

    /// Applies a saved plan, then reads the outputs.
    ///
    /// # Guarantees
    /// - Refuses a plan made from another revision or other inputs than `p`'s.
    /// - Bounded by the layer's `timeout`; on timeout or cancellation terraform gets SIGINT (it
    ///   stops cleanly and writes state), then SIGKILL after the grace period.
    /// - If strata dies meanwhile, terraform is not killed: it finishes the apply and writes its
    ///   state, and the next strata waits for it.
    /// - State terraform could not write to its backend is never lost: it is kept in the layer's
    ///   state dir and the apply fails with `UnsavedState` naming it.
    ///
    /// # Errors
    /// A stale plan, or the failing step (apply, output) with terraform's error text, redacted.
    /// After a failed apply no outputs are returned, so nothing downstream runs on them.
    pub async fn apply(
        &self,
        p: &Prepared,
        plan: &LayerPlan,
        cancel: &CancellationToken,
    ) -> Result<Applied, TerraformError> {
        if let Some(refusal) = stale(p, &plan.layer, &plan.revision, &plan.inputs_hash) {
            return Err(refusal);
        }
        let limits = self.limits(p, cancel);
        self.settle(p, &limits, false).await?;
        let started = self.apply_file(p, &plan.plan_file, &limits).await?;
        self.finish_apply(p, started, plan.known_outputs.as_ref(), &limits)
            .await
    }

    /// `terraform apply` of the saved plan at `plan_file`; returns when it started.
    async fn apply_file(
        &self,
        p: &Prepared,
        plan_file: &Path,
        limits: &Limits<'_>,
    ) -> Result<std::time::Instant, TerraformError> {
        let started = std::time::Instant::now();
        let args = vec![
            "apply".into(),
            "-input=false".into(),
            "-no-color".into(),
            Self::lock_timeout_arg(p),
            plan_file.into(),
        ];
        let out = self.run(p, Step::Apply, args, true, limits).await?;
        if out.code != 0 {
            return Err(Self::failed(p, Step::Apply, &out));
        }
        Ok(started)
    }

    /// What an apply that started at `started` did: its outputs are those `known` (the plan
    /// knew them all) or else read with `terraform output`.
    async fn finish_apply(
        &self,
        p: &Prepared,
        started: std::time::Instant,
        known: Option<&plan::KnownOutputs>,
        limits: &Limits<'_>,
    ) -> Result<Applied, TerraformError> {
        // The plan knew every output: terraform would print exactly those (it fails an apply
        // whose results differ from known planned values), so `terraform output` is skipped.
        let mut outputs = match known {
            Some(known) => known.0.clone(),
            None => self.read_outputs(p, limits).await?,
        };
        apply::taint(&mut outputs, &p.redactor);
        Ok(Applied {
            layer: p.layer.clone(),
            revision: p.revision.clone(),
            inputs_hash: p.inputs_hash.clone(),
            outputs,
            duration: started.elapsed(),
        })
    }
}

/// The refusal of a plan made for another layer, from another revision or other inputs than
/// `p`'s; `None` for a plan of `p`.
fn stale(
    p: &Prepared,
    layer: &LayerId,
    revision: &str,
    inputs_hash: &str,
) -> Option<TerraformError> {
    (revision != p.revision || inputs_hash != p.inputs_hash || layer != &p.layer).then(|| {
        TerraformError::StalePlan {
            layer: p.layer.clone(),
            planned: revision.to_string(),
            planned_inputs: short(inputs_hash),
            current: p.revision.clone(),
            current_inputs: short(&p.inputs_hash),
        }
    })
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect()
}
