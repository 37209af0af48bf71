//! A stack of thousands of layers validates in time linear in its size (the timing of 60,000 is
//! in `make bench`): here, that such a stack is read, checked and ordered right.

use crate::support::strata_cli;

/// `n` Terraform layers in chains of ten (each layer after the first of its chain depends on
/// the one before), all on one module.
pub(crate) fn chains(dir: &std::path::Path, n: usize) {
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
    std::fs::write(dir.join("strata.hcl"), hcl).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_of_five_thousand_layers_validates_with_its_waves() {
    let dir = tempfile::tempdir().unwrap();
    chains(dir.path(), 5000);
    let out = strata_cli(dir.path(), &["validate", "--stack", "."])
        .await
        .code(0);
    assert!(
        out.stdout.contains("5000 layers, 10 waves"),
        "{}",
        out.stdout
    );
    // A reference to a missing layer among them is still found, and named.
    let hcl = std::fs::read_to_string(dir.path().join("strata.hcl")).unwrap();
    std::fs::write(
        dir.path().join("strata.hcl"),
        hcl.replace(
            "depends_on = [terraform.l4998]",
            "depends_on = [terraform.l49980]",
        ),
    )
    .unwrap();
    let out = strata_cli(dir.path(), &["validate", "--stack", "."])
        .await
        .code(1);
    assert!(out.stderr.contains("unknown layer"), "{}", out.stderr);
}
