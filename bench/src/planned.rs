//! Planned switchovers side by side, on one 9.1.2 lab with a writer at full speed: the
//! coordinator's `switchover` action, a plain `SENTINEL FAILOVER`, and Valkey 9's `SENTINEL
//! FAILOVER ... COORDINATED`, each `rounds` times in turn. For each: the write-unavailability
//! window (the writer's longest gap between two acknowledgements) and the acknowledged writes
//! the new master does not hold once the old one has been turned into its replica.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;
use tokio::time::Instant;
use valkey_coordinator::addr::Addr;
use valkey_coordinator::lifecycle::{Budget, Target, switchover};
use valkey_lab::sentinel_protocol::event::Channel;
use valkey_lab::{EventLog, Lab, LabSpec, PodId, SentinelTimings, ValkeyVersion, WriteLog, Writer};

use crate::report::Row;
use crate::stats::Sample;

/// Budget for one wait on the lab (a failover, the old master's conversion).
const WAIT: Duration = Duration::from_secs(60);
/// The switchover action's budget.
const BUDGET: Duration = Duration::from_secs(25);

/// How the master is moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Action,
    Plain,
    Coordinated,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Action => "valkey-coordinator switchover",
            Mode::Plain => "SENTINEL FAILOVER",
            Mode::Coordinated => "SENTINEL FAILOVER ... COORDINATED",
        }
    }
}

/// The writer's longest gap between two acknowledgements: its length and when it began (since
/// the writer started).
fn window(log: &WriteLog) -> (Duration, Duration) {
    log.acked
        .windows(2)
        .map(|pair| (pair[1].at.saturating_sub(pair[0].at), pair[0].at))
        .max()
        .unwrap_or_default()
}

/// One switchover, measured.
struct Measured {
    window: Duration,
    lost: usize,
    /// From the window's start to the first sentinel's `+promoted-slave` (the leader has seen
    /// the promoted replica say so in its INFO) and to the first `+switch-master`.
    promoted: Option<Duration>,
    switched: Option<Duration>,
}

/// One switchover by `mode`, with a writer running: its window, lost writes and where the
/// window went.
async fn once(lab: &Lab, mode: Mode) -> anyhow::Result<Measured> {
    let old = lab.sentinel_master_addr(0).await?.context("a master")?;
    let old_index = lab.data_index(old).context("a data pod")?;
    let events = EventLog::start(lab).await?;
    let writer_started = Instant::now();
    let writer = Writer::start(lab, None);
    writer.wait_acked_by(old, 500, WAIT).await?;
    match mode {
        Mode::Action => {
            let mut target = Target::new(
                lab.master_name(),
                lab.sentinel_addrs().into_iter().map(Addr::from).collect(),
                lab.data_addrs().into_iter().map(Addr::from).collect(),
            );
            target.pod = Some(Addr::from(old));
            switchover::run(&target, &Budget::new(BUDGET), None, None)
                .await
                .map_err(|error| anyhow::anyhow!("switchover: {error}"))?;
        }
        Mode::Plain | Mode::Coordinated => {
            let mut sentinel = lab.client(PodId::Sentinel(0)).await?;
            let mut command = vec!["SENTINEL", "FAILOVER", lab.master_name()];
            if mode == Mode::Coordinated {
                command.push("COORDINATED");
            }
            let reply = sentinel.call(&command).await?;
            let reply = valkey_lab::replies::render(&reply);
            anyhow::ensure!(reply == "+OK", "{}: {reply}", mode.label());
        }
    }
    let agreed = lab
        .wait_sentinels_agree(WAIT, |addr, _| addr != old)
        .await?;
    let new = lab.data_index(agreed.addr).context("a data pod")?;
    // Writes the old master acknowledged after the promotion are lost only once it becomes the
    // new master's replica; wait for that before reading back.
    lab.wait_replica_of(old_index, agreed.addr, WAIT).await?;
    writer.wait_acked_by(agreed.addr, 500, WAIT).await?;
    let log = writer.stop().await;
    let report = lab.check_lost_writes(&log, new).await?;
    let (gap, began) = window(&log);
    let began = writer_started + began;
    let first = |channel: Channel| {
        events
            .snapshot()
            .iter()
            .filter(|e| e.event.channel == channel && e.at >= began)
            .map(|e| e.at.duration_since(began))
            .min()
    };
    Ok(Measured {
        window: gap,
        lost: report.missing.len() + report.wrong.len(),
        promoted: first(Channel::PromotedSlave),
        switched: first(Channel::SwitchMaster),
    })
}

/// Waits until the group can be switched over again: every sentinel sees every replica linked.
async fn settle(lab: &Lab) -> anyhow::Result<()> {
    lab.wait_sentinels_see(lab.data_count() - 1, lab.sentinel_count() - 1, WAIT)
        .await?;
    let master = lab.sentinel_master_addr(0).await?.context("a master")?;
    let index = lab.data_index(master).context("a data pod")?;
    lab.wait_replication_up(index, WAIT).await?;
    Ok(())
}

/// The rows: per mode, the window's distribution and the acknowledged writes lost.
pub async fn rows(rounds: usize) -> anyhow::Result<Vec<Row>> {
    let timings = SentinelTimings {
        down_after: Duration::from_millis(2_000),
        failover_timeout: Duration::from_millis(6_000),
        parallel_syncs: 1,
    };
    let lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .timings(timings)
        .start()
        .await?;
    lab.wait_formed(WAIT).await?;
    // Replicas become eligible again after the sentinels' next INFO of them: once a second
    // instead of every ten, so rounds follow each other quickly.
    for j in 0..lab.sentinel_count() {
        let mut sentinel = lab.client(PodId::Sentinel(j)).await?;
        sentinel
            .call(&["SENTINEL", "DEBUG", "INFO-PERIOD", "1000"])
            .await?;
    }
    let modes = [Mode::Action, Mode::Plain, Mode::Coordinated];
    let mut windows = vec![Vec::new(); modes.len()];
    let mut lost = vec![Vec::new(); modes.len()];
    let mut promoted = vec![Vec::new(); modes.len()];
    let mut switched = vec![Vec::new(); modes.len()];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for _ in 0..rounds {
        for (k, mode) in modes.into_iter().enumerate() {
            settle(&lab).await?;
            let measured = once(&lab, mode)
                .await
                .with_context(|| mode.label().to_owned())?;
            windows[k].push(ms(measured.window));
            lost[k].push(measured.lost);
            promoted[k].extend(measured.promoted.map(ms));
            switched[k].extend(measured.switched.map(ms));
        }
    }
    let action = Sample::new(windows[0].clone());
    let mut rows = Vec::new();
    for (k, mode) in modes.into_iter().enumerate() {
        let sample = Sample::new(windows[k].clone());
        let total: usize = lost[k].iter().sum();
        let row = Row::new(format!(
            "planned switchover by {}: write window and acknowledged writes lost ({rounds} switchovers, writer back to back)",
            mode.label()
        ));
        let offset = |values: &[f64]| {
            if values.is_empty() {
                "not seen".to_owned()
            } else {
                format!("p50 {:.0} ms", Sample::new(values.to_vec()).median())
            }
        };
        let shown = format!(
            "window p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; lost {total} ({:?}); from the \
             window's start to the leader's +promoted-slave {}, to +switch-master {}",
            sample.median(),
            sample.percentile(99.0),
            sample.max(),
            lost[k],
            offset(&promoted[k]),
            offset(&switched[k]),
        );
        let row = if mode == Mode::Action {
            row.coordinator(shown).target(
                "0 lost, window p99 < 250 ms",
                crate::report::Outcome::of(total == 0 && sample.percentile(99.0) < 250.0),
            )
        } else {
            row.sentinel(shown).comparison(format!(
                "coordinator's window / this one: ratio of medians {:.2}",
                action.median() / sample.median().max(0.001)
            ))
        };
        rows.push(row.data(json!({
            "window_ms": sample.to_json(),
            "lost": lost[k],
            "to_promoted_slave_ms": promoted[k],
            "to_switch_master_ms": switched[k],
        })));
    }
    Ok(rows)
}
