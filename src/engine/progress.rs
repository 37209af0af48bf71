//! Showing a run as it goes: on a terminal, a live table of layers (waiting / planning /
//! applying / done / failed / skipped) with elapsed times; otherwise one line per step on stderr,
//! and for long steps a line every 30 seconds saying they are still running.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::stack::LayerId;
use crate::util::duration::format_duration;

struct Row {
    state: String,
    since: Instant,
    done: bool,
}

struct Inner {
    rows: BTreeMap<LayerId, Row>,
    drawn: usize,
}

/// A run's progress display.
pub struct Progress {
    enabled: bool,
    tty: bool,
    order: Vec<LayerId>,
    inner: Mutex<Inner>,
}

/// How often a non-terminal display says a long step is still running.
const ALIVE_EVERY: Duration = Duration::from_secs(30);

impl Progress {
    pub fn new(enabled: bool, order: Vec<LayerId>) -> Arc<Progress> {
        let now = Instant::now();
        let rows = order
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    Row {
                        state: "waiting".into(),
                        since: now,
                        done: false,
                    },
                )
            })
            .collect();
        Arc::new(Progress {
            enabled,
            tty: std::io::stderr().is_terminal(),
            order,
            inner: Mutex::new(Inner { rows, drawn: 0 }),
        })
    }

    /// Sets a layer's state; `done` for final states.
    pub fn set(&self, id: &LayerId, state: &str, done: bool) {
        if !self.enabled {
            return;
        }
        let mut inner = self.inner.lock().expect("progress");
        inner.rows.insert(
            id.clone(),
            Row {
                state: state.to_string(),
                since: Instant::now(),
                done,
            },
        );
        if self.tty {
            self.redraw(&mut inner);
        } else {
            eprintln!("  {id}: {state}");
        }
    }

    fn redraw(&self, inner: &mut Inner) {
        let width = self
            .order
            .iter()
            .map(|i| i.to_string().len())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        if inner.drawn > 0 {
            out.push_str(&format!("\x1b[{}A", inner.drawn));
        }
        for id in &self.order {
            let row = &inner.rows[id];
            let elapsed = if row.done || row.state == "waiting" {
                String::new()
            } else {
                format!(
                    " ({})",
                    format_duration(Duration::from_secs(row.since.elapsed().as_secs()))
                )
            };
            let first = row.state.lines().next().unwrap_or("");
            out.push_str(&format!(
                "\x1b[2K  {:width$}  {first}{elapsed}\n",
                id.to_string()
            ));
        }
        inner.drawn = self.order.len();
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
    }

    /// Keeps the display alive until the returned handle is aborted.
    pub fn heartbeat(self: &Arc<Progress>) -> Option<tokio::task::JoinHandle<()>> {
        if !self.enabled {
            return None;
        }
        let me = self.clone();
        Some(tokio::spawn(async move {
            let every = if me.tty {
                Duration::from_secs(1)
            } else {
                ALIVE_EVERY
            };
            loop {
                tokio::time::sleep(every).await;
                let mut inner = me.inner.lock().expect("progress");
                if me.tty {
                    me.redraw(&mut inner);
                } else {
                    for id in &me.order {
                        let row = &inner.rows[id];
                        if !row.done && row.state != "waiting" && row.since.elapsed() >= ALIVE_EVERY
                        {
                            eprintln!(
                                "  {id}: still {} ({})",
                                row.state,
                                format_duration(Duration::from_secs(row.since.elapsed().as_secs()))
                            );
                        }
                    }
                }
            }
        }))
    }
}
