//! Group commit: many tasks each need one small record made durable before they go on; one
//! write takes every record queued by then, and each task learns the outcome of the write that
//! carried its own. A file rewritten whole per record (`status.json`) costs a read, a
//! serialization and an fsync each time, so 1,000 layers recording themselves one by one made a
//! first apply quadratic and serialized every layer behind the file's lock.

use std::sync::Mutex;

/// Records of type `T` waiting for, and made durable by, batched writes.
pub struct GroupCommit<T> {
    queue: Mutex<Queue<T>>,
    /// Held by the one task writing a batch; the others queue behind it, and most find their
    /// record already written when their turn comes.
    writer: tokio::sync::Mutex<()>,
}

struct Queue<T> {
    pending: Vec<T>,
    /// The batch a record queued now goes out in.
    next: u64,
    /// Each written batch's outcome (an error as text), by number.
    done: Vec<Result<(), String>>,
}

impl<T: Send + 'static> Default for GroupCommit<T> {
    fn default() -> Self {
        GroupCommit {
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                next: 0,
                done: Vec::new(),
            }),
            writer: tokio::sync::Mutex::new(()),
        }
    }
}

impl<T: Send + 'static> GroupCommit<T> {
    /// Queues `record` and returns once a write that carried it ended: `Ok` only when that
    /// write succeeded. `write` gets every record queued by the time its batch starts (its
    /// caller's among them) and runs on a blocking thread; the batch's records are written
    /// together or the batch fails together.
    ///
    /// # Guarantees
    /// - A caller never returns `Ok` before its own record was written by a successful `write`.
    /// - Batches are written one at a time, in order; a record is in exactly one batch.
    pub async fn commit<F>(&self, record: T, write: F) -> Result<(), String>
    where
        F: FnOnce(Vec<T>) -> Result<(), String> + Send + 'static,
    {
        let ticket = {
            let mut q = self.queue.lock().expect("group commit queue");
            q.pending.push(record);
            q.next
        };
        let _turn = self.writer.lock().await;
        let batch = {
            let mut q = self.queue.lock().expect("group commit queue");
            if let Some(done) = q.done.get(ticket as usize) {
                return done.clone();
            }
            // Batches are taken in order under `writer`: the one not taken yet is this
            // caller's.
            debug_assert_eq!(q.next, ticket);
            q.next += 1;
            std::mem::take(&mut q.pending)
        };
        let outcome = tokio::task::spawn_blocking(move || write(batch))
            .await
            .unwrap_or_else(|e| Err(format!("the write was cancelled or panicked: {e}")));
        self.queue
            .lock()
            .expect("group commit queue")
            .done
            .push(outcome.clone());
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn every_record_is_written_once_and_callers_wait_for_their_own() {
        let log: Arc<Mutex<Vec<Vec<u32>>>> = Arc::default();
        let gc: Arc<GroupCommit<u32>> = Arc::default();
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let (gc, log) = (gc.clone(), log.clone());
            tasks.push(tokio::spawn(async move {
                let seen = log.clone();
                gc.commit(i, move |batch| {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    log.lock().unwrap().push(batch);
                    Ok(())
                })
                .await
                .unwrap();
                // Once committed, the record is in a written batch.
                assert!(seen.lock().unwrap().iter().flatten().any(|&r| r == i));
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let batches = log.lock().unwrap();
        let mut all: Vec<u32> = batches.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..200).collect::<Vec<_>>());
        assert!(
            batches.len() < 200,
            "records went out in batches: {}",
            batches.len()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_write_fails_every_record_it_carried_and_no_other() {
        let gc: Arc<GroupCommit<u32>> = Arc::default();
        // The first batch fails; a record queued while it is written goes out in the next one.
        let (started, is_started) = tokio::sync::oneshot::channel();
        let first = {
            let gc = gc.clone();
            tokio::spawn(async move {
                gc.commit(0, move |batch| {
                    assert_eq!(batch, vec![0]);
                    started.send(()).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    Err("disk full".into())
                })
                .await
            })
        };
        is_started.await.unwrap();
        let second = gc.commit(1, |batch| {
            assert_eq!(batch, vec![1]);
            Ok(())
        });
        assert_eq!(second.await, Ok(()));
        assert_eq!(first.await.unwrap(), Err("disk full".into()));
    }
}
