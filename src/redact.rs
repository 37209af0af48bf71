//! Secrets as a type: a [`Redacted`] value prints as `***` everywhere (Debug, Display, JSON), so
//! leaking one takes an explicit call to [`Redacted::expose`].

use std::fmt;

/// The marker printed in place of a secret.
pub const MARKER: &str = "***";

/// A value that must never be printed, logged or serialised as itself.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    pub fn new(value: T) -> Redacted<T> {
        Redacted(value)
    }

    /// The secret itself. Call sites are the places a secret may leave strata (a var file with mode
    /// 0600, a Secret manifest, a kubeconfig file): keep them few and obvious.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MARKER)
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MARKER)
    }
}

impl<T> serde::Serialize for Redacted<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MARKER)
    }
}

/// Scrubs known secret values out of text that strata did not write itself (terraform's output,
/// error messages), before it is logged or shown. It knows values by provenance (a sensitive
/// Terraform output, a SOPS-decrypted file), not by where they appear.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret that contains another is replaced whole.
    secrets: Vec<String>,
}

/// Its secrets are what it hides: Debug shows only how many it holds.
impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Adds a secret string, with the forms it takes where strata shows it: base64 (a Secret's
    /// `data`, a last-applied annotation) and JSON-escaped (inside an annotation that holds
    /// JSON). Empty strings are ignored.
    pub fn add(&mut self, secret: impl Into<String>) {
        use base64::Engine as _;
        let secret = secret.into();
        if secret.is_empty() {
            return;
        }
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(secret.as_bytes());
        let escaped = serde_json::to_string(&secret).expect("a string is JSON");
        let escaped = escaped[1..escaped.len() - 1].to_string();
        for form in [secret, b64, escaped] {
            if !self.secrets.contains(&form) {
                self.secrets.push(form);
            }
        }
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Adds every secret `other` knows.
    pub fn extend(&mut self, other: &Redactor) {
        for s in &other.secrets {
            if !self.secrets.contains(s) {
                self.secrets.push(s.clone());
            }
        }
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Adds every string and number inside a JSON value, and the value's own JSON text.
    pub fn add_json(&mut self, value: &serde_json::Value) {
        match value {
            serde_json::Value::String(s) => self.add(s.clone()),
            serde_json::Value::Number(n) => self.add(n.to_string()),
            serde_json::Value::Array(items) => {
                self.add(value.to_string());
                items.iter().for_each(|v| self.add_json(v));
            }
            serde_json::Value::Object(map) => {
                self.add(value.to_string());
                map.values().for_each(|v| self.add_json(v));
            }
            serde_json::Value::Bool(_) | serde_json::Value::Null => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Whether `text` holds any known secret.
    pub fn contains_secret(&self, text: &str) -> bool {
        self.secrets.iter().any(|s| text.contains(s.as_str()))
    }

    /// `text` with every known secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MARKER);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redactor_scrubs_every_known_secret() {
        let mut r = Redactor::new();
        r.add_json(&serde_json::json!({"token": "tok-123", "nested": ["pw-456"]}));
        r.add("");
        let text = r.redact("Error: bad token tok-123 and pw-456; ok");
        assert_eq!(text, "Error: bad token *** and ***; ok");
    }

    #[test]
    fn a_secret_is_also_known_base64_encoded_and_json_escaped_and_never_debug_printed() {
        let mut r = Redactor::new();
        r.add("pa\"ss");
        // base64 of `pa"ss` is cGEic3M=; JSON-escaped it is pa\"ss.
        assert_eq!(r.redact("data: cGEic3M="), "data: ***=");
        assert_eq!(r.redact(r#"{"p":"pa\"ss"}"#), r#"{"p":"***"}"#);
        assert_eq!(format!("{r:?}"), "Redactor(3 secrets)");
    }

    #[test]
    fn a_secret_never_prints_as_itself() {
        let secret = Redacted::new("hunter2-planted".to_string());
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{:#?}", Some(&secret)), "Some(\n    ***,\n)");
        assert_eq!(serde_json::to_string(&secret).unwrap(), "\"***\"");
        assert_eq!(secret.expose(), "hunter2-planted");
    }
}
