//! The coordination loop of one replica. Every third of the lease duration it renews its
//! heartbeat Lease and the stack Leases it holds, reads every strata Lease of the namespace,
//! counts the live replicas, and takes free stacks up to its share — ceil(stacks / live
//! replicas) — or gives back what it holds beyond it. A stack's work runs only while its Lease
//! is held: it is started when the Lease is taken, and stopped when it is given back or lost.
//! A Lease is given back (holder cleared, so another replica takes it at once) only after the
//! stack's work has stopped, never while an apply runs.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::lease::{self, Seen, KIND_LABEL};
use super::{CoordinationError, CoordinationOptions, Fence};

/// Starts the work of one stack: its name, the fence it asks before each apply, and the token
/// that stops it.
pub type StackTask<T> =
    Box<dyn Fn(&str, Fence, CancellationToken) -> Pin<Box<dyn Future<Output = T> + Send>> + Send>;

/// A stack Lease this replica holds.
struct Held {
    /// As last written (its resourceVersion is the one the next update must match).
    lease: Lease,
    /// When it lapses if not renewed: the moment the last successful write was sent, plus the
    /// duration (the API server stored it after that moment).
    valid_until: Instant,
    fence: Fence,
    stop: CancellationToken,
    /// Being given back: its work stops, then the holder is cleared.
    releasing: bool,
}

pub struct Coordinator {
    opts: CoordinationOptions,
    api: Api<Lease>,
    stacks: Vec<String>,
    seen: BTreeMap<String, Seen>,
    held: BTreeMap<String, Held>,
    heartbeat: Option<Lease>,
    /// When the first heartbeat was written: stacks are taken one renewal later, so replicas
    /// started together see each other before taking shares.
    started: Option<Instant>,
    /// Stacks this replica gave back, and until when it leaves them to the others.
    cooldown: BTreeMap<String, Instant>,
}

fn is_code(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl Coordinator {
    /// A coordinator for `stacks`, with the Leases in `opts.namespace` of `client`'s cluster.
    ///
    /// # Errors
    /// The Leases there cannot be listed (no such namespace, or the service account may not).
    pub async fn new(
        client: kube::Client,
        opts: CoordinationOptions,
        stacks: Vec<String>,
    ) -> Result<Coordinator, CoordinationError> {
        let api: Api<Lease> = Api::namespaced(client, &opts.namespace);
        api.list(&ListParams::default().labels(KIND_LABEL).limit(1))
            .await
            .map_err(|source| CoordinationError::Api {
                namespace: opts.namespace.clone(),
                verb: "listed",
                source,
            })?;
        let mut c = Coordinator {
            opts,
            api,
            stacks,
            seen: BTreeMap::new(),
            held: BTreeMap::new(),
            heartbeat: None,
            started: None,
            cooldown: BTreeMap::new(),
        };
        // The first heartbeat says at once whether this replica may write Leases there: a
        // replica that cannot would stand by forever, looking healthy.
        c.write_heartbeat()
            .await
            .map_err(|source| CoordinationError::Api {
                namespace: c.opts.namespace.clone(),
                verb: "written",
                source,
            })?;
        Ok(c)
    }

    /// Runs until `shutdown`, then stops every stack's work and gives each Lease back as soon
    /// as its work has stopped. Returns what each stack's work returned, in the order it ended.
    ///
    /// # Guarantees
    /// A stack's work runs only while this replica holds its Lease; it is told to stop when the
    /// Lease is given back or lost (its fence closes first, so no new apply starts), and the
    /// Lease is given back only after it stopped.
    pub async fn run<T: Send + 'static>(
        mut self,
        shutdown: CancellationToken,
        start: StackTask<T>,
    ) -> Vec<T> {
        let mut tasks: JoinSet<T> = JoinSet::new();
        let mut names: BTreeMap<tokio::task::Id, String> = BTreeMap::new();
        let mut ended = Vec::new();
        let mut next = Instant::now();
        let mut stopping = false;
        loop {
            if stopping && tasks.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    for h in self.held.values_mut() {
                        h.fence.close();
                        h.stop.cancel();
                    }
                }
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let (id, out) = match done {
                        Ok((id, out)) => (id, Some(out)),
                        Err(e) => (e.id(), None),
                    };
                    let name = names.remove(&id).unwrap_or_default();
                    if let Some(out) = out {
                        ended.push(out);
                    } else {
                        tracing::error!("the work of stack {name} panicked");
                    }
                    self.give_back(&name).await;
                }
                _ = tokio::time::sleep_until(next.into()) => {
                    next = Instant::now() + self.opts.renew_every();
                    let running: BTreeSet<String> = names.values().cloned().collect();
                    for name in self.tick(stopping, &running).await {
                        let h = &self.held[&name];
                        h.fence.watch(h.stop.clone());
                        let work = start(&name, h.fence.clone(), h.stop.clone());
                        let handle = tasks.spawn(work);
                        names.insert(handle.id(), name);
                    }
                }
            }
        }
        // Every stack's work has stopped and its Lease was given back: the heartbeat goes too,
        // so the others count one replica less at once.
        if let Some(hb) = self.heartbeat.take() {
            let name = hb.metadata.name.clone().unwrap_or_default();
            if let Err(e) = self.api.delete(&name, &DeleteParams::default()).await {
                tracing::warn!("failed to delete the heartbeat Lease {name}: {e}");
            }
        }
        ended
    }

    /// Gives back the Lease of `stack`, whose work has stopped: its holder is cleared (unless it
    /// was lost meanwhile), and this replica leaves it to the others for a lease duration.
    async fn give_back(&mut self, stack: &str) {
        let Some(h) = self.held.remove(stack) else {
            return;
        };
        self.cooldown
            .insert(stack.to_string(), Instant::now() + self.opts.lease_duration);
        let name = lease::stack_lease_name(stack);
        match self
            .api
            .replace(&name, &PostParams::default(), &lease::released(&h.lease))
            .await
        {
            Ok(_) => tracing::info!("stack {stack}: Lease {name} given back"),
            Err(e) if is_code(&e, 409) => {
                tracing::warn!("stack {stack}: Lease {name} was taken by another replica meanwhile")
            }
            Err(e) => tracing::warn!(
                "stack {stack}: failed to give back Lease {name} ({e}); it lapses in {}s",
                self.opts.lease_duration.as_secs()
            ),
        }
    }

    /// One round: heartbeat, renewals, then (unless stopping) the share. Returns the stacks
    /// newly taken, whose work is to start.
    async fn tick(&mut self, stopping: bool, running: &BTreeSet<String>) -> Vec<String> {
        self.beat().await;
        match self
            .api
            .list(&ListParams::default().labels(KIND_LABEL))
            .await
        {
            Ok(list) => lease::observe(&mut self.seen, list.items, Instant::now()),
            Err(e) => tracing::warn!("failed to list the Leases in {}: {e}", self.opts.namespace),
        }
        self.renew().await;
        self.drained();
        let now = Instant::now();
        self.cooldown.retain(|_, until| *until > now);
        if stopping
            || self
                .started
                .is_none_or(|s| now < s + self.opts.renew_every())
        {
            return Vec::new();
        }
        let share = self.share(now);
        let mine: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| !h.releasing)
            .map(|(n, _)| n.clone())
            .collect();
        if mine.len() > share || (mine.len() == share && self.most_loaded(now)) {
            // Beyond its share, or the most loaded while another replica idles: gives back one
            // a round, so the others take it and the share settles.
            if let Some(name) = mine.last() {
                tracing::info!(
                    "stack {name}: giving its Lease back to spread the stacks ({} held, share {share})",
                    mine.len()
                );
                let h = self.held.get_mut(name).expect("held");
                h.releasing = true;
                h.fence.close();
            }
            self.drained();
            return Vec::new();
        }
        let mut taken = Vec::new();
        let mut count = mine.len();
        for stack in self.stacks.clone() {
            if count >= share {
                break;
            }
            if self.held.contains_key(&stack)
                || running.contains(&stack)
                || self.cooldown.contains_key(&stack)
            {
                continue;
            }
            if self.take(&stack, now).await {
                taken.push(stack);
                count += 1;
            }
        }
        taken
    }

    /// Stops the work of the stacks being given back once it is idle: a sync or drift check
    /// running when the stack was chosen finishes first (the Lease is renewed meanwhile), it is
    /// never interrupted to spread the load.
    fn drained(&self) {
        for h in self.held.values() {
            if h.releasing && h.fence.idle() && !h.stop.is_cancelled() {
                h.stop.cancel();
            }
        }
    }

    /// The live replicas: those whose heartbeat Lease was renewed within its duration, and
    /// this one.
    fn live(&self, now: Instant) -> BTreeSet<String> {
        let mut live: BTreeSet<String> = self
            .seen
            .values()
            .filter(|s| is_kind(s, "replica"))
            .filter_map(|s| s.held_at(now).map(str::to_string))
            .collect();
        live.insert(self.opts.replica_id.clone());
        live
    }

    /// This replica's share: ceil(stacks / live replicas).
    fn share(&self, now: Instant) -> usize {
        share_of(self.stacks.len(), self.live(now).len())
    }

    /// Whether every stack is held, this replica holds the most (first by id among equals),
    /// and a live replica holds two fewer or more: then it gives one back for that one to take.
    fn most_loaded(&self, now: Instant) -> bool {
        let all_held = self.stacks.iter().all(|s| {
            self.seen
                .get(&lease::stack_lease_name(s))
                .is_some_and(|l| l.held_at(now).is_some())
        });
        if !all_held {
            return false;
        }
        let mut load: BTreeMap<String, usize> =
            self.live(now).into_iter().map(|r| (r, 0)).collect();
        for s in self.seen.values().filter(|s| is_kind(s, "stack")) {
            if let Some(holder) = s.held_at(now) {
                if let Some(n) = load.get_mut(holder) {
                    *n += 1;
                }
            }
        }
        let max = load.values().copied().max().unwrap_or(0);
        let min = load.values().copied().min().unwrap_or(0);
        let first_max = load
            .iter()
            .find(|(_, n)| **n == max)
            .map(|(r, _)| r.clone());
        max >= min + 2 && first_max.as_deref() == Some(self.opts.replica_id.as_str())
    }

    /// Takes the Lease of `stack` if it is free (absent, without holder, or lapsed).
    async fn take(&mut self, stack: &str, now: Instant) -> bool {
        let name = lease::stack_lease_name(stack);
        let (ns, id, d) = (
            &self.opts.namespace,
            &self.opts.replica_id,
            self.opts.lease_duration,
        );
        let sent = Instant::now();
        let written = match self.seen.get(&name) {
            Some(s) if s.held_at(now).is_some() => return false,
            Some(s) => {
                self.api
                    .replace(
                        &name,
                        &PostParams::default(),
                        &lease::taken(&s.lease, id, d),
                    )
                    .await
            }
            None => {
                self.api
                    .create(
                        &PostParams::default(),
                        &lease::new_lease(&name, ns, "stack", id, d),
                    )
                    .await
            }
        };
        match written {
            Ok(lease) => {
                tracing::info!("stack {stack}: Lease {name} taken by {id}");
                let valid_until = sent + d;
                self.held.insert(
                    stack.to_string(),
                    Held {
                        lease,
                        valid_until,
                        fence: Fence::new(valid_until, d / 2),
                        stop: CancellationToken::new(),
                        releasing: false,
                    },
                );
                true
            }
            // Another replica wrote it first: it is theirs.
            Err(e) if is_code(&e, 409) => false,
            Err(e) => {
                tracing::warn!("stack {stack}: failed to take Lease {name}: {e}");
                false
            }
        }
    }

    /// Renews every Lease held. One that another replica wrote (409), that is gone, or that
    /// could not be renewed within its duration is lost: its work is stopped at once.
    async fn renew(&mut self) {
        let d = self.opts.lease_duration;
        let mut lost = Vec::new();
        for (stack, h) in &mut self.held {
            let name = lease::stack_lease_name(stack);
            let sent = Instant::now();
            match self
                .api
                .replace(&name, &PostParams::default(), &lease::renewed(&h.lease))
                .await
            {
                Ok(l) => {
                    h.lease = l;
                    h.valid_until = sent + d;
                    h.fence.extend(h.valid_until);
                }
                Err(e) if is_code(&e, 409) || is_code(&e, 404) => {
                    tracing::error!("stack {stack}: Lease {name} lost ({e}): stopping its work");
                    lost.push(stack.clone());
                }
                Err(e) if Instant::now() >= h.valid_until => {
                    tracing::error!(
                        "stack {stack}: Lease {name} lapsed, not renewed for {}s ({e}): stopping its work",
                        d.as_secs()
                    );
                    lost.push(stack.clone());
                }
                Err(e) => tracing::warn!("stack {stack}: failed to renew Lease {name}: {e}"),
            }
        }
        for stack in lost {
            let h = self.held.remove(&stack).expect("held");
            h.fence.close();
            h.stop.cancel();
        }
    }

    /// Writes the heartbeat Lease, and sweeps those of replicas gone for good.
    async fn beat(&mut self) {
        if let Err(e) = self.write_heartbeat().await {
            tracing::warn!(
                "failed to write the heartbeat Lease {}: {e}",
                lease::replica_lease_name(&self.opts.replica_id)
            );
        }
        self.sweep().await;
    }

    /// Renews the heartbeat Lease, or creates it (again, if it was removed).
    ///
    /// # Errors
    /// The API server refused or did not answer.
    async fn write_heartbeat(&mut self) -> Result<(), kube::Error> {
        let (ns, id, d) = (
            &self.opts.namespace,
            &self.opts.replica_id,
            self.opts.lease_duration,
        );
        let name = lease::replica_lease_name(id);
        let written = match &self.heartbeat {
            Some(l) => {
                match self
                    .api
                    .replace(&name, &PostParams::default(), &lease::renewed(l))
                    .await
                {
                    Err(e) if is_code(&e, 404) || is_code(&e, 409) => None,
                    other => Some(other),
                }
            }
            None => None,
        };
        let written = match written {
            Some(w) => w,
            None => {
                let fresh = lease::new_lease(&name, ns, "replica", id, d);
                match self.api.create(&PostParams::default(), &fresh).await {
                    Err(e) if is_code(&e, 409) => match self.api.get(&name).await {
                        Ok(old) => {
                            self.api
                                .replace(&name, &PostParams::default(), &lease::taken(&old, id, d))
                                .await
                        }
                        Err(e) => Err(e),
                    },
                    other => other,
                }
            }
        };
        let l = written?;
        self.heartbeat = Some(l);
        self.started.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Deletes the heartbeat Leases of replicas gone for good (lapsed for ten durations), so
    /// replica ids that change on every start do not pile up.
    async fn sweep(&mut self) {
        let now = Instant::now();
        let gone: Vec<(String, String)> = self
            .seen
            .iter()
            .filter(|(_, s)| is_kind(s, "replica"))
            .filter(|(_, s)| now.saturating_duration_since(s.since) >= s.duration * 10)
            .map(|(n, s)| (n.clone(), s.resource_version.clone()))
            .collect();
        for (name, rv) in gone {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    resource_version: Some(rv),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            if self.api.delete(&name, &dp).await.is_ok() {
                self.seen.remove(&name);
            }
        }
    }
}

fn is_kind(s: &Seen, kind: &str) -> bool {
    s.lease
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(KIND_LABEL))
        .is_some_and(|k| k == kind)
}

/// The replica's share of `stacks` among `live` replicas (for the docs' arithmetic and tests).
pub fn share_of(stacks: usize, live: usize) -> usize {
    stacks.div_ceil(live.max(1))
}

#[cfg(test)]
mod tests {
    use super::share_of;

    #[test]
    fn the_share_rounds_up_so_every_stack_has_a_replica() {
        assert_eq!(share_of(4, 3), 2);
        assert_eq!(share_of(4, 1), 4);
        assert_eq!(share_of(200, 3), 67);
        assert_eq!(share_of(2, 5), 1);
        assert_eq!(share_of(3, 0), 3);
    }
}
