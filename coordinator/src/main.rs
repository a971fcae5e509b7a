//! The `valkey-coordinator` binary: parses the command line, sets up logging and signals, and
//! runs the service until SIGTERM or SIGINT, or runs one lifecycle action and exits.
//!
//! Exit codes: 0 after a clean shutdown or a proven action, 1 when the service fails or does
//! not stop within its grace period or an action cannot prove success, 2 for a bad command line
//! (clap's convention).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use valkey_coordinator::cli::{Cli, Command, LogFormat};
use valkey_coordinator::{lifecycle, service};

#[cfg(feature = "demo")]
mod demo;

/// The variables holding the log filter (tracing env-filter syntax), the first set one winning.
const LOG_ENVS: [&str; 2] = ["VALKEY_COORDINATOR_LOG", "RUST_LOG"];

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Install(args) = &cli.command {
        return match install(&args.dir) {
            Ok(path) => {
                println!("installed {}", path.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("valkey-coordinator install: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(action) = Action::of(&cli.command) {
        init_logging(cli.log_format, "warn");
        return run_action(action, cli.command);
    }
    // The demo shows verdict changes itself; its service's info lines would say each twice.
    let level = match &cli.command {
        Command::Demo(args) if !args.verbose => "warn",
        _ => "info",
    };
    init_logging(cli.log_format, level);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "valkey-coordinator failed");
            ExitCode::FAILURE
        }
    }
}

/// Copies the running binary to `dir/valkey-coordinator` through a temporary name and a
/// rename, so a pod never sees half a binary.
fn install(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let source = std::env::current_exe().context("cannot find the running binary")?;
    let target = dir.join("valkey-coordinator");
    let partial = dir.join(".valkey-coordinator.partial");
    std::fs::copy(&source, &partial)
        .with_context(|| format!("cannot copy {} to {}", source.display(), partial.display()))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", partial.display()))?;
    std::fs::rename(&partial, &target)
        .with_context(|| format!("cannot move it to {}", target.display()))?;
    Ok(target)
}

/// Logs go to stderr; colour only when stderr is a terminal, so `kubectl logs` and files get
/// plain text.
fn init_logging(format: LogFormat, default_level: &str) {
    use std::io::IsTerminal as _;

    let filter = LOG_ENVS
        .iter()
        .find_map(|name| EnvFilter::try_from_env(name).ok())
        .unwrap_or_else(|| EnvFilter::new(default_level));
    // A failed write (the reader of a log pipe went away) is dropped: reporting it would
    // `eprintln!` to the same broken stderr, which panics, in whichever task was logging.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
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
            _ => unreachable!("lifecycle actions run in run_action"),
        }
    })
}

/// The lifecycle actions, by the name their one failure line starts with.
#[derive(Debug, Clone, Copy)]
enum Action {
    Startup,
    RoleProbe,
    MemberLeave,
    Switchover,
    Status,
    AccountProvision,
    Reconfigure,
}

impl Action {
    fn of(command: &Command) -> Option<Self> {
        Some(match command {
            Command::Startup(_) => Self::Startup,
            Command::RoleProbe(_) => Self::RoleProbe,
            Command::MemberLeave(_) => Self::MemberLeave,
            Command::Switchover(_) => Self::Switchover,
            Command::Status(_) => Self::Status,
            Command::AccountProvision(_) => Self::AccountProvision,
            Command::Reconfigure(_) => Self::Reconfigure,
            Command::Serve(_) | Command::Demo(_) | Command::Install(_) => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::RoleProbe => "role-probe",
            Self::MemberLeave => "member-leave",
            Self::Switchover => "switchover",
            Self::Status => "status",
            Self::AccountProvision => "account-provision",
            Self::Reconfigure => "reconfigure",
        }
    }
}

/// Runs one lifecycle action on a single-threaded runtime (they are one-shot and mostly wait)
/// and keeps the contract: on success its line on stdout and exit 0; on failure nothing on
/// stdout, one line on stderr, exit 1.
fn run_action(action: Action, command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!(
                "valkey-coordinator {}: cannot start the async runtime: {error}",
                action.name()
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(action_line(command)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err((printed, error)) => {
            if let Some(printed) = printed {
                print!("{printed}");
            }
            eprintln!("valkey-coordinator {}: {error:#}", action.name());
            ExitCode::FAILURE
        }
    }
}

/// The action's stdout line, or what to print anyway (only `status` prints on failure) and the
/// reason it failed.
async fn action_line(command: Command) -> Result<String, (Option<String>, anyhow::Error)> {
    let plain = |error: anyhow::Error| (None, error);
    match command {
        Command::RoleProbe(args) => {
            let (target, budget) = args.action.into_target().map_err(|e| plain(e.into()))?;
            let startup =
                args.startup_config
                    .as_deref()
                    .map(|path| lifecycle::role_probe::StartupFile {
                        path,
                        replica_priority: args.replica_priority,
                    });
            lifecycle::role_probe::run(&target, &budget, startup)
                .await
                .map(|probe| probe.to_string())
                .map_err(|e| plain(e.into()))
        }
        Command::Status(args) => {
            let (target, budget) = args.action.into_target().map_err(|e| plain(e.into()))?;
            let status = lifecycle::status::run(&target, &budget).await;
            let shown = if args.json {
                status.json()
            } else {
                status.table().trim_end().to_owned()
            };
            match status.outcome() {
                Ok(()) => Ok(shown),
                Err(error) => Err((Some(format!("{shown}\n")), error.into())),
            }
        }
        Command::Startup(args) => {
            let (target, budget) = args.action.into_target().map_err(|e| plain(e.into()))?;
            lifecycle::startup::run(&target, &budget, &args.write_config, args.replica_priority)
                .await
                .map(|decision| decision.to_string())
                .map_err(|e| plain(e.into()))
        }
        Command::MemberLeave(args) => {
            let (target, budget) = args.into_target().map_err(|e| plain(e.into()))?;
            lifecycle::member_leave::run(&target, &budget)
                .await
                .map_err(|e| plain(e.into()))
        }
        Command::Switchover(args) => {
            let (target, budget) = args.action.into_target().map_err(|e| plain(e.into()))?;
            lifecycle::switchover::run(
                &target,
                &budget,
                args.candidate.as_ref(),
                args.state_file.as_deref(),
            )
            .await
            .map_err(|e| plain(e.into()))
        }
        Command::AccountProvision(args) => {
            let account = args.account().map_err(|e| plain(e.into()))?;
            let (target, budget) = args.action.into_target().map_err(|e| plain(e.into()))?;
            lifecycle::account::run(&target, &budget, &account)
                .await
                .map_err(|e| plain(e.into()))
        }
        Command::Reconfigure(args) => {
            let files = args.files();
            let (target, budget) = args.action.into_target().map_err(|e| plain(e.into()))?;
            lifecycle::reconfigure::run(&target, &budget, &files)
                .await
                .map_err(|e| plain(e.into()))
        }
        Command::Serve(_) | Command::Demo(_) | Command::Install(_) => {
            Err(plain(anyhow::anyhow!("not a lifecycle action")))
        }
    }
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
