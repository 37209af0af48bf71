//! A saved plan is read (`terraform show -json`) only where it can say something: not after a
//! plan without changes, and beside the apply where no approval waits for it. Either way the
//! layer reports the same plan (changes, digest) and passes on the same outputs, sensitive ones
//! included, as a plan read before its apply.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use strata::stack::{LayerId, Stack};
use strata::terraform::{LayerInput, PlanMode, Terraform, TerraformBinary, TerraformOptions};
use strata::value::InputValue;
use tokio_util::sync::CancellationToken;

use crate::support::repo_root;

const MODULE: &str = "terraform {
  required_providers {
    null = { source = \"hashicorp/null\" }
  }
}
variable \"cidr\" { type = string }
resource \"null_resource\" \"net\" {
  triggers = { cidr = var.cidr }
}
output \"subnet\" { value = \"subnet-${var.cidr}\" }
output \"token\" {
  value     = \"planted-token-${var.cidr}\"
  sensitive = true
}
";

/// One stack (a layer `net`) in `dir`, its state dir beside it.
fn stack(dir: &Path, module: &str) -> Stack {
    let root = dir.join("stack");
    std::fs::create_dir_all(root.join("net")).unwrap();
    std::fs::write(
        root.join("strata.hcl"),
        "stack \"s\" {}\nterraform \"net\" {\n  source = \"net\"\n}\n",
    )
    .unwrap();
    std::fs::write(root.join("net/main.tf"), module).unwrap();
    Stack::load(&root).unwrap_or_else(|d| panic!("{d}"))
}

async fn terraform(state: &Path) -> Terraform {
    let rc = repo_root().join("bin/terraformrc");
    assert!(rc.exists(), "bin/terraformrc is missing: run `make tools`");
    let bin = TerraformBinary::find(None)
        .await
        .unwrap_or_else(|e| panic!("{e}: run `make tools`"));
    let mut opts = TerraformOptions::new(state);
    opts.grace = Duration::from_secs(5);
    opts.env.push(("TF_CLI_CONFIG_FILE".into(), rc.into()));
    Terraform::new(bin, opts)
}

fn input<'a>(stack: &'a Stack, root: &'a Path, cidr: &str) -> LayerInput<'a> {
    LayerInput {
        layer: stack.layer(&LayerId::terraform("net")).unwrap(),
        stack_root: root,
        revision: "r1",
        vars: BTreeMap::from([("cidr".to_string(), InputValue::Known(cidr.into()))]),
        backend_config: BTreeMap::new(),
    }
}

#[tokio::test]
async fn an_apply_beside_its_show_reports_and_passes_on_what_show_then_apply_does() {
    let cancel = CancellationToken::new();
    // The reference: the plan read, then applied.
    let a = tempfile::tempdir().unwrap();
    let sa = stack(a.path(), MODULE);
    let tfa = terraform(&a.path().join("state")).await;
    let mut pa = tfa
        .prepare(input(&sa, &a.path().join("stack"), "10.0.0.0/16"))
        .await
        .unwrap();
    let shown_first = tfa.plan(&mut pa, PlanMode::Normal, &cancel).await.unwrap();
    let applied_after = tfa.apply(&pa, &shown_first, &cancel).await.unwrap();

    // The same layer applied while its plan is read.
    let b = tempfile::tempdir().unwrap();
    let sb = stack(b.path(), MODULE);
    let tfb = terraform(&b.path().join("state")).await;
    let mut pb = tfb
        .prepare(input(&sb, &b.path().join("stack"), "10.0.0.0/16"))
        .await
        .unwrap();
    let planned = tfb
        .plan_saved(&mut pb, PlanMode::Normal, &cancel)
        .await
        .unwrap();
    assert!(planned.has_changes);
    let before = tfb.invocations();
    let (shown_beside, applied_beside) = tfb
        .apply_while_showing(&pb, &planned, &cancel)
        .await
        .unwrap();
    let shown_beside = shown_beside.unwrap();
    assert_eq!(
        tfb.invocations() - before,
        2,
        "show and apply; the outputs come from the plan"
    );
    assert_eq!(shown_beside.digest, shown_first.digest);
    assert_eq!(shown_beside.resources, shown_first.resources);
    assert_eq!(shown_beside.counts, shown_first.counts);
    assert_eq!(shown_beside.outputs, shown_first.outputs);
    assert_eq!(applied_beside.outputs, applied_after.outputs);
    assert!(applied_beside.outputs["token"].sensitive);
    assert_eq!(
        applied_beside.outputs["token"].value, "planted-token-10.0.0.0/16",
        "the sensitive value itself is passed on, wrapped"
    );
    let printed = format!(
        "{shown_beside:?}{}{applied_beside:?}",
        serde_json::to_string(&shown_beside).unwrap()
    );
    assert!(!printed.contains("planted-token"), "{printed}");
    drop(pb);

    // Another value: another digest, so an approval of the old plan cannot take the new one.
    let mut pb = tfb
        .prepare(input(&sb, &b.path().join("stack"), "10.1.0.0/16"))
        .await
        .unwrap();
    let planned = tfb
        .plan_saved(&mut pb, PlanMode::Normal, &cancel)
        .await
        .unwrap();
    let (changed, applied) = tfb
        .apply_while_showing(&pb, &planned, &cancel)
        .await
        .unwrap();
    let changed = changed.unwrap();
    assert_ne!(changed.digest, shown_beside.digest);
    assert_eq!(applied.outputs["subnet"].value, "subnet-10.1.0.0/16");
    drop(pb);

    // Nothing to change: nothing to show.
    let mut pb = tfb
        .prepare(input(&sb, &b.path().join("stack"), "10.1.0.0/16"))
        .await
        .unwrap();
    let before = tfb.invocations();
    let planned = tfb
        .plan_saved(&mut pb, PlanMode::Normal, &cancel)
        .await
        .unwrap();
    let none = tfb.show(&pb, &planned, &cancel).await.unwrap();
    assert_eq!(tfb.invocations() - before, 1, "the plan only");
    assert!(!none.has_changes && none.resources.is_empty() && none.outputs.is_empty());
    assert_eq!(none.counts.to_string(), "+0 ~0 -0");
}

#[tokio::test]
async fn outputs_unknown_until_the_apply_are_read_after_it_sensitive_ones_too() {
    let module = format!(
        "{MODULE}output \"id\" {{\n  value     = null_resource.net.id\n  sensitive = true\n}}\n"
    );
    let cancel = CancellationToken::new();
    let dir = tempfile::tempdir().unwrap();
    let s = stack(dir.path(), &module);
    let tf = terraform(&dir.path().join("state")).await;
    let mut p = tf
        .prepare(input(&s, &dir.path().join("stack"), "10.0.0.0/16"))
        .await
        .unwrap();
    let planned = tf
        .plan_saved(&mut p, PlanMode::Normal, &cancel)
        .await
        .unwrap();
    let before = tf.invocations();
    let (shown, applied) = tf.apply_while_showing(&p, &planned, &cancel).await.unwrap();
    shown.unwrap();
    assert_eq!(
        tf.invocations() - before,
        3,
        "show, apply, and output for the id the plan did not know"
    );
    assert!(applied.outputs["id"].sensitive);
    assert!(applied.outputs["id"]
        .value
        .as_str()
        .is_some_and(|v| !v.is_empty()));
    assert!(applied.outputs["token"].sensitive);
    assert_eq!(applied.outputs["subnet"].value, "subnet-10.0.0.0/16");
}
