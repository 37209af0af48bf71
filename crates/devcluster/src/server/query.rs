//! The query string of a request, decoded as a real API server does (`application/x-www-form-urlencoded`:
//! percent-encoding and `+` for space) into the parameters the verbs read.

use std::collections::HashMap;

/// The query parameters the devcluster understands; others are ignored, as unknown ones are by
/// a real server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// `watch=true` (or `1`) turns a list into a watch.
    pub watch: bool,
    pub label_selector: String,
    pub field_selector: String,
    /// `dryRun=All`.
    pub dry_run: bool,
    pub field_manager: Option<String>,
    /// `force=true`: server-side apply takes over conflicting fields.
    pub force: bool,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    /// The resourceVersion a watch starts after; 0 when unset or not a number.
    pub resource_version: u64,
    pub timeout_seconds: Option<u64>,
    pub allow_watch_bookmarks: bool,
}

/// Every `key=value` pair; a repeated key keeps its last value.
fn pairs(raw: &str) -> HashMap<String, String> {
    form_urlencoded::parse(raw.as_bytes())
        .into_owned()
        .collect()
}

impl Query {
    pub fn parse(raw: &str) -> Query {
        let mut p = pairs(raw);
        let mut take = |k: &str| p.remove(k);
        Query {
            watch: matches!(take("watch").as_deref(), Some("true" | "1")),
            label_selector: take("labelSelector").unwrap_or_default(),
            field_selector: take("fieldSelector").unwrap_or_default(),
            dry_run: take("dryRun").is_some_and(|v| v == "All"),
            field_manager: take("fieldManager"),
            force: take("force").is_some_and(|v| v == "true"),
            limit: take("limit").and_then(|v| v.parse().ok()),
            continue_token: take("continue"),
            resource_version: take("resourceVersion")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            timeout_seconds: take("timeoutSeconds").and_then(|v| v.parse().ok()),
            allow_watch_bookmarks: take("allowWatchBookmarks").is_some_and(|v| v == "true"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_percent_decoded() {
        let q = pairs("labelSelector=app%3Dweb%2Ctier+in+(a)&dryRun=All&x");
        assert_eq!(q["labelSelector"], "app=web,tier in (a)");
        assert_eq!(q["dryRun"], "All");
        assert_eq!(q["x"], "");
        assert_eq!(pairs("f=100%")["f"], "100%");
    }

    #[test]
    fn the_parameters_the_verbs_read_are_typed() {
        let q = Query::parse(
            "labelSelector=app%3Dweb&fieldSelector=metadata.name%3Da&dryRun=All&fieldManager=kubectl%2Bx&force=true&limit=2&continue=ab&watch=1&resourceVersion=7&timeoutSeconds=5&allowWatchBookmarks=true",
        );
        assert_eq!(
            q,
            Query {
                watch: true,
                label_selector: "app=web".into(),
                field_selector: "metadata.name=a".into(),
                dry_run: true,
                field_manager: Some("kubectl+x".into()),
                force: true,
                limit: Some(2),
                continue_token: Some("ab".into()),
                resource_version: 7,
                timeout_seconds: Some(5),
                allow_watch_bookmarks: true,
            }
        );
        assert_eq!(Query::parse(""), Query::default());
        let q = Query::parse("dryRun=None&force=1&watch=false");
        assert!(!q.dry_run && !q.force && !q.watch, "{q:?}");
    }
}
