//! `strata promote FROM TO`: the commit copying one environment's values to another.

use super::out;
use crate::cli::PromoteArgs;
use crate::error::Error;
use crate::exit::ExitStatus;
use crate::images::commit::Destination;
use crate::images::writeback::{self, WritebackOptions};

pub fn promote(args: &PromoteArgs) -> Result<ExitStatus, Error> {
    let timeout = crate::util::duration::parse_duration(&args.git_timeout)
        .map_err(|e| Error::Usage(format!("--git-timeout: {e}")))?;
    if let Some(vars) = &args.vars {
        if vars.iter().any(|v| v.trim().is_empty()) {
            return Err(Error::Usage(
                "--vars: name each var, comma-separated (web_image,replicas)".into(),
            ));
        }
    }
    let repo = &args.repo;
    let opts = WritebackOptions {
        url: repo.repo.clone(),
        path: repo.path.clone(),
        tracked: repo.reference.clone(),
        work_dir: writeback::work_dir(&repo.state_dir),
        timeout,
    };
    // The writeback block's branch and author apply; its push_branch is for image updates, a
    // promotion goes for review only when asked.
    let source = repo.source(None);
    let (_, v) = super::image::open(&source)?;
    let wb = v.stack.writeback.clone().unwrap_or_default();
    let dest = Destination {
        branch: wb.branch,
        push_branch: args.push_branch.clone(),
        author: wb.author,
    };
    let done = crate::promote::promote(&opts, &dest, &args.from, &args.to, args.vars.as_deref())?;
    if args.json {
        super::out_json(&done)?;
    } else {
        out(&crate::report::promote::text(&done))?;
    }
    Ok(ExitStatus::Success)
}
