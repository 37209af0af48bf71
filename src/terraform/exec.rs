//! Running one terraform command: in its own process group, bounded by a deadline, cancellable,
//! with its output streamed to tracing after secrets are scrubbed.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::{Step, TerraformError};
use crate::redact::Redactor;
use crate::stack::LayerId;

/// One command to run.
pub(crate) struct Invocation<'a> {
    pub layer: &'a LayerId,
    pub step: Step,
    pub args: Vec<OsString>,
    pub cwd: &'a Path,
    pub env: &'a [(OsString, OsString)],
    /// Stream stdout lines to the log. Off for commands printing JSON (it may hold secrets).
    pub log_stdout: bool,
}

/// How a command ended when it ran to completion.
#[derive(Debug)]
pub(crate) struct Finished {
    pub code: i32,
    /// Raw: may hold secrets (`show -json`, `output -json`). Never log it.
    pub stdout: String,
    /// Redacted.
    pub stderr: String,
}

/// Limits on one command.
pub(crate) struct Limits<'a> {
    pub deadline: Instant,
    /// The layer's whole timeout, for the message when the deadline passes.
    pub timeout: Duration,
    pub cancel: &'a CancellationToken,
    /// After SIGINT, how long terraform gets to stop before SIGKILL.
    pub grace: Duration,
}

/// Runs `bin` with `inv`'s arguments.
///
/// # Guarantees
/// - terraform runs in a process group of its own; on timeout or cancellation the group gets
///   SIGINT, then SIGKILL after the grace period, and every process left in the group (providers,
///   `local-exec` children) is killed before this returns: nothing is left behind.
/// - Logged lines have every secret known to `redactor` replaced by `***`.
///
/// # Errors
/// `TimedOut` or `Interrupted` when stopped; `Io` when terraform can't be started. A non-zero
/// exit is not an error here: the caller decides (plan's exit code 2 means "changes").
pub(crate) async fn run(
    bin: &Path,
    inv: Invocation<'_>,
    limits: &Limits<'_>,
    redactor: &Redactor,
) -> Result<Finished, TerraformError> {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(&inv.args)
        .current_dir(inv.cwd)
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    tracing::debug!(layer = %inv.layer, step = %inv.step, args = ?inv.args, "running terraform");
    let mut child = cmd.spawn().map_err(|source| TerraformError::Io {
        layer: inv.layer.clone(),
        action: "start",
        path: bin.to_path_buf(),
        source,
    })?;
    let pgid = child.id().map(|p| p as libc::pid_t);
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let out_task = tokio::spawn(read_lines(
        stdout,
        inv.log_stdout
            .then(|| (inv.layer.to_string(), inv.step, redactor.clone())),
    ));
    let err_task = tokio::spawn(read_lines(
        stderr,
        Some((inv.layer.to_string(), inv.step, redactor.clone())),
    ));

    enum End {
        Exited(std::io::Result<std::process::ExitStatus>),
        Deadline,
        Cancelled,
    }
    let end = tokio::select! {
        status = child.wait() => End::Exited(status),
        _ = tokio::time::sleep_until(limits.deadline) => End::Deadline,
        _ = limits.cancel.cancelled() => End::Cancelled,
    };
    let status = match end {
        End::Exited(status) => status,
        stopped => {
            tracing::warn!(layer = %inv.layer, step = %inv.step, "interrupting terraform");
            signal_group(pgid, libc::SIGINT);
            let status = tokio::select! {
                status = child.wait() => status,
                _ = tokio::time::sleep(limits.grace) => {
                    tracing::warn!(layer = %inv.layer, step = %inv.step, "terraform did not stop in time: killing it");
                    signal_group(pgid, libc::SIGKILL);
                    child.wait().await
                }
            };
            // Children that outlived terraform (a local-exec `sleep`) go too.
            signal_group(pgid, libc::SIGKILL);
            let _ = status;
            let _ = out_task.await;
            let _ = err_task.await;
            return Err(match stopped {
                End::Deadline => TerraformError::TimedOut {
                    layer: inv.layer.clone(),
                    step: inv.step,
                    after: limits.timeout,
                },
                _ => TerraformError::Interrupted {
                    layer: inv.layer.clone(),
                    step: inv.step,
                },
            });
        }
    };
    let status = status.map_err(|source| TerraformError::Io {
        layer: inv.layer.clone(),
        action: "wait for",
        path: bin.to_path_buf(),
        source,
    })?;
    let stdout = out_task.await.unwrap_or_default();
    let stderr = redactor.redact(&err_task.await.unwrap_or_default());
    Ok(Finished {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    })
}

fn signal_group(pgid: Option<libc::pid_t>, signal: libc::c_int) {
    if let Some(pgid) = pgid {
        // SAFETY: killpg only sends a signal; a group that is gone gives ESRCH, which is fine.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

/// Reads a stream to its end, logging each line (redacted) when `log` is set.
async fn read_lines<R: AsyncRead + Unpin>(
    stream: R,
    log: Option<(String, Step, Redactor)>,
) -> String {
    let mut lines = BufReader::new(stream).lines();
    let mut all = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some((layer, step, redactor)) = &log {
            let shown = redactor.redact(&line);
            if !shown.trim().is_empty() {
                tracing::info!(layer = %layer, step = %step, "{shown}");
            }
        }
        all.push_str(&line);
        all.push('\n');
    }
    all
}

/// terraform's error text, trimmed to what a person needs: its `Error:` blocks when there are
/// any, else the last lines of stderr.
pub(crate) fn error_text(stderr: &str, stdout_tail: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout_tail
    } else {
        stderr
    };
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end()).collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start_matches(['│', '╷', ' ']).starts_with("Error:"))
        .unwrap_or(lines.len().saturating_sub(20));
    let kept: Vec<String> = lines[start..]
        .iter()
        .map(|l| l.trim_start_matches(['│', '╷', '╵']).trim().to_string())
        .filter(|l| !l.is_empty())
        .take(40)
        .collect();
    if kept.is_empty() {
        "terraform exited without an error message".into()
    } else {
        kept.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_keeps_terraforms_error_blocks() {
        let stderr = "noise\n╷\n│ Error: local-exec provisioner error\n│ \n│   with null_resource.x,\n│ exit status 3\n╵\n";
        assert_eq!(
            error_text(stderr, ""),
            "Error: local-exec provisioner error\nwith null_resource.x,\nexit status 3"
        );
        assert_eq!(
            error_text("", ""),
            "terraform exited without an error message"
        );
    }
}
