//! The `shop-host` binary as a child process on a free port.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, HttpClient, HttpResponse};

/// How to run `shop-host up`.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The `shop-host` executable (integration tests pass `env!("CARGO_BIN_EXE_shop-host")`).
    pub binary: PathBuf,
    /// The manifest (`--from`).
    pub manifest: PathBuf,
    /// `--runtime-config-file`, if any.
    pub runtime_config: Option<PathBuf>,
    /// `--state-dir`; a fresh temporary directory when `None`.
    pub state_dir: Option<PathBuf>,
    /// `--variable K=V` pairs.
    pub variables: Vec<(String, String)>,
    /// `--env K=V` pairs (component environment).
    pub env: Vec<(String, String)>,
    /// Environment of the host process itself (e.g. `SPIN_VARIABLE_*`).
    pub process_env: Vec<(String, String)>,
    /// Further arguments appended to the command line.
    pub args: Vec<String>,
    /// How long to wait for the health endpoint.
    pub startup_timeout: Duration,
    /// `--listen` port; a free one when `None`. Apps that call themselves (their own origin in
    /// a variable) need to know it before the host starts.
    pub port: Option<u16>,
}

impl HostOptions {
    /// Options for `binary up --from manifest` with defaults for everything else.
    pub fn new(binary: impl Into<PathBuf>, manifest: impl Into<PathBuf>) -> Self {
        HostOptions {
            binary: binary.into(),
            manifest: manifest.into(),
            runtime_config: None,
            state_dir: None,
            variables: Vec::new(),
            env: Vec::new(),
            process_env: Vec::new(),
            args: Vec::new(),
            startup_timeout: Duration::from_secs(120),
            port: None,
        }
    }

    /// Listens on `port` instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Adds `--variable name=value`.
    pub fn variable(mut self, name: &str, value: &str) -> Self {
        self.variables.push((name.into(), value.into()));
        self
    }

    /// Adds `--env name=value`.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Sets an environment variable of the host process.
    pub fn process_env(mut self, name: &str, value: &str) -> Self {
        self.process_env.push((name.into(), value.into()));
        self
    }

    /// Sets `--runtime-config-file`.
    pub fn runtime_config(mut self, path: impl Into<PathBuf>) -> Self {
        self.runtime_config = Some(path.into());
        self
    }

    /// Sets `--state-dir`.
    pub fn state_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(path.into());
        self
    }

    /// Appends raw arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
}

/// Why a host did not become healthy: its exit status (if it exited) and everything it printed.
#[derive(Debug)]
pub struct StartFailure {
    /// Exit status, `None` when it was still running at the timeout (then it was killed).
    pub status: Option<ExitStatus>,
    /// Captured stdout and stderr.
    pub logs: String,
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "shop-host exited with {status}")?,
            None => write!(f, "shop-host never became healthy")?,
        }
        write!(f, "; its output:\n{}", self.logs)
    }
}

/// A running `shop-host up`; killed on drop. Its output goes to a log file read by [`Host::logs`].
pub struct Host {
    options: HostOptions,
    port: u16,
    workdir: TempDir,
    state_dir: PathBuf,
    child: Option<Child>,
    client: HttpClient,
}

impl Host {
    /// Starts the host and waits until it is healthy; panics with its output otherwise.
    pub fn start(options: HostOptions) -> Self {
        Host::try_start(options).unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// Starts the host; `Err` when it exits or is not healthy within the startup timeout.
    pub fn try_start(options: HostOptions) -> Result<Self, StartFailure> {
        let workdir = tempfile::Builder::new()
            .prefix("shop-host-test")
            .tempdir()
            .expect("create host temp dir");
        let state_dir = options
            .state_dir
            .clone()
            .unwrap_or_else(|| workdir.path().join("state"));
        let port = options.port.unwrap_or_else(free_port);
        let mut host = Host {
            options,
            port,
            workdir,
            state_dir,
            child: None,
            client: HttpClient::default(),
        };
        host.spawn_and_wait()?;
        Ok(host)
    }

    /// The running host's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("host is running").id()
    }

    /// Kills the host with SIGKILL (no graceful shutdown), as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM (graceful shutdown) and waits up to `timeout` for the exit status;
    /// `None` if it did not exit in time (it is then killed).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) only sends a signal; `pid` is our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Kills the host if running, then starts it again with the same port, state and options.
    pub fn restart(&mut self) {
        self.kill9();
        if let Err(failure) = self.spawn_and_wait() {
            panic!("restart: {failure}");
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Everything the host printed so far (stdout and stderr, across restarts).
    pub fn logs(&self) -> String {
        read_lossy(&self.log_path())
    }

    /// The state directory passed as `--state-dir`.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The client used by the helpers below.
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    /// GET `path`; panics with the host's logs on transport failure.
    pub fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, &[], &[])
    }

    /// POST `body` to `path`; panics with the host's logs on transport failure.
    pub fn post(&self, path: &str, body: &[u8]) -> HttpResponse {
        self.request("POST", path, &[], body)
    }

    /// Any request; panics with the host's logs on transport failure.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        self.client
            .send(method, &self.url(path), headers, body)
            .unwrap_or_else(|error| panic!("{error}\nhost output:\n{}", self.logs()))
    }

    fn log_path(&self) -> PathBuf {
        self.workdir.path().join("host.log")
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartFailure> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open host log file");
        let child = self.command(log).spawn();
        let child = child.unwrap_or_else(|error| {
            panic!("cannot run {}: {error}", self.options.binary.display())
        });
        self.child = Some(child);
        self.wait_healthy()
    }

    fn command(&self, log: File) -> Command {
        let options = &self.options;
        let mut command = Command::new(&options.binary);
        command
            .arg("up")
            .arg("--from")
            .arg(&options.manifest)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--state-dir")
            .arg(&self.state_dir);
        if let Some(runtime_config) = &options.runtime_config {
            command.arg("--runtime-config-file").arg(runtime_config);
        }
        for (name, value) in &options.variables {
            command.arg("--variable").arg(format!("{name}={value}"));
        }
        for (name, value) in &options.env {
            command.arg("--env").arg(format!("{name}={value}"));
        }
        command.args(&options.args);
        command.envs(options.process_env.iter().map(|(k, v)| (k, v)));
        let stderr = log.try_clone().expect("clone host log handle");
        command.stdin(Stdio::null()).stdout(log).stderr(stderr);
        command
    }

    fn wait_healthy(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + self.options.startup_timeout;
        let health = self.url("/.well-known/spin/health");
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(StartFailure {
                    status: Some(status),
                    logs: self.logs(),
                });
            }
            if let Ok(response) = self.client.send("GET", &health, &[], &[]) {
                if response.status == 200 {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                self.kill9();
                return Err(StartFailure {
                    status: None,
                    logs: self.logs(),
                });
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}
