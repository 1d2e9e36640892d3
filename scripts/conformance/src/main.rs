//! Runs the fermyon/conformance-tests suite against any `spin`-like binary (here shop-host), the
//! way Spin's own `tests/conformance-tests` does: each test's app under
//! `<binary> up --listen 127.0.0.1:<port>`, each invocation checked with the suite's assertions.
//! Except that:
//! - tests come from a local directory (packaged by run.sh), not a release download;
//! - the Docker-based services (redis, mqtt, postgres) are replaced by the services that
//!   already listen on loopback (6379, 1883, 5432): `%{port=N}` for those maps to N itself.
//!   The Python services (http-echo, tcp-echo) are started by test-environment as in Spin.
//!
//! Usage: conformance-runner <spin-binary> <tests-dir> [libtest args, e.g. --test-threads=1]
use anyhow::Context as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn loopback_port(guest: u16) -> Option<u16> {
    match guest {
        6379 | 1883 | 5432 => Some(guest),
        _ => None,
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().collect();
    let spin_binary: std::path::PathBuf =
        std::fs::canonicalize(args.remove(1)).expect("spin binary");
    let tests_dir = args.remove(1);
    let mut targs = libtest_mimic::Arguments::from_iter(args);
    if targs.test_threads.is_none() {
        targs.test_threads = Some(1);
    }
    let trials = conformance_tests::tests_iter(&tests_dir)
        .expect("tests dir")
        .map(|test| {
            let bin = spin_binary.clone();
            let name = test.name.clone();
            libtest_mimic::Trial::test(name, move || {
                run_test(test, &bin).map_err(|e| format!("{e:?}").into())
            })
        })
        .collect();
    libtest_mimic::run(&targs, trials).exit();
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

struct Child {
    child: std::process::Child,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
}
impl Child {
    fn logs(&self) -> String {
        format!(
            "--- runtime stdout ---\n{}\n--- runtime stderr ---\n{}",
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }
}
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_test(test: conformance_tests::Test, spin_binary: &std::path::Path) -> anyhow::Result<()> {
    use conformance_tests::config::Precondition as P;
    let mut services = Vec::new();
    for p in &test.config.preconditions {
        match p {
            P::HttpEcho => services.push("http-echo"),
            P::TcpEcho => services.push("tcp-echo"),
            // loopback services used instead of Docker containers
            P::Redis | P::Mqtt | P::Postgres => {}
            P::KeyValueStore(_) | P::Sqlite => {}
        }
    }
    let mut env: test_environment::TestEnvironment<()> = test_environment::TestEnvironment::boot(
        test_environment::services::ServicesConfig::new(services)?,
    )?;

    // Manifest: loopback ports first, then the env's services (python echo servers).
    let mut manifest = std::fs::read_to_string(&test.manifest)?;
    test_environment::manifest_template::replace_template(&mut manifest, |k, v| {
        Ok(if k == "port" {
            v.parse()
                .ok()
                .and_then(loopback_port)
                .map(|p| p.to_string())
        } else {
            None
        })
    })?;
    let mut manifest = test_environment::manifest_template::EnvTemplate::new(manifest)?;
    manifest.substitute(&mut env, |_| None)?;
    env.write_file("spin.toml", manifest.contents())?;
    env.copy_into(&test.component, test.component.file_name().unwrap())?;

    // Start the runtime as Spin's testing framework does: `<bin> up --listen 127.0.0.1:<port>` in the app dir.
    let port = free_port()?;
    let out = env.path().join("runtime.stdout");
    let err = env.path().join("runtime.stderr");
    let child = Command::new(spin_binary)
        .arg("up")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .current_dir(env.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out)?)
        .stderr(std::fs::File::create(&err)?)
        .spawn()
        .context("spawning runtime")?;
    let mut child = Child { child, out, err };
    let start = Instant::now();
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        if let Some(status) = child.child.try_wait()? {
            anyhow::bail!("runtime exited early with {status}\n{}", child.logs());
        }
        if start.elapsed() > Duration::from_secs(120) {
            anyhow::bail!("runtime did not listen within 120 s\n{}", child.logs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    for invocation in test.config.invocations.clone() {
        let conformance_tests::config::Invocation::Http(mut invocation) = invocation;
        invocation.request.substitute(|k, v| {
            if k != "port" {
                anyhow::bail!("unknown template key: {k}")
            }
            let guest: u16 = v.parse()?;
            if let Some(p) = loopback_port(guest) {
                return Ok(Some(p.to_string()));
            }
            let p = env
                .get_port(guest)?
                .with_context(|| format!("no port {guest} exposed by any service"))?;
            Ok(Some(p.to_string()))
        })?;
        let actual = invocation
            .request
            .send(|request| request.send("localhost", port))
            .with_context(|| format!("request failed\n{}", child.logs()))?;
        conformance_tests::assertions::assert_response(&invocation.response, &actual)
            .with_context(|| format!("Failed assertion.\n{}", child.logs()))?;
    }
    Ok(())
}
