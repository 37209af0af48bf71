//! The agent's HTTP side under hostile clients: weak webhook secrets are refused at start, and
//! slow clients (slowloris) neither starve `/healthz` nor keep their connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::Strata;

#[test]
fn an_empty_or_short_webhook_secret_is_refused_without_printing_it() {
    let dir = tempfile::tempdir().unwrap();
    for (name, secret) in [("empty", "\n"), ("short", "tiny-secret\n")] {
        let file = dir.path().join(name);
        std::fs::write(&file, secret).unwrap();
        let out = Strata::new([
            "run",
            "--repo",
            dir.path().join("repo").to_str().unwrap(),
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--webhook-secret-file",
            file.to_str().unwrap(),
        ])
        .run()
        .code(1);
        assert!(
            out.stderr.contains("use at least 16 random bytes"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("tiny-secret"), "{}", out.stderr);
    }
}

/// Raises this process's open-file limit so that `n` sockets fit (the agent inherits it).
fn room_for(n: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur < n + 256 {
            lim.rlim_cur = (n + 256).min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    n.min(lim.rlim_cur.saturating_sub(256))
}

fn healthz(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn slow_clients_neither_starve_healthz_nor_keep_their_connections() {
    let dir = tempfile::tempdir().unwrap();
    let n = room_for(1000);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut agent = std::process::Command::new(assert_cmd::cargo::cargo_bin("strata"))
        .args(["run", "--repo"])
        .arg(dir.path().join("no-repo"))
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["--listen", &addr.to_string(), "--poll-interval", "1h"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while healthz(addr).is_none() {
        assert!(Instant::now() < deadline, "the agent never listened");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Each slow client sends half a request line and then nothing.
    let mut slow = Vec::new();
    for _ in 0..n {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
        s.write_all(b"POST /hooks/git HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        slow.push(s);
    }
    let answer = healthz(addr).expect("healthz answers while slow clients hold connections");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // The server closes every slow connection once its headers are overdue.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut open = slow.len();
    for s in &mut slow {
        s.set_nonblocking(true).unwrap();
    }
    while open > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        open = 0;
        for s in &mut slow {
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                Ok(0) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Ok(_) => {
                    // A 408 or similar answer before closing is fine; the close must follow.
                    open += 1;
                }
                // Would block: the server keeps it open.
                Err(_) => open += 1,
            }
        }
    }
    // SAFETY: kill only sends SIGTERM to the child we started.
    unsafe {
        libc::kill(agent.id() as libc::pid_t, libc::SIGTERM);
    }
    let _ = agent.wait();
    assert_eq!(open, 0, "{open} of {n} slow connections still open");
}
