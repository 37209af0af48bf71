//! (f) `strata validate` of generated stacks of a quarter of N and N Terraform layers (chains of
//! ten on one module): the time should grow with the stack's size, not its square.

use std::path::Path;
use std::process::Command;

use crate::{measure, row, strata, write};

fn stack(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir.join("mods/a")).unwrap();
    let mut hcl = String::from("stack \"big\" {}\n");
    for i in 0..n {
        let after = if i % 10 == 0 {
            String::new()
        } else {
            format!("  depends_on = [terraform.l{}]\n", i - 1)
        };
        hcl.push_str(&format!(
            "terraform \"l{i}\" {{\n  source = \"mods/a\"\n{after}}}\n"
        ));
    }
    write(&dir.join("strata.hcl"), &hcl);
}

pub fn bench_validate(rows: &mut Vec<[String; 5]>, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut first = None;
    for size in [n / 4, n] {
        let at = dir.path().join(size.to_string());
        stack(&at, size);
        let mut c = Command::new(strata());
        c.args(["validate", "--stack"]).arg(&at);
        let m = measure(&mut c);
        let note = match first {
            None => format!("exit {}", m.code),
            Some(q) => format!(
                "exit {}; {:.1}x the time of a quarter of it (linear: 4x); target 2 s for 60,000",
                m.code,
                m.secs / q
            ),
        };
        row(
            rows,
            "f",
            &format!("strata validate, {size} layers"),
            &m,
            note,
        );
        first = Some(m.secs);
    }
}
