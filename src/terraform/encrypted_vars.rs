//! SOPS-encrypted `*.tfvars.json` files in a layer's source (terraform reads
//! `terraform.tfvars.json` and `*.auto.tfvars.json` on its own): decrypted into the layer's
//! private run dir copy only, every encrypted value added to the layer's redactor.

use std::path::Path;

use crate::redact::Redactor;
use crate::secrets::{leaves, sops, AgeKeys, Format};

/// Decrypts, in place, every SOPS-encrypted `*.tfvars.json` directly in `work_dir` (the layer's
/// working copy in its run dir); `source` is the layer's directory in the repository, to name
/// files as the user knows them.
///
/// # Guarantees
/// - The plaintext is written only into `work_dir`, mode 0600 (the run dir is 0700 and removed
///   after the run); the materialised revision and the source keep the encrypted file.
/// - Every value SOPS encrypted is in `redactor` before terraform runs.
///
/// # Errors
/// A file encrypted to another key, tampered or malformed, no key or no sops: one message naming
/// the file; the layer fails before terraform runs.
pub(super) fn decrypt_in_place(
    work_dir: &Path,
    source: &Path,
    keys: Option<&AgeKeys>,
    redactor: &mut Redactor,
) -> Result<(), String> {
    let entries = std::fs::read_dir(work_dir)
        .map_err(|e| format!("failed to read {}: {e}", source.display()))?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().ends_with(".tfvars.json"))
        })
        .collect();
    files.sort();
    for file in files {
        let shown = source.join(file.file_name().unwrap_or_default());
        let text = std::fs::read(&file).map_err(|e| format!("{}: {e}", shown.display()))?;
        // A file that is not JSON is terraform's to report; only SOPS files are ours.
        let Ok(encrypted) = serde_json::from_slice::<serde_json::Value>(&text) else {
            continue;
        };
        if !sops::is_encrypted(&encrypted) {
            continue;
        }
        let plain = sops::decrypt(&file, Format::Json, keys).map_err(|e| {
            e.to_string()
                .replace(&file.display().to_string(), &shown.display().to_string())
        })?;
        let decrypted: serde_json::Value = serde_json::from_slice(plain.expose())
            .map_err(|e| format!("{}: decrypted, but not JSON: {e}", shown.display()))?;
        leaves::register(&encrypted, &decrypted, &[], redactor);
        // The copy may carry the source's mode; a new file gets 0600 from its first byte.
        std::fs::remove_file(&file).map_err(|e| format!("{}: {e}", shown.display()))?;
        super::workdir::write_scratch(&file, plain.expose())
            .map_err(|e| format!("{}: {e}", shown.display()))?;
    }
    Ok(())
}
