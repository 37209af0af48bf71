//! The state dir's small control files that several modules share: the rollback pin and layer
//! approvals. Each file has one reader/writer API here; nobody else opens these paths.

pub mod approvals;
pub mod pin;
