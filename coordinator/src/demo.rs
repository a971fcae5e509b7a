//! `valkey-coordinator demo`: the whole product on one machine. A 3 data + 3 sentinel Valkey
//! group runs as real processes on loopback (the test lab, `valkey-lab`), the coordinator
//! follows its sentinels through the same [`service::start`] path `serve` takes, and the demo
//! prints what a client of the coordinator would learn: the verdict whenever it changes and
//! every message of the event tap. Every few seconds it also prints each data pod's own `ROLE`,
//! so the verdict can be checked against the servers themselves.
//!
//! A binary-only module: the lab is test tooling, linked only with the `demo` feature.

use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use valkey_coordinator::addr::Addr;
use valkey_coordinator::cli::DemoArgs;
use valkey_coordinator::service::registry::NameState;
use valkey_coordinator::service::server::status;
use valkey_coordinator::service::{self, ServiceConfig};
use valkey_lab::sentinel_protocol::role::Role;
use valkey_lab::{Lab, LabSpec, PodId, ValkeyVersion};

/// How long the group may take to form (every sentinel sees 2 replicas and 2 sentinels).
const FORM_BUDGET: Duration = Duration::from_secs(30);
/// How often the data pods' own roles are printed.
const ROLES_PERIOD: Duration = Duration::from_secs(5);

/// Runs the demo until `shutdown` is cancelled or `--for` elapses, then stops every process it
/// started.
pub async fn run(args: DemoArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let version: ValkeyVersion = args
        .valkey_version
        .parse()
        .map_err(anyhow::Error::msg)
        .context("--valkey-version")?;
    let mut lab = LabSpec::new(version)
        .start()
        .await
        .context("cannot start the lab (run tests/install-valkey.sh first?)")?;
    println!(
        "Valkey {version} lab in {} (logs and data there)",
        lab.dir().display()
    );
    for i in 0..lab.data_count() {
        println!("  data pod {i}: {}", lab.data_addr(i));
    }
    for j in 0..lab.sentinel_count() {
        println!("  sentinel {j}: {}", lab.sentinel_addr(j));
    }

    let outcome = follow(&mut lab, &args, &shutdown).await;
    println!("stopping every process of the lab");
    let stopped = lab.stop_all().await.context("cannot stop the lab");
    outcome.and(stopped)
}

/// Everything between a started lab and its stop, so the lab is stopped on every path.
async fn follow(
    lab: &mut Lab,
    args: &DemoArgs,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    tokio::select! {
        formed = lab.wait_formed(FORM_BUDGET) => formed.context("the group did not form")?,
        () = shutdown.cancelled() => return Ok(()),
    }
    println!("group formed: every sentinel sees 2 replicas and 2 other sentinels");

    let name = lab.master_name().to_owned();
    let sentinels: Vec<Addr> = lab.sentinel_addrs().into_iter().map(Addr::from).collect();
    let config = ServiceConfig::new(args.listen, sentinels, vec![name.clone()]);
    let coordinator = service::start(config)
        .await
        .context("cannot start the coordinator")?;
    let listen = coordinator.listen_addr;
    println!(
        "coordinator listening on {listen}; ask it as a client would:\n  \
         valkey-cli -h {} -p {} SENTINEL GET-MASTER-ADDR-BY-NAME {name}\n  \
         valkey-cli -h {} -p {} COORDINATOR VERDICT {name}",
        listen.ip(),
        listen.port(),
        listen.ip(),
        listen.port(),
    );

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
    let mut last_verdict = String::new();

    let outcome = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            () = sleep_until(stop_at) => break Ok(()),
            changed = verdicts.changed() => {
                if changed.is_err() {
                    break Err(anyhow::anyhow!("the coordinator stopped publishing verdicts"));
                }
                let state = verdicts.borrow_and_update().clone();
                let summary = state.verdict.to_string();
                if summary != last_verdict {
                    print_verdict(&state, &registry);
                    last_verdict = summary;
                }
                if failover_pending && settled(&state, lab.sentinel_count()) {
                    failover_pending = false;
                    ask_for_failover(lab, &name).await;
                }
            }
            message = tap.recv() => match message {
                Ok(message) => println!(
                    "tap      {} {}",
                    message.channel,
                    String::from_utf8_lossy(&message.payload)
                ),
                Err(RecvError::Lagged(skipped)) => println!("tap      ({skipped} messages skipped)"),
                Err(RecvError::Closed) => break Err(anyhow::anyhow!("the coordinator's tap closed")),
            },
            _ = roles.tick() => print_roles(lab).await,
        }
    };
    let stopped = coordinator
        .stop()
        .await
        .context("the coordinator did not stop cleanly");
    outcome.and(stopped)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Every sentinel agrees and none is failing over: the moment a demonstrated failover is
/// clean, since the sentinels refuse one while another is in progress.
fn settled(state: &NameState, sentinels: usize) -> bool {
    state
        .verdict
        .agreement()
        .is_some_and(|agreement| agreement.votes == sentinels && !agreement.failover_in_progress)
}

fn print_verdict(state: &NameState, registry: &valkey_coordinator::service::registry::Registry) {
    println!("verdict  {}", state.verdict);
    for line in status::verdict_text(state, registry).lines() {
        println!("         {line}");
    }
}

async fn ask_for_failover(lab: &Lab, name: &str) {
    let reply = match lab.client(PodId::Sentinel(0)).await {
        Ok(mut sentinel) => sentinel.call(&["SENTINEL", "FAILOVER", name]).await,
        Err(error) => Err(error),
    };
    match reply {
        Ok(reply) => println!("asked sentinel 0 for a failover: {reply:?}"),
        Err(error) => println!("could not ask sentinel 0 for a failover: {error}"),
    }
}

/// One line per data pod: what the server itself says it is.
async fn print_roles(lab: &Lab) {
    for i in 0..lab.data_count() {
        let role = match lab.role(PodId::Data(i)).await {
            Ok(Role::Master { replicas, offset }) => {
                format!("master, {} replicas, offset {offset}", replicas.len())
            }
            Ok(Role::Slave {
                master_ip,
                master_port,
                state,
                offset,
            }) => format!("replica of {master_ip}:{master_port} ({state}), offset {offset}"),
            Ok(other) => format!("{other:?}"),
            Err(error) => format!("unreachable ({error})"),
        };
        println!("role     data pod {i} {}: {role}", lab.data_addr(i));
    }
}
