//! Which values of a SOPS file are secret: the leaves SOPS encrypted (`ENC[...]` in the file as
//! it is in Git), whatever field they are in. Their decrypted text is sensitive by provenance.

use serde_json::Value;

use crate::redact::Redactor;

/// Whether a value in an encrypted file is one SOPS encrypted.
fn is_encrypted_leaf(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.starts_with("ENC[") && s.ends_with(']'))
}

/// Adds to `redactor` every decrypted leaf whose counterpart in `encrypted` SOPS encrypted,
/// except at the paths in `public` (a Kubernetes object's identity, which strata must print to
/// name the object at all).
pub fn register(encrypted: &Value, decrypted: &Value, public: &[&[&str]], redactor: &mut Redactor) {
    walk(encrypted, decrypted, &mut Vec::new(), public, redactor);
}

fn walk<'a>(
    enc: &'a Value,
    dec: &Value,
    path: &mut Vec<&'a str>,
    public: &[&[&str]],
    redactor: &mut Redactor,
) {
    match (enc, dec) {
        (Value::Object(e), Value::Object(d)) => {
            for (k, ev) in e {
                if path.is_empty() && k == "sops" {
                    continue;
                }
                if let Some(dv) = d.get(k) {
                    path.push(k);
                    walk(ev, dv, path, public, redactor);
                    path.pop();
                }
            }
        }
        (Value::Array(e), Value::Array(d)) => {
            for (ev, dv) in e.iter().zip(d) {
                walk(ev, dv, path, public, redactor);
            }
        }
        (e, d) if is_encrypted_leaf(e) && !public.contains(&path.as_slice()) => {
            redactor.add_json(d);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_encrypted_leaves_outside_the_public_paths_are_secret() {
        let enc = json!({"kind": "ENC[AES256_GCM,data:a]", "metadata": {"name": "ENC[AES256_GCM,data:b]"},
            "data": {"pw": "ENC[AES256_GCM,data:c]", "plain": "visible"}, "list": ["ENC[AES256_GCM,data:d]"],
            "sops": {"mac": "ENC[AES256_GCM,data:e]"}});
        let dec = json!({"kind": "Secret", "metadata": {"name": "db"},
            "data": {"pw": "hunter2-leaf", "plain": "visible"}, "list": ["item-leaf"]});
        let mut r = Redactor::new();
        register(&enc, &dec, &[&["kind"], &["metadata", "name"]], &mut r);
        assert_eq!(
            r.redact("Secret db hunter2-leaf visible item-leaf"),
            "Secret db *** visible ***"
        );
    }
}
