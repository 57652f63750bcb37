//! A real PostgreSQL for the cluster-mode tests (SPEC §12): Debian's
//! server binaries, a fresh cluster made by `initdb` in a temp dir, run as
//! the `postgres` user when the tests run as root (initdb refuses root),
//! listening on a loopback port; stopped with `pg_ctl stop -m immediate`.

#![allow(dead_code)] // Each test binary uses its own part of these helpers.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The database user the tests connect as (trust authentication, loopback only).
pub const USER: &str = "creditd";

pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// The directory of Debian's PostgreSQL server binaries, newest version first.
fn server_binaries() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `program` with `args`, as the `postgres` user when we are root.
fn as_postgres(program: &std::path::Path, args: &[&str]) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program).args(args);
        command
    } else {
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

impl Postgres {
    /// Starts a fresh cluster; `None` (the test skips) when PostgreSQL is not
    /// installed, unless `CREDITD_REQUIRE_TOOLS` is set (then it fails).
    pub fn start() -> Option<Self> {
        Self::start_with(&[])
    }

    /// As [`Postgres::start`], with more server settings (`-c name=value`).
    pub fn start_with(settings: &[&str]) -> Option<Self> {
        let Some(bin) = server_binaries() else {
            assert!(
                std::env::var_os("CREDITD_REQUIRE_TOOLS").is_none(),
                "PostgreSQL is required (CREDITD_REQUIRE_TOOLS is set) but /usr/lib/postgresql/*/bin is missing"
            );
            eprintln!("SKIPPED: PostgreSQL is not installed (.ci/run installs it)");
            return None;
        };
        let dir = tempfile::Builder::new().prefix("creditd-pg-").tempdir().expect("temp dir");
        if is_root() {
            let owned = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status();
            assert!(owned.expect("chown runs").success(), "the cluster directory belongs to postgres");
        }
        let data = dir.path().join("data");
        let socket = dir.path().display().to_string();
        let made = as_postgres(
            &bin.join("initdb"),
            &["-D", &data.display().to_string(), "-U", USER, "-A", "trust", "-E", "UTF8", "--no-sync"],
        )
        .stdout(Stdio::null())
        .output()
        .expect("initdb runs");
        assert!(made.status.success(), "initdb: {}", String::from_utf8_lossy(&made.stderr));
        let port = crate::common::free_port();
        let extra: String = settings.iter().map(|setting| format!(" -c {setting}")).collect();
        let options = format!("-c listen_addresses=127.0.0.1 -p {port} -k {socket}{extra}");
        let postgres = Self { bin, data, port, dir };
        postgres.pg_ctl_start(&options);
        Some(postgres)
    }

    fn pg_ctl_start(&self, options: &str) {
        let log = self.dir.path().join("postgres.log").display().to_string();
        let started = as_postgres(
            &self.bin.join("pg_ctl"),
            &["start", "-D", &self.data.display().to_string(), "-o", options, "-l", &log, "-w", "-t", "60"],
        )
        .stdout(Stdio::null())
        .output()
        .expect("pg_ctl runs");
        assert!(
            started.status.success(),
            "pg_ctl start: {} {}",
            String::from_utf8_lossy(&started.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        self.wait_ready();
    }

    /// A streaming replica of this cluster (`pg_basebackup -R`), named
    /// `name` to the primary (for `synchronous_standby_names`), started on
    /// its own loopback port.
    pub fn standby(&self, name: &str) -> Self {
        let dir = tempfile::Builder::new().prefix("creditd-pg-standby-").tempdir().expect("temp dir");
        if is_root() {
            let owned = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status();
            assert!(owned.expect("chown runs").success(), "the standby's directory belongs to postgres");
        }
        let data = dir.path().join("data");
        let primary = format!("host=127.0.0.1 port={} user={USER} application_name={name}", self.port);
        let copied = as_postgres(
            &self.bin.join("pg_basebackup"),
            &["-d", &primary, "-D", &data.display().to_string(), "-R", "-X", "stream", "--no-sync"],
        )
        .output()
        .expect("pg_basebackup runs");
        assert!(copied.status.success(), "pg_basebackup: {}", String::from_utf8_lossy(&copied.stderr));
        let auto = data.join("postgresql.auto.conf");
        let mut conf = std::fs::read_to_string(&auto).unwrap_or_default();
        conf.push_str(&format!("primary_conninfo = '{primary}'\n"));
        std::fs::write(&auto, conf).expect("names the standby");
        let port = crate::common::free_port();
        let socket = dir.path().display().to_string();
        let standby = Self { bin: self.bin.clone(), data, port, dir };
        standby.pg_ctl_start(&format!("-c listen_addresses=127.0.0.1 -p {port} -k {socket}"));
        standby
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn kill(&self) {
        let stopped =
            as_postgres(&self.bin.join("pg_ctl"), &["stop", "-D", &self.data.display().to_string(), "-m", "immediate"])
                .stdout(Stdio::null())
                .status()
                .expect("pg_ctl runs");
        assert!(stopped.success(), "pg_ctl stop");
    }

    /// Turns a standby into a primary (`pg_ctl promote`).
    pub fn promote(&self) {
        let promoted =
            as_postgres(&self.bin.join("pg_ctl"), &["promote", "-D", &self.data.display().to_string(), "-w"])
                .stdout(Stdio::null())
                .status()
                .expect("pg_ctl runs");
        assert!(promoted.success(), "pg_ctl promote");
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let port = self.port.to_string();
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port, "-U", USER])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not become ready on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL of the cluster's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ =
            as_postgres(&self.bin.join("pg_ctl"), &["stop", "-D", &self.data.display().to_string(), "-m", "immediate"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
    }
}
