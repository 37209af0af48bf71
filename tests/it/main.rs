//! strata's integration tests: one binary, driving the real `strata` command.

mod support;

mod agent;
mod alerts;
mod devcluster;
mod engine;
mod graph;
mod json_output;
mod kube;
mod source;
mod terraform;
mod validate;
