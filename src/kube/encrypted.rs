//! SOPS-encrypted manifest files: decrypted in memory with the agent's age keys, every value
//! SOPS encrypted registered as sensitive, so that no output shows it.

use std::path::Path;

use super::limits::ManifestLimits;
use super::parsed::Documents;
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

/// `raw` (the documents of `file`, shown as `shown`) as plaintext: themselves when the file is
/// not SOPS-encrypted, else the file decrypted through sops with `keys` (each of its documents
/// parsed once), every encrypted value added to `sensitive`.
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
    raw: Documents,
    keys: Option<&AgeKeys>,
    limits: &ManifestLimits,
    sensitive: &mut Redactor,
) -> Result<Documents, String> {
    let json = file.extension().is_some_and(|e| e == "json");
    if !raw.parsed.iter().flatten().any(sops::is_encrypted) {
        return Ok(raw);
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
    let decrypted = Documents::parse(&plain, json, limits);
    for (e, d) in raw
        .parsed
        .iter()
        .flatten()
        .zip(decrypted.parsed.iter().flatten())
    {
        leaves::register(e, d, &PUBLIC, sensitive);
    }
    Ok(decrypted)
}
