//! strata's integration tests: one binary, driving the real `strata` command.

mod support;

mod agent;
mod alerts;
mod approval;
mod cluster_down;
mod cluster_errors;
mod devcluster;
mod engine;
mod graph;
mod json_output;
mod kube;
mod kube_ownership;
mod kube_safety;
mod kube_scale;
mod kubectl_parity;
mod logging;
mod orphans;
mod permissions;
mod report;
mod secrets;
mod shutdown;
mod sops;
mod source;
mod stack_scale;
mod state;
mod terraform;
mod terraform_init;
mod terraform_recovery;
mod validate;
mod webhook;
