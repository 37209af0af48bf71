//! Output names checked statically: `terraform.network.outputs.X` must name an output the
//! layer's root module declares, when strata can read every declaration.

use std::collections::BTreeSet;
use std::path::Path;

use hcl::edit::structure::{Body, Structure};

use super::diag::{self, Diagnostics};
use super::model::{LayerKind, Stack};

/// The outputs declared by the Terraform root module in `dir` (`output "NAME"` blocks in `*.tf`,
/// `"output"` objects in `*.tf.json`). `None` when that can't be known for sure: no such file, a
/// file that doesn't parse (terraform reports it with its own words when the layer runs), or a
/// directory that can't be read.
pub(super) fn declared(dir: &Path) -> Option<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if file.ends_with(".tf") {
            let body: Body =
                hcl::edit::parser::parse_body(&std::fs::read_to_string(&path).ok()?).ok()?;
            names.extend(body.into_iter().filter_map(|s| match s {
                Structure::Block(b) if b.ident.as_str() == "output" => {
                    b.labels.first().map(|l| l.as_str().to_string())
                }
                _ => None,
            }));
        } else if file.ends_with(".tf.json") {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
            if let Some(outputs) = v.get("output").and_then(|o| o.as_object()) {
                names.extend(outputs.keys().cloned());
            }
        } else {
            continue;
        }
        files += 1;
    }
    (files > 0).then_some(names)
}

/// Reports every reference to an output its Terraform layer's root module doesn't declare.
pub(super) fn check(stack: &Stack, diags: &mut Diagnostics) {
    let refs = stack
        .layers
        .iter()
        .flat_map(|l| l.references())
        .chain(stack.clusters.iter().flat_map(|c| c.references()));
    let mut cache = std::collections::BTreeMap::new();
    for r in refs {
        let (Some(output), Some(target)) = (&r.output, stack.layer(&r.target)) else {
            continue;
        };
        if target.id.kind != LayerKind::Terraform
            || target.source.is_absolute()
            || target
                .source
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            continue;
        }
        let names = cache
            .entry(target.id.clone())
            .or_insert_with(|| declared(&stack.root.join(&target.source)));
        let Some(names) = names else { continue };
        if names.contains(output) {
            continue;
        }
        let declared = if names.is_empty() {
            "it declares no outputs".to_string()
        } else {
            format!(
                "it declares {}",
                names.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        };
        diags.push(
            r.location.clone(),
            format!(
                "{} has no output \"{output}\"{} ({declared} in {})",
                target.id,
                diag::hint(output, names.iter().map(String::as_str)),
                target.source.display()
            ),
        );
    }
}
