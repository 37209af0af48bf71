//! What an environment runs: the tags its image markers carry in a stack directory. Markers
//! in files are every environment's; a marker on a value of an environment block's `vars` is
//! that environment's only.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::markers::{self, MarkerForm};
use crate::stack::STACK_FILE;

/// One marked value an environment runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningImage {
    /// The image block the marker names.
    pub image: String,
    /// The tag the value carries.
    pub tag: String,
    /// The value as written (`repository:tag`, or the tag).
    pub value: String,
    /// The file, relative to the stack directory, and the line.
    pub file: String,
    pub line: usize,
    /// The `vars` name when the value is one of the environment block's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub var: Option<String>,
}

/// The tag-carrying markers under `root` as environment `env` runs them (`None`: a stack
/// without environments), in path order.
///
/// # Errors
/// None: a file that cannot be read has no markers here (`strata validate` names it).
pub fn of(root: &Path, env: Option<&str>) -> Vec<RunningImage> {
    of_found(root, env, &markers::scan(root))
}

/// [`of`], from markers already read (`found`, a scan of `root`).
pub fn of_found(root: &Path, env: Option<&str>, found: &markers::Found) -> Vec<RunningImage> {
    let blocks = std::fs::read_to_string(root.join(STACK_FILE))
        .ok()
        .and_then(|t| crate::promote::edit::environment_blocks(&t).ok())
        .unwrap_or_default();
    let mut out = Vec::new();
    for m in &found.markers {
        if m.form == MarkerForm::Name {
            continue;
        }
        let Some(tag) = m.tag() else { continue };
        let mut var = None;
        if m.file == Path::new(STACK_FILE) {
            let inside = blocks
                .iter()
                .find(|b| b.span.start <= m.span.start && m.span.end <= b.span.end);
            if let Some(b) = inside {
                if Some(b.name.as_str()) != env {
                    continue;
                }
                var = b.vars.as_ref().and_then(|v| {
                    v.vars
                        .iter()
                        .find(|v| v.span.start <= m.span.start && m.span.end <= v.span.end)
                        .map(|v| v.name.clone())
                });
            }
        }
        out.push(RunningImage {
            image: m.image.clone(),
            tag: tag.to_string(),
            value: m.value.clone(),
            file: m.file.display().to_string(),
            line: m.line,
            var,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_environment_runs_the_shared_markers_and_its_own_vars_only() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(STACK_FILE),
            "environment \"dev\" {\n  vars = {\n    web = \"r/web:1.4.0\" # strata:image web\n  }\n}\nenvironment \"prod\" {\n  vars = {\n    web = \"r/web:1.2.0\" # strata:image web\n  }\n}\n",
        )
        .unwrap();
        std::fs::create_dir(d.path().join("k8s")).unwrap();
        std::fs::write(
            d.path().join("k8s/api.yaml"),
            "image: r/api:9 # strata:image api\nrepository: r/api # strata:image api:name\n",
        )
        .unwrap();
        let got = |env| -> Vec<(String, String, Option<String>, usize)> {
            of(d.path(), env)
                .into_iter()
                .map(|r| (r.image, r.tag, r.var, r.line))
                .collect()
        };
        assert_eq!(
            got(Some("prod")),
            [
                ("api".into(), "9".into(), None, 1),
                ("web".into(), "1.2.0".into(), Some("web".into()), 8),
            ]
        );
        assert_eq!(got(Some("dev"))[1].1, "1.4.0");
        assert_eq!(
            got(None).len(),
            1,
            "a stack without environments: shared markers"
        );
    }
}
