//! A real OCI registry for tests: Debian's `docker-registry` (distribution 2.8) on a loopback
//! port, plain or with htpasswd basic auth over TLS (a throwaway CA), and images pushed to it
//! through the distribution API.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;

/// A running registry; stopped when dropped.
pub struct Registry {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// The CA's PEM file, for the TLS registry.
    pub ca_file: Option<PathBuf>,
    pub credentials: Option<(String, String)>,
    config: PathBuf,
    client: reqwest::Client,
}

impl Registry {
    /// Plain HTTP, no auth.
    pub async fn plain() -> Registry {
        Registry::start(false).await
    }

    /// TLS with a self-signed CA and htpasswd basic auth (user `ci`).
    pub async fn secure() -> Registry {
        Registry::start(true).await
    }

    async fn start(secure: bool) -> Registry {
        let bin = which_registry();
        let dir = tempfile::Builder::new()
            .prefix("strata-registry")
            .tempdir()
            .unwrap();
        let mut ca_file = None;
        let mut credentials = None;
        let mut extra = String::new();
        let mut client = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if secure {
            let (ca, cert, key) = certificates();
            let ca_path = dir.path().join("ca.pem");
            std::fs::write(&ca_path, &ca).unwrap();
            std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
            std::fs::write(dir.path().join("key.pem"), key).unwrap();
            let password = "pushed-by-ci";
            let out = Command::new("htpasswd")
                .args(["-Bbn", "ci", password])
                .output()
                .expect("htpasswd (make tools installs apache2-utils)");
            assert!(out.status.success());
            std::fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
            extra = format!(
                "  tls:\n    certificate: {d}/cert.pem\n    key: {d}/key.pem\nauth:\n  htpasswd:\n    realm: strata-tests\n    path: {d}/htpasswd\n",
                d = dir.path().display()
            );
            client =
                client.add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap());
            ca_file = Some(ca_path);
            credentials = Some(("ci".to_string(), password.to_string()));
        }
        let client = client.build().unwrap();
        let config = dir.path().join("config.yml");
        let mut reg = Registry {
            child: None,
            host: String::new(),
            ca_file,
            credentials,
            config: config.clone(),
            client,
            dir,
        };
        // A port taken between choosing and binding it: the registry exits, another is tried.
        for _ in 0..5 {
            let port = crate::support::free_port().port();
            reg.host = format!("127.0.0.1:{port}");
            let text = format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}/data\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: strata-tests\n{extra}",
                reg.dir.path().display()
            );
            std::fs::write(&config, text).unwrap();
            if reg.spawn(&bin).await {
                return reg;
            }
        }
        panic!("docker-registry did not start; see {}", reg.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    async fn spawn(&mut self, bin: &str) -> bool {
        let log = std::fs::File::create(self.dir.path().join("log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry runs (make tools installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false;
            }
            if let Ok(r) = self.client.get(format!("{}/v2/", self.base())).send().await {
                if r.status().is_success() || r.status() == 401 {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    pub fn base(&self) -> String {
        let scheme = if self.ca_file.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.host)
    }

    /// Stops the registry (as if it went down); [`Registry::restart`] brings it back.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn restart(&mut self) {
        assert!(self.spawn(&which_registry()).await, "{}", self.log());
    }

    /// A credentials file for strata's `credentials_file`.
    pub fn credentials_file(&self) -> PathBuf {
        let (u, p) = self.credentials.clone().expect("a secure registry");
        let f = self.dir.path().join("registry.json");
        std::fs::write(
            &f,
            serde_json::json!({"username": u, "password": p}).to_string(),
        )
        .unwrap();
        f
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credentials {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        }
    }

    async fn blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = format!("sha256:{:x}", sha2::Sha256::digest(bytes));
        let r = self
            .auth(
                self.client
                    .post(format!("{}/v2/{repo}/blobs/uploads/", self.base())),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "start upload: {}", r.text().await.unwrap());
        let loc = r.headers()["location"].to_str().unwrap().to_string();
        let loc = if loc.starts_with('/') {
            format!("{}{loc}", self.base())
        } else {
            loc
        };
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = self
            .auth(self.client.put(format!("{loc}{sep}digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "upload: {}", r.text().await.unwrap());
        digest
    }

    /// Pushes a tiny image (a config blob, one layer) as `repo:tag`.
    pub async fn push(&self, repo: &str, tag: &str) {
        let config = format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{{\"Labels\":{{\"tag\":\"{tag}\"}}}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}}}}"
        );
        let layer = format!("layer of {tag}");
        let c = self.blob(repo, config.as_bytes()).await;
        let l = self.blob(repo, layer.as_bytes()).await;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": l, "size": layer.len()}],
        });
        let r = self
            .auth(
                self.client
                    .put(format!("{}/v2/{repo}/manifests/{tag}", self.base())),
            )
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "manifest: {}", r.text().await.unwrap());
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn which_registry() -> String {
    for c in ["/usr/bin/docker-registry", "docker-registry"] {
        if Command::new(c).arg("--version").output().is_ok() {
            return c.to_string();
        }
    }
    panic!("docker-registry is not installed: run `make tools`");
}

/// A CA and a server certificate for 127.0.0.1, as PEM: (ca, cert, key).
fn certificates() -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "strata test registry CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut leaf =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "strata test registry");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (issuer.pem(), cert.pem(), key.serialize_pem())
}
