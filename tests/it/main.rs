//! strata's integration tests: one binary, driving the real `strata` command.

mod registry;
mod support;

mod agent;
mod alerts;
mod approval;
mod approval_binding;
mod cluster_errors;
mod conflicts;
mod devcluster;
mod engine;
mod graph;
mod images;
mod images_agent;
mod json_output;
mod kube;
mod kube_orphans;
mod kube_ownership;
mod kube_safety;
mod kubectl_parity;
mod limits;
mod logging;
mod orphans;
mod permissions;
mod report;
mod secrets;
mod shutdown;
mod sops;
mod source;
mod state;
mod status_reasons;
mod terraform;
mod terraform_init;
mod terraform_recovery;
mod validate;
mod webhook;
