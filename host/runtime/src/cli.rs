//! The command line, mirroring `spin up` and `spin build`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use spin_host_config::manifest::Manifest;

use crate::app::{App, AppOptions};
use crate::metrics::Metrics;
use crate::trigger::http::{HttpTrigger, HttpTriggerConfig};
use crate::trigger::redis::RedisTrigger;

#[derive(Parser, Debug)]
#[command(
    name = "shop-host",
    version,
    about = "Runs a Spin application (spin.toml) locally on Wasmtime"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the application, as `spin up`.
    Up(UpArgs),
    /// Build every component with its `[component.<id>.build]` command, as `spin build`.
    Build(BuildArgs),
}

#[derive(Args, Debug)]
struct UpArgs {
    /// The application manifest.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    manifest: PathBuf,
    /// Address the HTTP trigger listens on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Spin runtime-config file (`[key_value_store.*]`, `[sqlite_database.*]`).
    #[arg(long)]
    runtime_config_file: Option<PathBuf>,
    /// State directory (default: `.spin` next to the manifest).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Environment variable for every component (`KEY=VALUE`, repeatable).
    #[arg(short = 'e', long = "env", value_parser = parse_key_value)]
    env: Vec<(String, String)>,
    /// Application variable value (`name=value`, repeatable); beats `SPIN_VARIABLE_<NAME>`.
    #[arg(long = "variable", value_parser = parse_variable)]
    variables: Vec<(String, String)>,
    /// Serve Prometheus metrics on this address.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Largest request body accepted; larger bodies get 413.
    #[arg(long, default_value_t = 10 * 1024 * 1024)]
    max_request_body: usize,
    /// Longest one request or message may run before its instance is stopped (seconds).
    #[arg(long, default_value_t = 60)]
    instance_timeout_secs: u64,
    /// Most bytes a linear memory of an instance may grow to, as `spin up
    /// --max-instance-memory`; beats the runtime config's `max_instance_memory` (default and
    /// ceiling: 1 GiB).
    #[arg(long, env = "SPIN_MAX_INSTANCE_MEMORY")]
    max_instance_memory: Option<usize>,
}

#[derive(Args, Debug)]
struct BuildArgs {
    /// The application manifest.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    manifest: PathBuf,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, found {text:?}")),
    }
}

fn parse_variable(text: &str) -> Result<(String, String), String> {
    spin_host_config::variables::parse_assignment(text).map_err(|e| e.to_string())
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Up(args) => up(args).await,
        Command::Build(args) => build(&args.manifest),
    }
}

async fn up(args: UpArgs) -> Result<()> {
    let options = AppOptions {
        manifest: args.manifest.clone(),
        runtime_config_file: args.runtime_config_file.clone(),
        state_dir: args.state_dir.clone(),
        env: args.env.clone(),
        variables: args.variables.clone(),
        instance_timeout: Duration::from_secs(args.instance_timeout_secs),
        max_instance_memory: args.max_instance_memory,
    };
    let app = Arc::new(tokio::task::block_in_place(|| App::load(&options))?);
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let http = HttpTrigger::new(
        app.clone(),
        HttpTriggerConfig {
            listen: listener.local_addr()?,
            max_request_body: args.max_request_body,
        },
        metrics.clone(),
    )?;
    let redis = RedisTrigger::new(&app, metrics.clone())?;

    if let Some(addr) = args.metrics_listen {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = metrics.serve(addr).await {
                tracing::error!(error = format!("{e:#}"), "metrics server failed");
            }
        });
    }
    tracing::info!(
        address = %listener.local_addr()?,
        app = %app.manifest.application.name,
        components = app.components.len(),
        "serving HTTP"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let redis_task = redis.map(|redis| tokio::spawn(redis.run(stop_rx.clone())));
    let mut http_stop = stop_rx.clone();
    let http_task = tokio::spawn(http.serve(listener, async move {
        let _ = http_stop.wait_for(|stop| *stop).await;
    }));

    shutdown_signal().await;
    tracing::info!("shutdown requested");
    let _ = stop_tx.send(true);
    http_task.await??;
    if let Some(task) = redis_task {
        task.await??;
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Runs each component's build commands in its workdir with `sh -c`, as `spin build`.
fn build(manifest_path: &Path) -> Result<()> {
    let manifest = Manifest::load(manifest_path)?;
    let app_dir = manifest_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut built = 0;
    for (id, component) in &manifest.components {
        let Some(build) = &component.build else {
            tracing::info!(component = %id, "no build command; skipping");
            continue;
        };
        let workdir = build.workdir(app_dir);
        for command in build.commands() {
            tracing::info!(component = %id, workdir = %workdir.display(), command, "building");
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(&workdir)
                .status()
                .with_context(|| {
                    format!(
                        "component `{id}`: cannot run `{command}` in {}",
                        workdir.display()
                    )
                })?;
            if !status.success() {
                bail!("component `{id}`: build command `{command}` failed ({status})");
            }
        }
        built += 1;
    }
    tracing::info!(components = built, "build finished");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_split_at_the_first_equals() {
        assert_eq!(
            parse_key_value("a=b=c").unwrap(),
            ("a".into(), "b=c".into())
        );
        assert_eq!(parse_key_value("a=").unwrap(), ("a".into(), String::new()));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }

    #[test]
    fn up_parses_the_cli_contract() {
        let cli = Cli::try_parse_from([
            "shop-host",
            "up",
            "-f",
            "app/spin.toml",
            "--listen",
            "127.0.0.1:4000",
            "--runtime-config-file",
            "rc.toml",
            "--state-dir",
            "/tmp/s",
            "--env",
            "A=1",
            "--variable",
            "admin_token=t",
            "--metrics-listen",
            "127.0.0.1:9000",
            "--max-request-body",
            "100",
        ])
        .unwrap();
        let Command::Up(up) = cli.command else {
            panic!("not up")
        };
        assert_eq!(up.manifest, PathBuf::from("app/spin.toml"));
        assert_eq!(up.listen.port(), 4000);
        assert_eq!(
            up.variables,
            vec![("admin_token".to_string(), "t".to_string())]
        );
        assert_eq!(up.max_request_body, 100);
    }
}
