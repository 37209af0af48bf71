//! The state API is synchronous (its callers read and write state between awaits, as they would
//! a file); the PostgreSQL driver is async. The bridge is a thread of its own running a
//! single-threaded runtime that owns the pool: a caller hands it a future and blocks on a channel
//! for the result. No runtime is ever entered from a worker of another one (`Handle::block_on`
//! there panics or deadlocks), and the pool's background tasks always have their runtime.

use std::future::Future;
use std::pin::Pin;

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The handle to the store's thread; the thread lives as long as the process.
#[derive(Clone)]
pub(super) struct Bridge {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
}

/// The store's thread is gone (it panicked): no state can be read or written any more.
#[derive(Debug, thiserror::Error)]
#[error("the state store's thread stopped")]
pub struct BridgeGone;

impl Bridge {
    /// Starts the thread.
    ///
    /// # Errors
    /// The runtime or the thread cannot be created.
    pub(super) fn start() -> std::io::Result<Bridge> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("strata-state-store".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job);
                    }
                })
            })?;
        Ok(Bridge { jobs })
    }

    /// Runs `work` on the store's thread and waits for its result.
    ///
    /// # Errors
    /// [`BridgeGone`] when the thread stopped, or `work` panicked.
    pub(super) fn run<T, F>(&self, work: F) -> Result<T, BridgeGone>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.jobs
            .send(Box::pin(async move {
                let _ = tx.send(work.await);
            }))
            .map_err(|_| BridgeGone)?;
        rx.recv().map_err(|_| BridgeGone)
    }

    /// Runs `work` on the store's thread without waiting (releasing a lock from a `Drop`).
    pub(super) fn spawn<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let _ = self.jobs.send(Box::pin(work));
    }
}
