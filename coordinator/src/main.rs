//! The `valkey-coordinator` binary: parses the command line, sets up logging and signals, and
//! runs the service until SIGTERM or SIGINT.
//!
//! Exit codes: 0 after a clean shutdown, 1 when the service fails or does not stop within its
//! grace period, 2 for a bad command line (clap's convention).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use valkey_coordinator::cli::{Cli, Command, LogFormat};
use valkey_coordinator::service;

#[cfg(feature = "demo")]
mod demo;

/// The variable holding the log filter (tracing env-filter syntax).
const LOG_ENV: &str = "VALKEY_COORDINATOR_LOG";

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "valkey-coordinator failed");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = match cli.worker_threads {
        Some(0) => anyhow::bail!("--worker-threads must be at least 1"),
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(threads) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => {
                let config = args.into_config().context("invalid configuration")?;
                let shutdown = CancellationToken::new();
                tokio::spawn(cancel_on_signal(shutdown.clone()));
                service::run(config, shutdown).await?;
                Ok(())
            }
            Command::Demo(args) => demo(args).await,
        }
    })
}

#[cfg(feature = "demo")]
async fn demo(args: valkey_coordinator::cli::DemoArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    demo::run(args, shutdown).await
}

#[cfg(not(feature = "demo"))]
async fn demo(_: valkey_coordinator::cli::DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "this build has no demo: build with `cargo build --release -p valkey-coordinator \
         --features demo` (or run tests/demo.sh)"
    )
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT. A second signal exits at once, for an
/// operator whose graceful shutdown is taking too long.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};

    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return;
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
    tokio::select! {
        _ = terminate.recv() => {},
        _ = interrupt.recv() => {},
    }
    tracing::warn!("second signal: exiting without waiting");
    std::process::exit(1);
}
