//! Secrets kept in Git, encrypted: files under a layer encrypted with SOPS are decrypted in memory
//! by the agent with keys only it holds. Decrypted values are sensitive by provenance: they are
//! handed on wrapped in [`crate::redact::Redacted`] and never written outside a 0600 run dir.

pub mod leaves;
pub mod sops;

pub use sops::{AgeKeys, Format, SopsError};
