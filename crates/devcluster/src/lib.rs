//! devcluster: a local Kubernetes API server, faithful enough to test Kubernetes clients against
//! and checked with the real kubectl. strata uses it for its tests and demo (`strata devcluster`),
//! and talks to it through kube-rs exactly as to a real cluster.
//!
//! It is an API server, not a distribution: no scheduler, no kubelet, no pods run. Where it
//! differs from a real API server: objects live in memory (optionally kept in a JSON data file),
//! there is one served version per resource and no conversion, admission, RBAC or garbage
//! collection, bodies are JSON or YAML only (protobuf gets 415), workloads become ready by a
//! simulated controller after a delay, and faults can be injected on purpose. See
//! docs/devcluster.md for what is and isn't covered.
//!
//! [`DevCluster::start`] serves HTTPS on an ephemeral loopback port with a bearer token, and hands
//! back a kubeconfig; dropping the handle stops it.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use devcluster::{DevCluster, DevClusterOptions, Fault};
//!
//! let cluster = DevCluster::start(DevClusterOptions::default()).await?;
//! cluster.write_kubeconfig(std::path::Path::new("/tmp/dev.kubeconfig"))?;
//! cluster.inject(Fault::fail("list", "configmaps", 500, 1));
//! cluster.stop().await;
//! # Ok(())
//! # }
//! ```
//!
//! The source is laid out by concern: [`cluster`] (the handle), `server/` (HTTP: paths,
//! discovery, OpenAPI, query strings, dispatch, watches), `api/` (one file per verb: read,
//! write, apply, delete, watch, and the commit every write ends in), `store` (objects, the
//! resourceVersion counter, events, the data file), [`registry`] (served kinds, CRDs),
//! [`fields`] (managedFields), `patch`, `selector`, `validate`, [`ready`] (simulated
//! controllers) and [`faults`].

mod api;
pub mod builtin;
pub mod cluster;
pub mod faults;
pub mod fields;
mod ids;
mod kubeconfig;
mod patch;
pub mod ready;
pub mod registry;
mod selector;
mod server;
mod store;
mod tls;
mod validate;

pub use cluster::{DevCluster, DevClusterOptions};
pub use faults::{Fault, FaultAction};
