//! Objects in memory: one global resourceVersion counter, an event history for watches, and
//! optional persistence to a file.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::registry::{self, Registry, ResourceType};

/// Where an object lives: group, plural, namespace (`""` for cluster-scoped), name.
pub type ObjKey = (String, String, String, String);

pub fn key(rt: &ResourceType, ns: &str, name: &str) -> ObjKey {
    (
        rt.group.clone(),
        rt.plural.clone(),
        ns.to_string(),
        name.to_string(),
    )
}

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    /// ADDED, MODIFIED or DELETED.
    pub kind: &'static str,
    pub group: String,
    pub plural: String,
    pub namespace: String,
    pub object: Value,
}

/// The data file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DataFileError {
    #[error("failed to read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Events kept for watches that resume from an older resourceVersion.
const HISTORY: usize = 20_000;

pub struct Store {
    pub registry: Registry,
    pub objects: BTreeMap<ObjKey, Value>,
    pub rv: u64,
    history: VecDeque<Event>,
    pub tx: broadcast::Sender<Event>,
    /// When each workload last changed generation, for simulated readiness.
    pub changed_at: BTreeMap<ObjKey, std::time::Instant>,
    pub dirty: bool,
    uid_counter: u64,
    ip_counter: u32,
    pub data_file: Option<PathBuf>,
}

impl Store {
    pub fn new(data_file: Option<PathBuf>) -> Store {
        let (tx, _) = broadcast::channel(4096);
        let mut store = Store::empty(data_file, tx);
        // The namespaces every cluster starts with.
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let rv = store.next_rv();
            let uid = store.uid();
            let obj = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": uid, "resourceVersion": rv.to_string(), "creationTimestamp": now_rfc3339(),
                             "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            store.objects.insert(
                (
                    String::new(),
                    "namespaces".into(),
                    String::new(),
                    ns.to_string(),
                ),
                obj,
            );
        }
        store
    }

    fn empty(data_file: Option<PathBuf>, tx: broadcast::Sender<Event>) -> Store {
        Store {
            registry: Registry::default(),
            objects: BTreeMap::new(),
            rv: 1,
            history: VecDeque::new(),
            tx,
            changed_at: BTreeMap::new(),
            dirty: false,
            uid_counter: 0,
            ip_counter: 10,
            data_file,
        }
    }

    pub fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub fn uid(&mut self) -> String {
        self.uid_counter += 1;
        let seed = format!(
            "{}-{}-{:?}",
            std::process::id(),
            self.uid_counter,
            std::time::SystemTime::now()
        );
        crate::ids::uid(&seed)
    }

    pub fn cluster_ip(&mut self) -> String {
        self.ip_counter += 1;
        format!(
            "10.96.{}.{}",
            (self.ip_counter >> 8) & 0xff,
            self.ip_counter & 0xff
        )
    }

    /// The oldest resourceVersion a watch can resume from.
    pub fn oldest_rv(&self) -> u64 {
        self.history.front().map_or(self.rv, |e| e.rv - 1)
    }

    pub fn events_after(&self, rv: u64) -> Vec<Event> {
        self.history.iter().filter(|e| e.rv > rv).cloned().collect()
    }

    /// Records and broadcasts an event.
    pub fn emit(
        &mut self,
        kind: &'static str,
        rt: &ResourceType,
        ns: &str,
        object: Value,
        rv: u64,
    ) {
        let e = Event {
            rv,
            kind,
            group: rt.group.clone(),
            plural: rt.plural.clone(),
            namespace: ns.to_string(),
            object,
        };
        self.history.push_back(e.clone());
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
        let _ = self.tx.send(e);
        self.dirty = true;
    }

    pub fn put(&mut self, k: ObjKey, obj: Value) {
        self.objects.insert(k, obj);
    }

    pub fn namespace_exists(&self, ns: &str) -> Option<&Value> {
        self.objects.get(&(
            String::new(),
            "namespaces".into(),
            String::new(),
            ns.to_string(),
        ))
    }

    /// Everything, for the data file.
    pub fn snapshot(&self) -> Value {
        json!({
            "resourceVersion": self.rv,
            "objects": self.objects.iter().map(|((g, p, _, _), o)| json!({"group": g, "plural": p, "object": o})).collect::<Vec<_>>(),
        })
    }

    /// Loads a data file written by [`Store::snapshot`]. CRDs come first, so their kinds are
    /// served before their objects are placed.
    ///
    /// # Guarantees
    /// A missing file is an empty cluster, not an error.
    ///
    /// # Errors
    /// When the file can't be read or isn't a snapshot's JSON.
    pub fn load(&mut self, path: &Path) -> Result<(), DataFileError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(DataFileError::Read {
                    path: path.into(),
                    source,
                })
            }
        };
        let v: Value = serde_json::from_slice(&text).map_err(|source| DataFileError::Parse {
            path: path.into(),
            source,
        })?;
        self.rv = v["resourceVersion"].as_u64().unwrap_or(1);
        let items = v["objects"].as_array().cloned().unwrap_or_default();
        for item in &items {
            if item["plural"] == "customresourcedefinitions" {
                if let Ok(t) = registry::from_crd(&item["object"]) {
                    self.registry.insert(t);
                }
            }
        }
        for item in items {
            let obj = item["object"].clone();
            let ns = obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            let g = item["group"].as_str().unwrap_or("").to_string();
            let p = item["plural"].as_str().unwrap_or("").to_string();
            self.objects.insert((g, p, ns, name), obj);
        }
        Ok(())
    }

    /// Writes the data file if anything changed since the last flush.
    ///
    /// # Guarantees
    /// The file is replaced whole (written beside it, then renamed), so a reader or a crash
    /// never sees half a snapshot.
    ///
    /// # Errors
    /// When the file can't be written or renamed into place.
    pub fn flush(&mut self) -> Result<(), DataFileError> {
        let Some(path) = self.data_file.clone() else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let tmp = path.with_extension("tmp");
        let bytes = serde_json::to_vec(&self.snapshot()).expect("json");
        std::fs::write(&tmp, bytes)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|source| DataFileError::Write { path, source })?;
        self.dirty = false;
        Ok(())
    }
}

/// The current time as Kubernetes writes it: `2026-11-21T23:00:00Z`.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
