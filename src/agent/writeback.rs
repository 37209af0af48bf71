//! Git writeback: a note (`refs/notes/strata`) on each converged commit, pushed to the source
//! when the agent may push.

use crate::engine::record::RunReport;
use crate::engine::Engine;

use super::AgentOptions;

/// Writes a git note (`refs/notes/strata`) on the converged commit and pushes it, best effort.
pub(super) fn note(engine: &Engine, opts: &AgentOptions, report: &RunReport) {
    let mirror = crate::source::mirror::mirror_dir(&opts.source.state_dir, &opts.spec.url);
    let applied: Vec<String> = report
        .layers
        .iter()
        .map(|l| format!("{} {}", l.layer, l.status.as_str()))
        .collect();
    let note = format!(
        "strata: stack \"{}\" converged at {}\n{}",
        engine.stack.name,
        report.finished,
        applied.join("\n")
    );
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&mirror)
            .args(args)
            .env("GIT_AUTHOR_NAME", "strata")
            .env("GIT_AUTHOR_EMAIL", "strata@localhost")
            .env("GIT_COMMITTER_NAME", "strata")
            .env("GIT_COMMITTER_EMAIL", "strata@localhost")
            .output()
    };
    match git(&[
        "notes",
        "--ref=strata",
        "add",
        "-f",
        "-m",
        &note,
        &report.revision,
    ]) {
        Ok(o) if o.status.success() => {}
        _ => {
            tracing::warn!("failed to write the git note on {}", report.revision);
            return;
        }
    }
    match git(&["push", &opts.spec.url, "refs/notes/strata:refs/notes/strata"]) {
        Ok(o) if o.status.success() => tracing::info!("pushed the converged note for {}", report.revision),
        _ => tracing::warn!("could not push refs/notes/strata to the source (the agent may not push); the note stays in the mirror"),
    }
}
