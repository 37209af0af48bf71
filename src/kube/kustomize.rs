//! Rendering a layer that holds a `kustomization.yaml` with `kustomize build` (or `kubectl
//! kustomize`), and saying where a failure is: in the kustomization file, at the line kustomize
//! names, not somewhere in output that was never produced.

use std::path::{Path, PathBuf};

use super::error::KubeError;
use super::limits::ManifestLimits;

/// Renders the kustomization in `dir`; `file` names it in messages (relative to the stack).
///
/// # Errors
/// No kustomize or kubectl on PATH, a failed run (naming `file`, and `file:LINE` when kustomize
/// names a line of it), and output over the per-file limit.
pub fn build(dir: &Path, file: &Path, limits: &ManifestLimits) -> Result<String, KubeError> {
    let (program, args): (PathBuf, Vec<&str>) =
        match (which::which("kustomize"), which::which("kubectl")) {
            (Ok(k), _) => (k, vec!["build"]),
            (_, Ok(k)) => (k, vec!["kustomize"]),
            _ => {
                return Err(KubeError::Load {
                    problems: vec![format!(
                        "{}: has a kustomization.yaml, but neither kustomize nor kubectl is on PATH to render it",
                        file.display()
                    )],
                })
            }
        };
    let out = std::process::Command::new(&program)
        .args(&args)
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| KubeError::Load {
            problems: vec![format!(
                "{}: failed to run {}: {e}",
                file.display(),
                program.display()
            )],
        })?;
    if !out.status.success() {
        let command = format!(
            "{} {}",
            program.file_name().unwrap_or_default().to_string_lossy(),
            args.join(" ")
        );
        return Err(KubeError::Load {
            problems: vec![failure(
                file,
                &command,
                &String::from_utf8_lossy(&out.stderr),
            )],
        });
    }
    if out.stdout.len() > limits.max_file_bytes {
        return Err(KubeError::Load {
            problems: vec![format!(
                "{}: kustomize output is larger than {} bytes (the limit max_file_bytes)",
                file.display(),
                limits.max_file_bytes
            )],
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The message of a failed run: kustomize's own error without klog's prefix and warnings,
/// placed at `file:LINE` when it is an error in the kustomization file itself at a line.
fn failure(file: &Path, command: &str, stderr: &str) -> String {
    let reason = error_of(stderr);
    let place = match line_in_kustomization(&reason) {
        Some(line) => format!("{}:{line}", file.display()),
        None => file.display().to_string(),
    };
    format!("{place}: {command} failed: {reason}")
}

/// The error of kustomize's stderr: klog's `err="..."` when it logged one, else every line but
/// warnings.
fn error_of(stderr: &str) -> String {
    for line in stderr.lines() {
        if let Some(at) = line.find(" err=\"") {
            let quoted = &line[at + 5..];
            if let Ok(s) = serde_json::Deserializer::from_str(quoted)
                .into_iter::<String>()
                .next()
                .unwrap_or_else(|| Ok(String::new()))
            {
                if !s.is_empty() {
                    return s;
                }
            }
        }
    }
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("# Warning"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The line of an `invalid Kustomization: ... line N: ...` error: the kustomization file's own.
fn line_in_kustomization(reason: &str) -> Option<usize> {
    let rest = reason.strip_prefix("invalid Kustomization: ")?;
    let after = &rest[rest.find("line ")? + 5..];
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kustomization_error_names_the_file_and_its_line_without_klog_noise() {
        let file = Path::new("k8s/apps/kustomization.yaml");
        let stderr = "# Warning: 'commonLabels' is deprecated.\nE1124 13:48:37.129144   22383 run.go:72] \"command failed\" err=\"invalid Kustomization: yaml: line 5: did not find expected key\"\n";
        assert_eq!(
            failure(file, "kubectl kustomize", stderr),
            "k8s/apps/kustomization.yaml:5: kubectl kustomize failed: invalid Kustomization: yaml: line 5: did not find expected key"
        );
        // An error elsewhere (a resource it lists) names the kustomization, no line of it.
        let stderr = "Error: accumulating resources: accumulation err='accumulating resources from 'missing.yaml': line 3 of something'\n";
        assert_eq!(
            failure(file, "kustomize build", stderr),
            "k8s/apps/kustomization.yaml: kustomize build failed: Error: accumulating resources: accumulation err='accumulating resources from 'missing.yaml': line 3 of something'"
        );
    }
}
