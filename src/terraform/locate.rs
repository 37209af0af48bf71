//! terraform names files as it sees them: relative to the working copy strata made for the run
//! (`on main.tf line 5`, `../../modules/subnet/main.tf`), or by their absolute path in the state
//! dir. Users know their repository, so error text is rewritten to name the repository path
//! (`infra/network/main.tf:5`).

use std::path::Path;

use super::modules::normalize;

/// Rewrites `text` so that file references point into the repository.
///
/// `tree` is the root of the run's working copy (it mirrors the stack root), `source` the
/// layer's directory inside it, where terraform runs; `revision` is added to references when it
/// is a commit, so the reader knows which version of the file is meant.
pub fn to_repository(text: &str, tree: &Path, source: &Path, revision: &str) -> String {
    let at = if revision.starts_with("dir-") || revision.is_empty() {
        String::new()
    } else {
        format!(" (at {})", &revision[..revision.len().min(7)])
    };
    let tree_prefix = format!("{}/", tree.display());
    text.lines()
        .map(|line| {
            let line = line.replace(&tree_prefix, "");
            match on_line(&line) {
                Some((indent, file, number, rest)) => {
                    let file = if Path::new(file).is_absolute() {
                        file.to_string()
                    } else {
                        normalize(&source.join(file)).display().to_string()
                    };
                    format!("{indent}on {file}:{number}{at}{rest}")
                }
                None => line,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Splits terraform's `on <file> line <n><rest>` into its parts.
fn on_line(line: &str) -> Option<(&str, &str, &str, &str)> {
    let body = line.trim_start();
    let indent = &line[..line.len() - body.len()];
    let after_on = body.strip_prefix("on ")?;
    let split = after_on.find(" line ")?;
    let (file, tail) = (&after_on[..split], &after_on[split + " line ".len()..]);
    let digits = tail
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(tail.len());
    let is_config = [".tf", ".tf.json", ".tfvars", ".tfvars.json"]
        .iter()
        .any(|ext| file.ends_with(ext));
    if digits == 0 || !is_config {
        return None;
    }
    Some((indent, file, &tail[..digits], &tail[digits..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_named_by_their_repository_path() {
        let tree = Path::new("/state/layers/network/runs/1-2-3/tree");
        let text = "Error: Invalid single-argument block definition\non main.tf line 5, in module \"subnet\":\n5: output \"subnet\" {";
        assert_eq!(
            to_repository(text, tree, Path::new("infra/network"), "e8d049b0123456"),
            "Error: Invalid single-argument block definition\non infra/network/main.tf:5 (at e8d049b), in module \"subnet\":\n5: output \"subnet\" {"
        );
        let module = "  on ../../modules/subnet/main.tf line 12:";
        assert_eq!(
            to_repository(module, tree, Path::new("infra/network"), "dir-abc"),
            "  on modules/subnet/main.tf:12:"
        );
        let absolute =
            "Error: Failed to read file /state/layers/network/runs/1-2-3/tree/infra/network/x.txt";
        assert_eq!(
            to_repository(absolute, tree, Path::new("infra/network"), "dir-abc"),
            "Error: Failed to read file infra/network/x.txt"
        );
        assert_eq!(
            to_repository("on the line 5", tree, Path::new("l"), "dir-a"),
            "on the line 5",
            "prose that only looks like a reference"
        );
    }
}
