//! Benchmarks of the coordinator against a real sentinel, measured in the same run.
//!
//! Machines are noisy, so every figure is taken side by side: the coordinator (the release binary,
//! in its own process) and a real sentinel of the same lab get the same load in the same run, and
//! the table reports ratios and distributions rather than absolute numbers from another day.
//! Run it with `bash bench/run.sh`, which installs what it needs and builds in release; the results
//! go to `bench/results/results.{md,json}`.
//!
//! Phases, in order (each one that fails is reported and the rest still run): idle memory,
//! discovery load (`valkey-benchmark`), many clients and the tap's fan-out, failover propagation
//! over `--failovers` kill -9 failovers, client-visible unavailability with redis-py writers, the
//! lifecycle actions' wall time per call, and scaling (the verdict's cost, memory per sentinel count and per master-name count).

mod coordinator;
mod discovery;
mod failover;
mod fanout;
mod lifecycle;
mod planned;
mod procfs;
mod report;
mod scaling;
mod stats;
mod tls;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use sentinel_protocol::event::{Channel, Payload};
use serde_json::json;
use tokio::time::Instant;
use valkey_lab::{EventLog, Lab, LabSpec, PodId, ValkeyVersion};

use crate::coordinator::Process;
use crate::discovery::{SideBySide, Target, Workload};
use crate::failover::{Tap, Writer, signed_ms};
use crate::report::{Outcome, Report, Row};
use crate::stats::Sample;

/// Budget for any one wait on the lab (a failover, a group re-forming).
const WAIT: Duration = Duration::from_secs(60);
/// How long a process is left alone before its memory is read, so that it reflects the state
/// and not the burst that led to it.
const SETTLE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    Discovery,
    Fanout,
    Propagation,
    Writers,
    Lifecycle,
    Planned,
    Scaling,
    Tls,
}

/// Side-by-side benchmarks of valkey-coordinator against a real sentinel, on loopback.
#[derive(Debug, Parser)]
struct Args {
    /// Kill -9 failovers for the propagation measurement.
    #[arg(long, default_value_t = 20)]
    failovers: usize,
    /// Planned switchovers per way of moving the master (the action, plain, COORDINATED).
    #[arg(long, default_value_t = 10)]
    switchovers: usize,
    /// Failovers watched by the two redis-py writers (coordinator vs. sentinels).
    #[arg(long, default_value_t = 3)]
    writer_failovers: usize,
    /// Connected clients and tap subscribers for the memory and fan-out measurements.
    #[arg(long, default_value_t = 10_000)]
    subscribers: usize,
    /// A second fan-out at this many subscribers, to show how the coordinator and Valkey grow
    /// (0 skips it); capped at what the open-file limit lets one server process hold.
    #[arg(long, default_value_t = 50_000)]
    large_subscribers: usize,
    /// Rounds of each discovery workload per side (medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Requests per valkey-benchmark run without pipelining.
    #[arg(long, default_value_t = 200_000)]
    requests: u64,
    /// Requests per valkey-benchmark run with pipeline 16.
    #[arg(long, default_value_t = 1_000_000)]
    pipelined_requests: u64,
    /// Valkey build the sentinels and data pods run (8.0.1, 8.1.8 or 9.1.2).
    #[arg(long, default_value = "9.1.2")]
    valkey: String,
    /// The coordinator binary; by default the one next to this binary (same cargo profile).
    #[arg(long)]
    coordinator_bin: Option<PathBuf>,
    /// Where results.md and results.json are written.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Phases to run (comma-separated); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    phases: Vec<Phase>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let report = run(&args).await?;
    let markdown = report.markdown();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    std::fs::write(args.out.join("results.md"), &markdown)?;
    std::fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&report.json())?,
    )?;
    println!("{markdown}");
    eprintln!("written to {}/results.{{md,json}}", args.out.display());
    Ok(())
}

fn version(text: &str) -> anyhow::Result<ValkeyVersion> {
    ValkeyVersion::ALL
        .into_iter()
        .find(|v| v.as_str() == text)
        .with_context(|| format!("unknown Valkey version {text}"))
}

fn progress(what: &str) {
    eprintln!("bench: {what}");
}

async fn run(args: &Args) -> anyhow::Result<Report> {
    let wants = |phase| args.phases.is_empty() || args.phases.contains(&phase);
    let version = version(&args.valkey)?;
    let open_files = procfs::raise_open_files().context("raising RLIMIT_NOFILE")?;
    let benchmark = ValkeyVersion::V8_0_1
        .binary("valkey-benchmark")
        .context("valkey-benchmark comes with 8.0.1 (tests/install-valkey.sh)")?;
    let coordinator_bin = match &args.coordinator_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary has a directory")?
            .join("valkey-coordinator"),
    };
    if !coordinator_bin.is_file() {
        bail!(
            "no coordinator binary at {} (cargo build --release -p valkey-coordinator)",
            coordinator_bin.display()
        );
    }

    let mut report = Report::default();
    context(&mut report, args, version, open_files);

    progress("starting the lab");
    let mut lab = LabSpec::new(version).start().await?;
    lab.wait_formed(WAIT).await?;
    let name = lab.master_name().to_owned();
    let listen = SocketAddr::new(IpAddr::V4(lab.block().spare_ip(0)), 26379);
    let main = coordinator::spawn(
        &mut lab,
        &coordinator_bin,
        "coordinator",
        listen,
        std::slice::from_ref(&name),
    )
    .await?;
    let sentinel_pid = lab
        .pid(PodId::Sentinel(0))
        .context("sentinel-0 is running")?;
    tokio::time::sleep(SETTLE).await;
    let idle = (procfs::rss_kib(main.pid)?, procfs::rss_kib(sentinel_pid)?);
    let mut memory_rows = vec![
        Row::new("resident memory, idle (1 master name, 3 sentinels)")
            .coordinator(mib(idle.0))
            .sentinel(mib(idle.1))
            .comparison(format!("ratio {:.2}", idle.0 as f64 / idle.1 as f64))
            .target("coordinator < 15 MiB", Outcome::of(idle.0 < 15 * 1024))
            .data(json!({ "coordinator_kib": idle.0, "sentinel_kib": idle.1 })),
    ];

    if wants(Phase::Discovery) {
        progress("discovery load");
        let coordinator = Target {
            addr: main.addr,
            pid: main.pid,
        };
        let sentinel = Target {
            addr: lab.sentinel_addr(0),
            pid: sentinel_pid,
        };
        match discovery_phase(args, &benchmark, &name, coordinator, sentinel).await {
            Ok(rows) => report.section("discovery", rows),
            Err(error) => report
                .failures
                .push(("discovery".into(), format!("{error:#}"))),
        }
    }

    if wants(Phase::Fanout) {
        progress("many clients and the tap's fan-out");
        match fanout_phase(args, &mut lab, &main, sentinel_pid, open_files).await {
            Ok((memory, fanout)) => {
                memory_rows.extend(memory);
                report.section("fan-out", fanout);
            }
            Err(error) => report
                .failures
                .push(("fan-out".into(), format!("{error:#}"))),
        }
    }
    report.section("memory", memory_rows);

    if wants(Phase::Propagation) {
        progress("failover propagation");
        match propagation_phase(args, &mut lab, &main).await {
            Ok(rows) => report.section("failover propagation", rows),
            Err(error) => report
                .failures
                .push(("failover propagation".into(), format!("{error:#}"))),
        }
    }

    if wants(Phase::Writers) {
        progress("client-visible unavailability");
        match writers_phase(args, &mut lab, &main).await {
            Ok(rows) => report.section("client-visible unavailability", rows),
            Err(error) => report
                .failures
                .push(("client-visible unavailability".into(), format!("{error:#}"))),
        }
    }

    if wants(Phase::Lifecycle) {
        progress("lifecycle actions");
        match lifecycle::rows(&coordinator_bin, &mut lab, main.addr).await {
            Ok(rows) => report.section("lifecycle", rows),
            Err(error) => report
                .failures
                .push(("lifecycle".into(), format!("{error:#}"))),
        }
    }

    if wants(Phase::Planned) {
        progress("planned switchovers");
        match planned::rows(args.switchovers).await {
            Ok(rows) => report.section("planned switchover", rows),
            Err(error) => report
                .failures
                .push(("planned switchover".into(), format!("{error:#}"))),
        }
    }

    if wants(Phase::Tls) {
        progress("discovery over TLS");
        let settings = tls::Settings {
            rounds: args.rounds,
            requests: args.requests,
            pipelined_requests: args.pipelined_requests,
            clients: args.subscribers.min(1_000),
        };
        match tls::rows(&settings, &benchmark, &coordinator_bin).await {
            Ok(rows) => report.section("TLS", rows),
            Err(error) => report.failures.push(("TLS".into(), format!("{error:#}"))),
        }
    }

    if wants(Phase::Scaling) {
        progress("scaling");
        match scaling_phase(version, &coordinator_bin).await {
            Ok(rows) => report.section("scaling", rows),
            Err(error) => report
                .failures
                .push(("scaling".into(), format!("{error:#}"))),
        }
    }
    drop(lab);
    Ok(report)
}

fn context(report: &mut Report, args: &Args, version: ValkeyVersion, open_files: u64) {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let c = &mut report.context;
    c.insert(
        "machine".into(),
        json!(format!(
            "{cores} cores, {cpu}, Linux {}",
            read("/proc/sys/kernel/osrelease").trim()
        )),
    );
    c.insert(
        "servers".into(),
        json!(format!(
            "Valkey {version} (3 data pods, 3 sentinels, down-after 2000 ms) on loopback; load from valkey-benchmark 8.0.1"
        )),
    );
    c.insert(
        "coordinator".into(),
        json!(format!(
            "release build of valkey-coordinator serve, in its own process ({})",
            match std::env::var("VALKEY_COORDINATOR_CLIENT_THREADS") {
                Ok(threads) => format!("--client-threads {threads}"),
                Err(_) => "default: clients on one single-threaded client thread".to_owned(),
            }
        )),
    );
    c.insert(
        "parameters".into(),
        json!(format!(
            "{} rounds per discovery workload, {} / {} requests per run (pipeline 1 / 16), 50 clients; {} failovers; {} writer failovers; {} subscribers; RLIMIT_NOFILE {open_files}",
            args.rounds, args.requests, args.pipelined_requests, args.failovers, args.writer_failovers, args.subscribers
        )),
    );
    c.insert(
        "started".into(),
        json!(format!(
            "{} s since the Unix epoch",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        )),
    );
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

async fn discovery_phase(
    args: &Args,
    benchmark: &Path,
    name: &str,
    coordinator: Target,
    sentinel: Target,
) -> anyhow::Result<Vec<Row>> {
    let workload = |label: &str, command: &[&str], pipeline: u32, requests: u64| Workload {
        label: label.to_owned(),
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        pipeline,
        clients: 50,
        requests,
        connection: Vec::new(),
    };
    let discovery = ["SENTINEL", "get-master-addr-by-name", name];
    // Warm both sides up (connections, allocator, caches) before anything counts.
    let warm = workload("warm-up", &discovery, 1, args.requests / 10);
    discovery::run_once(benchmark, coordinator, &warm).await?;
    discovery::run_once(benchmark, sentinel, &warm).await?;

    let workloads = [
        (
            workload("GET-MASTER-ADDR-BY-NAME, P1", &discovery, 1, args.requests),
            true,
        ),
        (
            workload(
                "GET-MASTER-ADDR-BY-NAME, P16",
                &discovery,
                16,
                args.pipelined_requests,
            ),
            true,
        ),
        (workload("PING, P1", &["PING"], 1, args.requests), false),
        (
            workload("PING, P16", &["PING"], 16, args.pipelined_requests),
            false,
        ),
    ];
    let mut rows = Vec::new();
    for (workload, with_targets) in &workloads {
        progress(&format!("  {}", workload.label));
        let measured =
            SideBySide::measure(benchmark, workload, coordinator, sentinel, args.rounds).await?;
        rows.extend(measured.rows(workload, *with_targets));
    }
    Ok(rows)
}

/// Memory with many clients, then the tap's fan-out to all of them on a real failover
/// (`SENTINEL FAILOVER`, which needs no down-after wait).
async fn fanout_phase(
    args: &Args,
    lab: &mut Lab,
    main: &Process,
    sentinel_pid: u32,
    open_files: u64,
) -> anyhow::Result<(Vec<Row>, Vec<Row>)> {
    let first = args.subscribers.min(1_000);
    let mut streams = fanout::connect(main.addr, first).await?;
    let sentinel_streams = fanout::connect(lab.sentinel_addr(0), first).await?;
    tokio::time::sleep(SETTLE).await;
    let at_first = (procfs::rss_kib(main.pid)?, procfs::rss_kib(sentinel_pid)?);
    drop(sentinel_streams);
    let mut memory = vec![
        Row::new(format!("resident memory, {first} connected clients"))
            .coordinator(mib(at_first.0))
            .sentinel(mib(at_first.1))
            .comparison(format!("ratio {:.2}", at_first.0 as f64 / at_first.1 as f64))
            .data(json!({ "clients": first, "coordinator_kib": at_first.0, "sentinel_kib": at_first.1 })),
    ];
    streams.extend(
        fanout::connect(main.addr, args.subscribers - first)
            .await
            .with_context(|| format!("connecting {} clients", args.subscribers))?,
    );
    tokio::time::sleep(SETTLE).await;
    let at_all = procfs::rss_kib(main.pid)?;
    let coordinator_kib_per_client =
        (at_all as f64 - at_first.0 as f64) / (args.subscribers - first).max(1) as f64;
    memory.push(
        Row::new(format!(
            "resident memory, {} connected clients",
            args.subscribers
        ))
        .coordinator(mib(at_all))
        .sentinel("not measured (sentinel maxclients 10000)")
        .comparison(format!(
            "{:.1} KiB per client over idle",
            (at_all as f64 - at_first.0 as f64) / (args.subscribers - first).max(1) as f64
        ))
        .data(json!({ "clients": args.subscribers, "coordinator_kib": at_all })),
    );

    let measured = switch_fan_out(lab, main, streams, Some(&mut memory)).await?;
    let mut fanout = measured.rows();
    let count = measured.arrivals.len();
    progress(&format!(
        "  the anchor: valkey-server PUBLISH to {count} subscribers"
    ));
    let sources = source_ips(lab, Towards::Anchor, count);
    let anchor = anchor_fan_out(lab, count, &sources, &measured.message).await?;
    fanout.push(anchor_row(&measured, &anchor));
    memory.push(
        Row::new(format!(
            "resident memory per connected client ({count} clients): coordinator against \
             valkey-server 9.1.2"
        ))
        .coordinator(format!("{coordinator_kib_per_client:.1} KiB"))
        .sentinel(format!("valkey-server: {:.1} KiB", anchor.kib_per_client))
        .comparison(format!(
            "ratio {:.2}",
            coordinator_kib_per_client / anchor.kib_per_client
        ))
        .target(
            "ratio <= 1.00",
            Outcome::of(coordinator_kib_per_client <= anchor.kib_per_client),
        )
        .data(json!({
            "clients": count,
            "coordinator_kib_per_client": coordinator_kib_per_client,
            "valkey_kib_per_client": anchor.kib_per_client,
        })),
    );
    if let Some(subscribed) = measured.subscribed_kib {
        let per_subscriber =
            (subscribed as f64 - at_first.0 as f64) / (count - first).max(1) as f64;
        memory.push(
            Row::new(format!(
                "resident memory per subscriber ({count} subscribed to +switch-master): \
                 coordinator against valkey-server 9.1.2"
            ))
            .coordinator(format!("{per_subscriber:.1} KiB"))
            .sentinel(format!(
                "valkey-server: {:.1} KiB",
                anchor.kib_per_subscriber
            ))
            .comparison(format!(
                "ratio {:.2}",
                per_subscriber / anchor.kib_per_subscriber
            ))
            .target(
                "ratio <= 1.00",
                Outcome::of(per_subscriber <= anchor.kib_per_subscriber),
            )
            .data(json!({
                "subscribers": count,
                "coordinator_kib_per_subscriber": per_subscriber,
                "valkey_kib_per_subscriber": anchor.kib_per_subscriber,
            })),
        );
    }

    // Every server holds its subscribers in one process, so the open-file limit (inherited
    // from this process, and not raisable without CAP_SYS_RESOURCE) bounds the large row.
    let ceiling = usize::try_from(open_files.saturating_sub(1_000)).unwrap_or(usize::MAX);
    if args.large_subscribers > 0 {
        let large = args.large_subscribers.min(ceiling);
        if large < args.large_subscribers {
            progress(&format!(
                "  {} subscribers asked for, {large} fit under RLIMIT_NOFILE {open_files}",
                args.large_subscribers
            ));
        }
        progress(&format!("  {large} subscribers"));
        let sources = source_ips(lab, Towards::Coordinator, large);
        let streams = fanout::connect_from(main.addr, &sources, large)
            .await
            .with_context(|| format!("connecting {large} subscribers"))?;
        let measured = switch_fan_out(lab, main, streams, None).await?;
        fanout.push(measured.spread_row());
        progress(&format!(
            "  the anchor: valkey-server PUBLISH to {large} subscribers"
        ));
        let sources = source_ips(lab, Towards::LargeAnchor, large);
        let anchor = anchor_fan_out(lab, large, &sources, &measured.message).await?;
        fanout.push(anchor_row(&measured, &anchor));
    }
    Ok((memory, fanout))
}

/// Which server the connections go to, so each gets source addresses of its own: the ports of
/// the coordinator's closed subscribers are still in TIME_WAIT when the anchor's connect.
#[derive(Clone, Copy)]
enum Towards {
    Coordinator,
    Anchor,
    /// The large row's anchor: the first anchor's ports are still in TIME_WAIT too.
    LargeAnchor,
}

/// Distinct loopback source addresses for `count` connections to one server: one address has
/// about 28,000 ephemeral ports, so each gets at most 20,000 connections.
fn source_ips(lab: &Lab, towards: Towards, count: usize) -> Vec<IpAddr> {
    let first = match towards {
        Towards::Coordinator => 10,
        Towards::Anchor => 20,
        Towards::LargeAnchor => 30,
    };
    let needed = count.div_ceil(20_000).max(1);
    (0..needed)
        .map(|k| IpAddr::V4(lab.block().spare_ip(first + k)))
        .collect()
}

/// One real `+switch-master` (a `SENTINEL FAILOVER`) delivered by the coordinator to `streams`,
/// each subscribed to `+switch-master` first.
struct SwitchFanOut {
    arrivals: Vec<Instant>,
    /// The message as the subscribers received it (RESP), for the anchor to publish the same.
    message: String,
    triggered: Instant,
    switch_times: Vec<Instant>,
    majority_at: Instant,
    cpu_during: Duration,
    tap_in_window: Vec<String>,
    /// The coordinator's resident memory once every stream had subscribed, when measured.
    subscribed_kib: Option<u64>,
}

async fn switch_fan_out(
    lab: &mut Lab,
    main: &Process,
    streams: Vec<tokio::net::TcpStream>,
    memory: Option<&mut Vec<Row>>,
) -> anyhow::Result<SwitchFanOut> {
    let name = lab.master_name().to_owned();
    let count = streams.len();
    let subscribers = fanout::subscribe(streams, WAIT)
        .await
        .context("subscribing every client to +switch-master")?;
    tokio::time::sleep(SETTLE).await;
    let mut subscribed_kib = None;
    if let Some(memory) = memory {
        let subscribed = procfs::rss_kib(main.pid)?;
        subscribed_kib = Some(subscribed);
        memory.push(
            Row::new(format!(
                "resident memory, {count} clients subscribed to +switch-master"
            ))
            .coordinator(mib(subscribed))
            .data(json!({ "subscribers": count, "coordinator_kib": subscribed })),
        );
    }

    let events = EventLog::start(lab).await?;
    let old = lab
        .sentinel_master_addr(0)
        .await?
        .context("sentinel-0 names a master")?;
    let recorder = fanout::TapRecorder::start(main.addr).await?;
    let mut sentinel = lab.client(PodId::Sentinel(0)).await?;
    let cpu_before = procfs::cpu_time(main.pid)?;
    let triggered = Instant::now();
    progress("  SENTINEL FAILOVER");
    sentinel.call(&["SENTINEL", "FAILOVER", &name]).await?;
    let (arrivals, messages) = subscribers
        .deliveries(WAIT)
        .await
        .context("waiting for every subscriber's +switch-master")?;
    let cpu_during = procfs::cpu_time(main.pid)?.saturating_sub(cpu_before);
    let switched = events
        .wait_majority(
            Channel::SwitchMaster,
            |p| matches!(p, Payload::SwitchMaster { old_ip, old_port, .. } if old_ip.parse() == Ok(old.ip()) && *old_port == old.port()),
            WAIT,
        )
        .await?;
    let mut switch_times: Vec<Instant> = switched.iter().map(|e| e.at).collect();
    switch_times.sort();
    let majority_at = switch_times[lab.majority() - 1];
    let new = match &switched[0].event.payload {
        Payload::SwitchMaster {
            new_ip, new_port, ..
        } => format!("{new_ip}:{new_port}").parse::<SocketAddr>()?,
        _ => bail!("not a +switch-master"),
    };
    if messages.len() != 1 || !messages[0].contains(&format!("{} {}", new.ip(), new.port())) {
        bail!("subscribers received {messages:?}, expected one +switch-master to {new}");
    }
    let first_at = *arrivals.iter().min().context("no arrivals")?;
    let last_at = *arrivals.iter().max().context("no arrivals")?;
    let tap_in_window = recorder.between(first_at, last_at);
    drop(recorder);
    drop(events);
    lab.wait_sentinels_see(lab.data_count() - 1, lab.sentinel_count() - 1, WAIT)
        .await?;
    coordinator::wait_settled(main, &name, new, WAIT).await?;
    Ok(SwitchFanOut {
        arrivals,
        message: messages[0].clone(),
        triggered,
        switch_times,
        majority_at,
        cpu_during,
        tap_in_window,
        subscribed_kib,
    })
}

impl SwitchFanOut {
    fn first(&self) -> Instant {
        self.arrivals
            .iter()
            .copied()
            .min()
            .unwrap_or(self.triggered)
    }

    fn spread(&self) -> f64 {
        let last = self
            .arrivals
            .iter()
            .copied()
            .max()
            .unwrap_or(self.triggered);
        signed_ms(last, self.first())
    }

    fn since_first_delivery(&self) -> Sample {
        let first = self.first();
        Sample::new(self.arrivals.iter().map(|a| signed_ms(*a, first)).collect())
    }

    fn spread_row(&self) -> Row {
        let from_first = self.since_first_delivery();
        let spread = self.spread();
        Row::new(format!(
            "+switch-master to {} subscribers: first to last delivery",
            self.arrivals.len()
        ))
        .coordinator(format!(
            "{spread:.1} ms (p50 {:.1}, p99 {:.1})",
            from_first.median(),
            from_first.percentile(99.0)
        ))
        .sentinel(format!(
            "sentinels' own spread, first to majority +switch-master: {:.1} ms",
            signed_ms(self.majority_at, self.switch_times[0])
        ))
        .comparison(format!(
            "{} tap messages (every channel) in that window, of which only +switch-master \
             wakes these subscribers; coordinator CPU from trigger to last delivery {:.0} ms",
            self.tap_in_window.len(),
            self.cpu_during.as_secs_f64() * 1e3
        ))
        .data(json!({
            "tap_messages_in_window": self.tap_in_window,
            "coordinator_cpu_trigger_to_last_ms": self.cpu_during.as_secs_f64() * 1e3,
            "subscribers": self.arrivals.len(),
            "from_first_delivery_ms": from_first.to_json(),
            "trigger_to_majority_switch_ms": signed_ms(self.majority_at, self.triggered),
        }))
    }

    fn rows(&self) -> Vec<Row> {
        let from_majority = Sample::new(
            self.arrivals
                .iter()
                .map(|a| signed_ms(*a, self.majority_at))
                .collect(),
        );
        vec![
            self.spread_row()
                .target("< 100 ms", Outcome::of(self.spread() < 100.0)),
            Row::new("same, from the majority's +switch-master to the last delivery")
                .coordinator(format!(
                    "{:.1} ms (first delivery {:+.1} ms)",
                    from_majority.max(),
                    from_majority.min()
                ))
                .comparison("negative: the coordinator knew before the majority had published")
                .data(json!({ "from_majority_switch_ms": from_majority.to_json() })),
        ]
    }
}

/// The anchor: a plain `valkey-server` 9.1.2 with `count` subscribers of the same harness on
/// `+switch-master`, and one `PUBLISH` of the message the coordinator delivered; the arrival
/// times, as the coordinator's are taken.
async fn anchor_fan_out(
    lab: &mut Lab,
    count: usize,
    sources: &[IpAddr],
    message: &str,
) -> anyhow::Result<Anchor> {
    let addr = SocketAddr::new(IpAddr::V4(lab.block().spare_ip(4)), 6379);
    let mut command = std::process::Command::new(ValkeyVersion::V9_1_2.server_binary()?);
    command
        .args(["--bind", &addr.ip().to_string(), "--port", "6379"])
        .args(["--maxclients", &(count + 1_000).to_string()])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .arg("--dir")
        .arg(lab.dir());
    let pid = lab.spawn_aux("anchor", command).await?;
    let deadline = Instant::now() + WAIT;
    let mut publisher = loop {
        match valkey_lab::Client::connect(addr, None).await {
            Ok(client) => break client,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(error) => return Err(error).context("the anchor valkey-server never answered"),
        }
    };
    tokio::time::sleep(SETTLE).await;
    let idle = procfs::rss_kib(pid)?;
    let streams = fanout::connect_from(addr, sources, count)
        .await
        .with_context(|| format!("connecting {count} subscribers to the anchor"))?;
    tokio::time::sleep(SETTLE).await;
    let connected = procfs::rss_kib(pid)?;
    let subscribers = fanout::subscribe(streams, WAIT)
        .await
        .context("subscribing to the anchor")?;
    tokio::time::sleep(SETTLE).await;
    let subscribed = procfs::rss_kib(pid)?;
    let payload = fanout::payload_of(message).context("the coordinator's message")?;
    publisher
        .call(&["PUBLISH", "+switch-master", &payload])
        .await?;
    let (arrivals, messages) = subscribers.deliveries(WAIT).await?;
    if messages.len() != 1 || messages[0] != message {
        bail!("the anchor's subscribers received {messages:?}, expected {message:?}");
    }
    lab.kill_aux("anchor");
    Ok(Anchor {
        arrivals,
        kib_per_client: (connected as f64 - idle as f64) / count.max(1) as f64,
        kib_per_subscriber: (subscribed as f64 - idle as f64) / count.max(1) as f64,
    })
}

/// What the anchor measured: its deliveries, and its memory per connected client and per
/// subscriber (over idle).
struct Anchor {
    arrivals: Vec<Instant>,
    kib_per_client: f64,
    kib_per_subscriber: f64,
}

fn anchor_row(coordinator: &SwitchFanOut, anchor: &Anchor) -> Row {
    let anchor = &anchor.arrivals;
    let first = anchor.iter().copied().min();
    let last = anchor.iter().copied().max();
    let spread = match (first, last) {
        (Some(first), Some(last)) => signed_ms(last, first),
        _ => f64::NAN,
    };
    let from_first = Sample::new(
        anchor
            .iter()
            .map(|a| signed_ms(*a, first.unwrap_or(*a)))
            .collect(),
    );
    let ratio = coordinator.spread() / spread;
    Row::new(format!(
        "the same message to {} subscribers: coordinator against valkey-server 9.1.2 PUBLISH",
        anchor.len()
    ))
    .coordinator(format!("{:.1} ms", coordinator.spread()))
    .sentinel(format!(
        "valkey-server: {spread:.1} ms (p50 {:.1}, p99 {:.1})",
        from_first.median(),
        from_first.percentile(99.0)
    ))
    .comparison(format!("ratio {ratio:.2}"))
    .target("ratio <= 1.50", Outcome::of(ratio <= 1.5))
    .data(json!({
        "subscribers": anchor.len(),
        "coordinator_spread_ms": coordinator.spread(),
        "valkey_spread_ms": spread,
        "valkey_from_first_delivery_ms": from_first.to_json(),
    }))
}

async fn current_master(lab: &Lab) -> anyhow::Result<usize> {
    let addr = lab
        .sentinel_master_addr(0)
        .await?
        .context("sentinel-0 names a master")?;
    lab.data_index(addr)
        .with_context(|| format!("{addr} is not a lab pod"))
}

async fn propagation_phase(args: &Args, lab: &mut Lab, main: &Process) -> anyhow::Result<Vec<Row>> {
    let events = EventLog::start(lab).await?;
    let mut tap = Tap::start(main.addr).await?;
    let mut index = current_master(lab).await?;
    let mut observed = Vec::with_capacity(args.failovers);
    for round in 0..args.failovers {
        let seen = failover::kill_and_observe(lab, &events, &mut tap, main, index, WAIT).await?;
        progress(&format!(
            "  failover {}/{}: {} -> {}: tap {:+.2} ms, GET-MASTER-ADDR-BY-NAME {:+.2} ms after the majority",
            round + 1,
            args.failovers,
            seen.old,
            seen.new,
            signed_ms(seen.tapped, seen.majority_switch),
            signed_ms(seen.answered, seen.majority_switch),
        ));
        failover::restore(lab, main, index, seen.new, WAIT).await?;
        index = lab
            .data_index(seen.new)
            .context("the new master is a lab pod")?;
        observed.push(seen);
    }
    drop(tap);
    events.stop().await;

    let sample =
        |f: &dyn Fn(&failover::Observed) -> f64| Sample::new(observed.iter().map(f).collect());
    let tap_lag = sample(&|o| signed_ms(o.tapped, o.majority_switch));
    let answer_lag = sample(&|o| signed_ms(o.answered, o.majority_switch));
    let tap_from_first = sample(&|o| signed_ms(o.tapped, o.first_switch));
    let answer_from_first = sample(&|o| signed_ms(o.answered, o.first_switch));
    let sentinels_spread = sample(&|o| signed_ms(o.majority_switch, o.first_switch));
    let describe = |s: &Sample| {
        format!(
            "p50 {:+.2} ms, p99 {:+.2} ms, max {:+.2} ms",
            s.median(),
            s.percentile(99.0),
            s.max()
        )
    };
    let n = observed.len();
    Ok(vec![
        Row::new(format!(
            "majority's +switch-master to the coordinator's tap delivering it ({n} failovers)"
        ))
        .coordinator(describe(&tap_lag))
        .sentinel(format!(
            "sentinels' own first-to-majority spread: {}",
            describe(&sentinels_spread)
        ))
        .target("p99 < 5 ms", Outcome::of(tap_lag.percentile(99.0) < 5.0))
        .data(json!({
            "tap_from_majority_ms": tap_lag.to_json(),
            "tap_from_first_ms": tap_from_first.to_json(),
            "sentinels_first_to_majority_ms": sentinels_spread.to_json(),
        })),
        Row::new(format!(
            "majority's +switch-master to GET-MASTER-ADDR-BY-NAME naming the new master ({n} failovers)"
        ))
        .coordinator(describe(&answer_lag))
        .target("p99 < 5 ms", Outcome::of(answer_lag.percentile(99.0) < 5.0))
        .data(json!({
            "answer_from_majority_ms": answer_lag.to_json(),
            "answer_from_first_ms": answer_from_first.to_json(),
        })),
        Row::new("same two, from the first sentinel's +switch-master")
            .coordinator(format!(
                "tap {}; GET-MASTER-ADDR-BY-NAME {}",
                describe(&tap_from_first),
                describe(&answer_from_first)
            ))
            .comparison("negative: ahead of the majority, as rule 2 allows"),
    ])
}

async fn writers_phase(args: &Args, lab: &mut Lab, main: &Process) -> anyhow::Result<Vec<Row>> {
    let name = lab.master_name().to_owned();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("../.deps/py/bin/python");
    let script = root.join("clients/writer.py");
    let mut via_coordinator = Writer::spawn(
        &python,
        &script,
        "coordinator",
        &[main.addr],
        &name,
        lab.dir().join("writer-coordinator.err"),
    )?;
    let mut via_sentinels = Writer::spawn(
        &python,
        &script,
        "sentinels",
        &lab.sentinel_addrs(),
        &name,
        lab.dir().join("writer-sentinels.err"),
    )?;
    via_coordinator.next_event("ready", WAIT).await?;
    via_sentinels.next_event("ready", WAIT).await?;

    let mut gaps: Vec<(f64, f64)> = Vec::new();
    for round in 0..args.writer_failovers {
        let index = current_master(lab).await?;
        let old = lab.data_addr(index);
        lab.kill(PodId::Data(index));
        let c = via_coordinator.next_event("switch", WAIT).await?;
        let s = via_sentinels.next_event("switch", WAIT).await?;
        let new: SocketAddr = c["new"]
            .as_str()
            .context("switch names the new master")?
            .parse()?;
        if s["new"].as_str() != Some(&new.to_string())
            || c["old"].as_str() != Some(&old.to_string())
        {
            bail!("the writers disagree on the failover of {old}: {c} vs {s}");
        }
        let gap = |j: &serde_json::Value| j["gap_ms"].as_f64().context("gap_ms");
        let (gc, gs) = (gap(&c)?, gap(&s)?);
        progress(&format!(
            "  writer failover {}/{}: {old} -> {new}: gap {gc:.0} ms via the coordinator, {gs:.0} ms via the sentinels",
            round + 1,
            args.writer_failovers
        ));
        gaps.push((gc, gs));
        failover::restore(lab, main, index, new, WAIT).await?;
    }
    let coordinator_gaps = Sample::new(gaps.iter().map(|g| g.0).collect());
    let sentinel_gaps = Sample::new(gaps.iter().map(|g| g.1).collect());
    let differences = Sample::new(gaps.iter().map(|g| g.0 - g.1).collect());
    let describe = |s: &Sample| {
        format!(
            "p50 {:.0} ms, min {:.0}, max {:.0}",
            s.median(),
            s.min(),
            s.max()
        )
    };
    Ok(vec![
        Row::new(format!(
            "redis-py writer: last write on the old master to first on the new ({} kill -9 failovers)",
            gaps.len()
        ))
        .coordinator(describe(&coordinator_gaps))
        .sentinel(describe(&sentinel_gaps))
        .comparison(format!(
            "ratio of medians {:.2}; paired difference p50 {:+.0} ms, max {:+.0} ms",
            coordinator_gaps.median() / sentinel_gaps.median(),
            differences.median(),
            differences.max()
        ))
        .data(json!({
            "coordinator_gap_ms": coordinator_gaps.to_json(),
            "sentinels_gap_ms": sentinel_gaps.to_json(),
            "paired_difference_ms": differences.to_json(),
        })),
    ])
}

async fn scaling_phase(version: ValkeyVersion, coordinator_bin: &Path) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for shape in [scaling::Shape::Steady, scaling::Shape::Failover] {
        let base = scaling::time_decide(3, shape);
        for sentinels in [3, 5, 7] {
            let ns = if sentinels == 3 {
                base
            } else {
                scaling::time_decide(sentinels, shape)
            };
            rows.push(
                Row::new(format!(
                    "verdict::decide, {sentinels} sentinels, {}",
                    shape.label()
                ))
                .coordinator(format!("{ns:.0} ns"))
                .comparison(format!("ratio to 3 sentinels {:.2}", ns / base))
                .data(json!({ "sentinels": sentinels, "ns_per_call": ns })),
            );
        }
    }

    // Memory per sentinel count and per master-name count, each on a fresh lab so that no
    // earlier phase's clients or failovers are in the figures. Extra master names are the same
    // data pods monitored again under other names, registered by hand on every sentinel.
    for sentinels in [3, 5, 7] {
        progress(&format!("  a lab with {sentinels} sentinels"));
        let mut fresh = LabSpec::new(version).sentinels(sentinels).start().await?;
        fresh.wait_formed(WAIT).await?;
        let sentinel_pid = fresh.pid(PodId::Sentinel(0)).context("sentinel-0 runs")?;
        let listen = SocketAddr::new(IpAddr::V4(fresh.block().spare_ip(0)), 26379);
        let counts: &[usize] = if sentinels == 3 { &[1, 10, 100] } else { &[1] };
        let master = fresh.data_addr(0);
        let mut names = vec![fresh.master_name().to_owned()];
        for &count in counts {
            while names.len() < count {
                let extra = format!("bench-{}", names.len());
                for j in 0..fresh.sentinel_count() {
                    let mut client = fresh.client(PodId::Sentinel(j)).await?;
                    client
                        .call(&[
                            "SENTINEL",
                            "MONITOR",
                            &extra,
                            &master.ip().to_string(),
                            &master.port().to_string(),
                            &fresh.majority().to_string(),
                        ])
                        .await?;
                }
                names.push(extra);
            }
            let process =
                coordinator::spawn(&mut fresh, coordinator_bin, "coordinator", listen, &names)
                    .await?;
            tokio::time::sleep(SETTLE).await;
            rows.push(memory_row(
                sentinels,
                count,
                (
                    procfs::rss_kib(process.pid)?,
                    procfs::rss_kib(sentinel_pid)?,
                ),
            ));
            fresh.kill_aux("coordinator");
        }
    }
    Ok(rows)
}

fn memory_row(sentinels: usize, names: usize, (coordinator, sentinel): (u64, u64)) -> Row {
    Row::new(format!(
        "resident memory, {sentinels} sentinels, {names} master name{}",
        if names == 1 { "" } else { "s" }
    ))
    .coordinator(mib(coordinator))
    .sentinel(mib(sentinel))
    .comparison(format!("ratio {:.2}", coordinator as f64 / sentinel as f64))
    .data(json!({
        "sentinels": sentinels,
        "names": names,
        "coordinator_kib": coordinator,
        "sentinel_kib": sentinel,
    }))
}
