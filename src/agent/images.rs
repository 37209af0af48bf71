//! Image automation in the agent: every image's `interval`, its registry is listed; when its
//! policy selects a tag a marker does not hold, the marked lines are committed and pushed. A
//! push to the tracked branch is converged by the next sync, at once; a push to `push_branch`
//! is a proposal (`image_update_proposed`) and converges only once it reaches the branch.
//!
//! A registry that fails is a `degraded` condition of its own (`registry NAME`), alerted once
//! after `unreachable_after`; Git keeps converging meanwhile.

use std::time::{Duration, Instant};

use crate::images::scan::ScanError;
use crate::images::writeback::{self, WritebackOptions};
use crate::notify::EventType;
use crate::stack::Stack;

use super::Agent;

/// The condition of committing image updates.
const IMAGES: &str = "images";
/// The condition of the last proposal pushed to `push_branch`.
const PROPOSED: &str = "image proposal";
/// Bounds each git command of an update (clone, push).
const GIT_TIMEOUT: Duration = Duration::from_secs(120);

fn registry_key(image: &str) -> String {
    format!("registry {image}")
}

impl Agent {
    /// When image work is next due: the earliest image's next listing, if the converged
    /// revision declares images.
    pub(super) fn next_image_check(&self) -> Option<Instant> {
        self.image_next.values().min().copied()
    }

    /// The stack of the last converged revision, and its directory.
    fn converged_stack(&self) -> Option<(Stack, std::path::PathBuf)> {
        let revision = self.status.revision.as_ref()?;
        let root = crate::source::materialise::revision_dir(&self.opts.source.state_dir, revision);
        let dir = self
            .opts
            .spec
            .path
            .as_ref()
            .map_or(root.clone(), |p| root.join(p));
        let stack = Stack::load(&dir).ok()?;
        Some((stack, dir))
    }

    /// Plans image work after a sync: images of the converged revision not scheduled yet are
    /// due now, images no longer declared are forgotten.
    pub(super) fn schedule_images(&mut self) {
        let names: Vec<String> = self
            .converged_stack()
            .map(|(s, _)| s.images.into_iter().map(|i| i.name).collect())
            .unwrap_or_default();
        self.image_next.retain(|n, _| names.contains(n));
        for n in names {
            self.image_next.entry(n).or_insert_with(Instant::now);
        }
    }

    /// Lists the due images' registries and commits what moved. Returns whether a commit was
    /// pushed to the tracked branch (worth a sync at once).
    pub(super) async fn images(&mut self) -> bool {
        let now = Instant::now();
        let Some((stack, dir)) = self.converged_stack() else {
            self.image_next.clear();
            return false;
        };
        let due: Vec<String> = stack
            .images
            .iter()
            .filter(|i| self.image_next.get(&i.name).is_none_or(|t| *t <= now))
            .map(|i| i.name.clone())
            .collect();
        for i in &stack.images {
            if due.contains(&i.name) {
                self.image_next.insert(i.name.clone(), now + i.interval);
            }
        }
        if due.is_empty() {
            return false;
        }
        let report = crate::images::scan::scan(&stack, &dir, Some(&due)).await;
        for i in &report.images {
            match &i.error {
                Some(e) => self.registry_failed(&i.image, e),
                None => self.registry_up(&i.image),
            }
        }
        if report.updates() == 0 {
            return false;
        }
        let opts = WritebackOptions {
            url: self.opts.spec.url.clone(),
            path: self.opts.spec.path.clone(),
            tracked: self.opts.spec.reference.clone(),
            work_dir: writeback::work_dir(&self.opts.state_dir),
            timeout: GIT_TIMEOUT,
        };
        let wb = stack.writeback.clone().unwrap_or_default();
        let selected = writeback::selections(&report);
        let outcome = tokio::task::spawn_blocking(move || writeback::update(&opts, &wb, &selected))
            .await
            .expect("image update task");
        let revision = self.current();
        match outcome {
            Ok(o) => {
                self.memory.clear(IMAGES);
                let Some(commit) = o.commit else {
                    return false;
                };
                let changes = writeback::summary(&o.changes);
                if o.proposed {
                    if self.memory.raise(PROPOSED, &commit) {
                        self.event(
                            EventType::ImageUpdateProposed,
                            &commit,
                            vec![],
                            PROPOSED,
                            format!(
                                "image updates proposed on branch {} (for {}): {changes}",
                                o.pushed_to, o.branch
                            ),
                        );
                    }
                    false
                } else {
                    tracing::info!(
                        "committed image updates to {} as {commit}: {changes}",
                        o.pushed_to
                    );
                    true
                }
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::warn!("image updates not committed: {reason}");
                if self.memory.raise(IMAGES, &reason) {
                    self.event(
                        EventType::Failed,
                        &revision,
                        vec![],
                        IMAGES,
                        format!("image updates not committed: {reason}"),
                    );
                }
                self.save();
                false
            }
        }
    }

    fn registry_failed(&mut self, image: &str, e: &ScanError) {
        let key = registry_key(image);
        let since = *self
            .registries_down
            .entry(image.to_string())
            .or_insert_with(Instant::now);
        tracing::warn!("image {image}: {}", e.message);
        if since.elapsed() >= self.opts.unreachable_after && self.memory.raise(&key, &e.kind) {
            self.event(
                EventType::Degraded,
                &self.current(),
                vec![],
                &key,
                format!("image {image}: {}; Git keeps converging", e.message),
            );
            self.save();
        }
    }

    fn registry_up(&mut self, image: &str) {
        self.registries_down.remove(image);
        let key = registry_key(image);
        if self.memory.clear(&key) {
            self.event(
                EventType::Recovered,
                &self.current(),
                vec![],
                &key,
                format!("image {image}: the registry answers again"),
            );
            self.save();
        }
    }
}
