//! Listing a repository's tags over the OCI distribution API (`GET /v2/NAME/tags/list`), with
//! paging through `Link` headers, basic and bearer-token auth, a custom CA, and a timeout on
//! every request. Tags are handed over one at a time while each page is parsed, so the memory a
//! listing takes is bounded by one page ([`MAX_PAGE_BYTES`]), however many tags there are.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::redact::Redacted;

/// Tags asked for per page.
const PAGE: usize = 1000;
/// The largest page body read; a registry that sends more is refused.
pub const MAX_PAGE_BYTES: usize = 16 << 20;
/// The most pages followed: a registry whose `Link`s never end is refused.
const MAX_PAGES: usize = 10_000;

/// `host[:port]/path` of an `image` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// `registry.example.com` or `127.0.0.1:5000`.
    pub host: String,
    /// `shop/web`.
    pub path: String,
}

impl Repository {
    /// # Errors
    /// No host, a tag or digest, or a path the distribution spec does not allow; the reason
    /// says which.
    pub fn parse(text: &str) -> Result<Repository, String> {
        let Some((host, path)) = text.split_once('/') else {
            return Err(format!(
                "repository \"{text}\" needs a registry host: host[:port]/path"
            ));
        };
        let host_ok = !host.is_empty()
            && (host.contains(['.', ':']) || host == "localhost")
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !host_ok {
            return Err(format!(
                "repository \"{text}\" needs a registry host (a name with a dot, a port, or localhost) before the path: host[:port]/path"
            ));
        }
        if path.contains('@') || path.rsplit('/').next().is_some_and(|l| l.contains(':')) {
            return Err(format!(
                "repository \"{text}\" must not hold a tag or digest: the policy picks the tag"
            ));
        }
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
                && c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
                && c.chars().all(|ch| {
                    ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
                })
        };
        if !path.split('/').all(component_ok) {
            return Err(format!(
                "repository \"{text}\": the path \"{path}\" must be lowercase letters, digits and . _ - between slashes"
            ));
        }
        Ok(Repository {
            host: host.to_string(),
            path: path.to_string(),
        })
    }
}

/// How to reach a registry.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    pub credentials_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub insecure_http: bool,
    /// Bounds each request.
    pub timeout: Duration,
}

impl RegistryOptions {
    pub fn of(image: &crate::stack::images::Image) -> RegistryOptions {
        RegistryOptions {
            credentials_file: image.credentials_file.clone(),
            ca_file: image.ca_file.clone(),
            insecure_http: image.insecure_http,
            timeout: image.timeout,
        }
    }
}

/// What a credentials file holds.
#[derive(Debug, Clone)]
enum Credentials {
    Basic {
        username: String,
        password: Redacted<String>,
    },
    Token(Redacted<String>),
}

#[derive(Deserialize)]
struct CredentialsFile {
    username: Option<String>,
    password: Option<String>,
    token: Option<String>,
}

fn read_credentials(file: &Path) -> Result<Credentials, RegistryError> {
    let bad = |reason: String| RegistryError::Credentials {
        file: file.to_path_buf(),
        reason,
    };
    let text = std::fs::read(file).map_err(|e| bad(e.to_string()))?;
    // Never echo the content: it is a secret.
    let c: CredentialsFile = serde_json::from_slice(&text)
        .map_err(|_| bad("not a JSON object with username and password, or token".into()))?;
    match (c.username, c.password, c.token) {
        (Some(username), Some(password), None) => Ok(Credentials::Basic {
            username,
            password: Redacted::new(password),
        }),
        (None, None, Some(token)) => Ok(Credentials::Token(Redacted::new(token))),
        _ => Err(bad(
            "must hold either username and password, or token".into()
        )),
    }
}

/// Why a tag list could not be had.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {host} is unreachable: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("registry {host} refused access to {repository} (HTTP {status}): {hint}")]
    AuthRefused {
        host: String,
        repository: String,
        status: u16,
        hint: String,
    },
    #[error("repository {repository} does not exist on registry {host}")]
    NotFound { host: String, repository: String },
    #[error("registry {host} answered the tag list of {repository} with HTTP {status}: {message}")]
    Status {
        host: String,
        repository: String,
        status: u16,
        message: String,
    },
    #[error("registry {host} sent a tag list of {repository} strata refuses: {reason}")]
    Invalid {
        host: String,
        repository: String,
        reason: String,
    },
    #[error("registry credentials file {file}: {reason}")]
    Credentials { file: PathBuf, reason: String },
    #[error("registry CA file {file}: {reason}")]
    Ca { file: PathBuf, reason: String },
}

impl RegistryError {
    /// `unreachable`, `auth`, `not_found`, `status`, `invalid`, `credentials`, `ca`.
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryError::Unreachable { .. } => "unreachable",
            RegistryError::AuthRefused { .. } => "auth",
            RegistryError::NotFound { .. } => "not_found",
            RegistryError::Status { .. } => "status",
            RegistryError::Invalid { .. } => "invalid",
            RegistryError::Credentials { .. } => "credentials",
            RegistryError::Ca { .. } => "ca",
        }
    }
}

/// A client for one repository.
pub struct Registry {
    http: reqwest::Client,
    repo: Repository,
    base: String,
    credentials: Option<Credentials>,
    /// The Authorization header that worked last.
    auth: Option<Redacted<String>>,
}

impl Registry {
    /// # Errors
    /// The credentials or CA file cannot be read or is not valid.
    pub fn new(repository: &str, opts: &RegistryOptions) -> Result<Registry, RegistryError> {
        let repo = Repository::parse(repository).map_err(|reason| RegistryError::Invalid {
            host: String::new(),
            repository: repository.to_string(),
            reason,
        })?;
        let credentials = opts
            .credentials_file
            .as_deref()
            .map(read_credentials)
            .transpose()?;
        let mut b = reqwest::Client::builder()
            .connect_timeout(opts.timeout)
            .timeout(opts.timeout)
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            // A redirect to another host must not take the credentials along; none is followed.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(file) = &opts.ca_file {
            let ca_err = |reason: String| RegistryError::Ca {
                file: file.clone(),
                reason,
            };
            let pem = std::fs::read(file).map_err(|e| ca_err(e.to_string()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ca_err(format!("not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(ca_err("holds no certificate".into()));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b.build().map_err(|e| RegistryError::Unreachable {
            host: repo.host.clone(),
            reason: format!("no HTTP client: {e}"),
        })?;
        let scheme = if opts.insecure_http { "http" } else { "https" };
        let base = format!("{scheme}://{}", repo.host);
        let auth = match &credentials {
            Some(Credentials::Token(t)) => Some(Redacted::new(format!("Bearer {}", t.expose()))),
            _ => None,
        };
        Ok(Registry {
            http,
            repo,
            base,
            credentials,
            auth,
        })
    }

    fn err_unreachable(&self, e: &reqwest::Error) -> RegistryError {
        let mut reason = e.to_string();
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            reason = format!("{reason}: {s}");
            src = s.source();
        }
        if e.is_timeout() {
            reason = format!("no answer in time ({reason})");
        }
        RegistryError::Unreachable {
            host: self.repo.host.clone(),
            reason,
        }
    }

    /// Hands every tag of the repository to `each`, page by page.
    ///
    /// # Errors
    /// The registry cannot be reached or times out, refuses the credentials, does not know the
    /// repository, or sends a page that is too large, not a tag list, or links to another host.
    pub async fn tags(&mut self, each: &mut (dyn FnMut(&str) + Send)) -> Result<(), RegistryError> {
        let mut url = format!("{}/v2/{}/tags/list?n={PAGE}", self.base, self.repo.path);
        for _ in 0..MAX_PAGES {
            let resp = self.get(&url).await?;
            let next = next_link(resp.headers());
            let body = self.body(resp).await?;
            parse_page(&body, each).map_err(|reason| self.invalid(reason))?;
            match next {
                None => return Ok(()),
                Some(link) => url = self.resolve(&link)?,
            }
        }
        Err(self.invalid(format!("more than {MAX_PAGES} pages of tags")))
    }

    fn invalid(&self, reason: String) -> RegistryError {
        RegistryError::Invalid {
            host: self.repo.host.clone(),
            repository: self.repo.path.clone(),
            reason,
        }
    }

    /// A `Link` target, made absolute; only this registry's own URLs are followed.
    fn resolve(&self, link: &str) -> Result<String, RegistryError> {
        if link.starts_with('/') {
            return Ok(format!("{}{link}", self.base));
        }
        if link.starts_with(&format!("{}/", self.base)) {
            return Ok(link.to_string());
        }
        Err(self.invalid(format!("the next page is on another host: {link}")))
    }

    /// GETs `url`, answering an auth challenge once.
    async fn get(&mut self, url: &str) -> Result<reqwest::Response, RegistryError> {
        let mut challenged = false;
        loop {
            let mut req = self.http.get(url);
            if let Some(a) = &self.auth {
                req = req.header(reqwest::header::AUTHORIZATION, a.expose());
            }
            let resp = req.send().await.map_err(|e| self.err_unreachable(&e))?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            if status == reqwest::StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                let challenge = resp
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                self.auth = Some(self.answer(&challenge).await?);
                continue;
            }
            let text = resp.text().await.unwrap_or_default();
            let message = registry_message(&text);
            let (host, repository) = (self.repo.host.clone(), self.repo.path.clone());
            return Err(match status.as_u16() {
                401 | 403 => RegistryError::AuthRefused {
                    host,
                    repository,
                    status: status.as_u16(),
                    hint: if self.credentials.is_some() {
                        format!("the credentials were refused ({message})")
                    } else {
                        format!("it needs credentials: set credentials_file ({message})")
                    },
                },
                404 => RegistryError::NotFound { host, repository },
                s => RegistryError::Status {
                    host,
                    repository,
                    status: s,
                    message,
                },
            });
        }
    }

    /// The Authorization header that answers a `WWW-Authenticate` challenge.
    async fn answer(&self, challenge: &str) -> Result<Redacted<String>, RegistryError> {
        let refused = |hint: String| RegistryError::AuthRefused {
            host: self.repo.host.clone(),
            repository: self.repo.path.clone(),
            status: 401,
            hint,
        };
        let basic = match &self.credentials {
            Some(Credentials::Basic { username, password }) => {
                use base64::Engine;
                Some(
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{}", password.expose())),
                )
            }
            Some(Credentials::Token(_)) => {
                return Err(refused("the token was refused".into()));
            }
            None => None,
        };
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return match basic {
                Some(b) => Ok(Redacted::new(format!("Basic {b}"))),
                None => Err(refused(
                    "it asks for a username and password: set credentials_file".into(),
                )),
            };
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(refused(format!("unknown auth scheme \"{scheme}\"")));
        }
        let params = challenge_params(params);
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| refused("a bearer challenge without a realm".into()))?;
        let mut token_url = reqwest::Url::parse(&realm).map_err(|e| {
            refused(format!(
                "a bearer challenge with a bad realm \"{realm}\": {e}"
            ))
        })?;
        for (k, v) in params
            .iter()
            .filter(|(k, _)| k == "service" || k == "scope")
        {
            token_url.query_pairs_mut().append_pair(k, v);
        }
        let mut req = self.http.get(token_url);
        if let Some(b) = &basic {
            req = req.header(reqwest::header::AUTHORIZATION, format!("Basic {b}"));
        }
        let resp = req.send().await.map_err(|e| self.err_unreachable(&e))?;
        if !resp.status().is_success() {
            return Err(refused(format!(
                "the token service {realm} answered HTTP {}",
                resp.status().as_u16()
            )));
        }
        #[derive(Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = resp
            .json()
            .await
            .map_err(|e| refused(format!("the token service sent no token: {e}")))?;
        let token = t
            .token
            .or(t.access_token)
            .ok_or_else(|| refused("the token service sent no token".into()))?;
        Ok(Redacted::new(format!("Bearer {token}")))
    }

    /// The body, refused past [`MAX_PAGE_BYTES`].
    async fn body(&self, mut resp: reqwest::Response) -> Result<Vec<u8>, RegistryError> {
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.err_unreachable(&e))? {
            if body.len() + chunk.len() > MAX_PAGE_BYTES {
                return Err(self.invalid(format!(
                    "a page of tags larger than {} MiB",
                    MAX_PAGE_BYTES >> 20
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// `{"errors":[{"message": ...}]}`'s first message, else the text's first line.
fn registry_message(text: &str) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<Message>,
    }
    #[derive(Deserialize)]
    struct Message {
        message: String,
    }
    if let Ok(e) = serde_json::from_str::<Errors>(text) {
        if let Some(m) = e.errors.into_iter().next() {
            return m.message;
        }
    }
    let line = text.lines().next().unwrap_or("").trim();
    crate::notify::memory::shorten(if line.is_empty() { "no message" } else { line }, 200)
}

/// `realm="https://auth",service="registry",scope="repository:a:pull"` as pairs.
fn challenge_params(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.push((key, value.to_string()));
        rest = tail.trim_start().trim_start_matches(',');
    }
    out
}

/// The `rel="next"` target of a `Link` header.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    for v in headers.get_all(reqwest::header::LINK) {
        let Ok(v) = v.to_str() else { continue };
        for part in v.split(',') {
            let part = part.trim();
            let Some(end) = part.find('>') else { continue };
            let target = part.strip_prefix('<').map(|p| &p[..end - 1]);
            let params = &part[end + 1..];
            let is_next = params.split(';').any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            });
            if let (true, Some(t)) = (is_next, target) {
                return Some(t.to_string());
            }
        }
    }
    None
}

/// Parses `{"name": ..., "tags": [...]}`, handing each tag over as it is read.
fn parse_page(body: &[u8], each: &mut (dyn FnMut(&str) + Send)) -> Result<(), String> {
    struct Page<'f>(&'f mut (dyn FnMut(&str) + Send));
    struct Tags<'f>(&'f mut (dyn FnMut(&str) + Send));
    impl<'de> DeserializeSeed<'de> for Tags<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Tags<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of tags")
        }
        // A repository without tags lists `null`.
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(t) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                (self.0)(&t);
            }
            Ok(())
        }
    }
    impl<'de> DeserializeSeed<'de> for Page<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Page<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a tag list object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = false;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == "tags" && !seen {
                    seen = true;
                    map.next_value_seed(Tags(&mut *self.0))?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    Page(each)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| format!("not a tag list: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_need_a_host_and_no_tag() {
        let r = Repository::parse("registry.example.com:5000/shop/web").unwrap();
        assert_eq!(r.host, "registry.example.com:5000");
        assert_eq!(r.path, "shop/web");
        assert!(Repository::parse("localhost/web").is_ok());
        for bad in [
            "shop/web",
            "web",
            "r.example.com/shop/web:1.0",
            "r.example.com/web@sha256:00",
            "r.example.com/Shop",
            "r.example.com//web",
        ] {
            assert!(Repository::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pages_are_streamed_and_links_parsed() {
        let mut got = Vec::new();
        parse_page(
            br#"{"name":"a","tags":["1","2"],"x":{"y":[1]}}"#,
            &mut |t| got.push(t.to_string()),
        )
        .unwrap();
        assert_eq!(got, ["1", "2"]);
        parse_page(br#"{"name":"a","tags":null}"#, &mut |_| panic!("no tags")).unwrap();
        assert!(parse_page(b"<html>", &mut |_| {}).is_err());
        assert!(parse_page(br#"{"tags":[1]}"#, &mut |_| {}).is_err());
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            "</v2/a/tags/list?n=2&last=b>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(next_link(&h).as_deref(), Some("/v2/a/tags/list?n=2&last=b"));
    }

    #[test]
    fn challenges_are_read() {
        let p = challenge_params(
            r#"realm="https://auth.example.com/token",service="registry",scope="repository:a/b:pull""#,
        );
        assert_eq!(
            p[0],
            ("realm".into(), "https://auth.example.com/token".into())
        );
        assert_eq!(p[2], ("scope".into(), "repository:a/b:pull".into()));
    }
}
