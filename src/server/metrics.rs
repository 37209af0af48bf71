//! The agent's Prometheus metrics. One registry for the whole agent; each environment records
//! through its own [`EnvMetrics`], which adds an `env` label to every series about that
//! environment (none for a stack without `environment` blocks, so its series keep their names).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::engine::record::{DriftReport, LayerStatus, Observation, RunReport};
use crate::notify::EventType;

type Labels = Vec<(String, String)>;

/// The agent's metrics.
pub struct Metrics {
    registry: Registry,
    drift: Family<Labels, Gauge>,
    last_apply: Family<Labels, Gauge<f64, AtomicU64>>,
    duration: Family<Labels, Histogram>,
    results: Family<Labels, Counter>,
    fetch_errors: Counter,
    revision: Family<Labels, Gauge>,
    observed: Family<Labels, Gauge>,
    source_up: Gauge,
    /// An agent of several stacks has a source per stack: these carry a `stack` label.
    stack_source_up: Family<Labels, Gauge>,
    stack_fetch_errors: Family<Labels, Counter>,
    cluster_up: Family<Labels, Gauge>,
    alerts: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let drift = Family::<Labels, Gauge>::default();
        let last_apply = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let duration = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.1, 2.0, 14))
        });
        let results = Family::<Labels, Counter>::default();
        let fetch_errors = Counter::default();
        let revision = Family::<Labels, Gauge>::default();
        let observed = Family::<Labels, Gauge>::default();
        let source_up = Gauge::default();
        // Up until a fetch says otherwise: the agent fetches before anything else.
        source_up.set(1);
        let cluster_up = Family::<Labels, Gauge>::default();
        let stack_source_up = Family::<Labels, Gauge>::default();
        let stack_fetch_errors = Family::<Labels, Counter>::default();
        registry.register(
            "strata_stack_source_up",
            "1 when the last fetch of the stack's source succeeded (an agent of several stacks)",
            stack_source_up.clone(),
        );
        registry.register(
            "strata_stack_source_fetch_errors",
            "Failed fetches of the stack's source (an agent of several stacks)",
            stack_fetch_errors.clone(),
        );
        let alerts = Family::<Labels, Counter>::default();
        registry.register(
            "strata_layer_observed",
            "1 for the state the last drift check observed the layer in (in_sync, drifted, unknown, never_applied, pending)",
            observed.clone(),
        );
        registry.register(
            "strata_source_up",
            "1 when the last fetch of the source succeeded",
            source_up.clone(),
        );
        registry.register(
            "strata_cluster_up",
            "1 when the cluster answered the last drift check",
            cluster_up.clone(),
        );
        registry.register(
            "strata_alerts_sent",
            "Alerts raised, by type",
            alerts.clone(),
        );
        registry.register(
            "strata_layer_drift",
            "1 when the layer differs from its converged revision",
            drift.clone(),
        );
        registry.register(
            "strata_layer_last_apply_timestamp_seconds",
            "Unix time of the layer's last apply",
            last_apply.clone(),
        );
        registry.register(
            "strata_layer_apply_duration_seconds",
            "Duration of layer applies",
            duration.clone(),
        );
        registry.register(
            "strata_layer_results",
            "Layer results by kind",
            results.clone(),
        );
        registry.register(
            "strata_source_fetch_errors",
            "Failed fetches of the source",
            fetch_errors.clone(),
        );
        registry.register(
            "strata_revision_info",
            "The revision the agent converges to",
            revision.clone(),
        );
        Metrics {
            registry,
            drift,
            last_apply,
            duration,
            results,
            fetch_errors,
            revision,
            observed,
            source_up,
            stack_source_up,
            stack_fetch_errors,
            cluster_up,
            alerts,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut s, &self.registry);
        s
    }
}

/// What one environment records into the agent's metrics.
pub struct EnvMetrics {
    all: Arc<Metrics>,
    /// The stack's name, on an agent converging several: a `stack` label before `env`.
    stack: Option<String>,
    env: Option<String>,
    /// The `strata_revision_info` series this environment set last, replaced by the next one.
    revision: Mutex<Option<Labels>>,
}

impl EnvMetrics {
    pub fn new(all: Arc<Metrics>, env: Option<String>) -> EnvMetrics {
        EnvMetrics {
            all,
            stack: None,
            env,
            revision: Mutex::new(None),
        }
    }

    /// Its series carry a `stack` label (an agent converging several stacks).
    pub fn for_stack(mut self, stack: Option<String>) -> EnvMetrics {
        self.stack = stack;
        self
    }

    /// The whole agent's metrics, every environment's series.
    pub fn all_shared(&self) -> Arc<Metrics> {
        self.all.clone()
    }

    /// `pairs`, after the `env` label when there is an environment.
    fn labels(&self, pairs: &[(&str, &str)]) -> Labels {
        self.stack
            .iter()
            .map(|s| ("stack".to_string(), s.clone()))
            .chain(self.env.iter().map(|e| ("env".to_string(), e.clone())))
            .chain(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect()
    }

    pub fn record_run(&self, report: &RunReport) {
        let m = &self.all;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        for l in &report.layers {
            let name = l.layer.to_string();
            let layer = self.labels(&[("layer", &name)]);
            m.results
                .get_or_create(&self.labels(&[("layer", &name), ("result", l.status.key())]))
                .inc();
            if l.status == LayerStatus::Applied {
                m.last_apply.get_or_create(&layer).set(now);
                m.duration
                    .get_or_create(&layer)
                    .observe(l.duration_ms as f64 / 1000.0);
            }
        }
        // Only this environment's revision is replaced: the others' stay.
        let labels = self.labels(&[("revision", &report.revision)]);
        let mut last = self.revision.lock().expect("revision series");
        if let Some(old) = last.replace(labels.clone()) {
            m.revision.remove(&old);
        }
        m.revision.get_or_create(&labels).set(1);
    }

    pub fn record_drift(&self, report: &DriftReport) {
        for l in &report.layers {
            self.all
                .drift
                .get_or_create(&self.labels(&[("layer", &l.layer.to_string())]))
                .set(i64::from(l.state == crate::engine::DriftState::Drifted));
        }
    }

    /// Each layer's observation: 1 for its state, 0 for the others.
    pub fn record_observed(&self, layers: &std::collections::BTreeMap<String, Observation>) {
        for (name, o) in layers {
            for key in Observation::KEYS {
                self.all
                    .observed
                    .get_or_create(&self.labels(&[("layer", name), ("state", key)]))
                    .set(i64::from(o.key() == key));
            }
        }
    }

    /// The source is shared by every environment: its series carry no `env` label.
    pub fn source_up(&self, up: bool) {
        match &self.stack {
            Some(s) => {
                let l = vec![("stack".to_string(), s.clone())];
                self.all
                    .stack_source_up
                    .get_or_create(&l)
                    .set(i64::from(up));
            }
            None => {
                self.all.source_up.set(i64::from(up));
            }
        }
    }

    pub fn fetch_error(&self) {
        match &self.stack {
            Some(s) => {
                let l = vec![("stack".to_string(), s.clone())];
                self.all.stack_fetch_errors.get_or_create(&l).inc();
            }
            None => {
                self.all.fetch_errors.inc();
            }
        }
    }

    pub fn cluster_up(&self, cluster: &str, up: bool) {
        self.all
            .cluster_up
            .get_or_create(&self.labels(&[("cluster", cluster)]))
            .set(i64::from(up));
    }

    pub fn alert(&self, kind: EventType) {
        self.all
            .alerts
            .get_or_create(&self.labels(&[("type", kind.key())]))
            .inc();
    }
}
