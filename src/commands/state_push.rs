//! `strata state push LAYER`: push the state terraform could not save to a layer's backend.

use super::converge::{options, source_of};
use super::{engine_err, out, out_json, runtime};
use crate::cli::SourceArgs;
use crate::engine::Engine;
use crate::error::Error;
use crate::exit::ExitStatus;

pub fn push(
    layer: &str,
    a: &SourceArgs,
    lock_timeout: &str,
    json: bool,
) -> Result<ExitStatus, Error> {
    let lock_timeout = crate::util::duration::parse_duration(lock_timeout).map_err(Error::Usage)?;
    runtime()?.block_on(async {
        let mut opts = options(a);
        opts.lock_timeout = lock_timeout;
        let engine = Engine::open(source_of(a), opts).await.map_err(engine_err)?;
        let pushed = engine.push_state(layer).await.map_err(engine_err)?;
        if json {
            out_json(&pushed)?;
        } else {
            out(&crate::report::state_push::text(&pushed))?;
        }
        Ok(ExitStatus::Success)
    })
}
