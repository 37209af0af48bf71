//! Running one terraform command: in its own process group, with its output in files of the run
//! dir (never a pipe to strata, so strata's death does not kill it), bounded by a deadline,
//! cancellable, and with its output streamed to tracing after secrets are scrubbed.

use std::ffi::OsString;
use std::io::SeekFrom;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::{Step, TerraformError};
use super::orphans::{self, TerraformRecord};
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
    /// The run dir: terraform's output files and its record go here.
    pub run_dir: &'a Path,
    /// Distinguishes this command's output files from the run's other commands'.
    pub seq: usize,
    /// Runs beside a command that matters more (a `show` beside its `apply`): at a lower CPU
    /// priority (nice 10), so on a busy machine it takes no CPU time the other needs.
    pub background: bool,
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

/// How often the output files are read for new lines while terraform runs.
const TAIL_EVERY: Duration = Duration::from_millis(100);

/// Runs `bin` with `inv`'s arguments.
///
/// # Guarantees
/// - terraform runs in a process group of its own, with stdin from /dev/null and stdout and
///   stderr going to files in the run dir (mode 0600): if strata dies, terraform finishes what it
///   was doing and writes its state, instead of dying of SIGPIPE half-way. Its pid, start time
///   and command are recorded in the run dir, so the next strata can find it (see
///   [`super::orphans`]). An `apply` is not killed when this future is dropped; other commands
///   are.
/// - Files terraform creates (plan files, `errored.tfstate`, local state) are 0600: it runs with
///   umask 077.
/// - On timeout or cancellation the group gets SIGINT, then SIGKILL after the grace period, and
///   every process left in the group (providers, `local-exec` children) is killed before this
///   returns: nothing is left behind.
/// - Logged lines have every secret known to `redactor` replaced by `***`.
///
/// # Errors
/// `TimedOut` or `Interrupted` when stopped; `Io` when terraform can't be started or its output
/// files can't be created or read. A non-zero exit is not an error here: the caller decides
/// (plan's exit code 2 means "changes").
pub(crate) async fn run(
    bin: &Path,
    inv: Invocation<'_>,
    limits: &Limits<'_>,
    redactor: &Redactor,
) -> Result<Finished, TerraformError> {
    let io =
        |action: &'static str, path: &std::path::Path| TerraformError::io(inv.layer, action, path);
    let out_path = inv
        .run_dir
        .join(format!("{:03}-{}.stdout", inv.seq, inv.step));
    let err_path = inv
        .run_dir
        .join(format!("{:03}-{}.stderr", inv.seq, inv.step));
    let out_file = private_file(&out_path).map_err(io("create", &out_path))?;
    let err_file = private_file(&err_path).map_err(io("create", &err_path))?;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(&inv.args)
        .current_dir(inv.cwd)
        .envs(inv.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_file))
        .stderr(Stdio::from(err_file))
        .process_group(0)
        // An apply left running when strata goes away must finish and write its state.
        .kill_on_drop(inv.step != Step::Apply);
    let background = inv.background;
    // SAFETY: umask and nice are async-signal-safe and only change the child's own file mode
    // mask and scheduling priority.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(0o077);
            if background {
                // A failure leaves the priority as it was: the command still runs.
                libc::nice(10);
            }
            Ok(())
        });
    }
    tracing::debug!(layer = %inv.layer, step = %inv.step, args = ?inv.args, "running terraform");
    let spawned = Instant::now();
    let mut child = cmd.spawn().map_err(io("start", bin))?;
    let pgid = child.id().map(|p| p as libc::pid_t);
    let record = child.id().map(|pid| {
        TerraformRecord::of(
            pid,
            inv.layer,
            inv.step,
            &inv.args,
            &orphans::started_label(),
        )
    });
    if let Some(r) = &record {
        if let Err(e) = r.write(inv.run_dir) {
            // The command still runs; only a later strata's view of it is lost.
            tracing::warn!(layer = %inv.layer, step = %inv.step, "failed to record terraform's pid in {}: {e}", inv.run_dir.display());
        }
    }
    let done = CancellationToken::new();
    let out_task = tokio::spawn(tail(
        out_path.clone(),
        inv.log_stdout
            .then(|| (inv.layer.to_string(), inv.step, redactor.clone())),
        done.clone(),
    ));
    let err_task = tokio::spawn(tail(
        err_path.clone(),
        Some((inv.layer.to_string(), inv.step, redactor.clone())),
        done.clone(),
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
        End::Exited(status) => {
            timed(&inv, spawned.elapsed());
            status
        }
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
            // Children that outlived terraform (a local-exec `sleep`) go too, and are gone before
            // this returns (no pipe to read to its end waits for them any more).
            signal_group(pgid, libc::SIGKILL);
            wait_group_gone(pgid, limits.grace).await;
            let _ = status;
            done.cancel();
            let _ = out_task.await;
            let _ = err_task.await;
            finish_files(inv.run_dir, &[&out_path, &err_path]);
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
    done.cancel();
    let _ = out_task.await;
    let _ = err_task.await;
    let status = status.map_err(io("wait for", bin))?;
    let stdout = std::fs::read(&out_path).map_err(io("read", &out_path))?;
    let stderr = std::fs::read(&err_path).map_err(io("read", &err_path))?;
    finish_files(inv.run_dir, &[&out_path, &err_path]);
    Ok(Finished {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: redactor.redact(&String::from_utf8_lossy(&stderr)),
    })
}

/// Where a run's time goes: each command that ran to its end, with how long it ran (from just
/// before it was started to its exit), at debug level. The event's timestamp is the command's
/// end. Its target is its own, so it can be asked for without terraform's output lines
/// (`STRATA_LOG=warn,strata::terraform::timing=debug`).
fn timed(inv: &Invocation<'_>, ran: Duration) {
    tracing::debug!(
        target: "strata::terraform::timing",
        layer = %inv.layer,
        step = %inv.step,
        secs = ran.as_secs_f64(),
        "terraform finished"
    );
}

/// A new file only its owner can read: terraform's output may hold secrets.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// After a command ended: its output files (which may hold secrets) and its record go.
fn finish_files(run_dir: &Path, files: &[&PathBuf]) {
    for f in files {
        let _ = std::fs::remove_file(f);
    }
    TerraformRecord::remove(run_dir);
}

fn signal_group(pgid: Option<libc::pid_t>, signal: libc::c_int) {
    if let Some(pgid) = pgid {
        // SAFETY: killpg only sends a signal; a group that is gone gives ESRCH, which is fine.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

/// Waits (up to `bound`) until no live process is left in the group.
async fn wait_group_gone(pgid: Option<libc::pid_t>, bound: Duration) {
    let Some(pgid) = pgid else { return };
    let until = Instant::now() + bound;
    while super::orphans::group_has_live_process(pgid as u32) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Follows a growing output file, logging each complete line (redacted) when `log` is set,
/// until `done` is cancelled and the rest of the file is read.
async fn tail(path: PathBuf, log: Option<(String, Step, Redactor)>, done: CancellationToken) {
    let Some((layer, step, redactor)) = log else {
        return;
    };
    let Ok(mut file) = tokio::fs::File::open(&path).await else {
        return;
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0u64;
    loop {
        let finished = done.is_cancelled();
        if file.seek(SeekFrom::Start(pos)).await.is_err() {
            return;
        }
        let n = file.read(&mut buf).await.unwrap_or(0);
        pos += n as u64;
        pending.extend_from_slice(&buf[..n]);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            log_line(&layer, step, &redactor, &line);
        }
        if n > 0 {
            continue;
        }
        if finished {
            if !pending.is_empty() {
                log_line(&layer, step, &redactor, &pending);
            }
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(TAIL_EVERY) => {}
            _ = done.cancelled() => {}
        }
    }
}

fn log_line(layer: &str, step: Step, redactor: &Redactor, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let shown = redactor.redact(text.trim_end_matches(['\n', '\r']));
    if !shown.trim().is_empty() {
        tracing::info!(layer = %layer, step = %step, "{shown}");
    }
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
    let is_error = |l: &&str| l.trim_start_matches(['│', '╷', ' ']).starts_with("Error:");
    let mut errors = lines.iter().enumerate().filter(|(_, l)| is_error(l));
    // init prefaces configuration errors with a generic one; the real first error follows.
    let start = match (errors.next(), errors.next()) {
        (Some((_, first)), Some((second, _))) if first.contains("problems during initiali") => {
            second
        }
        (Some((first, _)), _) => first,
        (None, _) => lines.len().saturating_sub(20),
    };
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
        let init = "╷\n│ Error: Terraform encountered problems during initialisation, including problems\n│ with the configuration, described below.\n╵\n╷\n│ Error: Unclosed configuration block\n│ \n│   on main.tf line 1:\n╵\n";
        assert_eq!(
            error_text(init, ""),
            "Error: Unclosed configuration block\non main.tf line 1:"
        );
        assert_eq!(
            error_text("", ""),
            "terraform exited without an error message"
        );
    }
}
