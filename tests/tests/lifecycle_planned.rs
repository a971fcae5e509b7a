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
use valkey_coordinator::lifecycle::{Budget, Target, knowledge, member_leave, switchover};
use valkey_lab::sentinel_protocol::event::Channel;
use valkey_lab::sentinel_protocol::info::InfoSentinel;
use valkey_lab::wait::{Probe, poll_until};
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
) -> RoleTimeline {
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
    timeline
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

    let binary = valkey_lab::coordinator_binary();
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
    let timeline = check_lossless(&lab, "member-leave", writer, sampler, new).await;
    assert_eq!(failovers(&events), 1, "exactly one failover");
    let snapshot = events.snapshot();
    let failover_end = snapshot
        .iter()
        .filter(|e| e.event.channel == Channel::FailoverEnd)
        .map(|e| e.at)
        .min()
        .expect("a +failover-end");
    let demoted = timeline
        .samples
        .iter()
        .filter(|s| s.pod == 0 && matches!(s.role, SampledRole::Replica { .. }))
        .map(|s| s.at)
        .min()
        .expect("the old master answered as a replica");
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
    assert!(
        resets.iter().all(|e| e.at > failover_end && e.at > demoted),
        "every reset comes after +failover-end and after the old master answered as a replica"
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

valkey_lab::on_every_version!(
    untargeted_switchover_moves_the_master_and_loses_no_write,
    targeted_switchover_promotes_the_candidate_and_restores_priorities,
    a_candidate_already_master_or_ineligible_sends_no_failover,
    member_leave_of_a_replica_changes_nothing,
    member_leave_of_the_master_fails_over_once_then_resets,
    member_leave_with_every_sentinel_hung_refuses_the_master_in_time,
    a_lagging_candidate_is_never_promoted_behind,
    a_bias_not_seen_by_every_sentinel_sends_no_failover,
    a_failed_priority_write_aborts_before_the_failover,
    two_switchovers_at_once_run_one_failover,
    a_switchover_during_a_running_failover_sends_no_second_one,
    a_sentinel_hung_during_a_switchover_ends_in_budget,
    member_leave_of_a_dead_master_still_named_fails_over_or_fails,
    a_wrong_master_agreed_fails_the_targeted_switchover_at_once,
    a_sentinel_in_tilt_is_not_sent_the_failover,
);

// ---------------------------------------------------------------------------------------------
// Failure paths of the planned operations.

/// `SENTINEL DEBUG INFO-PERIOD` on sentinel `j`: how often it refreshes its replicas' INFO.
async fn set_info_period(lab: &Lab, j: usize, ms: u64) {
    let mut client = lab
        .client(PodId::Sentinel(j))
        .await
        .expect("sentinel client");
    client
        .call(&["SENTINEL", "DEBUG", "INFO-PERIOD", &ms.to_string()])
        .await
        .expect("SENTINEL DEBUG INFO-PERIOD");
}

/// How many writes data pod `i` has acknowledged so far.
fn acked_by(writer: &Writer, lab: &Lab, i: usize) -> usize {
    let pod = lab.data_addr(i);
    writer.log().acked.iter().filter(|w| w.to == pod).count()
}

/// After a failed switchover: the old master is still the agreed master at the same epoch and
/// takes writes again (100 more acknowledged by it), with nothing lost and never two masters.
async fn check_old_master_writable(
    lab: &Lab,
    scenario: &str,
    writer: Writer,
    sampler: RoleSampler,
    epoch: u64,
) {
    let agreed = lab
        .wait_sentinels_agree(WAIT, |_, _| true)
        .await
        .expect("agreement");
    assert_eq!(agreed.addr, lab.data_addr(0), "the master is unchanged");
    assert_eq!(agreed.config_epoch, epoch, "no failover happened");
    let before = acked_by(&writer, lab, 0);
    writer
        .wait_acked_by(lab.data_addr(0), before + 100, WAIT)
        .await
        .expect("the old master takes writes again");
    check_lossless(lab, scenario, writer, sampler, 0).await;
}

async fn epoch_now(lab: &Lab) -> u64 {
    lab.wait_sentinels_agree(WAIT, |_, _| true)
        .await
        .expect("agreement")
        .config_epoch
}

/// The candidate's replication is stalled (`CLIENT PAUSE WRITE` on the replica holds the
/// master's stream too) while a writer runs: the candidate is never promoted behind. Either
/// the switchover fails and the old master takes writes again, or it waits within its budget
/// until the candidate caught up; every acknowledged write is on whoever is master after.
async fn a_lagging_candidate_is_never_promoted_behind(version: ValkeyVersion) {
    let lab = planned_lab(version, 3).await;
    let epoch = epoch_now(&lab).await;
    let (events, sampler, writer) = start_observers(&lab).await;
    let mut candidate_client = lab.client(PodId::Data(1)).await.expect("data client");
    candidate_client
        .call(&["CLIENT", "PAUSE", "6000", "WRITE"])
        .await
        .expect("CLIENT PAUSE on the candidate");
    let started = tokio::time::Instant::now();
    let result = switchover::run(
        &target(&lab),
        &budget(),
        Some(&addr(lab.data_addr(1))),
        None,
    )
    .await;
    let took = started.elapsed();
    eprintln!(
        "lagging candidate {}: {result:?} after {took:?}",
        version.as_str()
    );
    assert!(took < ACTION, "took {took:?}");
    assert_eq!(
        [priority(&lab, 1).await, priority(&lab, 2).await],
        [100, 100],
        "priorities restored"
    );
    match result {
        Ok(_) => {
            lab.wait_sentinels_agree(WAIT, |master, _| master == lab.data_addr(1))
                .await
                .expect("the candidate is the agreed master");
            check_lossless(&lab, "lagging-candidate", writer, sampler, 1).await;
            assert_eq!(failovers(&events), 1, "exactly one failover");
        }
        Err(_) => {
            check_old_master_writable(&lab, "lagging-candidate", writer, sampler, epoch).await
        }
    }
}

/// One sentinel refreshes its replicas' INFO only every 100 s, so it never sees the bias: no
/// `SENTINEL FAILOVER` is sent, every priority is back, and the switchover fails within its
/// budget.
async fn a_bias_not_seen_by_every_sentinel_sends_no_failover(version: ValkeyVersion) {
    let lab = planned_lab(version, 3).await;
    let events = EventLog::start(&lab).await.expect("event log");
    set_info_period(&lab, 2, 100_000).await;
    // Its last refresh may have been just now: let a full period of the others pass first.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let short = Duration::from_secs(6);
    let started = tokio::time::Instant::now();
    let refused = switchover::run(
        &target(&lab),
        &Budget::new(short),
        Some(&addr(lab.data_addr(1))),
        None,
    )
    .await;
    let took = started.elapsed();
    set_info_period(&lab, 2, 1_000).await;
    let error = refused.expect_err("the bias was never seen by sentinel-2");
    assert!(error.to_string().contains("did not see"), "{error}");
    assert!(took <= short + Duration::from_millis(500), "took {took:?}");
    assert_eq!(failovers(&events), 0, "no failover was sent");
    assert_eq!(
        [priority(&lab, 1).await, priority(&lab, 2).await],
        [100, 100],
        "priorities restored"
    );
    let agreed = lab
        .wait_sentinels_agree(WAIT, |_, _| true)
        .await
        .expect("agreement");
    assert_eq!(agreed.addr, lab.data_addr(0), "the master is unchanged");
}

/// A replica whose priority cannot be read or written: with nothing captured yet the
/// switchover fails before changing anything; resuming from a state file, the failed write
/// aborts before any failover and every reachable replica gets its priority back (the state
/// file stays, the dead pod's value still to restore).
async fn a_failed_priority_write_aborts_before_the_failover(version: ValkeyVersion) {
    let mut lab = planned_lab(version, 4).await;
    let events = EventLog::start(&lab).await.expect("event log");
    set_priority(&lab, 1, 42).await;
    lab.kill(PodId::Data(3));
    let target = target(&lab);
    let candidate = addr(lab.data_addr(2));
    let refused = switchover::run(&target, &budget(), Some(&candidate), None).await;
    assert!(refused.is_err(), "an unreadable priority: {refused:?}");
    assert_eq!(priority(&lab, 1).await, 42, "nothing changed");

    let state: PathBuf = lab.dir().join("switchover.state");
    std::fs::write(
        &state,
        format!(
            "{} 42\n{} 100\n{} 100\n",
            lab.data_addr(1),
            lab.data_addr(2),
            lab.data_addr(3)
        ),
    )
    .expect("state file");
    let started = tokio::time::Instant::now();
    let refused = switchover::run(&target, &budget(), Some(&candidate), Some(&state)).await;
    let error = refused.expect_err("valkey-3's priority cannot be set");
    eprintln!(
        "failed priority write {}: {error} after {:?}",
        version.as_str(),
        started.elapsed()
    );
    assert!(started.elapsed() < ACTION, "took {:?}", started.elapsed());
    assert_eq!(
        [priority(&lab, 1).await, priority(&lab, 2).await],
        [42, 100],
        "the reachable replicas restored"
    );
    assert!(
        state.exists(),
        "the state file is kept until every pod is restored"
    );
    assert_eq!(failovers(&events), 0, "no failover was sent");
    let agreed = lab
        .wait_sentinels_agree(WAIT, |_, _| true)
        .await
        .expect("agreement");
    assert_eq!(agreed.addr, lab.data_addr(0), "the master is unchanged");
}

/// Two untargeted switchovers started at once on the same group: at most one failover runs,
/// the epoch rises by exactly one, no acknowledged write is lost, never two masters.
async fn two_switchovers_at_once_run_one_failover(version: ValkeyVersion) {
    let lab = planned_lab(version, 3).await;
    let epoch = epoch_now(&lab).await;
    let (events, sampler, writer) = start_observers(&lab).await;
    let target = target(&lab);
    let start = |target: Target| {
        tokio::spawn(async move {
            let budget = budget();
            switchover::run(&target, &budget, None, None).await
        })
    };
    let (a, b) = (start(target.clone()), start(target));
    let (a, b) = (a.await.expect("task"), b.await.expect("task"));
    eprintln!("two switchovers {}: {a:?} / {b:?}", version.as_str());
    assert!(
        a.is_ok() || b.is_ok(),
        "one of them succeeds: {a:?} / {b:?}"
    );
    let agreed = lab
        .wait_sentinels_agree(WAIT, |master, _| master != lab.data_addr(0))
        .await
        .expect("a new agreed master");
    assert_eq!(
        agreed.config_epoch,
        epoch + 1,
        "exactly one epoch increment"
    );
    let new = lab.data_index(agreed.addr).expect("a data pod");
    check_lossless(&lab, "two-at-once", writer, sampler, new).await;
    assert_eq!(failovers(&events), 1, "exactly one failover");
}

/// A switchover started while a failover runs sends no second `SENTINEL FAILOVER`: it waits
/// for the running one (or fails), and the epoch rises by exactly one.
async fn a_switchover_during_a_running_failover_sends_no_second_one(version: ValkeyVersion) {
    let lab = planned_lab(version, 3).await;
    let epoch = epoch_now(&lab).await;
    let events = EventLog::start(&lab).await.expect("event log");
    let mut sentinel = lab
        .client(PodId::Sentinel(1))
        .await
        .expect("sentinel client");
    sentinel
        .call(&["SENTINEL", "FAILOVER", lab.master_name()])
        .await
        .expect("SENTINEL FAILOVER");
    let result = switchover::run(&target(&lab), &budget(), None, None).await;
    eprintln!(
        "switchover during a failover {}: {result:?}",
        version.as_str()
    );
    let agreed = lab
        .wait_sentinels_agree(WAIT, |master, _| master != lab.data_addr(0))
        .await
        .expect("a new agreed master");
    // Give a second failover, had one been sent, the time to show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        epoch_now(&lab).await,
        epoch + 1,
        "exactly one epoch increment"
    );
    assert_eq!(failovers(&events), 1, "exactly one failover");
    if let Ok(line) = result {
        assert!(line.contains(&agreed.addr.to_string()), "{line}");
    }
}

/// A sentinel hangs (SIGSTOP) once the switchover is under way: the action still ends within
/// its budget, with the pause lifted and the priorities restored, and succeeds through the two
/// others (if the hung one was already leading the failover: success, or failure with the old
/// master writable again).
async fn a_sentinel_hung_during_a_switchover_ends_in_budget(version: ValkeyVersion) {
    let mut lab = planned_lab(version, 3).await;
    let epoch = epoch_now(&lab).await;
    let (events, sampler, writer) = start_observers(&lab).await;
    let target = target(&lab);
    let candidate = addr(lab.data_addr(1));
    let started = tokio::time::Instant::now();
    let whole = budget();
    let switching = switchover::run(&target, &whole, Some(&candidate), None);
    tokio::pin!(switching);
    // Hang sentinel-0 (the one a fresh lab's failover goes to) once the bias is applied.
    let result = loop {
        tokio::select! {
            result = &mut switching => break Some(result),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        if priority(&lab, 2).await == 0 {
            lab.pause(PodId::Sentinel(0)).expect("SIGSTOP");
            break None;
        }
    };
    let result = match result {
        Some(result) => result,
        None => switching.await,
    };
    let took = started.elapsed();
    eprintln!(
        "hung sentinel {}: {result:?} after {took:?}",
        version.as_str()
    );
    assert!(took < ACTION + Duration::from_millis(500), "took {took:?}");
    lab.resume(PodId::Sentinel(0)).expect("SIGCONT");
    assert_eq!(
        [priority(&lab, 1).await, priority(&lab, 2).await],
        [100, 100],
        "priorities restored"
    );
    // Hung before it was sent a failover, sentinel-0 leaves two of three that agree: that is
    // enough (a survey that waits out the hung one must not let the others' answers go stale).
    let leader_hung = events
        .snapshot()
        .iter()
        .any(|e| e.sentinel == 0 && e.event.channel == Channel::TryFailover);
    assert!(
        leader_hung || result.is_ok(),
        "two of three sentinels answer: {result:?}"
    );
    match result {
        Ok(_) => {
            lab.wait_sentinels_agree(WAIT, |master, _| master == lab.data_addr(1))
                .await
                .expect("the candidate is the agreed master");
            check_lossless(&lab, "hung-sentinel", writer, sampler, 1).await;
            assert_eq!(failovers(&events), 1, "exactly one failover");
        }
        Err(_) => check_old_master_writable(&lab, "hung-sentinel", writer, sampler, epoch).await,
    }
}

/// `member-leave` of a master killed a moment ago (kill -9), which the sentinels still name:
/// it fails over (or awaits the failover the sentinels start) and succeeds only once another
/// master is agreed, or fails; it never succeeds while the dead pod is still named.
async fn member_leave_of_a_dead_master_still_named_fails_over_or_fails(version: ValkeyVersion) {
    let mut lab = planned_lab(version, 3).await;
    let events = EventLog::start(&lab).await.expect("event log");
    lab.kill(PodId::Data(0));
    let mut target = target(&lab);
    target.pod = Some(addr(lab.data_addr(0)));
    let started = tokio::time::Instant::now();
    let result = member_leave::run(&target, &budget()).await;
    let took = started.elapsed();
    eprintln!(
        "member-leave of a dead master {}: {result:?} after {took:?}",
        version.as_str()
    );
    assert!(took < ACTION + Duration::from_millis(500), "took {took:?}");
    if let Ok(line) = &result {
        for j in 0..lab.sentinel_count() {
            assert_ne!(
                lab.sentinel_master_addr(j).await.expect("answer"),
                Some(lab.data_addr(0)),
                "sentinel-{j} still names the dead pod after success: {line}"
            );
        }
    }
    let agreed = lab
        .wait_sentinels_agree(WAIT, |master, _| master != lab.data_addr(0))
        .await
        .expect("a new agreed master");
    if let Ok(line) = &result {
        assert!(line.contains(&agreed.addr.to_string()), "{line}");
        // The dead pod is gone, so the reset may come once the failover has ended.
        let snapshot = events.snapshot();
        let failover_end = snapshot
            .iter()
            .filter(|e| e.event.channel == Channel::FailoverEnd)
            .map(|e| e.at)
            .min()
            .expect("a +failover-end");
        let resets: Vec<_> = snapshot
            .iter()
            .filter(|e| e.event.channel == Channel::ResetMaster)
            .collect();
        assert_eq!(resets.len(), lab.sentinel_count(), "every sentinel reset");
        assert!(
            resets.iter().all(|e| e.at > failover_end),
            "a reset before +failover-end"
        );
    }
    assert!(failovers(&events) >= 1, "a failover ran");
}

/// The candidate dies (kill -9) once the sentinels switch to it, and the sentinels fail over
/// again to another pod: the targeted switchover fails within seconds of that other master
/// being agreed (not at the end of its budget), every priority is back, and the never-promote
/// pod never becomes master.
async fn a_wrong_master_agreed_fails_the_targeted_switchover_at_once(version: ValkeyVersion) {
    let mut lab = planned_lab(version, 4).await;
    set_priority(&lab, 3, 0).await;
    let events = EventLog::start(&lab).await.expect("event log");
    let sampler = RoleSampler::start(&lab);
    let target = target(&lab);
    let candidate = addr(lab.data_addr(1));
    let whole = budget();
    let started = tokio::time::Instant::now();
    let switching = switchover::run(&target, &whole, Some(&candidate), None);
    tokio::pin!(switching);
    let to_candidate = format!("{} {}", lab.data_addr(1).ip(), lab.data_addr(1).port());
    let switched = events.wait_any(
        Channel::SwitchMaster,
        |payload| payload.to_string().ends_with(&to_candidate),
        WAIT,
    );
    let result = tokio::select! {
        result = &mut switching => Some(result),
        seen = switched => {
            seen.expect("+switch-master to the candidate");
            lab.kill(PodId::Data(1));
            None
        }
    };
    let result = match result {
        Some(result) => result,
        None => switching.await,
    };
    let took = started.elapsed();
    eprintln!(
        "wrong master {}: {result:?} after {took:?}",
        version.as_str()
    );
    // The sentinels retry a failover only every 2 x failover-timeout (12 s here), and the
    // leader of the dead candidate's promotion may keep naming it (so the lab's unanimous
    // wait never ends): ask the verdict, as a coordinator would.
    let recovered = tokio::time::Instant::now();
    let agreed = loop {
        let known = knowledge::learn(&target, &Budget::new(Duration::from_secs(3))).await;
        if let Some(master) = known.agreed()
            && master.master != candidate
        {
            break master.clone();
        }
        assert!(
            recovered.elapsed() < WAIT * 2,
            "no other master agreed: {known:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "wrong master {}: {} agreed at epoch {} {:?} after the failure",
        version.as_str(),
        agreed.master,
        agreed.config_epoch,
        recovered.elapsed()
    );
    assert!(result.is_err(), "the candidate is dead: {result:?}");
    assert!(took < ACTION - Duration::from_secs(5), "took {took:?}");
    assert_eq!(
        [priority(&lab, 2).await, priority(&lab, 3).await],
        [100, 0],
        "priorities restored"
    );
    let timeline = sampler.stop().await;
    assert!(
        !timeline
            .samples
            .iter()
            .any(|s| s.pod == 3 && s.role == SampledRole::Master),
        "the never-promote pod became master"
    );
    assert_ne!(
        agreed.master,
        addr(lab.data_addr(3)),
        "the never-promote pod is agreed"
    );
}

/// Whether sentinel `j` is in TILT (`INFO sentinel`).
async fn in_tilt(lab: &Lab, j: usize) -> bool {
    let mut client = lab
        .client(PodId::Sentinel(j))
        .await
        .expect("sentinel client");
    let info: InfoSentinel = client
        .call_typed(&["INFO", "sentinel"])
        .await
        .expect("INFO sentinel");
    info.field("sentinel_tilt") == Some("1")
}

/// Sentinel-0, the one a fresh lab's failover goes to, was stopped for longer than its TILT
/// trigger (2 s) and is in TILT, where it takes `SENTINEL FAILOVER` with `+OK` and runs
/// nothing for 30 s: the switchover sends its one failover to another sentinel and completes
/// while sentinel-0 is still in TILT, losing no write.
async fn a_sentinel_in_tilt_is_not_sent_the_failover(version: ValkeyVersion) {
    let mut lab = planned_lab(version, 3).await;
    lab.pause(PodId::Sentinel(0)).expect("SIGSTOP");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    lab.resume(PodId::Sentinel(0)).expect("SIGCONT");
    poll_until(
        "sentinel-0 to enter TILT",
        WAIT,
        Duration::from_millis(50),
        || async {
            if in_tilt(&lab, 0).await {
                Probe::Ready(())
            } else {
                Probe::Pending("sentinel_tilt:0".into())
            }
        },
    )
    .await
    .expect("sentinel-0 in TILT");
    let (events, sampler, writer) = start_observers(&lab).await;
    switchover::run(&target(&lab), &budget(), None, None)
        .await
        .expect("the switchover succeeds through a sentinel not in TILT");
    assert!(
        in_tilt(&lab, 0).await,
        "sentinel-0 left TILT: nothing proven"
    );
    let agreed = lab
        .wait_sentinels_agree(WAIT, |master, _| master != lab.data_addr(0))
        .await
        .expect("a new agreed master");
    let new = lab.data_index(agreed.addr).expect("a data pod");
    check_lossless(&lab, "tilt", writer, sampler, new).await;
    let tried: Vec<usize> = events
        .snapshot()
        .iter()
        .filter(|e| e.event.channel == Channel::TryFailover)
        .map(|e| e.sentinel)
        .collect();
    assert_eq!(tried.len(), 1, "one failover: {tried:?}");
    assert_ne!(tried[0], 0, "the failover went to the sentinel in TILT");
}
