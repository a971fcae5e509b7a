//! `valkey-coordinator demo`: the whole product on one machine. A 3 data + 3 sentinel Valkey
//! group runs as real processes on loopback (the test lab, `valkey-lab`), the coordinator
//! follows its sentinels through the same [`service::start`] path `serve` takes, and the demo
//! shows what a client of the coordinator would learn.
//!
//! The default view is calm: one line when the agreed master changes (with why it is agreed),
//! one line when a data pod's own `ROLE` changes, nothing otherwise, so the current state stays
//! on screen. `--verbose` adds every verdict's full detail and every message of the event tap.
//! `--failover` moves the master with the `switchover` action once the group has settled, the
//! way a planned operation does it (no moment with two writable masters).
//!
//! A binary-only module: the lab is test tooling, linked only with the `demo` feature. Output
//! goes through [`say`], which ignores a closed stdout (a pipe through `tee` that Ctrl-C ended
//! first), so the lab is always stopped and its folder removed.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use valkey_coordinator::addr::Addr;
use valkey_coordinator::cli::DemoArgs;
use valkey_coordinator::lifecycle::{self, Budget, Target};
use valkey_coordinator::service::registry::{NameState, Registry};
use valkey_coordinator::service::server::status;
use valkey_coordinator::service::{self, ServiceConfig};
use valkey_coordinator::verdict::{Verdict, majority_of};
use valkey_lab::sentinel_protocol::role::Role;
use valkey_lab::{Lab, LabSpec, PodId, ValkeyVersion};

/// How long the group may take to form (every sentinel sees 2 replicas and 2 sentinels).
const FORM_BUDGET: Duration = Duration::from_secs(30);
/// How often the data pods' own roles are read (printed only when they change).
const ROLES_PERIOD: Duration = Duration::from_secs(1);
/// Ports tried, in order, when the default listen port is taken.
const FALLBACK_PORTS: std::ops::RangeInclusive<u16> = 26380..=26399;
/// The switchover's budget.
const SWITCHOVER_BUDGET: Duration = Duration::from_secs(30);

/// Prints one line; a closed stdout is not an error worth dying for mid-cleanup.
fn say(line: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.as_ref());
    let _ = out.flush();
}

/// Runs the demo until `shutdown` is cancelled or `--for` elapses, then stops every process it
/// started.
pub async fn run(args: DemoArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let version: ValkeyVersion = args.valkey_version.parse().map_err(anyhow::Error::msg)?;
    let listen = choose_listen(args.listen)?;
    say(format!(
        "starting a Valkey {version} group: 3 data pods, 3 sentinels"
    ));
    let mut lab = LabSpec::new(version)
        .start()
        .await
        .context("cannot start the lab (run tests/install-valkey.sh first?)")?;
    say(format!("  files and logs   {}", lab.dir().display()));
    for i in 0..lab.data_count() {
        say(format!("  data pod {i}       {}", lab.data_addr(i)));
    }
    for j in 0..lab.sentinel_count() {
        say(format!("  sentinel {j}       {}", lab.sentinel_addr(j)));
    }

    let outcome = follow(&mut lab, &args, listen, &shutdown).await;
    say("stopping every process of the lab");
    let stopped = lab.stop_all().await.context("cannot stop the lab");
    outcome.and(stopped)
}

/// The address to listen on: the one asked for, else the sentinel port on loopback, else the
/// first free one after it (said so), so a sentinel already running here does not end the demo
/// after the lab was built.
fn choose_listen(asked: Option<SocketAddr>) -> anyhow::Result<SocketAddr> {
    let free = |addr: SocketAddr| std::net::TcpListener::bind(addr).is_ok();
    if let Some(addr) = asked {
        anyhow::ensure!(
            free(addr),
            "{addr} is already in use: pass another address with --listen (for example \
             --listen 127.0.0.1:{})",
            FALLBACK_PORTS.start()
        );
        return Ok(addr);
    }
    let default: SocketAddr = valkey_coordinator::cli::DEFAULT_LISTEN
        .parse()
        .expect("a literal address");
    if free(default) {
        return Ok(default);
    }
    let fallback = FALLBACK_PORTS
        .map(|port| SocketAddr::new(default.ip(), port))
        .find(|addr| free(*addr))
        .with_context(|| {
            format!("{default} and ports {FALLBACK_PORTS:?} are in use: pass --listen ADDR")
        })?;
    say(format!(
        "{default} is in use (a sentinel?); the coordinator listens on {fallback} instead"
    ));
    Ok(fallback)
}

/// Everything between a started lab and its stop, so the lab is stopped on every path.
async fn follow(
    lab: &mut Lab,
    args: &DemoArgs,
    listen: SocketAddr,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    tokio::select! {
        formed = lab.wait_formed(FORM_BUDGET) => formed.context("the group did not form")?,
        () = shutdown.cancelled() => return Ok(()),
    }
    say("group formed: every sentinel sees 2 replicas and 2 other sentinels");

    let name = lab.master_name().to_owned();
    let sentinels: Vec<Addr> = lab.sentinel_addrs().into_iter().map(Addr::from).collect();
    let mut config = ServiceConfig::new(listen, sentinels, vec![name.clone()]);
    // Any free port beside the clients' address: the demo shows what Prometheus and the
    // Kubernetes probes would read.
    config.metrics_listen = Some(SocketAddr::new(listen.ip(), 0));
    let coordinator = service::start(config)
        .await
        .context("cannot start the coordinator")?;
    let listen = coordinator.listen_addr;
    let cli = ValkeyVersion::V8_1_8
        .binary("valkey-cli")
        .map(|path| {
            std::fs::canonicalize(&path)
                .unwrap_or(path)
                .display()
                .to_string()
        })
        .unwrap_or_else(|_| "valkey-cli".to_owned());
    let ask = format!("{cli} -h {} -p {}", listen.ip(), listen.port());
    say(format!(
        "coordinator listening on {listen}; ask it as a client would:\n  \
         {ask} SENTINEL GET-MASTER-ADDR-BY-NAME {name}\n  \
         {ask} COORDINATOR VERDICT {name}"
    ));
    if let Some(metrics) = coordinator.metrics_addr {
        say(format!(
            "metrics and health: curl http://{metrics}/metrics | /healthz | /readyz"
        ));
    }
    say(if args.verbose {
        "showing every verdict in full and every event (Ctrl-C stops)"
    } else {
        "showing changes only; --verbose shows every verdict and event (Ctrl-C stops)"
    });

    let registry = std::sync::Arc::clone(&coordinator.registry);
    let mut verdicts = registry
        .watch(&name)
        .context("the coordinator does not follow the lab's master name")?;
    let mut tap = registry.subscribe_tap();
    let mut roles = tokio::time::interval(ROLES_PERIOD);
    roles.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stop_at = args
        .run_for
        .map(|seconds| Instant::now() + Duration::from_secs(seconds));
    let mut failover_pending = args.failover;
    let mut shown = Shown::default();

    let outcome = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            () = sleep_until(stop_at) => break Ok(()),
            changed = verdicts.changed() => {
                if changed.is_err() {
                    break Err(anyhow::anyhow!("the coordinator stopped publishing verdicts"));
                }
                let state = verdicts.borrow_and_update().clone();
                shown.verdict(&state, &registry, lab, args.verbose);
                if failover_pending && settled(&state, lab.sentinel_count()) {
                    failover_pending = false;
                    switch_over(lab, &name, &state).await;
                }
            }
            message = tap.recv() => match message {
                Ok(message) if args.verbose => say(format!(
                    "{}  event   {} {}",
                    clock(),
                    message.channel,
                    String::from_utf8_lossy(&message.payload)
                )),
                Ok(_) => {}
                Err(RecvError::Lagged(skipped)) if args.verbose => {
                    say(format!("{}  event   ({skipped} messages skipped)", clock()));
                }
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break Err(anyhow::anyhow!("the coordinator's tap closed")),
            },
            _ = roles.tick() => shown.roles(lab).await,
        }
    };
    let stopped = coordinator
        .stop()
        .await
        .context("the coordinator did not stop cleanly");
    outcome.and(stopped)
}

/// What is on screen, so only changes are printed.
#[derive(Default)]
struct Shown {
    verdict: String,
    roles: Vec<String>,
}

impl Shown {
    fn verdict(&mut self, state: &NameState, registry: &Registry, lab: &Lab, verbose: bool) {
        let line = verdict_line(&state.verdict, lab, registry.configured_sentinels());
        if line == self.verdict {
            return;
        }
        say(format!("{}  verdict {line}", clock()));
        if verbose {
            for detail in status::verdict_text(state, registry).lines() {
                say(format!("                  {detail}"));
            }
        }
        self.verdict = line;
    }

    async fn roles(&mut self, lab: &Lab) {
        let mut now = Vec::with_capacity(lab.data_count());
        for i in 0..lab.data_count() {
            now.push(role_of(lab, i).await);
        }
        if now != self.roles {
            say(format!("{}  roles   {}", clock(), now.join(" | ")));
            self.roles = now;
        }
    }
}

/// The verdict in one line, saying why a master is agreed when fewer than a majority name it
/// (a higher config epoch decides).
fn verdict_line(verdict: &Verdict, lab: &Lab, configured: usize) -> String {
    match verdict {
        Verdict::Agreed(agreement) => {
            let pod = lab
                .data_addrs()
                .iter()
                .position(|addr| Addr::from(*addr) == agreement.master)
                .map(|i| format!(" (data pod {i})"))
                .unwrap_or_default();
            let why = if agreement.votes >= majority_of(configured) {
                format!("named by {} of {configured} sentinels", agreement.votes)
            } else {
                format!(
                    "named by {} of {configured} sentinels at the newest config epoch, which \
                     only a majority-elected leader can raise",
                    agreement.votes
                )
            };
            let failover = if agreement.failover_in_progress {
                "; a failover is in progress"
            } else {
                ""
            };
            format!(
                "master {}{pod}, config epoch {}, {why}{failover}",
                agreement.master, agreement.config_epoch
            )
        }
        Verdict::NoQuorum(no_quorum) => format!("no master agreed: {}", no_quorum.reason),
    }
}

fn clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!(
        "{:02}:{:02}:{:02}",
        now / 3600 % 24,
        now / 60 % 60,
        now % 60
    )
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Every sentinel agrees and none is failing over: the moment a planned switchover is clean,
/// since sentinels refuse one while another is in progress.
fn settled(state: &NameState, sentinels: usize) -> bool {
    state
        .verdict
        .agreement()
        .is_some_and(|agreement| agreement.votes == sentinels && !agreement.failover_in_progress)
}

/// Moves the master with the `switchover` action, as an operator's OpsRequest would.
async fn switch_over(lab: &Lab, name: &str, state: &NameState) {
    let sentinels = lab.sentinel_addrs().into_iter().map(Addr::from).collect();
    let data_pods = lab.data_addrs().into_iter().map(Addr::from).collect();
    let mut target = Target::new(name, sentinels, data_pods);
    target.pod = state
        .verdict
        .agreement()
        .map(|agreement| agreement.master.clone());
    let from = target
        .pod
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    say(format!(
        "{}  moving the master away from {from} with the switchover action",
        clock()
    ));
    let budget = Budget::new(SWITCHOVER_BUDGET);
    match lifecycle::switchover::run(&target, &budget, None, None).await {
        Ok(line) => say(format!("{}  {line}", clock())),
        Err(error) => say(format!("{}  switchover failed: {error}", clock())),
    }
}

/// What the server itself says it is, shortly.
async fn role_of(lab: &Lab, i: usize) -> String {
    let ordinal_of = |ip: &str, port: u16| {
        lab.data_addrs()
            .iter()
            .position(|addr| addr.ip().to_string() == ip && addr.port() == port)
            .map_or_else(|| format!("{ip}:{port}"), |j| format!("pod {j}"))
    };
    match lab.role(PodId::Data(i)).await {
        Ok(Role::Master { replicas, .. }) => {
            format!("pod {i} master ({} replicas)", replicas.len())
        }
        Ok(Role::Slave {
            master_ip,
            master_port,
            state,
            ..
        }) => format!(
            "pod {i} replica of {} ({state})",
            ordinal_of(&master_ip, master_port)
        ),
        Ok(other) => format!("pod {i} {other:?}"),
        Err(_) => format!("pod {i} unreachable"),
    }
}
