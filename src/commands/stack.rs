//! `strata validate` and `strata graph`: read a stack directory, no state, no source.

use super::out;
use crate::cli::StackArgs;
use crate::error::Error;
use crate::exit::ExitStatus;
use crate::graph::{self, GraphFormat};

pub fn validate(args: &StackArgs) -> Result<ExitStatus, Error> {
    let v = crate::validate(&args.stack).map_err(Error::Invalid)?;
    let waves = v.graph.waves().len();
    out(&format!(
        "stack \"{}\" is valid: {}\n",
        v.stack.name,
        graph::render::summary(v.stack.layers.len(), waves)
    ))?;
    Ok(ExitStatus::Success)
}

pub fn graph(args: &StackArgs, format: GraphFormat) -> Result<ExitStatus, Error> {
    let v = crate::validate(&args.stack).map_err(Error::Invalid)?;
    out(&graph::render(&v.stack, &v.graph, format))?;
    Ok(ExitStatus::Success)
}
