//! SOPS-encrypted files through the real sops and age: decrypted in memory with the right key,
//! refused with a clear error (and no plaintext) with another.

use std::path::Path;
use std::process::Command;

use strata::secrets::{sops, AgeKeys, Format};

const PLANTED: &str = "planted-sops-secret-8f2c";

fn keygen(file: &Path) -> String {
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(file)
        .output()
        .expect("age-keygen runs (make tools installs age)");
    assert!(out.status.success());
    // age-keygen prints "Public key: age1..." on stderr.
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("Public key: "))
        .expect("a public key")
        .trim()
        .to_string()
}

#[test]
fn an_encrypted_secret_decrypts_with_its_key_and_is_refused_with_another() {
    let dir = tempfile::tempdir().unwrap();
    let (mine, theirs) = (dir.path().join("mine.txt"), dir.path().join("theirs.txt"));
    let recipient = keygen(&mine);
    keygen(&theirs);
    let plain = dir.path().join("secret.yaml");
    std::fs::write(
        &plain,
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {PLANTED}\n"),
    )
    .unwrap();
    let enc = Command::new("sops")
        .args([
            "--encrypt",
            "--age",
            &recipient,
            "--input-type",
            "yaml",
            "--output-type",
            "yaml",
        ])
        .arg(&plain)
        .output()
        .expect("sops runs (make tools installs it into bin/)");
    assert!(
        enc.status.success(),
        "{}",
        String::from_utf8_lossy(&enc.stderr)
    );
    let file = dir.path().join("secret.enc.yaml");
    std::fs::write(&file, &enc.stdout).unwrap();
    let text = String::from_utf8(enc.stdout).unwrap();
    assert!(!text.contains(PLANTED), "encrypted for real");
    let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    assert!(sops::is_encrypted(&doc));

    let keys = AgeKeys { file: mine };
    let out = sops::decrypt(&file, Format::Yaml, Some(&keys)).unwrap();
    assert!(String::from_utf8_lossy(out.expose()).contains(PLANTED));
    assert_eq!(
        format!("{out:?}"),
        "***",
        "the plaintext is redacted by type"
    );

    let wrong = AgeKeys { file: theirs };
    let err = sops::decrypt(&file, Format::Yaml, Some(&wrong)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("failed to decrypt {}", file.display())),
        "{msg}"
    );
    assert!(!msg.contains(PLANTED), "{msg}");
}
