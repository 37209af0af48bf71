//! The state dir: every file strata keeps between runs has one reader/writer API here, and nobody
//! else builds paths to these files.
//!
//! ```text
//! .strata/
//!   mirrors/<hash>/             bare Git mirror per source URL (+ strata-source.json)
//!   revisions/<commit>/         materialised, read-only trees (last 5 kept)
//!   layers/<name>/              TF_DATA_DIR, local state, lock file copy, init stamp
//!   layers/<name>/outputs.json  the layer's cached outputs (outputs.rs)
//!   plugin-cache/               shared TF_PLUGIN_CACHE_DIR
//!   clusters/<name>.kubeconfig  kubeconfig content from outputs
//!   status.json                 per-layer memory: converged revision, inputs hash, results, drift (stack_status.rs)
//!   history.jsonl               one RunRecord per plan/apply, the newest 4-8 MiB (history.rs, retention.rs)
//!   layer-runs.json             per layer, the last plan or apply that ran it, with its changes (layer_runs.rs)
//!   lock                        the one writer's kernel lock, naming its pid, host, command, since (lock.rs)
//!   agent.json                  the agent's status (agent_status.rs)
//!   pin                         the revision `strata rollback` pinned the agent to (pin.rs)
//!   approvals/<kind>.<name>     approvals of waiting plans (approvals.rs)
//!   reports/                    drift reports, the latest as JSON, Markdown and text (reports.rs)
//!   alerts.jsonl                the alerts the agent raised, the newest 4-8 MiB (alerts.rs, retention.rs)
//!   stack-name                  in the state database only: the stack a namespace belongs to (owner.rs)
//!   image-updates/              scratch clones of image updates, each removed when its push is done
//! ```
//!
//! Every file here is replaced atomically (temporary file, fsync, rename, fsync of the dir) with
//! mode 0600, in dirs of mode 0700; every read-modify-write happens under a kernel lock on a
//! `.lock` file beside the data, which dies with its holder and is never deleted; logs are
//! appended one whole line at a time under the same kind of lock. A file that does not parse is
//! an error naming it and the way out, never an empty state.
//!
//! With `--state postgres://…` the same documents and logs live in PostgreSQL ([`crate::store`]):
//! the primitives in `file.rs` route every path under a mounted dir to the database, and the
//! lock is an advisory lock; mirrors, revisions, `layers/<name>/` and `plugin-cache/` stay local.
//!
//! Mirrors and revisions belong to [`crate::source`], `layers/<name>/` (but `outputs.json`) and
//! `plugin-cache/` to [`crate::terraform`], `clusters/` to [`crate::kube`], `image-updates/` to
//! [`crate::images`].

pub mod agent_status;
pub mod alerts;
pub mod approvals;
pub mod exposure;
mod file;
pub mod history;
pub mod layer_runs;
pub mod lock;
pub mod outputs;
pub mod owner;
pub mod pin;
pub mod reports;
pub mod retention;
pub mod stack_status;

pub use file::{ensure_state_dir, StateError};
