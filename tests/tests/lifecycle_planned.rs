//! Planned operations against real servers (DESIGN section 5): `switchover` and `member-leave`
//! called as library functions on a lab, and once through the real binary for the CLI contract.
//! Every scenario that moves the master runs a sentinel-aware writer and checks that each
//! acknowledged write is on the new master, samples `ROLE` to prove there never were two
//! masters, and prints the writer's longest gap (the write-unavailability window) as
//! `window <scenario> <version> <ms>`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use valkey_coordinator::addr::Addr;
use valkey_coordinator::lifecycle::{Budget, Target, member_leave, switchover};
use valkey_lab::sentinel_protocol::event::Channel;
use valkey_lab::{
    EventLog, Lab, LabSpec, PodId, RoleSampler, RoleTimeline, SampledRole, SentinelTimings,
    ValkeyVersion, WriteLog, Writer,
};

/// Budget for any single wait; scenarios finish far sooner.
const WAIT: Duration = Duration::from_secs(20);
/// The action's budget, as kbagent would give it.
const ACTION: Duration = Duration::from_secs(25);

fn addr(socket: SocketAddr) -> Addr {
    Addr::from(socket)
}

/// A lab with the planned-operation timings, its sentinels refreshing replica INFO every
/// second where the version takes `SENTINEL DEBUG` (so a priority bias is seen in about a
/// second, not ten).
async fn planned_lab(version: ValkeyVersion, data_pods: usize) -> Lab {
    let timings = SentinelTimings {
        down_after: Duration::from_millis(2000),
        failover_timeout: Duration::from_millis(6000),
        parallel_syncs: 1,
    };
    let lab = LabSpec::new(version)
        .data_pods(data_pods)
        .timings(timings)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    for j in 0..lab.sentinel_count() {
        let mut client = lab
            .client(PodId::Sentinel(j))
            .await
            .expect("sentinel client");
        if let Err(error) = client
            .call(&["SENTINEL", "DEBUG", "INFO-PERIOD", "1000"])
            .await
        {
            eprintln!("sentinel-{j}: no SENTINEL DEBUG ({error}); bias waits take ~10 s");
        }
    }
    lab
}

fn target(lab: &Lab) -> Target {
    Target::new(
        lab.master_name(),
        lab.sentinel_addrs().into_iter().map(addr).collect(),
        lab.data_addrs().into_iter().map(addr).collect(),
    )
}

fn budget() -> Budget {
    Budget::new(ACTION)
}

async fn set_priority(lab: &Lab, i: usize, priority: u64) {
    let mut client = lab.client(PodId::Data(i)).await.expect("data client");
    client
        .call(&["CONFIG", "SET", "replica-priority", &priority.to_string()])
        .await
        .expect("CONFIG SET replica-priority");
}

async fn priority(lab: &Lab, i: usize) -> i64 {
    let mut client = lab.client(PodId::Data(i)).await.expect("data client");
    let reply = client
        .call(&["CONFIG", "GET", "replica-priority"])
        .await
        .expect("CONFIG GET replica-priority");
    let valkey_lab::Frame::Array(items) = &reply else {
        panic!("CONFIG GET replied {reply:?}");
    };
    items
        .get(1)
        .and_then(valkey_lab::replies::text)
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("CONFIG GET replied {reply:?}"))
}

fn failovers(events: &EventLog) -> usize {
    events
        .snapshot()
        .iter()
        .filter(|event| event.event.channel == Channel::TryFailover)
        .count()
}

/// The writer's longest gap between two acknowledgements: the write-unavailability window.
fn window(log: &WriteLog) -> Duration {
    log.acked
        .windows(2)
        .map(|pair| pair[1].at.saturating_sub(pair[0].at))
        .max()
        .unwrap_or_default()
}

/// Checks a finished planned operation with a writer: the writer kept at least 500 writes/s
/// outside the window, every acknowledged write is on the new master, no two masters ever.
async fn check_lossless(
    lab: &Lab,
    scenario: &str,
    writer: Writer,
    sampler: RoleSampler,
    new: usize,
) {
    writer
        .wait_acked_by(lab.data_addr(new), 200, WAIT)
        .await
        .expect("the writer follows the new master");
    let log = writer.stop().await;
    let timeline = sampler.stop().await;
    let gap = window(&log);
    let span = log.acked.last().map(|w| w.at).unwrap_or_default();
    let rate = log.acked.len() as f64 / span.saturating_sub(gap).as_secs_f64().max(0.001);
    eprintln!(
        "window {scenario} {} {} ms ({} acked, {:.0}/s outside the window, {} failed)",
        lab.version().as_str(),
        gap.as_millis(),
        log.acked.len(),
        rate,
        log.failed.len()
    );
    assert!(rate >= 500.0, "the writer managed only {rate:.0} writes/s");
    let report = lab.check_lost_writes(&log, new).await.expect("read back");
    eprintln!(
        "lost {scenario} {} {} missing {} wrong",
        lab.version().as_str(),
        report.missing.len(),
        report.wrong.len()
    );
    assert!(
        report.is_clean(),
        "{} acknowledged writes missing, {} wrong on valkey-{new}; first: {:?}",
        report.missing.len(),
        report.wrong.len(),
        report.missing.first()
    );
    eprintln!(
        "sampler {scenario} {}: {} moments within its 2-period freshness window",
        lab.version().as_str(),
        timeline.dual_masters().len()
    );
    let dual = proven_dual_masters(&timeline);
    assert!(
        dual.is_empty(),
        "two masters at once: {dual:?}\n{}",
        timeline.changes()
    );
}

/// Moments two pods were master at once, as the samples prove it: a pod is master for sure
/// from the first to the last sample of each unbroken run of `Master` answers; two such
/// intervals that overlap are two masters. (The sampler's own check counts a pod as master for
/// two periods after its last `Master` answer, so it flags every clean handoff whose two
/// answers fall within 100 ms of each other: the old master's last `Master` before it demoted
/// itself and the new master's first.)
fn proven_dual_masters(timeline: &RoleTimeline) -> Vec<(usize, usize, Duration)> {
    let mut runs: Vec<(usize, tokio::time::Instant, tokio::time::Instant)> = Vec::new();
    let mut open: Vec<Option<(tokio::time::Instant, tokio::time::Instant)>> = Vec::new();
    let mut samples: Vec<_> = timeline.samples.iter().collect();
    samples.sort_by_key(|s| s.at);
    for sample in samples {
        if open.len() <= sample.pod {
            open.resize(sample.pod + 1, None);
        }
        match (&sample.role, open[sample.pod]) {
            (SampledRole::Master, Some((from, _))) => open[sample.pod] = Some((from, sample.at)),
            (SampledRole::Master, None) => open[sample.pod] = Some((sample.at, sample.at)),
            (_, Some((from, to))) => {
                runs.push((sample.pod, from, to));
                open[sample.pod] = None;
            }
            (_, None) => {}
        }
    }
    for (pod, run) in open.into_iter().enumerate() {
        if let Some((from, to)) = run {
            runs.push((pod, from, to));
        }
    }
    let mut found = Vec::new();
    for (i, a) in runs.iter().enumerate() {
        for b in &runs[i + 1..] {
            if a.0 != b.0 && a.1 <= b.2 && b.1 <= a.2 {
                found.push((a.0, b.0, a.1.max(b.1).duration_since(timeline.started)));
            }
        }
    }
    found
}

async fn start_observers(lab: &Lab) -> (EventLog, RoleSampler, Writer) {
    let events = EventLog::start(lab).await.expect("event log");
    let sampler = RoleSampler::start(lab);
    let writer = Writer::start(lab, None);
    writer
        .wait_acked_by(lab.data_addr(0), 200, WAIT)
        .await
        .expect("the writer writes to valkey-0");
    (events, sampler, writer)
}

/// Untargeted switchover with a writer: a new agreed master, the old one a replica, one
/// failover, no acknowledged write lost, never two masters.
async fn untargeted_switchover_moves_the_master_and_loses_no_write(version: ValkeyVersion) {
    let lab = planned_lab(version, 3).await;
    let (events, sampler, writer) = start_observers(&lab).await;
    let line = switchover::run(&target(&lab), &budget(), None, None)
        .await
        .expect("switchover succeeds");
    eprintln!("{line}");
    let agreed = lab
        .wait_sentinels_agree(WAIT, |master, _| master != lab.data_addr(0))
        .await
        .expect("a new agreed master");
    let new = lab.data_index(agreed.addr).expect("a data pod");
    assert!(line.contains(&agreed.addr.to_string()), "{line}");
    check_lossless(&lab, "untargeted", writer, sampler, new).await;
    assert!(
        matches!(
            lab.role(PodId::Data(0)).await.expect("ROLE"),
            valkey_lab::sentinel_protocol::role::Role::Slave { .. }
        ),
        "the old master is a replica"
    );
    assert_eq!(failovers(&events), 1, "exactly one failover");
    assert_eq!(
        events.resets(),
        Vec::<String>::new(),
        "a switchover never resets"
    );
}

/// Targeted switchover with custom priorities (42, 25 and a never-promote 0): the candidate is
/// promoted and every priority is back exactly, also when a killed run left a bias behind and
/// its state file is the only record of the originals.
async fn targeted_switchover_promotes_the_candidate_and_restores_priorities(
    version: ValkeyVersion,
) {
    let lab = planned_lab(version, 4).await;
    set_priority(&lab, 1, 42).await;
    set_priority(&lab, 2, 25).await;
    set_priority(&lab, 3, 0).await;
    // A run killed after its bias: the file holds the originals, the pods hold the bias.
    let state: PathBuf = lab.dir().join("switchover.state");
    std::fs::write(
        &state,
        format!(
            "{} 42\n{} 25\n{} 0\n",
            lab.data_addr(1),
            lab.data_addr(2),
            lab.data_addr(3)
        ),
    )
    .expect("state file");
    set_priority(&lab, 1, 0).await;
    let (events, sampler, writer) = start_observers(&lab).await;
    let candidate = addr(lab.data_addr(2));
    let line = switchover::run(&target(&lab), &budget(), Some(&candidate), Some(&state))
        .await
        .expect("switchover succeeds");
    eprintln!("{line}");
    lab.wait_sentinels_agree(WAIT, |master, _| master == lab.data_addr(2))
        .await
        .expect("the candidate is the agreed master");
    check_lossless(&lab, "targeted", writer, sampler, 2).await;
    assert_eq!(
        [
            priority(&lab, 1).await,
            priority(&lab, 2).await,
            priority(&lab, 3).await
        ],
        [42, 25, 0],
        "priorities restored from the state file"
    );
    assert!(!state.exists(), "the state file is removed once restored");
    assert_eq!(failovers(&events), 1, "exactly one failover");
}

/// The candidate already is the master: success, no failover. An unreachable candidate and a
/// never-promote candidate fail with the master unchanged and no failover.
async fn a_candidate_already_master_or_ineligible_sends_no_failover(version: ValkeyVersion) {
    let mut lab = planned_lab(version, 3).await;
    let events = EventLog::start(&lab).await.expect("event log");
    let target = target(&lab);
    let line = switchover::run(&target, &budget(), Some(&addr(lab.data_addr(0))), None)
        .await
        .expect("already master is success");
    assert!(line.contains("already master"), "{line}");

    set_priority(&lab, 1, 0).await;
    let refused = switchover::run(&target, &budget(), Some(&addr(lab.data_addr(1))), None).await;
    assert!(refused.is_err(), "a never-promote candidate: {refused:?}");
    assert_eq!(priority(&lab, 1).await, 0);

    lab.kill(PodId::Data(2));
    let refused = switchover::run(&target, &budget(), Some(&addr(lab.data_addr(2))), None).await;
    assert!(refused.is_err(), "an unreachable candidate: {refused:?}");

    let agreed = lab
        .wait_sentinels_agree(WAIT, |_, _| true)
        .await
        .expect("agreement");
    assert_eq!(agreed.addr, lab.data_addr(0), "the master is unchanged");
    assert_eq!(failovers(&events), 0, "no failover was sent");
    assert_eq!(priority(&lab, 1).await, 0);
}

/// `member-leave` of a replica: no failover, no reset; through the real binary: one line on
/// stdout and exit 0 on success, nothing on stdout and one line on stderr and exit 1 on failure.
async fn member_leave_of_a_replica_changes_nothing(version: ValkeyVersion) {
    let lab = planned_lab(version, 3).await;
    let events = EventLog::start(&lab).await.expect("event log");
    let mut target = target(&lab);
    target.pod = Some(addr(lab.data_addr(2)));
    let line = member_leave::run(&target, &budget())
        .await
        .expect("a replica may leave");
    assert!(line.contains("nothing to do"), "{line}");

    let binary = coordinator_binary();
    let group: Vec<String> = lab
        .sentinel_addrs()
        .iter()
        .map(|s| format!("--sentinel={s}"))
        .chain(lab.data_addrs().iter().map(|d| format!("--data-pod={d}")))
        .collect();
    let run = |args: Vec<String>| {
        let binary = binary.clone();
        async move {
            tokio::process::Command::new(binary)
                .args(args)
                .env_clear()
                .output()
                .await
                .expect("the binary runs")
        }
    };
    let mut leave = vec!["member-leave".to_string()];
    leave.extend(group.clone());
    leave.push(format!("--pod={}", lab.data_addr(1)));
    leave.push("--timeout-ms=15000".into());
    let out = run(leave).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout.lines().count(), 1, "one line: {stdout:?}");

    let mut switch = vec!["switchover".to_string()];
    switch.extend(group);
    switch.push(format!("--candidate={}:6379", lab.block().spare_ip(0)));
    switch.push("--timeout-ms=5000".into());
    let out = run(switch).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");

    assert_eq!(failovers(&events), 0, "no failover");
    assert_eq!(events.resets(), Vec::<String>::new(), "no reset");
}

/// `member-leave` of the master with a writer: exactly one failover, then the sentinels are
/// reset (after the switch), no acknowledged write lost, never two masters.
async fn member_leave_of_the_master_fails_over_once_then_resets(version: ValkeyVersion) {
    let lab = planned_lab(version, 3).await;
    let (events, sampler, writer) = start_observers(&lab).await;
    let mut target = target(&lab);
    target.pod = Some(addr(lab.data_addr(0)));
    let line = member_leave::run(&target, &budget())
        .await
        .expect("the master may leave");
    eprintln!("{line}");
    let agreed = lab
        .wait_sentinels_agree(WAIT, |master, _| master != lab.data_addr(0))
        .await
        .expect("a new agreed master");
    let new = lab.data_index(agreed.addr).expect("a data pod");
    check_lossless(&lab, "member-leave", writer, sampler, new).await;
    assert_eq!(failovers(&events), 1, "exactly one failover");
    let snapshot = events.snapshot();
    let switched = snapshot
        .iter()
        .filter(|e| e.event.channel == Channel::SwitchMaster)
        .map(|e| e.at)
        .min()
        .expect("a +switch-master");
    let resets: Vec<_> = snapshot
        .iter()
        .filter(|e| e.event.channel == Channel::ResetMaster)
        .collect();
    assert_eq!(
        resets.len(),
        lab.sentinel_count(),
        "every sentinel reset once"
    );
    assert!(
        resets.iter().all(|e| e.at > switched),
        "a reset before the switch"
    );
}

/// Every sentinel hangs (SIGSTOP): `member-leave` of a replica succeeds on the pod's own word,
/// of the master it fails, each within its budget.
async fn member_leave_with_every_sentinel_hung_refuses_the_master_in_time(version: ValkeyVersion) {
    let mut lab = planned_lab(version, 3).await;
    for j in 0..lab.sentinel_count() {
        lab.pause(PodId::Sentinel(j)).expect("SIGSTOP");
    }
    let mut target = target(&lab);
    let short = Duration::from_secs(4);
    target.pod = Some(addr(lab.data_addr(1)));
    let started = tokio::time::Instant::now();
    let line = member_leave::run(&target, &Budget::new(short))
        .await
        .expect("a replica may leave");
    assert!(line.contains("replica"), "{line}");
    target.pod = Some(addr(lab.data_addr(0)));
    let refused = member_leave::run(&target, &Budget::new(short)).await;
    assert!(refused.is_err(), "the master may not leave: {refused:?}");
    assert!(
        started.elapsed() < short * 2 + Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );
    for j in 0..lab.sentinel_count() {
        lab.resume(PodId::Sentinel(j)).expect("SIGCONT");
    }
    assert_eq!(
        lab.sentinel_master_addr(0).await.expect("answer"),
        Some(lab.data_addr(0))
    );
}

/// The coordinator binary, built next to this test's executable (`target/<profile>/`).
fn coordinator_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let binary = dir.join("valkey-coordinator");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p valkey-coordinator` first",
        binary.display()
    );
    binary
}

valkey_lab::on_every_version!(
    untargeted_switchover_moves_the_master_and_loses_no_write,
    targeted_switchover_promotes_the_candidate_and_restores_priorities,
    a_candidate_already_master_or_ineligible_sends_no_failover,
    member_leave_of_a_replica_changes_nothing,
    member_leave_of_the_master_fails_over_once_then_resets,
    member_leave_with_every_sentinel_hung_refuses_the_master_in_time,
);
