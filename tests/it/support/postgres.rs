//! A throwaway PostgreSQL server from Debian's packages, run as the `postgres` user, with one
//! database `tfstate` (Terraform's `pg` backend, strata's `--state postgres://`). Shared by the
//! integration tests and `make bench` (which includes this file by its path).

use std::path::PathBuf;
use std::process::Command;

/// The running server; stopped at once when dropped.
pub struct Postgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl Postgres {
    /// Makes a data dir, starts the server on a free port of 127.0.0.1 (trust authentication)
    /// and creates the database `tfstate`.
    pub fn start() -> Postgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is installed (make tools)")
            .flatten()
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("initdb");
        let dir = tempfile::Builder::new()
            .prefix("strata-pg")
            .tempdir()
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let ok = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&data)
            .status()
            .unwrap();
        assert!(ok.success(), "chown the PostgreSQL data dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = Postgres {
            _dir: dir,
            data,
            bin,
            port,
        };
        let d = pg.data.display().to_string();
        pg.as_postgres("initdb", &["-D", &d, "-A", "trust", "-U", "postgres"]);
        pg.restart();
        pg.create_database("tfstate");
        pg
    }

    /// Runs one of the server's programs as the `postgres` user; panics with its error when it
    /// fails.
    fn as_postgres(&self, program: &str, args: &[&str]) {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program))
            .args(args)
            .output()
            .expect("runuser");
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Creates another database.
    #[allow(dead_code)]
    pub fn create_database(&self, name: &str) {
        let port = self.port.to_string();
        self.as_postgres(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name],
        );
    }

    /// The connection string of the database `tfstate`.
    #[allow(dead_code)]
    pub fn conn_str(&self) -> String {
        self.conn_str_to("tfstate")
    }

    /// The connection string of the database `db`.
    #[allow(dead_code)]
    pub fn conn_str_to(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// A shell command that stops the server at once (as a crash would), for a provisioner.
    #[allow(dead_code)]
    pub fn stop_command(&self) -> String {
        format!(
            "runuser -u postgres -- {} -D {} -m immediate -w stop",
            self.bin.join("pg_ctl").display(),
            self.data.display()
        )
    }

    /// Starts the server (again, after it was stopped) on its port.
    pub fn restart(&self) {
        let d = self.data.display().to_string();
        let opts = format!("-p {} -c listen_addresses=127.0.0.1 -k {d}", self.port);
        let log = self.data.join("log").display().to_string();
        self.as_postgres(
            "pg_ctl",
            &["-D", &d, "-o", &opts, "-w", "-l", &log, "start"],
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
    }
}
