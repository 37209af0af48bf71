//! React to strata's events in your own code: run the agent with a callback sink.
//!
//! ```sh
//! cargo run --example webhook_sink -- /path/to/repo [state-dir]
//! ```
//! Every `change_committed`, `diff`, `converged` and `failed` event is printed as it happens;
//! Ctrl-C stops the agent.

use std::sync::Arc;

use strata::agent::{Agent, AgentOptions};
use strata::notify::{AgentConfig, Event, Sink};
use strata::source::{SourceOptions, SourceSpec};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        eprintln!("usage: webhook_sink REPO [STATE_DIR]");
        std::process::exit(2);
    };
    let state = args.next().unwrap_or_else(|| ".strata".into());

    let on_event = |e: &Event| {
        println!(
            "{:?} at {}: {} {:?}",
            e.kind, e.revision, e.summary, e.layers
        );
    };
    let spec = SourceSpec {
        url,
        reference: None,
        path: None,
    };
    let mut opts = AgentOptions::new(spec, SourceOptions::new(&state));
    opts.config = AgentConfig {
        sinks: vec![Sink::Callback {
            name: "stdout".into(),
            f: Arc::new(on_event),
        }],
        writeback_notes: false,
    };

    let stop = CancellationToken::new();
    let ctrl_c = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        ctrl_c.cancel();
    });
    Agent::new(opts).expect("agent state").run(stop).await;
}
