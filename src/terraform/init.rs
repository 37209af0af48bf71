//! `terraform init`, and when strata may skip it: only after a successful init with the same
//! fingerprint (lock file, modules, providers, backend). A failed or interrupted init rewrites
//! parts of the data dir (its module manifest, the backend settings), so the stamp that allows
//! skipping is removed before init starts and written back only when it succeeded.

use std::ffi::OsString;

use super::cache_lock::{Access, CacheLock};
use super::exec::Limits;
use super::{workdir, InitOutcome, Prepared, Step, Terraform, TerraformError};

impl Terraform {
    /// The init fingerprint with the lock file as it is now in the working copy.
    fn init_stamp(p: &Prepared) -> String {
        let lock = std::fs::read(p.work_dir.join(workdir::LOCK_FILE)).unwrap_or_default();
        crate::hash::Hasher::new()
            .part("base", p.init_fingerprint.as_bytes())
            .part("lock", &lock)
            .finish()
    }

    /// Runs `terraform init` unless the last successful init had the same fingerprint, then
    /// selects (or creates) the workspace.
    ///
    /// # Guarantees
    /// - Init is skipped only when the stamp of a *successful* init matches: the stamp is removed
    ///   before init runs, so a failed, interrupted or killed init makes the next run init again.
    /// - A requested re-init ([`Prepared::request_reinit`]) empties the data dir first; the
    ///   layer's local state and lock file live outside it and are kept.
    ///
    /// # Errors
    /// The stamp or data dir could not be removed (named), or terraform init / workspace failed
    /// with its first error.
    pub(super) async fn init(
        &self,
        p: &mut Prepared,
        limits: &Limits<'_>,
    ) -> Result<(), TerraformError> {
        let io = |action: &'static str, path: &std::path::Path| {
            TerraformError::io(&p.layer, action, path)
        };
        if p.reinit {
            remove(&p.paths.init_stamp).map_err(io("remove", &p.paths.init_stamp))?;
            match std::fs::remove_dir_all(&p.paths.data_dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io("remove", &p.paths.data_dir)(e))
                }
                _ => {}
            }
            tracing::info!(layer = %p.layer, "re-init: emptied the data dir, state kept");
            p.reinit = false;
        }
        let stamp = std::fs::read_to_string(&p.paths.init_stamp).unwrap_or_default();
        if stamp.trim() == Self::init_stamp(p) && p.paths.data_dir.is_dir() {
            p.init = InitOutcome::Skipped;
            tracing::info!(layer = %p.layer, "init skipped: lock file, modules and backend unchanged");
            return self.select_workspace(p, limits).await;
        }
        let guard = self.cache_lock.write().await;
        let cache = self.cache_dir();
        crate::util::fs::create_private_dir_all(&cache).map_err(io("create", &cache))?;
        let file_lock = CacheLock::acquire(&cache.join(".lock"), Access::Exclusive).await;
        // Write-ahead: from here until init succeeds, the data dir may be half-rewritten.
        remove(&p.paths.init_stamp).map_err(io("remove", &p.paths.init_stamp))?;
        // No -lock-timeout: terraform 1.0's init does not take it.
        let mut args: Vec<OsString> =
            vec!["init".into(), "-input=false".into(), "-no-color".into()];
        if !p.config.has_backend || p.backend_file.is_some() {
            // A changed backend setting migrates nothing behind the user's back.
            args.push("-reconfigure".into());
        }
        if let Some(f) = &p.backend_file {
            let mut a = OsString::from("-backend-config=");
            a.push(f);
            args.push(a);
        }
        let out = self.run(p, Step::Init, args, true, limits).await?;
        if out.code != 0 {
            return Err(Self::failed(p, Step::Init, &out));
        }
        let lock = p.work_dir.join(workdir::LOCK_FILE);
        if lock.exists() {
            let _ = std::fs::copy(&lock, &p.paths.lock_copy);
        }
        // A stamp that cannot be written only costs an init next time.
        let _ = crate::util::fs::write_atomic_private(
            &p.paths.init_stamp,
            Self::init_stamp(p).as_bytes(),
        );
        p.init = InitOutcome::Ran;
        // Selecting the workspace shares the cache like any other command: the exclusive hold
        // ends first, or it would wait on itself.
        drop(file_lock);
        drop(guard);
        self.select_workspace(p, limits).await
    }
}

/// Removes a file that may not exist.
fn remove(path: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
