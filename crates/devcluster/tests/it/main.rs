//! devcluster's integration tests: one binary, against the real kubectl and kube-rs.

mod support;

mod kubectl;
mod testing_aids;
mod verbs;
