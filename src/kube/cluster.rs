//! Connecting to a layer's cluster: a kubeconfig file and context, or kubeconfig content from an
//! upstream output (written 0600 in the state dir, never logged).

use std::path::{Path, PathBuf};

use super::error::KubeError;
use crate::redact::Redacted;

/// Where a cluster's credentials come from.
#[derive(Debug, Clone)]
pub enum Access {
    /// A kubeconfig file (`~` expands), and a context (its current one when unset).
    Path {
        path: PathBuf,
        context: Option<String>,
    },
    /// Kubeconfig content, as an upstream output gives it.
    Content {
        content: Redacted<String>,
        context: Option<String>,
    },
    /// The cluster strata runs in, through its pod's service account (`in_cluster = true`).
    InCluster,
}

/// Where a pod's service account token is mounted; read again on every connect so that a
/// rotated token makes a new client.
const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// The bytes that identify `access`: the kubeconfig as it is now (a rotated file is another
/// cluster connection) and the context.
///
/// # Errors
/// The kubeconfig file cannot be read.
pub fn identity(access: &Access, name: &str) -> Result<Vec<u8>, KubeError> {
    let mut id = Vec::new();
    let (bytes, context, kind) = match access {
        Access::Path { path, context } => {
            let path = expand_home(path);
            let bytes = std::fs::read(&path).map_err(|e| {
                KubeError::Connect(format!("cluster \"{name}\": {}: {e}", path.display()))
            })?;
            id.extend(path.display().to_string().as_bytes());
            (bytes, context, b'p')
        }
        Access::Content { content, context } => {
            (content.expose().as_bytes().to_vec(), context, b'c')
        }
        Access::InCluster => (
            std::fs::read(SERVICE_ACCOUNT_TOKEN).unwrap_or_default(),
            &None,
            b'i',
        ),
    };
    id.push(kind);
    id.extend(context.as_deref().unwrap_or("").as_bytes());
    id.push(0);
    id.extend(bytes);
    Ok(id)
}

/// Writes kubeconfig content to `state_dir/clusters/<name>.kubeconfig` (mode 0600) when it is
/// not there, so that operators can reach the same cluster; a kubeconfig file is left alone.
///
/// # Errors
/// The file cannot be written.
pub fn keep(access: &Access, state_dir: &Path, name: &str) -> Result<(), KubeError> {
    let Access::Content { content, .. } = access else {
        return Ok(());
    };
    let fail = |e: &dyn std::fmt::Display| KubeError::Connect(format!("cluster \"{name}\": {e}"));
    let dir = state_dir.join("clusters");
    let file = dir.join(format!("{name}.kubeconfig"));
    if std::fs::read(&file).is_ok_and(|b| b == content.expose().as_bytes()) {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).map_err(|e| fail(&e))?;
    crate::util::fs::write_private(&file, content.expose().as_bytes()).map_err(|e| fail(&e))
}

/// The client configuration for the cluster; content is kept in the state dir ([`keep`]).
///
/// kube-rs's own retries are off: strata retries in the cluster's guard
/// ([`super::breaker`]), with one budget for the whole cluster.
///
/// # Errors
/// The kubeconfig cannot be read or parsed, or names no usable context.
pub async fn config(
    access: &Access,
    state_dir: &Path,
    name: &str,
) -> Result<::kube::Config, KubeError> {
    let fail = |e: &dyn std::fmt::Display| KubeError::Connect(format!("cluster \"{name}\": {e}"));
    let (kubeconfig, context) = match access {
        Access::InCluster => {
            let mut config = ::kube::Config::incluster().map_err(|e| {
                fail(&format!(
                    "in_cluster = true, but strata does not run in a pod with a service account \
                     ({e})"
                ))
            })?;
            config.default_retry = false;
            return Ok(config);
        }
        Access::Path { path, context } => {
            let path = expand_home(path);
            let kc = ::kube::config::Kubeconfig::read_from(&path)
                .map_err(|e| fail(&format!("{}: {e}", path.display())))?;
            (kc, context.clone())
        }
        Access::Content { content, context } => {
            keep(access, state_dir, name)?;
            // The parser's messages may quote the content: keep them out.
            let kc = ::kube::config::Kubeconfig::from_yaml(content.expose()).map_err(|_| {
                fail(&"the kubeconfig content from its output is not a valid kubeconfig")
            })?;
            (kc, context.clone())
        }
    };
    let options = ::kube::config::KubeConfigOptions {
        context,
        ..Default::default()
    };
    let mut config = ::kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| fail(&e))?;
    config.default_retry = false;
    Ok(config)
}
