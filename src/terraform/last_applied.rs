//! The working copy of a layer's last successful apply, kept in `layers/NAME/applied/`: its
//! configuration (with local modules), var file and backend settings. When the layer is deleted
//! from the stack file, this is what its resources are destroyed from, with approval — the
//! revision that had it may no longer exist (a directory stack) or no longer be fetched.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::workdir::{self, LayerPaths, RunDir};
use super::{modules, InitOutcome, Prepared, Terraform, TerraformError};
use crate::redact::Redactor;
use crate::stack::LayerId;

/// What is needed besides the files to run terraform there again.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    revision: String,
    /// The layer's directory inside `tree/`.
    source: PathBuf,
    workspace: String,
    has_backend: bool,
    backend_json: String,
    /// The sensitive inputs' values, so its output is scrubbed as before.
    sensitive: Vec<serde_json::Value>,
    timeout_secs: u64,
    lock_timeout_secs: u64,
}

fn dir(paths: &LayerPaths) -> PathBuf {
    paths.dir.join("applied")
}

impl Terraform {
    /// Keeps `p`'s working copy as the layer's last applied one, replacing the previous.
    ///
    /// # Guarantees
    /// The copy is built beside the old one and renamed over it: a crash leaves the old copy or
    /// the new one. Files are 0600 in 0700 dirs where they hold inputs.
    ///
    /// # Errors
    /// Any filesystem error, naming the path.
    pub async fn keep_applied(&self, p: &Prepared) -> Result<(), TerraformError> {
        let io = |action: &'static str, path: &std::path::Path| {
            TerraformError::io(&p.layer, action, path)
        };
        let target = dir(&p.paths);
        let tmp = p.paths.dir.join(".applied-new");
        let _ = std::fs::remove_dir_all(&tmp);
        crate::util::fs::create_private_dir_all(&tmp).map_err(io("create", &tmp))?;
        for rel in std::iter::once(&p.source).chain(&p.config.local_modules) {
            workdir::copy_tree_detached(&p.tree(), &tmp.join("tree"), rel)
                .map_err(io("copy", &p.tree().join(rel)))?;
        }
        // Kept beside the layer's state and inputs: readable by strata's user only.
        crate::util::fs::make_tree_private(&tmp).map_err(io("restrict", &tmp))?;
        let vars = std::fs::read(&p.var_file).map_err(io("read", &p.var_file))?;
        crate::util::fs::write_private(&tmp.join("vars.json"), &vars).map_err(io("write", &tmp))?;
        if let Some(b) = &p.backend_file {
            let text = std::fs::read(b).map_err(io("read", b))?;
            crate::util::fs::write_private(&tmp.join("backend.tfbackend"), &text)
                .map_err(io("write", &tmp))?;
        }
        let meta = Meta {
            revision: p.revision.clone(),
            source: p.source.clone(),
            workspace: p.workspace.clone(),
            has_backend: p.config.has_backend,
            backend_json: p.backend_json.clone(),
            sensitive: p.sensitive.clone(),
            timeout_secs: p.timeout.as_secs(),
            lock_timeout_secs: p.lock_timeout.as_secs(),
        };
        crate::util::fs::write_private(
            &tmp.join("meta.json"),
            &serde_json::to_vec_pretty(&meta).expect("json"),
        )
        .map_err(io("write", &tmp))?;
        let old = p.paths.dir.join(".applied-old");
        let _ = std::fs::remove_dir_all(&old);
        if target.exists() {
            std::fs::rename(&target, &old).map_err(io("move", &target))?;
        }
        std::fs::rename(&tmp, &target).map_err(io("move", &tmp))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// Prepares a layer that is no longer in the stack from its last applied working copy, to
    /// plan its destruction. `None` when no copy was kept (never applied by this version).
    ///
    /// # Errors
    /// The copy is unreadable, or its configuration leaves its root.
    pub async fn prepare_last_applied(
        &self,
        id: &LayerId,
    ) -> Result<Option<Prepared>, TerraformError> {
        let paths = LayerPaths::new(&self.opts.state_dir, id);
        let saved = dir(&paths);
        let io =
            |action: &'static str, path: &std::path::Path| TerraformError::io(id, action, path);
        let meta_file = saved.join("meta.json");
        let meta: Meta = match std::fs::read(&meta_file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| TerraformError::Config {
                layer: id.clone(),
                message: format!("{} is not readable ({e})", meta_file.display()),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", &meta_file)(e)),
        };
        let saved_tree = saved.join("tree");
        let config =
            modules::inspect(&saved_tree, &meta.source).map_err(|e| TerraformError::Config {
                layer: id.clone(),
                message: e.to_string(),
            })?;
        let run = RunDir::create(&paths.runs).map_err(io("create", &paths.runs))?;
        let tree = run.path().join("tree");
        for rel in std::iter::once(&meta.source).chain(&config.local_modules) {
            workdir::copy_tree(&saved_tree, &tree, rel).map_err(io("copy", &saved_tree))?;
        }
        let var_file = run.path().join("strata.tfvars.json");
        std::fs::copy(saved.join("vars.json"), &var_file).map_err(io("copy", &saved))?;
        let saved_backend = saved.join("backend.tfbackend");
        let backend_file = if saved_backend.exists() {
            let f = run.path().join("backend.tfbackend");
            std::fs::copy(&saved_backend, &f).map_err(io("copy", &saved_backend))?;
            Some(f)
        } else {
            None
        };
        let mut redactor = Redactor::new();
        for v in &meta.sensitive {
            redactor.add_json(v);
        }
        let init_fingerprint = self.init_fingerprint(&config, meta.backend_json.as_bytes(), &paths);
        Ok(Some(Prepared {
            layer: id.clone(),
            revision: meta.revision,
            inputs_hash: String::new(),
            workspace: meta.workspace,
            init: InitOutcome::Pending,
            work_dir: tree.join(&meta.source),
            var_file,
            backend_file,
            init_fingerprint,
            redactor,
            timeout: std::time::Duration::from_secs(meta.timeout_secs),
            lock_timeout: std::time::Duration::from_secs(meta.lock_timeout_secs),
            source: meta.source,
            reinit: false,
            backend_json: meta.backend_json,
            sensitive: meta.sensitive,
            config: modules::ConfigInfo {
                has_backend: meta.has_backend,
                ..config
            },
            paths,
            run,
        }))
    }

    /// Forgets the last applied copy, once the layer's resources are destroyed.
    pub fn forget_applied(&self, id: &LayerId) {
        let paths = LayerPaths::new(&self.opts.state_dir, id);
        let _ = std::fs::remove_dir_all(dir(&paths));
    }
}
