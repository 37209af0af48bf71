//! The dashboard at `/`: one HTML page, a script and a style sheet, carried in the binary (no
//! CDN, no external fonts: it works offline and cannot change under the operator's feet).
//!
//! The page holds an approval form, so it is served with headers that keep it to itself: a
//! Content-Security-Policy that allows only its own script, style and API (an injected string
//! cannot run), and no framing (another site cannot overlay the Approve button).

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Hub;

const INDEX: &str = include_str!("../../web/dashboard/index.html");
const SCRIPT: &str = include_str!("../../web/dashboard/dashboard.js");
const STYLE: &str = include_str!("../../web/dashboard/dashboard.css");

/// What the page may load and do.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(super) fn routes() -> axum::Router<Arc<Hub>> {
    axum::Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/dashboard.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for (name, text) in [("index", INDEX), ("script", SCRIPT), ("style", STYLE)] {
            for foreign in ["http://", "https://", "//fonts", "@import"] {
                let hits: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains(foreign) && !l.contains("www.w3.org/2000/svg"))
                    .collect();
                assert!(hits.is_empty(), "{name} loads from elsewhere: {hits:?}");
            }
        }
        assert!(INDEX.contains("src=\"/dashboard.js\""));
        assert!(INDEX.contains("href=\"/dashboard.css\""));
    }

    #[test]
    fn the_script_never_writes_html_nor_keeps_the_token() {
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "localStorage",
            "sessionStorage",
            "document.cookie",
            "eval(",
        ] {
            assert!(!SCRIPT.contains(banned), "dashboard.js uses {banned}");
        }
    }
}
