use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let telemetry = match shop_host::logging::init() {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("Error: cannot set up telemetry: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli = shop_host::cli::Cli::parse();
    let result = shop_host::cli::run(cli).await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "shop-host failed");
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
