//! `strata state push`: pushing the state terraform could not save to a layer's backend, so the
//! layer can be planned and applied again.

use std::collections::BTreeMap;

use super::{inputs, Engine, EngineError};
use crate::stack::{LayerKind, LayerSpec};
use crate::terraform::{LayerInput, StatePush, TerraformError};

impl Engine {
    /// Pushes the unsaved state files (`errored.tfstate`) of the Terraform layer named `layer`
    /// (`net` or `terraform.net`) to its backend, oldest first.
    ///
    /// # Guarantees
    /// - Holds the stack's lock, like an apply: nothing applies the layer meanwhile.
    /// - terraform runs in a working copy initialised like the layer's own: the same backend,
    ///   `backend_config` (resolved from the cached outputs of upstream layers) and workspace.
    /// - A file stops blocking the layer only once terraform has pushed it; on failure it stays,
    ///   and the error says why (see [`crate::terraform::Terraform::push_state`]).
    ///
    /// # Errors
    /// No such Terraform layer, the lock held by another writer, a `backend_config` value that
    /// is not known, or terraform failing (init, workspace, state push).
    pub async fn push_state(&self, layer: &str) -> Result<StatePush, EngineError> {
        let found = self.stack.layers.iter().find(|l| {
            l.id.kind == LayerKind::Terraform && (l.id.name == layer || l.id.to_string() == layer)
        });
        let Some(found) = found else {
            return Err(EngineError::NoSuchLayer(layer.to_string()));
        };
        let LayerSpec::Terraform(spec) = &found.spec else {
            return Err(EngineError::NoSuchLayer(layer.to_string()));
        };
        let _lock = crate::state::lock::Lock::acquire(
            &self.opts.state_dir,
            "strata state push",
            self.opts.lock_timeout,
        )
        .await?;
        let known = self.cached_outputs();
        let backend_config = inputs::eval_map(&spec.backend_config, &known).map_err(|message| {
            Box::new(TerraformError::Config {
                layer: found.id.clone(),
                message,
            })
        })?;
        let tf = self.terraform().await.map_err(Box::new)?;
        // `state push` reads no variables: only the backend matters.
        let mut p = tf
            .prepare(LayerInput {
                layer: found,
                stack_root: &self.root,
                revision: &self.revision,
                vars: BTreeMap::new(),
                backend_config,
            })
            .await
            .map_err(Box::new)?;
        Ok(tf
            .push_state(&mut p, &self.opts.cancel)
            .await
            .map_err(Box::new)?)
    }
}
