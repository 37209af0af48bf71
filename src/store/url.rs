//! The `--state` location: a `postgres://` URL whose password is never shown. It is kept as given
//! (the driver parses it) and shown everywhere as `postgres://user:****@host:port/db`.

use std::fmt;

use crate::redact::Redacted;

/// What replaces a password in every message.
const MASK: &str = "****";

/// A `postgres://` (or `postgresql://`) state location.
///
/// Parsing never fails, so a bad value reaches [`crate::store::Store::open`], which names it
/// redacted; clap would print a refused value whole, password included.
#[derive(Clone, PartialEq, Eq)]
pub struct StateUrl {
    given: Redacted<String>,
    shown: String,
}

impl StateUrl {
    /// The URL as given, password included: for the driver and Terraform's backend file only.
    pub fn expose(&self) -> &str {
        self.given.expose()
    }

    /// Whether the scheme is one this build keeps state in.
    pub fn is_postgres(&self) -> bool {
        let s = self.given.expose();
        s.starts_with("postgres://") || s.starts_with("postgresql://")
    }

    /// Whether the URL itself holds a password (in its userinfo or a `password=` parameter).
    pub fn has_password(&self) -> bool {
        !passwords(self.given.expose()).is_empty()
    }

    /// `text` with this URL's password (and the URL itself) masked, for messages that come from
    /// the driver and may quote either.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(self.given.expose(), &self.shown);
        for pw in passwords(self.given.expose()) {
            out = out.replace(pw, MASK);
        }
        out
    }
}

impl std::str::FromStr for StateUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<StateUrl, Self::Err> {
        Ok(StateUrl {
            given: Redacted::new(s.to_string()),
            shown: redact(s),
        })
    }
}

impl fmt::Display for StateUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for StateUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// The userinfo of `url` (before the last `@` of the authority), if any.
fn userinfo(url: &str) -> Option<(usize, &str)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    Some((start, &rest[..at]))
}

/// The passwords `url` holds: in its userinfo and in `password=` query parameters.
fn passwords(url: &str) -> Vec<&str> {
    let mut found: Vec<&str> = userinfo(url)
        .and_then(|(_, info)| info.split_once(':'))
        .map(|(_, pw)| pw)
        .into_iter()
        .collect();
    if let Some((_, query)) = url.split_once('?') {
        found.extend(query.split('&').filter_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| k.eq_ignore_ascii_case("password"))
                .map(|(_, v)| v)
        }));
    }
    found.retain(|p| !p.is_empty());
    found
}

/// `url` with the password of its userinfo and any `password=` query parameter masked; a value
/// that is no URL at all is shown only by its scheme, in case it is a password pasted by mistake.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return "(not a URL)".into();
    };
    let mut out = match userinfo(url) {
        Some((start, info)) => match info.split_once(':') {
            Some((user, _)) => format!(
                "{}{user}:{MASK}{}",
                &url[..start],
                &url[start + info.len()..]
            ),
            None => url.to_string(),
        },
        None => url.to_string(),
    };
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let masked: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}={MASK}"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", masked.join("&"));
    }
    debug_assert!(scheme_end < out.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_masked_wherever_it_stands() {
        let u: StateUrl = "postgres://strata:s3cr%40t@db.example:5432/state?sslmode=require"
            .parse()
            .unwrap();
        assert_eq!(
            u.to_string(),
            "postgres://strata:****@db.example:5432/state?sslmode=require"
        );
        assert_eq!(format!("{u:?}"), u.to_string());
        assert_eq!(
            u.scrub("connect to postgres://strata:s3cr%40t@db.example:5432/state?sslmode=require failed: s3cr%40t"),
            "connect to postgres://strata:****@db.example:5432/state?sslmode=require failed: ****"
        );
        let q: StateUrl = "postgres://h/db?user=a&password=hunter2".parse().unwrap();
        assert_eq!(q.to_string(), "postgres://h/db?user=a&password=****");
        let plain: StateUrl = "postgres://strata@h:1/db".parse().unwrap();
        assert_eq!(plain.to_string(), "postgres://strata@h:1/db");
        let junk: StateUrl = "hunter2".parse().unwrap();
        assert_eq!(junk.to_string(), "(not a URL)");
        assert!(!junk.is_postgres());
    }
}
