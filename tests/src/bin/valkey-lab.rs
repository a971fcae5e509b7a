//! `valkey-lab`: runs a 3 data + 3 sentinel replication group on loopback and prints its live
//! state and every sentinel event until Ctrl-C (or SIGTERM), which stops every process it started.
//!
//! Usage: `valkey-lab [--version 8.0.1|8.1.8|9.1.2] [--failover] [--for SECONDS]`
//! - `--failover` asks the sentinels for a failover once the group has formed, to show the switch.
//! - `--for SECONDS` stops by itself after that long (for scripted runs).

use std::process::ExitCode;
use std::time::Duration;

use sentinel_protocol::role::Role;
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::{Instant, MissedTickBehavior, interval};
use valkey_lab::{EventLog, Lab, LabSpec, PodId, ValkeyVersion};

struct Options {
    version: ValkeyVersion,
    failover: bool,
    run_for: Option<Duration>,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        version: ValkeyVersion::V9_1_2,
        failover: false,
        run_for: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--version" => {
                let value = args.next().ok_or("--version needs a value")?;
                options.version = match value.as_str() {
                    "8.0.1" => ValkeyVersion::V8_0_1,
                    "8.1.8" => ValkeyVersion::V8_1_8,
                    "9.1.2" => ValkeyVersion::V9_1_2,
                    other => {
                        return Err(format!("unknown version {other:?} (8.0.1, 8.1.8, 9.1.2)"));
                    }
                };
            }
            "--failover" => options.failover = true,
            "--for" => {
                let value = args.next().ok_or("--for needs a number of seconds")?;
                let seconds: u64 = value
                    .parse()
                    .map_err(|_| format!("--for: not a number of seconds: {value:?}"))?;
                options.run_for = Some(Duration::from_secs(seconds));
            }
            "-h" | "--help" => {
                return Err(
                    "usage: valkey-lab [--version 8.0.1|8.1.8|9.1.2] [--failover] [--for SECONDS]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("valkey-lab: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options) -> valkey_lab::Result<()> {
    let mut lab = LabSpec::new(options.version).start().await?;
    println!(
        "Valkey {} lab in {} (logs and data there)",
        options.version,
        lab.dir().display()
    );
    for i in 0..lab.data_count() {
        println!("  data pod {i}: {}", lab.data_addr(i));
    }
    for j in 0..lab.sentinel_count() {
        println!("  sentinel {j}: {}", lab.sentinel_addr(j));
    }
    lab.wait_formed(Duration::from_secs(30)).await?;
    println!("group formed: every sentinel sees 2 replicas and 2 other sentinels");

    let events = EventLog::start(&lab).await?;
    let mut feed = events.subscribe();
    if options.failover {
        let mut sentinel = lab.client(PodId::Sentinel(0)).await?;
        let reply = sentinel
            .call(&["SENTINEL", "FAILOVER", lab.master_name()])
            .await?;
        println!("asked sentinel 0 for a failover: {reply:?}");
    }

    let mut terminate =
        signal(SignalKind::terminate()).map_err(|source| valkey_lab::LabError::Io {
            context: "installing the SIGTERM handler".into(),
            source,
        })?;
    let mut tick = interval(Duration::from_secs(2));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stop_at = options.run_for.map(|d| Instant::now() + d);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = async { tokio::time::sleep_until(stop_at.unwrap_or_else(Instant::now)).await }, if stop_at.is_some() => break,
            received = feed.recv() => match received {
                Ok(event) => println!("event  sentinel {}  {} {}", event.sentinel, event.channel(), event.payload()),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => println!("event  ({n} events skipped)"),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = tick.tick() => print_state(&lab).await,
        }
    }
    println!("stopping every process of the lab");
    drop(events);
    lab.stop_all().await?;
    Ok(())
}

/// One block of state: what each sentinel says the master is, at which epoch, and what each data
/// pod says it is.
async fn print_state(lab: &Lab) {
    println!("state");
    for j in 0..lab.sentinel_count() {
        let addr = lab.sentinel_master_addr(j).await;
        let record = lab.sentinel_master(j).await;
        match (addr, record) {
            (Ok(Some(addr)), Ok(Some(record))) => println!(
                "  sentinel {j}: master {addr} epoch {} flags {} replicas {} other sentinels {}",
                record.config_epoch,
                record.instance.flags,
                record.num_slaves,
                record.num_other_sentinels
            ),
            (Ok(None), _) | (_, Ok(None)) => println!("  sentinel {j}: monitors nothing"),
            (Err(error), _) | (_, Err(error)) => println!("  sentinel {j}: unreachable ({error})"),
        }
    }
    for i in 0..lab.data_count() {
        match lab.role(PodId::Data(i)).await {
            Ok(Role::Master { replicas, offset }) => println!(
                "  data pod {i}: master, {} replicas, offset {offset}",
                replicas.len()
            ),
            Ok(Role::Slave {
                master_ip,
                master_port,
                state,
                offset,
            }) => println!(
                "  data pod {i}: replica of {master_ip}:{master_port} ({state}), offset {offset}"
            ),
            Ok(other) => println!("  data pod {i}: {other:?}"),
            Err(error) => println!("  data pod {i}: unreachable ({error})"),
        }
    }
}
