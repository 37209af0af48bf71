//! The layers an environment's agent is running now (planning, comparing with the cluster,
//! applying), kept in memory from the engine's progress events: the dashboard colours them
//! *applying* and `/api/v1/status` lists them under `applying`.
//!
//! Memory, not a file: after a crash nothing runs, and a file would say otherwise. A layer
//! leaves the set when its step ends, and the agent empties it whenever a sync or drift check
//! ends, however it ends, so that a step that never reported its end is not shown running on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::engine::progress::{Event, Observer};
use crate::stack::LayerId;

/// What a running layer is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Planning,
    /// A Kubernetes layer's plan: dry runs against the cluster.
    Comparing,
    Applying,
}

impl Step {
    pub fn words(self) -> &'static str {
        match self {
            Step::Planning => "planning",
            Step::Comparing => "comparing with the cluster",
            Step::Applying => "applying",
        }
    }
}

/// One running layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activity {
    pub step: Step,
    /// When the step started (RFC 3339).
    pub since: String,
}

/// What the agent runs now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Now {
    /// The revision of the sync or drift check under way.
    pub revision: Option<String>,
    /// The layers running, by id (`terraform.net`).
    pub layers: BTreeMap<String, Activity>,
}

/// What the agent runs now, updated from the engine's events.
#[derive(Debug, Default)]
pub struct Running {
    now: Mutex<Now>,
}

impl Running {
    /// What runs now.
    pub fn snapshot(&self) -> Now {
        self.now.lock().expect("running layers").clone()
    }

    /// Nothing runs any more (a sync or drift check ended).
    pub fn clear(&self) {
        *self.now.lock().expect("running layers") = Now::default();
    }

    /// Empties the set when the returned guard is dropped, however the work it spans ends.
    pub fn until_done(self: &Arc<Running>) -> ClearOnDrop {
        ClearOnDrop(self.clone())
    }
}

impl Observer for Running {
    fn started(&self, revision: &str) {
        self.now.lock().expect("running layers").revision = Some(revision.to_string());
    }

    fn event(&self, layer: &LayerId, event: &Event) {
        let step = match event {
            Event::Planning => Some(Step::Planning),
            Event::Comparing => Some(Step::Comparing),
            Event::Applying => Some(Step::Applying),
            // A drift check reads, it does not run the layer: not shown as applying.
            Event::Terradiff | Event::Kubediff => return,
            Event::Done(_) | Event::Checked(_) => None,
        };
        let layers = &mut self.now.lock().expect("running layers").layers;
        match step {
            Some(step) => {
                layers.insert(
                    layer.to_string(),
                    Activity {
                        step,
                        since: crate::now_rfc3339(),
                    },
                );
            }
            None => {
                layers.remove(&layer.to_string());
            }
        }
    }
}

/// Empties a [`Running`] set when dropped.
pub struct ClearOnDrop(Arc<Running>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::DriftState;

    fn id(s: &str) -> LayerId {
        LayerId::parse(s).unwrap()
    }

    #[test]
    fn a_layer_runs_from_its_first_step_to_its_end_and_a_drift_check_is_not_a_run() {
        let r = Arc::new(Running::default());
        r.started("r2");
        r.event(&id("terraform.net"), &Event::Planning);
        r.event(&id("kubernetes.app"), &Event::Comparing);
        assert_eq!(r.snapshot().layers["terraform.net"].step, Step::Planning);
        r.event(&id("terraform.net"), &Event::Applying);
        assert_eq!(r.snapshot().layers["terraform.net"].step, Step::Applying);
        assert_eq!(r.snapshot().revision.as_deref(), Some("r2"));
        r.event(&id("terraform.net"), &Event::Checked(DriftState::InSync));
        assert_eq!(
            r.snapshot().layers.keys().collect::<Vec<_>>(),
            ["kubernetes.app"],
            "one layer's end leaves the others running"
        );
        r.event(&id("terraform.dns"), &Event::Terradiff);
        assert!(!r.snapshot().layers.contains_key("terraform.dns"));
        {
            let _guard = r.until_done();
        }
        assert_eq!(
            r.snapshot(),
            Now::default(),
            "the end of the sync ends every step"
        );
    }
}
