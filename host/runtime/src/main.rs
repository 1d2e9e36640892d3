use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shop_host::logging::init();
    let cli = shop_host::cli::Cli::parse();
    match shop_host::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "shop-host failed");
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
