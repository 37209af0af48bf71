//! Image automation: a new tag in a registry becomes a commit in Git, which the agent then
//! converges like any other.
//!
//! - `policy.rs`: which tag an `image` block selects (semver range, or regex and order).
//! - `registry.rs`: listing a repository's tags over the OCI distribution API.
//! - `markers.rs`: the `# strata:image NAME[:tag|:name]` markers and the values they stand for.
//! - `running.rs`: the tags an environment's markers carry (what it runs).
//! - `scan.rs`: per image, the tag selected and what each marker would become.
//! - `git.rs`: the `git` binary, with a timeout.
//! - `commit.rs`: one commit in a scratch clone, pushed without force (shared with promotion).
//! - `writeback.rs`: the commit of the marked lines, pushed without force.

pub mod commit;
pub mod git;
pub mod markers;
pub mod policy;
pub mod registry;
pub mod running;
pub mod scan;
pub mod writeback;
