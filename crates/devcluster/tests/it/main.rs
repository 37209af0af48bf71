//! devcluster's integration tests: one binary, against the real kubectl and kube-rs.

mod support;

mod builtin_kinds;
mod kubectl;
mod names_and_defaults;
mod testing_aids;
mod verbs;
