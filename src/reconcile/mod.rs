//! `strata run`: the agent. It pulls the source every `poll_interval` (or at once on a signed
//! webhook), converges each new revision, checks for drift every `drift_interval`, corrects it
//! where a layer says so, raises alerts, writes reports and serves metrics. It never exits on a
//! layer or source error: it stays on the last good revision and says why.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::engine::record::{LayerStatus, RunReport};
use crate::engine::{Engine, EngineError, EngineOptions, Mode, Source};
use crate::notify::{AgentConfig, Event, EventType, Notifier};
use crate::redact::Redacted;
use crate::server::{AgentHttp, Metrics, Trigger};
use crate::source::{SourceOptions, SourceSpec};
use crate::stack::{DriftPolicy, LayerId, LayerKind};

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub spec: SourceSpec,
    pub source: SourceOptions,
    pub state_dir: PathBuf,
    /// HTTP listen address; `None` serves nothing.
    pub listen: Option<SocketAddr>,
    pub webhook_secret: Option<Redacted<Vec<u8>>>,
    pub config: AgentConfig,
    pub terraform_env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    /// On SIGTERM, how long a running apply may go on before it is interrupted. Default 30s.
    pub shutdown_grace: Duration,
    /// Override the stack's `poll_interval` / `drift_interval`.
    pub poll_interval: Option<Duration>,
    pub drift_interval: Option<Duration>,
    /// Converge once and return (bootstrap without --watch).
    pub once: bool,
    /// Plan every layer on the first sync (bootstrap).
    pub all_first: bool,
    pub progress: bool,
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
            config: AgentConfig::default(),
            terraform_env: Vec::new(),
            shutdown_grace: Duration::from_secs(30),
            poll_interval: None,
            drift_interval: None,
            once: false,
            all_first: false,
            progress: false,
        }
    }
}

/// A revision the agent will not apply, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    pub revision: String,
    pub reason: String,
}

/// What the agent knows of itself (`agent.json` in the state dir, and `/api/v1/status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// The revision last converged (or attempted).
    pub revision: Option<String>,
    /// The newest revision seen on the source.
    pub latest_seen: Option<String>,
    /// Pinned by `strata rollback`: new commits are reported, not applied.
    pub pinned: Option<String>,
    pub refused: Option<Refused>,
    /// The source could not be fetched since this time (RFC 3339).
    pub stale_since: Option<String>,
    pub last_sync: Option<String>,
    pub last_drift_check: Option<String>,
    /// Consecutive failed syncs (backoff grows with it).
    pub failures: u32,
    pub awaiting_approval: Vec<String>,
    pub ready: bool,
}

fn pin_path(state_dir: &Path) -> PathBuf {
    state_dir.join("pin")
}

/// The pinned revision, if `strata rollback` set one.
pub fn pinned(state_dir: &Path) -> Option<String> {
    std::fs::read_to_string(pin_path(state_dir))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

pub fn pin(state_dir: &Path, revision: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    std::fs::write(pin_path(state_dir), revision)
}

pub fn unpin(state_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(pin_path(state_dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Records an approval for a `apply = "manual"` layer, for the agent's next sync.
pub fn approve(state_dir: &Path, layer: &str) -> Result<(), String> {
    let name = layer.rsplit('.').next().unwrap_or(layer);
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!("invalid layer name \"{layer}\""));
    }
    let dir = state_dir.join("approvals");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::write(dir.join(name), crate::now_rfc3339()).map_err(|e| e.to_string())
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
    opts: AgentOptions,
    status: AgentStatus,
    notifier: Notifier,
    http: Arc<AgentHttp>,
    triggers: tokio::sync::mpsc::Receiver<Trigger>,
    /// Cancels running terraform (after the shutdown grace).
    interrupt: CancellationToken,
    /// Layers for which a `diff` alert was raised in the current drift episode.
    alerted: BTreeSet<LayerId>,
    next_retry: Option<Instant>,
    synced_once: bool,
    /// The settings of the stack as last opened.
    settings: Option<crate::stack::StackSettings>,
}

fn status_path(state_dir: &Path) -> PathBuf {
    state_dir.join("agent.json")
}

impl Agent {
    pub fn new(opts: AgentOptions) -> Agent {
        let status: AgentStatus = std::fs::read(status_path(&opts.state_dir))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let http = Arc::new(AgentHttp {
            metrics: Metrics::default(),
            status: std::sync::Mutex::new(serde_json::to_value(&status).unwrap_or_default()),
            ready: std::sync::atomic::AtomicBool::new(false),
            trigger: tx,
            webhook_secret: opts.webhook_secret.clone(),
            state_dir: opts.state_dir.clone(),
        });
        // The last converged revision's settings, until a sync opens a newer one.
        let settings = status.revision.as_ref().and_then(|r| {
            let root = crate::source::materialise::revision_dir(&opts.source.state_dir, r);
            let dir = opts
                .spec
                .path
                .as_ref()
                .map_or(root.clone(), |p| root.join(p));
            crate::stack::Stack::load(dir).ok().map(|s| s.settings)
        });
        let notifier = Notifier::new(
            opts.config.sinks.clone(),
            Some(opts.state_dir.join("alerts.jsonl")),
        );
        Agent {
            opts,
            status: AgentStatus {
                ready: false,
                ..status
            },
            notifier,
            http,
            triggers: rx,
            interrupt: CancellationToken::new(),
            alerted: BTreeSet::new(),
            next_retry: None,
            synced_once: false,
            settings,
        }
    }

    /// The events raised so far.
    pub fn notifier(&self) -> Notifier {
        self.notifier.clone()
    }

    fn save(&self) {
        let _ = std::fs::create_dir_all(&self.opts.state_dir);
        let _ = std::fs::write(
            status_path(&self.opts.state_dir),
            serde_json::to_vec_pretty(&self.status).expect("json"),
        );
        *self.http.status.lock().expect("status") =
            serde_json::to_value(&self.status).unwrap_or_default();
        self.http.ready.store(self.status.ready, Ordering::Relaxed);
    }

    fn event(&self, kind: EventType, revision: &str, layers: Vec<String>, summary: String) {
        self.notifier.notify(Event {
            kind,
            stack: String::new(),
            revision: revision.to_string(),
            layers,
            summary,
            time: crate::now_rfc3339(),
        });
    }

    fn engine_options(&self) -> EngineOptions {
        let mut o = EngineOptions::new(&self.opts.state_dir);
        o.terraform_env = self.opts.terraform_env.clone();
        o.cancel = self.interrupt.clone();
        o.progress = self.opts.progress;
        o.approve = crate::server::approvals(&self.opts.state_dir)
            .into_keys()
            .collect();
        o
    }

    /// Runs until `shutdown` (or, with `once`, until the first sync ends).
    pub async fn run(mut self, shutdown: CancellationToken) -> Ended {
        if let Some(addr) = self.opts.listen {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    let app = crate::server::router(self.http.clone());
                    let stop = shutdown.clone();
                    tokio::spawn(async move {
                        let _ = axum::serve(l, app)
                            .with_graceful_shutdown(async move { stop.cancelled().await })
                            .await;
                    });
                    tracing::info!("agent listening on http://{addr}");
                }
                Err(e) => tracing::warn!("failed to listen on {addr}: {e}; running without HTTP"),
            }
        }
        let mut next_poll = Instant::now();
        let mut next_drift: Option<Instant> = None;
        loop {
            enum Work {
                Sync,
                Drift,
                Stop,
            }
            let wake = [Some(next_poll), next_drift, self.next_retry]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(next_poll);
            let work = tokio::select! {
                _ = shutdown.cancelled() => Work::Stop,
                _ = tokio::time::sleep_until(wake.into()) => {
                    if next_drift.is_some_and(|d| d <= Instant::now()) { Work::Drift } else { Work::Sync }
                }
                t = self.triggers.recv() => match t { Some(_) => Work::Sync, None => Work::Stop },
            };
            let ended = match work {
                Work::Stop => return Ended::Clean,
                Work::Sync => {
                    let interrupted = self.guarded(&shutdown, true).await;
                    let (poll, drift) = self.intervals();
                    next_poll = Instant::now() + poll;
                    if next_drift.is_none() && self.status.revision.is_some() {
                        next_drift = Some(Instant::now() + drift);
                    }
                    interrupted
                }
                Work::Drift => {
                    let interrupted = self.guarded(&shutdown, false).await;
                    next_drift = Some(Instant::now() + self.intervals().1);
                    interrupted
                }
            };
            if ended {
                return Ended::Interrupted;
            }
            if self.opts.once {
                return if self.status.ready
                    && self.status.failures == 0
                    && self.status.refused.is_none()
                {
                    Ended::Clean
                } else {
                    Ended::NotConverged
                };
            }
        }
    }

    /// The poll and drift intervals: the flags', else the stack's (as of the last revision
    /// opened), else the defaults.
    fn intervals(&self) -> (Duration, Duration) {
        let settings = self.settings.clone().unwrap_or_default();
        (
            self.opts.poll_interval.unwrap_or(settings.poll_interval),
            self.opts.drift_interval.unwrap_or(settings.drift_interval),
        )
    }

    /// Runs a sync or drift check; on shutdown lets it finish within the grace period, then
    /// interrupts it. Returns whether something had to be interrupted.
    async fn guarded(&mut self, shutdown: &CancellationToken, sync: bool) -> bool {
        let grace = self.opts.shutdown_grace;
        let interrupt = self.interrupt.clone();
        let work = async {
            if sync {
                self.sync().await
            } else {
                self.drift().await
            }
        };
        tokio::pin!(work);
        tokio::select! {
            _ = &mut work => false,
            _ = shutdown.cancelled() => {
                tracing::warn!("stopping: letting the running step finish (up to {}s)", grace.as_secs());
                match tokio::time::timeout(grace, &mut work).await {
                    Ok(()) => false,
                    Err(_) => {
                        tracing::warn!("interrupting the running step");
                        interrupt.cancel();
                        work.await;
                        true
                    }
                }
            }
        }
    }

    /// Fetches, and converges a new (or failed, or newly approved) revision.
    pub async fn sync(&mut self) {
        self.status.last_sync = Some(crate::now_rfc3339());
        let pin = pinned(&self.opts.state_dir);
        self.status.pinned = pin.clone();
        // Always fetch the branch itself, so new commits are seen (and reported) while pinned.
        let (spec, sopts) = (self.opts.spec.clone(), self.opts.source.clone());
        let latest = tokio::task::spawn_blocking(move || crate::source::resolve(&spec, &sopts))
            .await
            .expect("source task");
        let rev = match (latest, &pin) {
            (Ok(rev), None) => rev,
            (Ok(rev), Some(p)) => {
                self.status.latest_seen = Some(rev.commit.clone());
                let mut spec = self.opts.spec.clone();
                spec.reference = Some(p.clone());
                let sopts = self.opts.source.clone();
                match tokio::task::spawn_blocking(move || crate::source::resolve(&spec, &sopts))
                    .await
                    .expect("source task")
                {
                    Ok(r) => r,
                    Err(e) => return self.source_failed(e),
                }
            }
            (Err(e), _) => return self.source_failed(e),
        };
        if pin.is_none() {
            self.status.latest_seen = Some(rev.commit.clone());
        }
        match &rev.stale {
            Some(s) => {
                self.http.metrics.fetch_errors.inc();
                if self.status.stale_since.is_none() {
                    let since = jiff::Timestamp::from_second(s.since as i64)
                        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                        .unwrap_or_default();
                    self.status.stale_since = Some(since);
                }
            }
            None => self.status.stale_since = None,
        }
        let commit = rev.commit.clone();
        if self
            .status
            .refused
            .as_ref()
            .is_some_and(|r| r.revision == commit)
        {
            self.save();
            return;
        }
        let is_new = self.status.revision.as_deref() != Some(commit.as_str());
        let retry_due =
            self.status.failures > 0 && self.next_retry.is_none_or(|t| t <= Instant::now());
        let approvals = !crate::server::approvals(&self.opts.state_dir).is_empty()
            && !self.status.awaiting_approval.is_empty();
        if !is_new && !retry_due && !approvals && self.synced_once {
            self.save();
            return;
        }
        let mut opts = self.engine_options();
        opts.all = self.opts.all_first && !self.synced_once;
        let source = Source::Repo {
            spec: self.opts.spec.clone(),
            opts: self.opts.source.clone(),
        };
        let engine = match Engine::open_revision(source, Some(rev), opts).await {
            Ok(e) => e,
            Err(EngineError::Invalid(diags)) => {
                let reason = format!(
                    "invalid stack: {}",
                    diags
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                self.refuse(&commit, reason);
                return;
            }
            Err(e) => {
                self.refuse(&commit, e.to_string());
                return;
            }
        };
        self.settings = Some(engine.stack.settings.clone());
        if is_new {
            let summary = engine
                .commit
                .as_ref()
                .map(|c| format!("new revision: \"{}\" by {}", c.summary, c.author))
                .unwrap_or_default();
            self.event(EventType::ChangeCommitted, &commit, vec![], summary);
        }
        self.status.refused = None;
        let report = match engine.run(Mode::Apply).await {
            Ok(r) => r,
            Err(e) => {
                self.failed(&commit, vec![], e.to_string());
                return;
            }
        };
        self.synced_once = true;
        self.http.metrics.record_run(&report);
        self.after_apply(&engine, &report);
    }

    fn after_apply(&mut self, engine: &Engine, report: &RunReport) {
        let commit = report.revision.clone();
        self.status.revision = Some(commit.clone());
        let failed: Vec<String> = report
            .layers
            .iter()
            .filter(|l| {
                matches!(
                    l.status,
                    LayerStatus::Failed | LayerStatus::Interrupted | LayerStatus::Skipped
                )
            })
            .map(|l| l.layer.to_string())
            .collect();
        self.status.awaiting_approval = report
            .layers
            .iter()
            .filter(|l| l.status == LayerStatus::AwaitingApproval)
            .map(|l| l.layer.to_string())
            .collect();
        for l in report
            .layers
            .iter()
            .filter(|l| l.status == LayerStatus::Applied)
        {
            let _ = std::fs::remove_file(self.opts.state_dir.join("approvals").join(&l.layer.name));
        }
        if failed.is_empty() {
            self.status.failures = 0;
            self.next_retry = None;
            self.status.ready = true;
            let summary = if self.status.awaiting_approval.is_empty() {
                "every layer converged".to_string()
            } else {
                format!(
                    "converged, except layers awaiting approval: {}",
                    self.status.awaiting_approval.join(", ")
                )
            };
            let changed: Vec<String> = report
                .layers
                .iter()
                .filter(|l| l.status == LayerStatus::Applied)
                .map(|l| l.layer.to_string())
                .collect();
            self.event(EventType::Converged, &commit, changed, summary);
            if self.opts.config.writeback_notes {
                writeback_note(engine, &self.opts, report);
            }
        } else {
            let details: Vec<String> = report
                .layers
                .iter()
                .filter(|l| matches!(l.status, LayerStatus::Failed | LayerStatus::Interrupted))
                .map(|l| {
                    format!(
                        "{}: {}",
                        l.layer,
                        l.detail
                            .clone()
                            .unwrap_or_default()
                            .lines()
                            .next()
                            .unwrap_or("")
                    )
                })
                .collect();
            self.failed(&commit, failed, details.join("; "));
            return;
        }
        self.save();
    }

    fn failed(&mut self, commit: &str, layers: Vec<String>, summary: String) {
        self.status.failures += 1;
        let secs = (10u64 << self.status.failures.min(5)).min(300);
        let jitter = u64::from(std::process::id() % 7);
        self.next_retry = Some(Instant::now() + Duration::from_secs(secs + jitter));
        self.event(EventType::Failed, commit, layers, summary);
        self.save();
    }

    fn refuse(&mut self, commit: &str, reason: String) {
        tracing::warn!(
            "revision {commit} refused: {reason}; staying on {}",
            self.status.revision.as_deref().unwrap_or("nothing")
        );
        self.status.refused = Some(Refused {
            revision: commit.to_string(),
            reason: reason.clone(),
        });
        self.event(
            EventType::Failed,
            commit,
            vec![],
            format!("revision refused, staying on the last good revision: {reason}"),
        );
        self.save();
    }

    fn source_failed(&mut self, e: crate::source::SourceError) {
        self.http.metrics.fetch_errors.inc();
        if let crate::source::SourceError::Verification { commit, reason } = &e {
            if self.status.refused.as_ref().map(|r| &r.revision) != Some(commit) {
                self.refuse(commit, reason.clone());
            }
            return;
        }
        if self.status.stale_since.is_none() {
            self.status.stale_since = Some(crate::now_rfc3339());
            self.event(
                EventType::Failed,
                self.status.revision.as_deref().unwrap_or(""),
                vec![],
                format!("the source can't be fetched: {e}"),
            );
        }
        self.save();
    }

    /// Checks every layer for drift; re-applies `drift = "correct"` layers; raises `diff` and
    /// `converged` alerts.
    pub async fn drift(&mut self) {
        let Some(revision) = self.status.revision.clone() else {
            return;
        };
        self.status.last_drift_check = Some(crate::now_rfc3339());
        let mut spec = self.opts.spec.clone();
        spec.reference = Some(revision.clone());
        let source = Source::Repo {
            spec,
            opts: self.opts.source.clone(),
        };
        let engine = match Engine::open(source.clone(), self.engine_options()).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("drift check skipped: {e}");
                return;
            }
        };
        let pending = self.status.latest_seen.clone().filter(|l| *l != revision);
        let mut report = match engine.diff(pending).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("drift check failed: {e}");
                return;
            }
        };
        self.http.metrics.record_drift(&report);
        let drifted: Vec<LayerId> = report
            .layers
            .iter()
            .filter(|l| l.state == crate::engine::DriftState::Drifted)
            .map(|l| l.layer.clone())
            .collect();
        let to_correct: BTreeSet<LayerId> = drifted
            .iter()
            .filter(|id| {
                engine
                    .stack
                    .layer(id)
                    .is_some_and(|l| l.drift == DriftPolicy::Correct)
            })
            .cloned()
            .collect();
        if !to_correct.is_empty() {
            let mut opts = self.engine_options();
            opts.only = Some(to_correct.clone());
            opts.force_plan = to_correct
                .iter()
                .filter(|l| l.kind == LayerKind::Terraform)
                .cloned()
                .collect();
            if let Ok(corrector) = Engine::open(source, opts).await {
                match corrector.run(Mode::Apply).await {
                    Ok(r) => {
                        self.http.metrics.record_run(&r);
                        report.corrected = r
                            .layers
                            .iter()
                            .filter(|l| {
                                matches!(l.status, LayerStatus::Applied | LayerStatus::Unchanged)
                            })
                            .map(|l| l.layer.clone())
                            .collect();
                    }
                    Err(e) => tracing::warn!("drift correction failed: {e}"),
                }
            }
        }
        if let Err(e) =
            crate::report::store::write(&self.opts.state_dir, &report, crate::report::store::KEEP)
        {
            tracing::warn!("failed to write the drift report: {e}");
        }
        // Alerts: `diff` once a layer has stayed divergent longer than alert_after (and was not
        // corrected); `converged` when every layer matches again after an alert.
        let still: Vec<LayerId> = drifted
            .into_iter()
            .filter(|d| !report.corrected.contains(d))
            .collect();
        let alert_after = engine.stack.settings.alert_after;
        let state = engine.state();
        let due: Vec<LayerId> = still
            .iter()
            .filter(|id| !self.alerted.contains(*id))
            .filter(|id| {
                state
                    .layer(id)
                    .and_then(|l| l.drift_since.as_deref())
                    .and_then(|s| s.parse::<jiff::Timestamp>().ok())
                    .is_none_or(|since| {
                        jiff::Timestamp::now().duration_since(since).as_secs() as u64
                            >= alert_after.as_secs()
                    })
            })
            .cloned()
            .collect();
        if !due.is_empty() {
            let names: Vec<String> = due.iter().map(ToString::to_string).collect();
            self.event(
                EventType::Diff,
                &revision,
                names.clone(),
                format!("drift in {}", names.join(", ")),
            );
            self.alerted.extend(due);
        }
        if still.is_empty() && (!self.alerted.is_empty() || !report.corrected.is_empty()) {
            let names: Vec<String> = report.corrected.iter().map(ToString::to_string).collect();
            let summary = if names.is_empty() {
                "every layer matches the revision again".to_string()
            } else {
                format!("drift corrected in {}", names.join(", "))
            };
            self.event(EventType::Converged, &revision, names, summary);
            self.alerted.clear();
        }
        self.alerted.retain(|a| still.contains(a));
        self.save();
    }
}

/// Writes a git note (`refs/notes/strata`) on the converged commit and pushes it, best effort.
fn writeback_note(engine: &Engine, opts: &AgentOptions, report: &RunReport) {
    let mirror = crate::source::mirror::mirror_dir(&opts.source.state_dir, &opts.spec.url);
    let applied: Vec<String> = report
        .layers
        .iter()
        .map(|l| format!("{} {}", l.layer, l.status.as_str()))
        .collect();
    let note = format!(
        "strata: stack \"{}\" converged at {}\n{}",
        engine.stack.name,
        report.finished,
        applied.join("\n")
    );
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(&mirror)
            .args(args)
            .env("GIT_AUTHOR_NAME", "strata")
            .env("GIT_AUTHOR_EMAIL", "strata@localhost")
            .env("GIT_COMMITTER_NAME", "strata")
            .env("GIT_COMMITTER_EMAIL", "strata@localhost")
            .output()
    };
    match git(&[
        "notes",
        "--ref=strata",
        "add",
        "-f",
        "-m",
        &note,
        &report.revision,
    ]) {
        Ok(o) if o.status.success() => {}
        _ => {
            tracing::warn!("failed to write the git note on {}", report.revision);
            return;
        }
    }
    match git(&["push", &opts.spec.url, "refs/notes/strata:refs/notes/strata"]) {
        Ok(o) if o.status.success() => tracing::info!("pushed the converged note for {}", report.revision),
        _ => tracing::warn!("could not push refs/notes/strata to the source (the agent may not push); the note stays in the mirror"),
    }
}
