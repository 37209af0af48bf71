//! One client and one discovery per cluster, shared by every layer of a run (and kept by the agent
//! across its loops): its connections (and their TLS sessions) are pooled, and what the cluster
//! serves is asked once, not once or more per layer.
//!
//! Discovery is asked again when a kind is not in it (a CRD applied since, by another layer of
//! the same run or by anyone), when strata itself applied or pruned a CRD, and once it is older
//! than [`DISCOVERY_TTL`]. A kind asked again and still not served is remembered as such until
//! the next run, so a thousand objects of a missing kind cost one discovery, not a thousand.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::breaker::{Guard, Health};
use super::cluster::Access;
use super::error::KubeError;
use super::resolve::Resources;

/// How long discovery is trusted without a reason to ask again.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(300);

/// A kind as discovery names it: (group, version, kind).
pub type Gvk = (String, String, String);

/// The (group, version, kind) an object declares.
pub fn gvk_of(object: &Value) -> Option<Gvk> {
    let api_version = object["apiVersion"].as_str()?;
    let kind = object["kind"].as_str()?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Some((group.to_string(), version.to_string(), kind.to_string()))
}

/// The clusters a process talks to, each connected once.
pub struct Clusters {
    cancel: CancellationToken,
    connected: Mutex<HashMap<String, Arc<Cluster>>>,
}

impl std::fmt::Debug for Clusters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .connected
            .lock()
            .expect("clusters")
            .values()
            .map(|c| c.name.clone())
            .collect();
        f.debug_struct("Clusters")
            .field("connected", &names)
            .finish()
    }
}

impl Clusters {
    /// Clusters whose requests (and waits between tries) end when `cancel` fires.
    pub fn new(cancel: CancellationToken) -> Clusters {
        Clusters {
            cancel,
            connected: Mutex::new(HashMap::new()),
        }
    }

    /// The cluster `access` reaches: the one connected before with the same kubeconfig, context
    /// and state dir, else a new client.
    ///
    /// # Guarantees
    /// A kubeconfig that changed since (a rotated token or CA) gets a new client; the old one is
    /// no longer handed out.
    ///
    /// # Errors
    /// The kubeconfig cannot be read, parsed or used; the message names the cluster.
    pub async fn connect(
        &self,
        access: &Access,
        state_dir: &Path,
        name: &str,
    ) -> Result<Arc<Cluster>, KubeError> {
        let key = {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(name.as_bytes());
            h.update([0]);
            h.update(state_dir.as_os_str().as_encoded_bytes());
            h.update([0]);
            h.update(super::cluster::identity(access, name)?);
            format!("{:x}", h.finalize())
        };
        let known = self.connected.lock().expect("clusters").get(&key).cloned();
        if let Some(c) = known {
            // Removed since (a cleaned state dir): written again for operators.
            super::cluster::keep(access, state_dir, name)?;
            return Ok(c);
        }
        let config = super::cluster::config(access, state_dir, name).await?;
        let url = config.cluster_url.to_string();
        let health = Arc::new(Health::new(name, &url, self.cancel.clone()));
        let client = ::kube::client::ClientBuilder::try_from(config)
            .map_err(|e| KubeError::Connect(format!("cluster \"{name}\": {e}")))?
            .with_layer(&Guard(health.clone()))
            .build();
        let cluster = Arc::new(Cluster {
            name: name.to_string(),
            url,
            client,
            health: Some(health),
            discovery: tokio::sync::Mutex::new(None),
        });
        let mut connected = self.connected.lock().expect("clusters");
        // A layer running alongside may have connected it meanwhile: one client per cluster.
        Ok(connected.entry(key).or_insert(cluster).clone())
    }

    /// Starts a new run: every cluster gets another chance, and kinds found missing are asked
    /// for again.
    pub async fn begin_run(&self) {
        let all: Vec<Arc<Cluster>> = self
            .connected
            .lock()
            .expect("clusters")
            .values()
            .cloned()
            .collect();
        for c in all {
            if let Some(h) = &c.health {
                h.reset();
            }
            if let Some(s) = c.discovery.lock().await.as_mut() {
                s.absent.clear();
            }
        }
    }
}

/// What discovery said, and when.
struct Snapshot {
    resources: Arc<Resources>,
    taken: Instant,
    /// Kinds asked for since and not served.
    absent: BTreeSet<Gvk>,
}

/// A connected cluster: its client (which derefs to a kube-rs client) and what it serves.
pub struct Cluster {
    pub name: String,
    /// Its API server, for messages.
    pub url: String,
    client: ::kube::Client,
    health: Option<Arc<Health>>,
    discovery: tokio::sync::Mutex<Option<Snapshot>>,
}

impl std::ops::Deref for Cluster {
    type Target = ::kube::Client;

    fn deref(&self) -> &::kube::Client {
        &self.client
    }
}

impl From<::kube::Client> for Cluster {
    /// A cluster behind a client built elsewhere (tools and tests): its discovery is cached, and
    /// its requests are retried by the callers as before, with no shared budget.
    fn from(client: ::kube::Client) -> Cluster {
        Cluster {
            name: String::new(),
            url: String::new(),
            client,
            health: None,
            discovery: tokio::sync::Mutex::new(None),
        }
    }
}

impl Cluster {
    /// The cluster's shared retry budget and breaker, when it has one.
    pub fn health(&self) -> Option<&Health> {
        self.health.as_deref()
    }

    /// What the cluster serves, asking it again first when any of `wanted` is not known to be
    /// served or not, or when what it said is older than [`DISCOVERY_TTL`].
    ///
    /// # Errors
    /// Discovery failed (after the cluster's retries).
    pub async fn served(
        &self,
        wanted: impl IntoIterator<Item = Gvk>,
    ) -> Result<Arc<Resources>, KubeError> {
        let wanted: BTreeSet<Gvk> = wanted.into_iter().collect();
        // Held while discovering: layers that start together wait for one discovery.
        let mut slot = self.discovery.lock().await;
        if let Some(s) = slot.as_ref() {
            let known =
                |k: &Gvk| s.resources.get(&k.0, &k.1, &k.2).is_some() || s.absent.contains(k);
            if s.taken.elapsed() < DISCOVERY_TTL && wanted.iter().all(known) {
                return Ok(s.resources.clone());
            }
        }
        tracing::debug!("discovery of cluster \"{}\"", self.name);
        let resources = Arc::new(Resources::discover(&self.client).await?);
        let before = slot.take().map(|s| s.absent).unwrap_or_default();
        let absent = before
            .into_iter()
            .chain(wanted)
            .filter(|k| resources.get(&k.0, &k.1, &k.2).is_none())
            .collect();
        *slot = Some(Snapshot {
            resources: resources.clone(),
            taken: Instant::now(),
            absent,
        });
        Ok(resources)
    }

    /// What the cluster serves, plus the kinds that CRDs among `objects` will serve, for
    /// placing `objects`: discovery is asked again when one of their kinds is not in it.
    ///
    /// # Errors
    /// Discovery failed.
    pub async fn resources_for<'a>(
        &self,
        objects: impl Iterator<Item = &'a Value> + Clone,
    ) -> Result<Resources, KubeError> {
        let mut pending = Resources::default();
        pending.add_pending_crds(objects.clone());
        let wanted = objects
            .clone()
            .filter_map(gvk_of)
            .filter(|k| pending.get(&k.0, &k.1, &k.2).is_none());
        let mut resources = (*self.served(wanted).await?).clone();
        resources.add_pending_crds(objects);
        Ok(resources)
    }

    /// Forgets what discovery said: strata changed what the cluster serves (applied or pruned a
    /// CRD).
    pub async fn invalidate(&self) {
        *self.discovery.lock().await = None;
    }
}
