use clap::Parser;

/// Every request makes and drops a store, an instance and their tables: many small allocations
/// that mimalloc serves about 10% cheaper in host CPU than glibc's malloc. Built without its
/// transparent-huge-page advice, which would round idle RSS up by some 20 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    keep_error_backtraces_off();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(run())
}

/// Wasmtime builds an error value each time an instance's store is dropped, and with
/// `RUST_BACKTRACE=1` in the environment every such value captures a stack backtrace: a third
/// of a small request's CPU time. The host never prints error backtraces, so they stay off
/// unless `RUST_LIB_BACKTRACE` asks for them; panics still follow `RUST_BACKTRACE`.
fn keep_error_backtraces_off() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}

async fn run() -> std::process::ExitCode {
    let logging = match shop_host::logging::init() {
        Ok(logging) => logging,
        Err(e) => {
            eprintln!("Error: cannot set up telemetry: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli = shop_host::cli::Cli::parse();
    let result = shop_host::cli::run(cli).await;
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "shop-host failed");
    }
    logging.shutdown().await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
