//! Identifiers the server makes up: bearer tokens, object uids and list continue tokens.

use sha2::{Digest, Sha256};

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// 32 hex digits from the kernel's random source.
///
/// # Guarantees
/// Reads `/dev/urandom` only; when it can't be read the token is all zeros rather than an
/// error, because a devcluster only ever listens on an address its caller chose.
pub fn random_token() -> String {
    let mut buf = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut buf);
    }
    hex(&buf)
}

/// A uid in Kubernetes' 8-4-4-4-12 form, derived from `seed` (unique per object).
pub fn uid(seed: &str) -> String {
    let h = hex(&Sha256::digest(seed.as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The `continue` token of a list page that ended at (namespace, name).
pub fn continue_token(namespace: &str, name: &str) -> String {
    hex(&serde_json::to_vec(&(namespace, name)).unwrap_or_default())
}

/// The (namespace, name) a `continue` token names, or `None` when it isn't one of ours.
pub fn parse_continue(token: &str) -> Option<(String, String)> {
    serde_json::from_slice(&unhex(token)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_garbage_is_rejected() {
        let t = continue_token("demo", "web");
        assert_eq!(parse_continue(&t), Some(("demo".into(), "web".into())));
        assert_eq!(parse_continue("zz"), None);
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(uid("x").len(), 36);
    }
}
