//! (b) 8 independent Terraform layers (a `null_resource` whose `local-exec` sleeps 2 s):
//! `strata apply` at parallelism 1, 2 and 4 against a shell loop of `terraform init && terraform
//! apply` over the same modules; and where the time of the loop and of strata's parallelism-1 run
//! goes, command by command.
//!
//! strata's commands are timed by strata itself: at debug level, under its own log target, it
//! logs each terraform command that ended with how long it ran (the event's timestamp is the
//! end). The loop's commands are timed by bash (`$EPOCHREALTIME` around each).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::{env, measure, measure_logged, row, strata, write, Measured, NULL};

/// One terraform command: which, and when it ran (seconds since the epoch).
struct Span {
    step: String,
    start: f64,
    end: f64,
}

pub fn bench_parallel(rows: &mut Vec<[String; 5]>) {
    let dir = tempfile::tempdir().unwrap();
    let stack = dir.path().join("stack");
    let module = format!("{NULL}resource \"null_resource\" \"s\" {{\n  provisioner \"local-exec\" {{\n    command = \"sleep 2\"\n  }}\n}}\n");
    let mut hcl = String::from("stack \"par\" {}\n");
    for i in 0..8 {
        write(&stack.join(format!("l{i}/main.tf")), &module);
        hcl.push_str(&format!("terraform \"l{i}\" {{\n  source = \"l{i}\"\n}}\n"));
    }
    let times = dir.path().join("loop-times");
    let mut loop_cmd = Command::new("bash");
    // Each command between two readings of bash's clock, written out after the command.
    let script = (0..8)
        .map(|i| {
            format!(
                "(cd {0}/l{i} && cp -r . {0}/loop{i} && cd {0}/loop{i} \
                 && t0=$EPOCHREALTIME && terraform init -input=false >/dev/null && t1=$EPOCHREALTIME \
                 && terraform apply -auto-approve -input=false >/dev/null && t2=$EPOCHREALTIME \
                 && echo \"init $t0 $t1\" >>{1} && echo \"apply $t1 $t2\" >>{1})",
                stack.display(),
                times.display()
            )
        })
        .collect::<Vec<_>>()
        .join(" && ");
    loop_cmd.args(["-c", &script]);
    let shell = measure(env(&mut loop_cmd));
    row(
        rows,
        "b",
        "shell loop: terraform init+apply x8",
        &shell,
        format!("exit {}; ideal critical path ~2s + 1 init", shell.code),
    );
    let loop_spans = read_loop_times(&times);
    breakdown(rows, "shell loop", &shell, &loop_spans);
    for p in [1, 2, 4] {
        let s = stack.with_file_name(format!("stack-p{p}"));
        let _ = Command::new("cp").arg("-r").arg(&stack).arg(&s).status();
        let _ = std::fs::remove_dir_all(s.join("loop0"));
        write(
            &s.join("strata.hcl"),
            &hcl.replace(
                "stack \"par\" {}",
                &format!("stack \"par\" {{\n  parallelism = {p}\n}}"),
            ),
        );
        let log = dir.path().join(format!("strata-p{p}.log"));
        let mut c = Command::new(strata());
        c.args(["--log-format", "json", "apply", "--auto-approve", "--stack"])
            .arg(&s)
            .arg("--state-dir")
            .arg(dir.path().join(format!("state{p}")))
            .env("STRATA_LOG", "warn,strata::terraform::timing=debug");
        let m = measure_logged(env(&mut c), &log);
        row(
            rows,
            "b",
            &format!("strata apply, 8 layers, parallelism {p}"),
            &m,
            format!(
                "exit {}; {:.2}x the shell loop",
                m.code,
                m.secs / shell.secs
            ),
        );
        if p == 1 {
            breakdown(rows, "strata p1", &m, &read_strata_log(&log));
        }
    }
}

/// A row per terraform command (how many ran, their total time), and one for the time no
/// terraform command was running (`run`'s wall time minus the union of the commands' spans).
fn breakdown(rows: &mut Vec<[String; 5]>, who: &str, run: &Measured, spans: &[Span]) {
    let mut by_step: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for s in spans {
        by_step
            .entry(s.step.as_str())
            .or_default()
            .push(s.end - s.start);
    }
    // Terraform's own order of a layer's commands, then any other.
    let order = ["init", "workspace", "plan", "show", "apply", "output"];
    let mut steps: Vec<&str> = order
        .iter()
        .copied()
        .filter(|s| by_step.contains_key(s))
        .collect();
    steps.extend(by_step.keys().copied().filter(|s| !order.contains(s)));
    for step in steps {
        let secs = &by_step[step];
        let total: f64 = secs.iter().sum();
        let min = secs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = secs.iter().copied().fold(0.0, f64::max);
        let m = Measured {
            secs: total,
            max_rss_mb: 0.0,
            code: 0,
        };
        row(
            rows,
            "b",
            &format!("  {who}: terraform {step} x{}", secs.len()),
            &m,
            format!(
                "total wall time; each {min:.2}\u{2013}{max:.2}s, mean {:.2}s",
                total / secs.len() as f64
            ),
        );
    }
    let busy = union(spans);
    let sum: f64 = spans.iter().map(|s| s.end - s.start).sum();
    let own = Measured {
        secs: run.secs - busy,
        max_rss_mb: 0.0,
        code: 0,
    };
    let overlap = if sum - busy > 0.005 {
        format!(
            "; commands overlapped for {:.2}s (a show beside its apply)",
            sum - busy
        )
    } else {
        String::new()
    };
    row(
        rows,
        "b",
        &format!("  {who}: outside any terraform command"),
        &own,
        format!(
            "{:.2}s wall minus {busy:.2}s with a terraform command running{overlap}",
            run.secs
        ),
    );
}

/// The length of the union of the spans.
fn union(spans: &[Span]) -> f64 {
    let mut sorted: Vec<(f64, f64)> = spans.iter().map(|s| (s.start, s.end)).collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut total = 0.0;
    let mut current: Option<(f64, f64)> = None;
    for (start, end) in sorted {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    total + current.map_or(0.0, |(s, e)| e - s)
}

/// The loop's `STEP START END` lines.
fn read_loop_times(path: &Path) -> Vec<Span> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let step = parts.next()?.to_string();
            let start = parts.next()?.parse().ok()?;
            let end = parts.next()?.parse().ok()?;
            Some(Span { step, start, end })
        })
        .collect()
}

/// strata's `terraform finished` events (JSON log lines): each command's end is the event's
/// timestamp, its start that minus `secs`.
fn read_strata_log(path: &Path) -> Vec<Span> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let f = &v["fields"];
            if f["message"] != "terraform finished" {
                return None;
            }
            let at: jiff::Timestamp = v["timestamp"].as_str()?.parse().ok()?;
            let end = at.as_microsecond() as f64 / 1e6;
            let secs = f["secs"].as_f64()?;
            Some(Span {
                step: f["step"].as_str()?.to_string(),
                start: end - secs,
                end,
            })
        })
        .collect()
}
