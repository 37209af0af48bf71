//! A real browser for the dashboard's tests: Debian's headless Chromium, driven over WebDriver
//! by chromedriver (both installed by `make tools`).

use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::support::{free_port, repo_root};

/// A chromedriver process and a browser session in it; both end when this is dropped.
pub(crate) struct Browser {
    pub(crate) client: Client,
    _driver: tokio::process::Child,
}

impl Drop for Browser {
    /// Ends chromedriver and every browser process it started: killing chromedriver alone left
    /// its Chromium running, a parent-less process tree per test.
    fn drop(&mut self) {
        if let Some(pid) = self._driver.id() {
            // SAFETY: a plain kill(2) of the process group this struct started and owns.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium at `width`×`height`.
    pub(crate) async fn start(width: u32, height: u32) -> Browser {
        let port = free_port().port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // Its own process group, so that the Chromium it starts goes with it (see Drop).
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver (make tools installs chromium-driver)");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": [
                    "--headless=new",
                    // Tests run as root in containers, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    format!("--window-size={width},{height}"),
                ]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        start.elapsed() < Duration::from_secs(60),
                        "no browser session from chromedriver: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        Browser {
            client,
            _driver: driver,
        }
    }

    /// A phone's viewport.
    pub(crate) async fn set_phone(&self) {
        self.client
            .set_window_size(390, 844)
            .await
            .expect("resize the window");
    }

    pub(crate) async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// The page as rendered now: the whole DOM, serialised.
    pub(crate) async fn dom(&self) -> String {
        self.client
            .execute("return document.documentElement.outerHTML", vec![])
            .await
            .expect("read the DOM")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The text of the first element matching `css`; empty when there is none.
    pub(crate) async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until the DOM satisfies `f`; returns it. Panics after `secs` with the last DOM.
    pub(crate) async fn until(&self, what: &str, secs: u64, f: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let dom = self.dom().await;
            if f(&dom) {
                return dom;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "timed out waiting for {what}; the page: {}",
                self.text("body").await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(crate) async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    pub(crate) async fn type_into(&self, css: &str, text: &str) {
        let e = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        e.clear().await.expect("clear");
        e.send_keys(text).await.expect("type");
    }

    /// Saves a screenshot under `target/` for people to look at; returns its path.
    pub(crate) async fn screenshot(&self, name: &str) -> std::path::PathBuf {
        let png = self.client.screenshot().await.expect("screenshot");
        let path = repo_root().join("target").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, png).unwrap();
        path
    }
}
