//! `strata devcluster`: a local Kubernetes API server for tests and demos, until SIGTERM/SIGINT.

use super::{out, runtime, shutdown_signal};
use crate::cli::DevclusterArgs;
use crate::error::Error;
use crate::exit::ExitStatus;

pub fn run(args: &DevclusterArgs) -> Result<ExitStatus, Error> {
    let simulate_ready = match args.simulate_ready.as_str() {
        "never" => None,
        d => Some(crate::util::duration::parse_duration(d).map_err(Error::Usage)?),
    };
    let opts = devcluster::DevClusterOptions {
        listen: args.listen,
        data: args.data.clone(),
        simulate_ready,
        token: None,
    };
    let rt = runtime()?;
    rt.block_on(async {
        let cluster = devcluster::DevCluster::start(opts)
            .await
            .map_err(|e| Error::Io {
                action: "listen on",
                path: args.listen.to_string().into(),
                source: e,
            })?;
        cluster
            .write_kubeconfig(&args.kubeconfig_out)
            .map_err(|e| Error::Io {
                action: "write",
                path: args.kubeconfig_out.clone(),
                source: e,
            })?;
        // Handlers first, then the line that tells a caller it may signal us.
        let stop = shutdown_signal();
        out(&format!(
            "devcluster serving at {}\nkubeconfig: {}\n",
            cluster.url(),
            args.kubeconfig_out.display()
        ))?;
        stop.await;
        cluster.stop().await;
        Ok(ExitStatus::Success)
    })
}
