//! Load a stack, build its graph, and print its plan as JSON.
//!
//! ```sh
//! cargo run --example plan_stack -- stacks/demo            # the graph as JSON
//! cargo run --example plan_stack -- stacks/demo --plan     # and a real plan (needs terraform)
//! ```

use strata::engine::{Engine, EngineOptions, Mode, Source};
use strata::graph::GraphView;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "stacks/demo".into());
    let with_plan = args.any(|a| a == "--plan");

    // Validation reports every problem at once, each with file:line:col.
    let v = match strata::validate(&dir) {
        Ok(v) => v,
        Err(diags) => {
            eprintln!("{diags}");
            std::process::exit(1);
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&GraphView::new(&v.stack, &v.graph))?
    );

    if with_plan {
        let state = tempfile::tempdir()?;
        let engine =
            Engine::open(Source::Dir(dir.into()), EngineOptions::new(state.path())).await?;
        let plan = engine.run(Mode::Plan).await?;
        println!("{}", serde_json::to_string_pretty(&plan)?);
    }
    Ok(())
}
