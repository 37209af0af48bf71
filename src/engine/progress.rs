//! Showing a run as it goes: on a terminal, a live table of layers (waiting / planning /
//! applying / done / failed / skipped) with elapsed times; otherwise one line per step on stderr,
//! and for long steps a line every 30 seconds saying they are still running.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::record::{DriftState, LayerReport};
use crate::stack::LayerId;
use crate::util::duration::format_duration;

/// What a layer is doing, or how it ended.
#[derive(Debug, Clone)]
pub enum Event {
    Planning,
    Applying,
    /// A Kubernetes layer's plan: dry runs against the cluster.
    Comparing,
    Terradiff,
    Kubediff,
    /// A plan or apply step ended, as reported.
    Done(Box<LayerReport>),
    /// A drift check ended.
    Checked(DriftState),
}

impl Event {
    /// Final: the elapsed time stops and no "still ..." line follows.
    pub fn is_done(&self) -> bool {
        matches!(self, Event::Done(_) | Event::Checked(_))
    }

    fn text(&self) -> String {
        match self {
            Event::Planning => "planning".into(),
            Event::Applying => "applying".into(),
            Event::Comparing => "comparing with the cluster".into(),
            Event::Terradiff => "terradiff".into(),
            Event::Kubediff => "kubediff".into(),
            Event::Done(report) => crate::report::run::final_line(report),
            Event::Checked(state) => state.as_str().into(),
        }
    }
}

struct Row {
    /// `None` until the layer starts.
    event: Option<Event>,
    state: String,
    since: Instant,
}

impl Row {
    /// Started and not done: worth an elapsed time.
    fn running(&self) -> bool {
        self.event.as_ref().is_some_and(|e| !e.is_done())
    }
}

struct Inner {
    rows: BTreeMap<LayerId, Row>,
    drawn: usize,
}

/// Told every step of every layer as it happens, whether or not a display is shown: the agent
/// keeps from it the layers it is running now, for its dashboard.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// A run (plan, apply or drift check) of `revision` starts.
    fn started(&self, _revision: &str) {}
    fn event(&self, layer: &LayerId, event: &Event);
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
                        event: None,
                        state: "waiting".into(),
                        since: now,
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

    /// Shows what a layer is doing now.
    pub fn set(&self, id: &LayerId, event: Event) {
        if !self.enabled {
            return;
        }
        let state = event.text();
        let mut inner = self.inner.lock().expect("progress");
        inner.rows.insert(
            id.clone(),
            Row {
                event: Some(event),
                state: state.clone(),
                since: Instant::now(),
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
            let elapsed = if !row.running() {
                String::new()
            } else {
                format!(
                    " ({})",
                    format_duration(Duration::from_secs(row.since.elapsed().as_secs()))
                )
            };
            let first = crate::report::summary_line(&row.state);
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
                        if row.running() && row.since.elapsed() >= ALIVE_EVERY {
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
