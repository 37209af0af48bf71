//! SOPS-encrypted manifest files: decrypted in memory with the agent's age keys, every value
//! SOPS encrypted registered as sensitive, so that no output shows it.

use std::path::Path;

use serde_json::Value;

use super::limits::ManifestLimits;
use super::manifest::{parse_document, split_documents};
use crate::redact::Redactor;
use crate::secrets::{leaves, sops, AgeKeys, Format};

/// A Kubernetes object's identity: strata prints it to name the object, so it is never secret
/// (encrypt with `--encrypted-regex '^(data|stringData)$'` to keep it readable in Git too).
const PUBLIC: [&[&str]; 4] = [
    &["apiVersion"],
    &["kind"],
    &["metadata", "name"],
    &["metadata", "namespace"],
];

/// The documents of a manifest file's text: one for JSON, `---`-separated for YAML.
fn documents(text: &str, json: bool) -> Vec<String> {
    if json {
        vec![text.to_string()]
    } else {
        split_documents(text).into_iter().map(|(_, d)| d).collect()
    }
}

/// `text` (the content of `file`, shown as `shown`) as plaintext: itself when it is not
/// SOPS-encrypted, else decrypted through sops with `keys`, every encrypted value added to
/// `sensitive`.
///
/// # Guarantees
/// The plaintext exists only in memory; nothing of it is in the error.
///
/// # Errors
/// A file encrypted to another key, a tampered or malformed file, no key or no sops: one message
/// naming the file (as `shown`) and how to fix it.
pub fn plaintext(
    file: &Path,
    shown: &Path,
    text: String,
    keys: Option<&AgeKeys>,
    limits: &ManifestLimits,
    sensitive: &mut Redactor,
) -> Result<String, String> {
    let json = file.extension().is_some_and(|e| e == "json");
    let encrypted: Vec<Value> = documents(&text, json)
        .iter()
        .filter_map(|d| parse_document(d, limits).ok())
        .collect();
    if !encrypted.iter().any(sops::is_encrypted) {
        return Ok(text);
    }
    let format = if json { Format::Json } else { Format::Yaml };
    let plain = sops::decrypt(file, format, keys).map_err(|e| {
        // sops names the absolute path of the copy it read; the user knows the file by its
        // place in the repository.
        let msg = e
            .to_string()
            .replace(&file.display().to_string(), &shown.display().to_string());
        format!("{msg}; nothing of this layer was applied")
    })?;
    let plain = String::from_utf8(plain.into_inner())
        .map_err(|_| format!("{}: decrypted, but not UTF-8 text", shown.display()))?;
    let decrypted: Vec<Value> = documents(&plain, json)
        .iter()
        .filter_map(|d| parse_document(d, limits).ok())
        .collect();
    for (e, d) in encrypted.iter().zip(&decrypted) {
        leaves::register(e, d, &PUBLIC, sensitive);
    }
    Ok(plain)
}
