//! Group commit: many tasks each need one small record made durable before they go on; one
//! write takes every record queued by then, and each task learns the outcome of the write that
//! carried its own. A file rewritten whole per record (`status.json`) costs a read, a
//! serialization and an fsync each time, so 1,000 layers recording themselves one by one made a
//! first apply quadratic and serialized every layer behind the file's lock.

use std::collections::BTreeMap;
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
    /// Each written (or abandoned) batch's outcome, an error as text, by number.
    done: BTreeMap<u64, Result<(), String>>,
}

impl<T: Send + 'static> Default for GroupCommit<T> {
    fn default() -> Self {
        GroupCommit {
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                next: 0,
                done: BTreeMap::new(),
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
        let (number, batch) = {
            let mut q = self.queue.lock().expect("group commit queue");
            // Every batch before `next` has its outcome by now (written, or abandoned by a
            // writer whose task was dropped): the caller's, when its record went out in one.
            if let Some(done) = q.done.get(&ticket) {
                return done.clone();
            }
            // Batches are taken in order under `writer`: the one not taken yet is the caller's.
            let number = q.next;
            q.next += 1;
            (number, std::mem::take(&mut q.pending))
        };
        let mut abandoned = Abandoned {
            queue: &self.queue,
            number,
            armed: true,
        };
        let outcome = tokio::task::spawn_blocking(move || write(batch))
            .await
            .unwrap_or_else(|e| Err(format!("the write was cancelled or panicked: {e}")));
        abandoned.armed = false;
        self.queue
            .lock()
            .expect("group commit queue")
            .done
            .insert(number, outcome.clone());
        outcome
    }
}

/// A batch taken for writing whose writer's task may be dropped before the write's outcome is
/// known: the batch is then failed for every record in it (the write may still finish; a record
/// written but reported failed only stops its caller, which is the safe side).
struct Abandoned<'a, T> {
    queue: &'a Mutex<Queue<T>>,
    number: u64,
    armed: bool,
}

impl<T> Drop for Abandoned<'_, T> {
    fn drop(&mut self) {
        if self.armed {
            if let Ok(mut q) = self.queue.lock() {
                q.done.insert(
                    self.number,
                    Err("the write carrying this record was abandoned before it ended".into()),
                );
            }
        }
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_writer_dropped_mid_write_fails_the_records_of_its_batch_instead_of_passing_them() {
        let gc: Arc<GroupCommit<u32>> = Arc::default();
        let (started, is_started) = tokio::sync::oneshot::channel();
        // A writer holding the turn, so that records 1 and 2 queue into the next batch.
        let holder = {
            let gc = gc.clone();
            tokio::spawn(async move {
                gc.commit(0, move |_| {
                    started.send(()).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    Ok(())
                })
                .await
            })
        };
        is_started.await.unwrap();
        let (second_writing, is_writing) = tokio::sync::oneshot::channel();
        let dropped = {
            let gc = gc.clone();
            tokio::spawn(async move {
                gc.commit(1, move |_| {
                    second_writing.send(()).unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    Err("never seen: its writer was dropped".into())
                })
                .await
            })
        };
        // Record 1 queued (its task then waits for the turn in the same poll) before record 2.
        while gc.queue.lock().unwrap().pending.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let waiter = {
            let gc = gc.clone();
            tokio::spawn(async move { gc.commit(2, |_| Ok(())).await })
        };
        assert_eq!(holder.await.unwrap(), Ok(()));
        is_writing.await.unwrap();
        // Record 1's writer (which took records 1 and 2) is dropped mid-write.
        dropped.abort();
        let outcome = waiter.await.unwrap();
        assert!(
            outcome.as_ref().is_err_and(|e| e.contains("abandoned")),
            "{outcome:?}"
        );
        // The next record goes out in a batch of its own.
        assert_eq!(
            gc.commit(3, |b| if b == vec![3] {
                Ok(())
            } else {
                Err(format!("{b:?}"))
            })
            .await,
            Ok(())
        );
    }
}
