//! After a stop is asked for, no new work starts, ever.

use std::time::Duration;

use strata::agent::{Agent, AgentOptions, Ended};
use strata::source::{SourceOptions, SourceSpec};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_asked_to_stop_starts_no_sync() {
    // A sync is due at once and the source is unreachable (a sync would raise `failed`). With the
    // stop already asked for, the agent must end without starting it — every time, not by luck.
    for round in 0..30 {
        let dir = tempfile::tempdir().unwrap();
        let spec = SourceSpec {
            url: dir.path().join("gone").display().to_string(),
            reference: None,
            path: None,
        };
        let mut o = AgentOptions::new(spec, SourceOptions::new(dir.path().join("state")));
        o.poll_interval = Some(Duration::from_secs(3600));
        o.drift_interval = Some(Duration::from_secs(3600));
        let stop = CancellationToken::new();
        stop.cancel();
        let agent = Agent::new(o).expect("agent state");
        let notifier = agent.notifier();
        let ended = agent.run(stop).await;
        assert_eq!(ended, Ended::Clean);
        let sent = notifier.sent.lock().unwrap().clone();
        assert!(
            sent.is_empty(),
            "round {round}: work started after stop: {sent:?}"
        );
        assert!(
            !dir.path().join("state").exists(),
            "round {round}: the state dir was created after stop"
        );
    }
}
