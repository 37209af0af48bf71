//! `strata image scan` and `strata image update`: registry tags against the marked lines, and
//! the commit that moves them.

use super::{out, out_json, runtime};
use crate::cli::{RepoArgs, SourceArgs};
use crate::error::Error;
use crate::exit::ExitStatus;
use crate::images::scan::ScanReport;
use crate::images::writeback::{self, WritebackOptions};

/// The stack directory and the validated stack a scan reads.
pub(super) fn open(source: &SourceArgs) -> Result<(std::path::PathBuf, crate::Validated), Error> {
    match &source.repo {
        Some(url) => {
            let spec = crate::source::SourceSpec {
                url: url.clone(),
                reference: source.reference.clone(),
                path: source.path.clone(),
            };
            let mut opts = crate::source::SourceOptions::new(&source.state_dir);
            opts.verify = source.verify.clone();
            let rev = crate::source::resolve(&spec, &opts)?;
            let v = crate::validate_shown(&rev.stack_dir, &rev.shown()).map_err(Error::Invalid)?;
            Ok((rev.stack_dir, v))
        }
        None => {
            let dir = source.stack.clone().unwrap_or_else(|| ".".into());
            let v = crate::validate(&dir).map_err(Error::Invalid)?;
            Ok((dir, v))
        }
    }
}

fn status(r: &ScanReport) -> ExitStatus {
    if r.errors() > 0 {
        ExitStatus::Failure
    } else if r.updates() > 0 {
        ExitStatus::Changes
    } else {
        ExitStatus::Success
    }
}

pub fn scan(source: &SourceArgs, json: bool) -> Result<ExitStatus, Error> {
    let (dir, v) = open(source)?;
    let report = runtime()?.block_on(crate::images::scan::scan(&v.stack, &dir, None));
    if json {
        out_json(&report)?;
    } else {
        out(&crate::report::image::scan_text(&report))?;
    }
    Ok(status(&report))
}

pub fn update(repo: &RepoArgs, git_timeout: &str, json: bool) -> Result<ExitStatus, Error> {
    let timeout = crate::util::duration::parse_duration(git_timeout)
        .map_err(|e| Error::Usage(format!("--git-timeout: {e}")))?;
    let source = repo.source(repo.one_env()?);
    let (dir, v) = open(&source)?;
    let report = runtime()?.block_on(crate::images::scan::scan(&v.stack, &dir, None));
    for i in report.images.iter().filter(|i| i.error.is_some()) {
        let e = i.error.as_ref().expect("filtered");
        eprintln!("image {}: {} (not updated)", i.image, e.message);
    }
    let opts = WritebackOptions {
        url: repo.repo.clone(),
        path: repo.path.clone(),
        tracked: repo.reference.clone(),
        work_dir: writeback::work_dir(&repo.state_dir),
        timeout,
    };
    let wb = v.stack.writeback.clone().unwrap_or_default();
    let outcome = writeback::update(&opts, &wb, &writeback::selections(&report))?;
    if json {
        out_json(&serde_json::json!({ "scan": report, "update": outcome }))?;
    } else {
        out(&crate::report::image::update_text(&outcome))?;
    }
    Ok(if report.errors() > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
