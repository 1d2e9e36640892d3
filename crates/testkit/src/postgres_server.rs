//! A PostgreSQL database of a test's own.
//!
//! The PostgreSQL that answers on 127.0.0.1:5432 (the machine's service) is used when there is
//! one: each [`PostgresServer`] gets a freshly created, uniquely named database on it, dropped on
//! drop. Otherwise a private server is started from `/usr/lib/postgresql/*/bin` (`initdb`,
//! `pg_ctl`) in a temporary directory on a free port (as the `postgres` user when run as root,
//! since PostgreSQL refuses to run as root), and stopped when the last database on it is dropped.
//! [`PostgresServer::another_database`] makes further databases on the same server, for a test
//! that needs several. SQL for set-up and checks goes through `psql`.
//! `TESTKIT_POSTGRES_PRIVATE=1` forces a private server.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{eventually, free_port};

const SHARED_PORT: u16 = 5432;

/// A database on a PostgreSQL server; dropped on drop, and a private server stopped once the
/// last database on it is.
pub struct PostgresServer {
    port: u16,
    database: String,
    /// Shared by every database made on the same private server; it stops when the last goes.
    private: Option<Arc<PrivateServer>>,
}

struct PrivateServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl PostgresServer {
    /// A fresh database, on the machine's PostgreSQL when one answers on 127.0.0.1:5432, else on
    /// a private server. Panics saying what to install when there is neither.
    pub fn start() -> Self {
        // TESTKIT_POSTGRES_PRIVATE=1 starts a private server even where the machine has one.
        let force_private = std::env::var_os("TESTKIT_POSTGRES_PRIVATE").is_some_and(|v| v == "1");
        if !force_private && shared_server_answers() {
            Self::create(SHARED_PORT, None)
        } else {
            Self::start_private()
        }
    }

    /// A fresh database on a private server of its own.
    fn start_private() -> Self {
        let port = free_port();
        Self::create(port, Some(Arc::new(PrivateServer::start(port))))
    }

    /// Another fresh database on this one's server: a test that needs several databases starts
    /// one server, not one each.
    pub fn another_database(&self) -> Self {
        Self::create(self.port, self.private.clone())
    }

    /// Creates a uniquely named database on the server at `port`.
    fn create(port: u16, private: Option<Arc<PrivateServer>>) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let database = format!(
            "shop_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let server = PostgresServer {
            port,
            database,
            private,
        };
        server.psql_in("postgres", &format!("CREATE DATABASE {}", server.database));
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The test database's name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// A connection string for the test database, in the `key=value` form Spin guests use. It
    /// disables TLS: the machine's server may offer TLS with a certificate nobody trusts, which a
    /// Spin host refuses under the default `sslmode=prefer`.
    pub fn connection_string(&self) -> String {
        let password = std::env::var("PGPASSWORD")
            .map(|p| format!(" password={p}"))
            .unwrap_or_default();
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={} sslmode=disable{password}",
            self.port, self.database
        )
    }

    /// Runs `sql` in the test database with `psql` and returns its unaligned, tuples-only output
    /// (fields separated by `|`). Panics when `psql` fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(&self.database, sql)
    }

    fn psql_in(&self, database: &str, sql: &str) -> String {
        let output = self.run_psql(database, sql);
        assert!(
            output.status.success(),
            "psql -c {sql:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .trim_end()
            .to_string()
    }

    fn run_psql(&self, database: &str, sql: &str) -> Output {
        self.psql_command_in(database)
            .arg("-c")
            .arg(sql)
            .stdin(Stdio::null())
            .output()
            .expect("cannot run psql")
    }

    /// A `psql` connected to the test database that stops at the first error, for a session a
    /// test drives itself (e.g. one holding a lock while it waits, its SQL sent on stdin).
    pub fn psql_command(&self) -> Command {
        self.psql_command_in(&self.database)
    }

    fn psql_command_in(&self, database: &str) -> Command {
        let mut command = Command::new(psql_binary());
        command
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .arg("-d")
            .arg(database);
        command
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // WITH (FORCE) ends sessions a host's pool still holds (PostgreSQL 13 and later). A
        // private server is stopped afterwards, when this was its last database (`PrivateServer`'s
        // drop, as the field goes).
        let _ = self.run_psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database),
        );
    }
}

/// Whether the machine's PostgreSQL accepts the `postgres` user on 127.0.0.1:5432.
fn shared_server_answers() -> bool {
    if std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], SHARED_PORT)),
        Duration::from_secs(1),
    )
    .is_err()
    {
        return false;
    }
    Command::new(psql_binary())
        .args([
            "-X",
            "-At",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .args(["-c", "SELECT 1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The newest installed PostgreSQL's binaries (`/usr/lib/postgresql/<version>/bin`).
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn psql_binary() -> PathBuf {
    let on_path = Command::new("psql")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if on_path {
        return PathBuf::from("psql");
    }
    postgres_bin()
        .map(|bin| bin.join("psql"))
        .filter(|psql| psql.is_file())
        .unwrap_or_else(|| panic!("{}", not_installed()))
}

fn not_installed() -> String {
    "PostgreSQL is needed: nothing answers on 127.0.0.1:5432 and there is no \
     /usr/lib/postgresql/*/bin/initdb; install it (apt-get install postgresql, as scripts/test.sh does)"
        .to_string()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

impl PrivateServer {
    fn start(port: u16) -> Self {
        let bin = postgres_bin().unwrap_or_else(|| panic!("{}", not_installed()));
        let dir = tempfile::Builder::new()
            .prefix("testkit-postgres-")
            .tempdir()
            .expect("temporary directory");
        if is_root() {
            // PostgreSQL will not run as root; its files must belong to the user it runs as.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(
                status.success(),
                "chown of the private PostgreSQL directory failed"
            );
        }
        let data = dir.path().join("data");
        let server = PrivateServer { dir, bin };
        server.run(
            server.command("initdb").arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ]),
            "initdb",
        );
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            server.dir.path().display()
        );
        server.run(
            server
                .command("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(server.dir.path().join("log"))
                .args(["-o", &options, "-w", "start"]),
            "pg_ctl start",
        );
        let ready = eventually(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(drop)
        });
        assert!(
            ready.is_some(),
            "private PostgreSQL did not listen on {port}"
        );
        server
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command.stdin(Stdio::null());
        command
    }

    fn run(&self, command: &mut Command, what: &str) {
        let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            output.status.success(),
            "{what} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn databases_on_a_private_server_share_it_and_it_stops_with_the_last() {
        let first = PostgresServer::start_private();
        let second = first.another_database();
        assert_eq!(second.port(), first.port());
        assert_ne!(second.database(), first.database());
        let ours = "SELECT count(*) FROM pg_database WHERE datname LIKE 'shop_test_%'";
        assert_eq!(second.psql(ours), "2");

        drop(first);
        assert_eq!(second.psql(ours), "1", "the first database is dropped");
        let port = second.port();
        drop(second);
        let closed = std::net::TcpStream::connect(("127.0.0.1", port)).is_err();
        assert!(closed, "the server stops with its last database");
    }
}
