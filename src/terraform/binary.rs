//! Finding the terraform (or OpenTofu) binary and checking its version.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::TerraformError;

/// The environment variable that names the binary to use, before PATH is searched.
pub const ENV_BINARY: &str = "STRATA_TERRAFORM";

/// Which program the binary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    Terraform,
    OpenTofu,
}

/// A terraform-compatible binary that reported a usable version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TerraformBinary {
    pub path: PathBuf,
    pub version: String,
    pub flavour: Flavour,
}

impl TerraformBinary {
    /// Finds the binary: `explicit` (the stack's `terraform_bin`) if given, else
    /// `$STRATA_TERRAFORM`, else `terraform` then `tofu` on PATH; and checks it is ≥ 1.0.
    ///
    /// # Errors
    /// When nothing is found, the binary can't run, or its version is older than 1.0.
    pub async fn find(explicit: Option<&str>) -> Result<TerraformBinary, TerraformError> {
        let from_env = std::env::var(ENV_BINARY).ok().filter(|s| !s.is_empty());
        let named = explicit.map(str::to_string).or(from_env);
        let path = match named {
            Some(name) => which::which(&name).map_err(|_| TerraformError::NotFound {
                searched: format!("\"{name}\""),
            })?,
            None => which::which("terraform")
                .or_else(|_| which::which("tofu"))
                .map_err(|_| TerraformError::NotFound {
                    searched: "terraform and tofu on PATH".into(),
                })?,
        };
        TerraformBinary::at(&path).await
    }

    /// Checks the binary at `path`.
    pub async fn at(path: &Path) -> Result<TerraformBinary, TerraformError> {
        let out = tokio::process::Command::new(path)
            .args(["version", "-json"])
            .env("CHECKPOINT_DISABLE", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| TerraformError::Version {
                path: path.to_path_buf(),
                message: format!("failed to run it: {e}"),
            })?;
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|_| TerraformError::Version {
                path: path.to_path_buf(),
                message:
                    "`version -json` printed no JSON (terraform and tofu before 1.0 can't be used)"
                        .into(),
            })?;
        let version = json["terraform_version"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let major: u64 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 1 {
            return Err(TerraformError::Version {
                path: path.to_path_buf(),
                message: format!("version {version} is older than 1.0"),
            });
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let flavour = if name.contains("tofu") || json.get("opentofu").is_some() {
            Flavour::OpenTofu
        } else {
            Flavour::Terraform
        };
        Ok(TerraformBinary {
            path: path.to_path_buf(),
            version,
            flavour,
        })
    }
}
