//! One agent process for every stack and environment: an [`Agent`] per environment of each
//! stack, each with its own state dir, lock, backoff, alert memory, approvals and pin, run side
//! by side so that one's failure, backoff or approval wait never holds another's sync. The
//! environments of a stack share its source's fetch ([`SourceFeed`]); every stack shares the
//! metrics, one HTTP listener ([`Hub`], `?stack=` and `?env=`) and a bound on how many sync at
//! once. With coordination, a stack runs only while this replica holds its Lease.
//!
//! Which environments: those named with `--env`, else every one the newest revision declares
//! (looked at again on every poll: an environment added to `strata.hcl` gets its agent, one
//! removed has its agent stopped, its state and objects left as they are). A stack without
//! `environment` blocks runs one agent, as it always did.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::feed::SourceFeed;
use super::{Agent, AgentOptions, Ended};
use crate::server::{Hub, Metrics};

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// An environment's `agent.json` is corrupt or unreadable.
    #[error("{place}: {source}")]
    State {
        /// `environment NAME`, `stack NAME` or both.
        place: String,
        #[source]
        source: crate::state::StateError,
    },
    /// `--coordination kubernetes`: the Leases cannot be reached.
    #[error(transparent)]
    Coordination(#[from] crate::coordination::CoordinationError),
}

/// How the agent of every stack and environment ended, and where each kept its state.
#[derive(Debug, Clone)]
pub struct FleetEnded {
    /// The worst of the environments' ends.
    pub ended: Ended,
    /// Each converged stack (`None`: the stack of `--repo`) and environment (`None`: a stack
    /// without environments), with its agent's state dir.
    pub state_dirs: Vec<(Option<String>, Option<String>, PathBuf)>,
}

/// How an agent of several stacks shares its work.
#[derive(Debug, Clone, Default)]
pub struct StacksPlan {
    /// At most this many stacks sync or check drift at once; 0: no bound.
    pub max_concurrent: usize,
    /// Share the stacks with other replicas through Kubernetes Leases.
    pub coordination: Option<crate::coordination::CoordinationOptions>,
}

/// The poll interval while no revision has been read (the stack's own is not known yet).
const DEFAULT_POLL: Duration = Duration::from_secs(30);

struct Running {
    stop: CancellationToken,
    task: JoinHandle<Ended>,
    state_dir: PathBuf,
}

/// One environment's end: stack, environment, state dir, how it ended.
type Entry = (Option<String>, Option<String>, PathBuf, Ended);

/// Converges every environment of `opts` (or those in `opts.envs`) until `shutdown`; with
/// `opts.once`, until each has synced once.
///
/// # Errors
/// An environment's `agent.json` cannot be read (it names the environment and how to recover).
pub async fn run_fleet(
    opts: AgentOptions,
    shutdown: CancellationToken,
) -> Result<FleetEnded, FleetError> {
    run_stacks(vec![opts], StacksPlan::default(), shutdown).await
}

/// Converges every stack of `stacks` side by side (each with its own state dir, source feed,
/// lock, backoff and alerts), behind one HTTP listener (the first stack's `listen`, secrets
/// and token), at most `plan.max_concurrent` syncing at once; with `plan.coordination`, only the
/// stacks whose Lease this replica holds.
///
/// # Errors
/// As [`run_fleet`]; with coordination, the Leases' cluster cannot be reached or the Leases
/// not listed.
pub async fn run_stacks(
    mut stacks: Vec<AgentOptions>,
    plan: StacksPlan,
    shutdown: CancellationToken,
) -> Result<FleetEnded, FleetError> {
    let metrics = Arc::new(Metrics::default());
    let first = stacks.first().cloned().expect("at least one stack");
    let hub = Arc::new(Hub::new(
        metrics.clone(),
        first.webhook_secret.clone(),
        first.api_token.clone(),
    ));
    hub.by_env
        .store(first.envs.len() != 1, std::sync::atomic::Ordering::Relaxed);
    hub.coordinated.store(
        plan.coordination.is_some(),
        std::sync::atomic::Ordering::Relaxed,
    );
    let slots = (plan.max_concurrent > 0)
        .then(|| Arc::new(tokio::sync::Semaphore::new(plan.max_concurrent)));
    for s in &mut stacks {
        s.slots = slots.clone();
    }
    // With Leases, the listener comes first: probes answer while the replica stands by.
    if let Some(addr) = first.listen {
        super::run::listen(addr, hub.clone(), &shutdown).await;
    }
    let entries: Vec<Result<Vec<Entry>, FleetError>> = match plan.coordination {
        None => {
            let mut tasks = Vec::new();
            for o in stacks {
                let (hub, metrics, stop) = (hub.clone(), metrics.clone(), shutdown.clone());
                tasks.push(tokio::spawn(stack_fleet(o, hub, metrics, stop)));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.push(t.await.unwrap_or_else(|_| Ok(Vec::new())));
            }
            all
        }
        Some(copts) => {
            let client = crate::coordination::client(&copts).await?;
            let names = stacks
                .iter()
                .map(|s| s.stack.clone().unwrap_or_else(|| "default".into()))
                .collect();
            let coordinator = crate::coordination::Coordinator::new(client, copts, names).await?;
            let by_name: BTreeMap<String, AgentOptions> = stacks
                .into_iter()
                .map(|s| (s.stack.clone().unwrap_or_else(|| "default".into()), s))
                .collect();
            let start: crate::coordination::StackTask<Result<Vec<Entry>, FleetError>> =
                Box::new(move |name, fence, stop| {
                    let mut o = by_name[name].clone();
                    o.fence = Some(fence);
                    let (hub, metrics, stack) = (hub.clone(), metrics.clone(), o.stack.clone());
                    Box::pin(async move {
                        let ended = stack_fleet(o, hub.clone(), metrics, stop).await;
                        // Its Lease is given back and taken again later: said at once, not
                        // only when the agent stops.
                        if let Err(e) = &ended {
                            tracing::error!("{e}");
                        }
                        // Another replica serves it from now on.
                        hub.remove_stack(stack.as_deref());
                        ended
                    })
                });
            coordinator.run(shutdown, start).await
        }
    };
    let mut ended: Vec<Entry> = Vec::new();
    for e in entries {
        ended.extend(e?);
    }
    ended.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let worst = if ended.iter().any(|e| e.3 == Ended::Interrupted) {
        Ended::Interrupted
    } else if ended.iter().any(|e| e.3 == Ended::NotConverged) {
        Ended::NotConverged
    } else {
        Ended::Clean
    };
    Ok(FleetEnded {
        ended: worst,
        state_dirs: ended.into_iter().map(|(s, e, d, _)| (s, e, d)).collect(),
    })
}

/// Converges every environment of one stack until `shutdown`.
async fn stack_fleet(
    opts: AgentOptions,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<Vec<Entry>, FleetError> {
    let feed = Arc::new(SourceFeed::new(opts.spec.clone(), opts.source.clone()));
    let stack = opts.stack.clone();
    let mut running: BTreeMap<Option<String>, Running> = BTreeMap::new();
    let mut ended: Vec<Entry> = Vec::new();
    let start = |key: &Option<String>| -> Result<Running, FleetError> {
        let mut o = opts.clone();
        o.listen = None;
        if let Some(env) = key {
            o = o.for_env(env);
        }
        let state_dir = o.state_dir.clone();
        let agent = Agent::member(o, metrics.clone(), feed.clone()).map_err(|source| {
            let place = match (&stack, key) {
                (Some(s), Some(e)) => format!("stack {s}, environment {e}"),
                (Some(s), None) => format!("stack {s}"),
                (None, Some(e)) => format!("environment {e}"),
                (None, None) => "environment (none)".to_string(),
            };
            FleetError::State { place, source }
        })?;
        hub.add(agent.http());
        let stop = shutdown.child_token();
        let task = tokio::spawn(agent.run(stop.clone()));
        Ok(Running {
            stop,
            task,
            state_dir,
        })
    };
    let poll = opts.poll_interval;
    let mut next = Instant::now();
    loop {
        let wanted = if opts.envs.is_empty() {
            let since = next;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                w = wanted_envs(&feed, since, &opts) => w,
            }
        } else {
            Some(Wanted {
                envs: opts.envs.iter().cloned().map(Some).collect(),
                interval: None,
                complete: true,
            })
        };
        let interval = wanted
            .as_ref()
            .and_then(|w| w.interval)
            .unwrap_or(poll.unwrap_or(DEFAULT_POLL));
        // A stack file with errors may have lost an environment block to them: its agent keeps
        // running (and reports the revision refused) rather than being stopped by a typo.
        let wanted = wanted.map(|w| {
            if w.complete {
                w.envs
            } else {
                let mut all = w.envs;
                all.extend(
                    running
                        .keys()
                        .filter(|k| !all.contains(k))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
                all
            }
        });
        // The revision could not be read: keep what runs; with nothing running yet, start
        // the environments a previous agent left state for, else one agent that says why.
        let wanted = match wanted {
            Some(w) => w,
            None if running.is_empty() => {
                let known = envs_with_state(&opts.source.state_dir);
                if known.is_empty() {
                    vec![None]
                } else {
                    known.into_iter().map(Some).collect()
                }
            }
            None => running.keys().cloned().collect(),
        };
        for key in running.keys().cloned().collect::<Vec<_>>() {
            if !wanted.contains(&key) {
                let r = running.remove(&key).expect("running");
                tracing::info!(
                    "environment {} is no longer declared: its agent stops (its state and objects stay)",
                    key.as_deref().unwrap_or("(none)")
                );
                r.stop.cancel();
                if let Some(name) = &key {
                    hub.remove(stack.as_deref(), name);
                }
                let e = r.task.await.unwrap_or(Ended::Interrupted);
                ended.push((stack.clone(), key, r.state_dir, e));
            }
        }
        for key in &wanted {
            if !running.contains_key(key) {
                let r = start(key)?;
                running.insert(key.clone(), r);
            }
        }
        if opts.once || !opts.envs.is_empty() {
            break;
        }
        next = feed.next_tick(Instant::now(), interval);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep_until(next.into()) => {}
        }
    }
    for (key, r) in running {
        let e = r.task.await.unwrap_or(Ended::Interrupted);
        ended.push((stack.clone(), key, r.state_dir, e));
    }
    Ok(ended)
}

/// The environments to converge.
struct Wanted {
    /// `[None]` for a stack without environments.
    envs: Vec<Option<String>>,
    /// The stack's poll interval (or the flag's).
    interval: Option<Duration>,
    /// The stack file read without errors: an environment missing from it was removed.
    complete: bool,
}

/// The environments the newest revision declares and its poll interval; `None` when the source
/// or its stack file cannot be read.
async fn wanted_envs(feed: &SourceFeed, since: Instant, opts: &AgentOptions) -> Option<Wanted> {
    let rev = match feed.latest(since).await {
        Ok(rev) => rev,
        Err(e) => {
            tracing::warn!("cannot list the environments: {e}");
            return None;
        }
    };
    let dir = rev.stack_dir.clone();
    let stack = tokio::task::spawn_blocking(move || crate::stack::Stack::load_partial(&dir))
        .await
        .expect("stack task");
    match stack {
        Ok((stack, diags)) => {
            let names = stack.environment_names();
            let poll = opts.poll_interval.unwrap_or(stack.settings.poll_interval);
            let wanted = if names.is_empty() {
                vec![None]
            } else {
                names.into_iter().map(Some).collect()
            };
            Some(Wanted {
                envs: wanted,
                interval: Some(poll),
                complete: diags.is_empty(),
            })
        }
        Err(d) => {
            tracing::warn!(
                "cannot list the environments of revision {}: {d}",
                rev.commit
            );
            None
        }
    }
}

/// The environments a state dir holds state for (`envs/NAME/agent.json`).
fn envs_with_state(state_dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("envs")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| crate::state::agent_status::exists(&e.path()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    names
}
