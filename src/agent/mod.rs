//! `strata run`: the agent. It pulls the source every `poll_interval` (or at once on a signed
//! webhook), converges each new revision, checks for drift every `drift_interval`, corrects it
//! where a layer says so, raises alerts, writes reports and serves metrics. It never exits on a
//! layer or source error: it stays on the last good revision and says why.
//!
//! - [`run`](Agent::run) (`run.rs`): the loop — when to sync, when to check drift, shutdown.
//! - `sync.rs`: fetch, converge a revision, record success, failure or refusal.
//! - `drift.rs`: the periodic drift check, corrections and `diff` alerts.
//! - `reach.rs`: whether the source and each cluster answer; `degraded` / `recovered` alerts
//!   and readiness.
//! - `status.rs`: what the agent knows of itself (`agent.json`, `/api/v1/status`).
//! - `writeback.rs`: the git note on a converged commit.
//! - `images.rs`: new registry tags committed to Git every image's `interval`.
//! - `feed.rs`: the source's fetch, one per poll for every environment.
//! - `fleet.rs`: one agent per environment, run side by side behind one HTTP listener.

mod drift;
mod feed;
mod fleet;
mod images;
mod reach;
mod run;
pub mod stacks;
mod status;
mod sync;
mod writeback;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::engine::EngineOptions;
use crate::notify::memory::{shorten, Conditions, SUMMARY_MAX};
use crate::notify::{AgentConfig, Event, EventType, Notifier};
use crate::redact::Redacted;
use crate::server::{AgentHttp, EnvMetrics, Metrics, Trigger};
use crate::source::{SourceOptions, SourceSpec};

pub use feed::SourceFeed;
pub use fleet::{run_fleet, run_stacks, FleetEnded, FleetError, StacksPlan};
pub use stacks::{StackSource, StacksError};
pub use status::{AgentStatus, Awaiting, Reach, Refused};

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub spec: SourceSpec,
    pub source: SourceOptions,
    pub state_dir: PathBuf,
    /// HTTP listen address; `None` serves nothing.
    pub listen: Option<SocketAddr>,
    pub webhook_secret: Option<Redacted<Vec<u8>>>,
    /// The bearer token of the HTTP API's mutating endpoints (approvals).
    pub api_token: Option<Redacted<Vec<u8>>>,
    pub config: AgentConfig,
    pub terraform_env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// On SIGTERM, how long a running apply may go on before it is interrupted. Default 30s.
    pub shutdown_grace: Duration,
    /// Override the stack's `poll_interval` / `drift_interval`.
    pub poll_interval: Option<Duration>,
    pub drift_interval: Option<Duration>,
    /// How long the source or a cluster may stay unreachable before a `degraded` alert and a
    /// failing `/readyz`. Default 5m.
    pub unreachable_after: Duration,
    /// At most one `diff` alert per layer in this interval, however its drift changes.
    /// Default 1h.
    pub diff_interval: Duration,
    /// Converge once and return (bootstrap without --watch).
    pub once: bool,
    /// Plan every layer on the first sync (bootstrap).
    pub all_first: bool,
    pub progress: bool,
    pub age_keys: Option<crate::secrets::AgeKeys>,
    /// The environment it converges; its own files then live in `state_dir` =
    /// `SOURCE_STATE/envs/NAME`, beside the engine's for that environment.
    pub env: Option<String>,
    /// The environments [`run_fleet`] converges (`--env`, repeatable); empty: every one the
    /// stack declares.
    pub envs: Vec<String>,
    /// The stack's name in the agent configuration (`stack "NAME"`), for an agent converging
    /// several; `None`: the stack of `--repo`.
    pub stack: Option<String>,
    /// Shared by every stack of the agent: a sync or drift check runs only with a permit, so
    /// at most `--max-concurrent-stacks` converge at once.
    pub slots: Option<Arc<tokio::sync::Semaphore>>,
    /// The stack's Lease, asked before every sync and drift check (`--coordination`).
    pub fence: Option<crate::coordination::Fence>,
}

impl AgentOptions {
    pub fn new(spec: SourceSpec, source: SourceOptions) -> AgentOptions {
        let state_dir = source.state_dir.clone();
        AgentOptions {
            spec,
            source,
            state_dir,
            listen: None,
            webhook_secret: None,
            api_token: None,
            config: AgentConfig::default(),
            terraform_env: Vec::new(),
            shutdown_grace: Duration::from_secs(30),
            unreachable_after: Duration::from_secs(300),
            diff_interval: Duration::from_secs(3600),
            poll_interval: None,
            drift_interval: None,
            once: false,
            all_first: false,
            progress: false,
            age_keys: None,
            env: None,
            envs: Vec::new(),
            stack: None,
            slots: None,
            fence: None,
        }
    }

    /// Converges environment `env`: the agent's files and the engine's state in
    /// `envs/NAME` of the state dir; the source's mirror stays shared.
    pub fn for_env(mut self, env: &str) -> AgentOptions {
        self.state_dir = crate::engine::env_state_dir(&self.source.state_dir, env);
        self.env = Some(env.to_string());
        self
    }
}

/// How the agent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Stopped cleanly (or converged, for `once`).
    Clean,
    /// Something running had to be interrupted at shutdown.
    Interrupted,
    /// `once` and the stack did not converge.
    NotConverged,
}

pub struct Agent {
    pub(super) opts: AgentOptions,
    pub(super) status: AgentStatus,
    pub(super) notifier: Notifier,
    pub(super) http: Arc<AgentHttp>,
    pub(super) triggers: tokio::sync::mpsc::Receiver<Trigger>,
    /// Cancels running terraform (after the shutdown grace).
    pub(super) interrupt: CancellationToken,
    /// The source's fetch, shared with the other environments' agents.
    pub(super) feed: Arc<SourceFeed>,
    /// The conditions alerted on and not cleared: one alert per condition until it changes.
    pub(super) memory: Conditions,
    /// A `diff` condition cleared or a layer was corrected since the last `converged`: the next
    /// drift check that observes every layer in sync says so.
    pub(super) owes_converged: bool,
    /// Since when the source has not answered.
    pub(super) source_down: Option<Instant>,
    /// Since when each cluster has not answered.
    pub(super) clusters_down: BTreeMap<String, Instant>,
    pub(super) next_retry: Option<Instant>,
    pub(super) synced_once: bool,
    /// The settings of the stack as last opened.
    pub(super) settings: Option<crate::stack::StackSettings>,
    /// The clusters' clients and discovery, kept across syncs and drift checks.
    pub(super) clusters: Arc<crate::kube::Clusters>,
    /// When each image's registry is next listed.
    pub(super) image_next: BTreeMap<String, Instant>,
    /// Since when each image's registry has failed.
    pub(super) registries_down: BTreeMap<String, Instant>,
}

impl Agent {
    /// An agent on the state dir of `opts`, with the status the last agent there saved.
    ///
    /// # Errors
    /// `agent.json` is corrupt or unreadable; the error names it and how to recover.
    pub fn new(opts: AgentOptions) -> Result<Agent, crate::state::StateError> {
        let feed = Arc::new(SourceFeed::new(opts.spec.clone(), opts.source.clone()));
        Agent::member(opts, Arc::new(Metrics::default()), feed)
    }

    /// An agent of one environment among others: it records into the agent's `metrics` and
    /// reads the source through the shared `feed`.
    ///
    /// # Errors
    /// As [`Agent::new`].
    pub fn member(
        opts: AgentOptions,
        metrics: Arc<Metrics>,
        feed: Arc<SourceFeed>,
    ) -> Result<Agent, crate::state::StateError> {
        let status = crate::state::agent_status::load(&opts.state_dir)?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let http = Arc::new(AgentHttp {
            stack: opts.stack.clone(),
            env: opts.env.clone(),
            metrics: EnvMetrics::new(metrics, opts.env.clone()).for_stack(opts.stack.clone()),
            status: std::sync::Mutex::new(serde_json::to_value(&status).unwrap_or_default()),
            ready: std::sync::atomic::AtomicBool::new(false),
            not_ready: std::sync::Mutex::new(None),
            trigger: tx,
            state_dir: opts.state_dir.clone(),
            source_state_dir: opts.source.state_dir.clone(),
            graph: crate::server::api::GraphSource::new(opts.spec.path.clone()),
            running: Arc::default(),
        });
        // The last converged revision's settings, until a sync opens a newer one.
        let settings = status.revision.as_ref().and_then(|r| {
            let root = crate::source::materialise::revision_dir(&opts.source.state_dir, r);
            let dir = opts
                .spec
                .path
                .as_ref()
                .map_or(root.clone(), |p| root.join(p));
            crate::stack::Stack::load(dir).ok()
        });
        let stack = settings.as_ref().map(|s| s.name.clone());
        let settings = settings.map(|s| s.settings);
        let notifier = Notifier::new(opts.config.sinks.clone(), Some(opts.state_dir.clone()));
        let memory = Conditions::restore(&status.conditions);
        let interrupt = CancellationToken::new();
        Ok(Agent {
            opts,
            status: AgentStatus {
                ready: false,
                stack: stack.unwrap_or(status.stack.clone()),
                ..status
            },
            notifier,
            http,
            triggers: rx,
            clusters: Arc::new(crate::kube::Clusters::new(interrupt.clone())),
            interrupt,
            feed,
            memory,
            owes_converged: false,
            source_down: None,
            clusters_down: BTreeMap::new(),
            next_retry: None,
            synced_once: false,
            settings,
            image_next: BTreeMap::new(),
            registries_down: BTreeMap::new(),
        })
    }

    /// The events raised so far.
    pub fn notifier(&self) -> Notifier {
        self.notifier.clone()
    }

    /// Its side of the HTTP API, for the listener that serves it.
    pub fn http(&self) -> Arc<AgentHttp> {
        self.http.clone()
    }

    pub(super) fn save(&mut self) {
        let not_ready = self.not_ready();
        self.status.not_ready = not_ready.clone();
        self.status.conditions = self.memory.active();
        let mut shown = serde_json::to_value(&self.status).unwrap_or_default();
        // The agent keeps running on a state dir it cannot write, but says so loudly: a
        // restart would start from the last status that was written.
        if let Err(e) = crate::state::agent_status::save(&self.opts.state_dir, &self.status) {
            tracing::error!("{e}");
            shown["state_error"] = e.to_string().into();
        }
        *self.http.status.lock().expect("status") = shown;
        *self.http.not_ready.lock().expect("not ready") = not_ready.clone();
        self.http
            .ready
            .store(not_ready.is_none(), Ordering::Relaxed);
    }

    /// Raises an alert about `condition`, with the stack's name and a complete summary.
    pub(super) fn event(
        &self,
        kind: EventType,
        revision: &str,
        layers: Vec<String>,
        condition: &str,
        summary: String,
    ) {
        self.http.metrics.alert(kind);
        self.notifier.notify(Event {
            kind,
            // On an agent of several stacks, the name it knows the stack by.
            stack: self.opts.stack.clone().unwrap_or(self.status.stack.clone()),
            env: self.opts.env.clone(),
            revision: revision.to_string(),
            layers,
            condition: condition.to_string(),
            summary: shorten(&summary, SUMMARY_MAX),
            time: crate::now_rfc3339(),
        });
    }

    pub(super) fn engine_options(&self) -> EngineOptions {
        // The engine finds an environment's state under the shared state dir itself.
        let mut o = match &self.opts.env {
            Some(env) => {
                let mut o = EngineOptions::new(&self.opts.source.state_dir);
                o.env = Some(env.clone());
                o
            }
            None => EngineOptions::new(&self.opts.state_dir),
        };
        o.terraform_env = self.opts.terraform_env.clone();
        o.cancel = self.interrupt.clone();
        o.clusters = Some(self.clusters.clone());
        o.progress = self.opts.progress;
        o.age_keys = self.opts.age_keys.clone();
        o.observer = Some(self.http.running.clone());
        o
    }
}
