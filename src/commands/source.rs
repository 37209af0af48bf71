//! `strata source show`: fetch the source, show the commit it resolves to and what changed.

use super::{out, out_json};
use crate::cli::RepoArgs;
use crate::error::Error;
use crate::exit::ExitStatus;
use crate::report::source::{AffectedLayer, SourceShow};

/// The source spec and options of `--repo` flags.
pub(super) fn source_of(
    args: &RepoArgs,
) -> (crate::source::SourceSpec, crate::source::SourceOptions) {
    let spec = crate::source::SourceSpec {
        url: args.repo.clone(),
        reference: args.reference.clone(),
        path: args.path.clone(),
    };
    let mut opts = crate::source::SourceOptions::new(&args.state_dir);
    opts.verify = args.verify.clone();
    (spec, opts)
}

pub fn show(args: &RepoArgs, since: Option<&str>, json: bool) -> Result<ExitStatus, Error> {
    let (spec, opts) = source_of(args);
    let rev = crate::source::resolve(&spec, &opts).map_err(Error::Source)?;
    let mut affected = None;
    let mut since_commit = None;
    if let Some(since) = since {
        let repo = crate::source::open_mirror(&opts.state_dir, &spec.url).map_err(Error::Source)?;
        let old = crate::source::rev_parse(&repo, since, &rev.ref_name).ok_or_else(|| {
            Error::Source(crate::source::SourceError::UnknownRef {
                url: spec.url.clone(),
                reference: since.to_string(),
                known: String::new(),
            })
        })?;
        let new = gix::ObjectId::from_hex(rev.commit.as_bytes()).expect("resolved commit id");
        let v = crate::validate_shown(&rev.stack_dir, &rev.shown()).map_err(Error::Invalid)?;
        let a = crate::source::affected::affected(
            &repo,
            old,
            new,
            &rev.path,
            &v.stack,
            &v.graph,
            &rev.stack_dir,
        );
        let ordered = v
            .graph
            .layers()
            .iter()
            .filter_map(|id| {
                a.layers.get(id).map(|r| AffectedLayer {
                    layer: id.clone(),
                    reasons: r.clone(),
                })
            })
            .collect();
        affected = Some(ordered);
        since_commit = Some(old.to_string());
    }
    let show = SourceShow {
        revision: rev,
        since: since_commit,
        affected,
    };
    if json {
        out_json(&show)?;
    } else {
        out(&crate::report::source::text(&show))?;
    }
    Ok(ExitStatus::Success)
}
