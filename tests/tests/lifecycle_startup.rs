//! The `startup` action against real servers (DESIGN section 5, upstream-failures Part D
//! scenarios 1-6, 9 and 84): each data pod here starts the way a managed pod does, the action first
//! (writing the pod's include file), then the server with `include` of it
//! ([`StartRole::Included`]), one pod at a time in ordinal order as KubeBlocks' OrderedReady
//! does. A role sampler watches every restart: no moment has two masters.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;
use valkey_coordinator::addr::Addr;
use valkey_coordinator::lifecycle::role_probe;
use valkey_coordinator::lifecycle::startup::{self, Decision};
use valkey_coordinator::lifecycle::{ActionError, Budget, Target};
use valkey_coordinator::service::heal::HealConfig;
use valkey_coordinator::service::heal::plan::ExplicitSettings;
use valkey_coordinator::service::{self, RunningService, ServiceConfig};
use valkey_lab::wait::{POLL_EVERY, Probe, poll_until};
use valkey_lab::{
    Lab, LabSpec, PodId, RoleSampler, SentinelStart, StartRole, ValkeyVersion, WriteTarget, Writer,
};

/// Budget for any single wait; scenarios finish far sooner.
const WAIT: Duration = Duration::from_secs(20);
/// The action's budget where it is expected to decide.
const BUDGET: Duration = Duration::from_secs(10);
/// The action's budget where it is expected to give up.
const SHORT_BUDGET: Duration = Duration::from_secs(3);
/// `--replica-priority`.
const PRIORITY: u64 = 100;

fn addr(socket: SocketAddr) -> Addr {
    Addr::from(socket)
}

/// The group as data pod `i`'s startup sees it (`coordinators` asked first).
fn target(lab: &Lab, i: usize, coordinators: &[SocketAddr]) -> Target {
    let mut target = Target::new(
        lab.master_name(),
        lab.sentinel_addrs().into_iter().map(addr).collect(),
        lab.data_addrs().into_iter().map(addr).collect(),
    );
    target.pod = Some(addr(lab.data_addr(i)));
    target.coordinators = coordinators.iter().copied().map(addr).collect();
    target
}

/// Runs data pod `i`'s startup under `budget`; its result and how long it took.
async fn decide(
    lab: &Lab,
    i: usize,
    coordinators: &[SocketAddr],
    budget: Duration,
) -> (Result<Decision, ActionError>, Duration) {
    let started = Instant::now();
    let decided = startup::run(
        &target(lab, i, coordinators),
        &Budget::new(budget),
        &lab.include_path(i),
        PRIORITY,
    )
    .await;
    (decided, started.elapsed())
}

/// Starts data pod `i` as a managed pod: startup first, then the server including its answer.
async fn start_through_startup(lab: &mut Lab, i: usize, coordinators: &[SocketAddr]) -> Decision {
    let (decided, took) = decide(lab, i, coordinators, BUDGET).await;
    let decision = decided.unwrap_or_else(|error| panic!("valkey-{i}'s startup: {error}"));
    eprintln!("valkey-{i}: startup said `{decision}` in {took:?}");
    lab.start_data(i, StartRole::Included)
        .await
        .expect("the pod starts with its include file");
    decision
}

fn replica_of(lab: &Lab, i: usize) -> Decision {
    Decision::Replica(addr(lab.data_addr(i)))
}

/// Asserts the sampler saw no moment with two masters.
async fn assert_one_master_at_a_time(sampler: RoleSampler) {
    let timeline = sampler.stop().await;
    let dual = timeline.dual_masters();
    assert!(
        dual.is_empty(),
        "two masters at once: {dual:?}\n{}",
        timeline.changes()
    );
}

/// A coordinator with healing on and the lab's monitor options as explicit settings.
async fn healing_coordinator(lab: &Lab) -> RunningService {
    let spec = lab.spec();
    let mut config = ServiceConfig::new(
        "127.0.0.1:0".parse().expect("literal"),
        lab.sentinel_addrs().into_iter().map(addr).collect(),
        vec![lab.master_name().to_owned()],
    );
    config.heal = Some(HealConfig {
        explicit: ExplicitSettings {
            quorum: Some(spec.quorum as u64),
            down_after_ms: Some(spec.timings.down_after.as_millis() as u64),
            failover_timeout_ms: Some(spec.timings.failover_timeout.as_millis() as u64),
            parallel_syncs: Some(u64::from(spec.timings.parallel_syncs)),
        },
        data_pods: lab.data_addrs().into_iter().map(addr).collect(),
        ..HealConfig::default()
    });
    service::start(config).await.expect("coordinator starts")
}

/// Waits until every sentinel monitors `master` with every option of the lab's spec.
async fn wait_all_monitor(lab: &Lab, master: SocketAddr) {
    for j in 0..lab.sentinel_count() {
        lab.wait_monitors_as_spec(j, master, WAIT, POLL_EVERY)
            .await
            .expect("the sentinel monitors the bootstrap master");
    }
}

/// Runs every replica's role probe, as kbagent does every few seconds, until each has its
/// configured priority back after its first sync, and checks it took.
async fn restore_priorities(lab: &Lab, master: usize) {
    for i in (0..lab.data_count()).filter(|&i| i != master) {
        let include = lab.include_path(i);
        poll_until(
            format!("valkey-{i}'s replica-priority to be restored"),
            WAIT,
            POLL_EVERY,
            || {
                let target = target(lab, i, &[]);
                let include = include.clone();
                async move {
                    let file = role_probe::StartupFile {
                        path: &include,
                        replica_priority: PRIORITY,
                    };
                    let _ = role_probe::run(&target, &Budget::new(BUDGET), Some(file)).await;
                    match lab.replication_info(i).await {
                        Ok(info) if info.slave_priority == Some(PRIORITY as i64) => {
                            Probe::Ready(())
                        }
                        Ok(info) => Probe::Pending(format!("priority {:?}", info.slave_priority)),
                        Err(error) => Probe::Pending(error.to_string()),
                    }
                }
            },
        )
        .await
        .expect("the priority is restored after the sync");
    }
}

/// Scenario 1: a fresh cluster started in order through startup: pods 0 and 1 cannot see every
/// peer and start as undecided read-only replicas; pod 2, the last, finds every pod at offset 0
/// and makes pod 0 master; the coordinator's healer then registers pod 0 on every sentinel with
/// every option, and the replicas get their priority back once synced.
async fn a_fresh_cluster_started_in_order_makes_pod_0_master(version: ValkeyVersion) {
    let mut lab = LabSpec::new(version)
        .fresh()
        .start()
        .await
        .expect("lab starts");
    let coordinator = healing_coordinator(&lab).await;
    let coordinators = [coordinator.listen_addr];
    let sampler = RoleSampler::start(&lab);

    assert_eq!(
        start_through_startup(&mut lab, 0, &coordinators).await,
        replica_of(&lab, 2)
    );
    assert_eq!(
        start_through_startup(&mut lab, 1, &coordinators).await,
        replica_of(&lab, 2)
    );
    assert_eq!(
        start_through_startup(&mut lab, 2, &coordinators).await,
        replica_of(&lab, 0)
    );

    lab.wait_master(0, WAIT).await.expect("pod 0 is master");
    lab.wait_replication_up(0, WAIT)
        .await
        .expect("pods 1 and 2 replicate pod 0");
    wait_all_monitor(&lab, lab.data_addr(0)).await;
    lab.wait_sentinels_agree(WAIT, |master, _| master == lab.data_addr(0))
        .await
        .expect("the sentinels agree on pod 0");
    restore_priorities(&lab, 0).await;

    assert_one_master_at_a_time(sampler).await;
    coordinator.stop().await.expect("coordinator stops");
}

/// Scenario 2 and the ordered-start trap: under an agreement a restarting replica follows the
/// master within 2 s (median of 5 decisions printed); after a failover to pod 1 and a stop of
/// every pod, the ordered start begins with pod 0, which starts as pod 1's read-only replica
/// though pod 1 does not run yet, and no acknowledged write is lost.
async fn after_a_failover_to_pod_1_pod_0_restarts_as_its_replica(version: ValkeyVersion) {
    let mut lab = LabSpec::new(version)
        .rdb(true)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");

    // Scenario 2: decide five times for a killed replica.
    lab.kill(PodId::Data(2));
    let mut took = Vec::new();
    for _ in 0..5 {
        let (decided, elapsed) = decide(&lab, 2, &[], BUDGET).await;
        assert_eq!(decided.expect("decides"), replica_of(&lab, 0));
        took.push(elapsed);
    }
    took.sort();
    eprintln!(
        "startup decision under an agreement: median {:?} of {took:?}",
        took[2]
    );
    assert!(took[2] < Duration::from_secs(2), "{took:?}");
    lab.start_data(2, StartRole::Included)
        .await
        .expect("pod 2 starts");
    lab.wait_replication_up(0, WAIT)
        .await
        .expect("pod 2 replicates pod 0 again");

    // Fail over to pod 1: pod 2 made ineligible, then a forced failover.
    let pod1 = lab.data_addr(1);
    let mut pod2 = lab.client(PodId::Data(2)).await.expect("connect");
    pod2.call(&["CONFIG", "SET", "replica-priority", "0"])
        .await
        .expect("pod 2 ineligible");
    let mut sentinel = lab.client(PodId::Sentinel(0)).await.expect("connect");
    sentinel
        .call(&["SENTINEL", "FAILOVER", lab.master_name()])
        .await
        .expect("failover accepted");
    lab.wait_sentinels_agree(WAIT, |master, epoch| master == pod1 && epoch > 0)
        .await
        .expect("the sentinels agree on pod 1");
    lab.wait_replication_up(1, WAIT)
        .await
        .expect("pods 0 and 2 replicate pod 1");

    let writer = Writer::start_with(WriteTarget::Pod(pod1), None, None, "startup");
    writer
        .wait_acked_by(pod1, 200, WAIT)
        .await
        .expect("writes are acknowledged");
    let log = writer.stop().await;

    // Every pod stops (replicas first, so the master's RDB is the newest), then the ordered
    // start: pod 0 before pod 1 exists.
    let sampler = RoleSampler::start(&lab);
    for i in [2, 0, 1] {
        lab.terminate(PodId::Data(i)).await.expect("stops");
    }
    assert_eq!(
        start_through_startup(&mut lab, 0, &[]).await,
        replica_of(&lab, 1)
    );
    assert_eq!(
        start_through_startup(&mut lab, 1, &[]).await,
        Decision::Master
    );
    assert_eq!(
        start_through_startup(&mut lab, 2, &[]).await,
        replica_of(&lab, 1)
    );
    lab.wait_replication_up(1, WAIT)
        .await
        .expect("pods 0 and 2 replicate pod 1");
    for i in 0..3 {
        let report = lab.check_lost_writes(&log, i).await.expect("read back");
        assert!(
            report.missing.is_empty() && report.wrong.is_empty(),
            "{report:?}"
        );
    }
    assert_one_master_at_a_time(sampler).await;
}

/// Scenario 84 (bootstrap with existing data): after a full stop in which pod 1 was the master
/// and kept writing after its replicas stopped, with every sentinel wiped, the ordered start
/// makes pod 1 master (newest offset, not the lowest ordinal) and no acknowledged write is lost.
async fn after_a_full_stop_with_every_sentinel_wiped_the_newest_data_wins(version: ValkeyVersion) {
    let mut lab = LabSpec::new(version)
        .rdb(true)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    // The sentinels stop first (as in a full stop); pod 1 is made master by hand.
    for j in 0..lab.sentinel_count() {
        lab.terminate(PodId::Sentinel(j)).await.expect("stops");
    }
    let pod1 = lab.data_addr(1);
    let (host, port) = (pod1.ip().to_string(), pod1.port().to_string());
    let mut client = lab.client(PodId::Data(1)).await.expect("connect");
    client
        .call(&["REPLICAOF", "NO", "ONE"])
        .await
        .expect("pod 1 promoted");
    for i in [0, 2] {
        let mut client = lab.client(PodId::Data(i)).await.expect("connect");
        client
            .call(&["REPLICAOF", host.as_str(), port.as_str()])
            .await
            .expect("repointed");
    }
    lab.wait_replication_up(1, WAIT)
        .await
        .expect("pods 0 and 2 replicate pod 1");

    let writer = Writer::start_with(WriteTarget::Pod(pod1), None, None, "startup");
    writer
        .wait_acked_by(pod1, 200, WAIT)
        .await
        .expect("writes are acknowledged");
    lab.terminate(PodId::Data(0)).await.expect("stops");
    lab.terminate(PodId::Data(2)).await.expect("stops");
    // Only pod 1 holds these.
    let acked = writer.log().acked.len();
    writer
        .wait_acked_by(pod1, acked + 200, WAIT)
        .await
        .expect("writes are acknowledged");
    let log = writer.stop().await;
    lab.terminate(PodId::Data(1)).await.expect("stops");
    for j in 0..lab.sentinel_count() {
        lab.start_sentinel(j, SentinelStart::Wiped)
            .await
            .expect("sentinel starts wiped");
    }

    let sampler = RoleSampler::start(&lab);
    assert_eq!(
        start_through_startup(&mut lab, 0, &[]).await,
        replica_of(&lab, 2)
    );
    assert_eq!(
        start_through_startup(&mut lab, 1, &[]).await,
        replica_of(&lab, 2)
    );
    assert_eq!(
        start_through_startup(&mut lab, 2, &[]).await,
        replica_of(&lab, 1)
    );
    lab.wait_master(1, WAIT).await.expect("pod 1 is master");
    lab.wait_replication_up(1, WAIT)
        .await
        .expect("pods 0 and 2 replicate pod 1");
    for i in 0..3 {
        let report = lab.check_lost_writes(&log, i).await.expect("read back");
        assert!(
            report.missing.is_empty() && report.wrong.is_empty(),
            "valkey-{i}: {report:?}"
        );
    }
    assert_one_master_at_a_time(sampler).await;
}

/// Scenarios 4 and 5: with two of three sentinels black-holed, and with the sentinels split at
/// one epoch (one names pod 0, one pod 2, the third stopped), startup retries, then exits
/// non-zero within its budget, and writes nothing.
async fn sentinels_split_or_short_of_a_majority_fail_within_the_budget(version: ValkeyVersion) {
    let mut lab = LabSpec::new(version).start().await.expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    lab.kill(PodId::Data(1));

    lab.pause(PodId::Sentinel(1)).expect("paused");
    lab.pause(PodId::Sentinel(2)).expect("paused");
    let (decided, took) = decide(&lab, 1, &[], SHORT_BUDGET).await;
    let error = decided.expect_err("one sentinel of three is no majority");
    eprintln!("minority: {error} after {took:?}");
    assert!(took < SHORT_BUDGET + Duration::from_millis(500), "{took:?}");
    assert!(!lab.include_path(1).exists());
    lab.resume(PodId::Sentinel(1)).expect("resumed");
    lab.resume(PodId::Sentinel(2)).expect("resumed");

    lab.restart_sentinel(1, SentinelStart::Wiped)
        .await
        .expect("wiped");
    lab.monitor(1, lab.data_addr(2))
        .await
        .expect("registered by hand");
    lab.kill(PodId::Sentinel(2));
    let (decided, took) = decide(&lab, 1, &[], SHORT_BUDGET).await;
    let error = decided.expect_err("a split proves nothing");
    eprintln!("split: {error} after {took:?}");
    assert!(took < SHORT_BUDGET + Duration::from_millis(500), "{took:?}");
    assert!(!lab.include_path(1).exists());
}

/// Scenario 6: every sentinel wiped, the master killed, pod 1 still running as its replica:
/// pod 2's startup refuses, naming pod 1, and never starts it as master.
async fn a_replica_with_no_provable_master_is_refused(version: ValkeyVersion) {
    let mut lab = LabSpec::new(version).start().await.expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    for j in 0..lab.sentinel_count() {
        lab.restart_sentinel(j, SentinelStart::Wiped)
            .await
            .expect("wiped");
    }
    lab.kill(PodId::Data(0));
    lab.kill(PodId::Data(2));
    let (decided, took) = decide(&lab, 2, &[], SHORT_BUDGET).await;
    let error = decided.expect_err("nothing proves a master").to_string();
    eprintln!("refused after {took:?}: {error}");
    assert!(
        error.contains(&lab.data_addr(1).to_string()),
        "the refusal names the running replica: {error}"
    );
    assert!(!lab.include_path(2).exists());
}

/// Scenario 3 and S3: the sentinels still agree on valkey-0 while it answers as a replica (as in
/// the moment of a failover; here it is pointed at an address with nothing behind it, which
/// the sentinels take 20 s to notice): the restarting valkey-1 never follows it (no chain),
/// retries, and under a short budget exits non-zero naming it, writing nothing. Given time, it
/// follows valkey-0 once that answers as master again, and not before.
async fn an_agreed_master_answering_as_a_replica_is_retried_never_chained(version: ValkeyVersion) {
    let mut lab = LabSpec::new(version).start().await.expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    lab.kill(PodId::Data(1));
    let master = lab.data_addr(0);
    let nowhere = lab.block().spare_ip(50).to_string();
    let mut pod0 = lab.client(PodId::Data(0)).await.expect("connect");
    pod0.call(&["REPLICAOF", nowhere.as_str(), "6379"])
        .await
        .expect("valkey-0 answers as a replica");

    let (decided, took) = decide(&lab, 1, &[], SHORT_BUDGET).await;
    let error = decided.expect_err("an agreed master that is a replica is never followed");
    eprintln!("agreed master answering as a replica: {error} after {took:?}");
    assert!(took < SHORT_BUDGET + Duration::from_millis(500), "{took:?}");
    let error = error.to_string();
    assert!(
        error.contains(&format!("agree on {master}")) && error.contains("answers as a replica"),
        "{error}"
    );
    assert!(!lab.include_path(1).exists());

    // Back to master a second into a longer budget: the retry follows it then.
    const BACK_AFTER: Duration = Duration::from_secs(1);
    let ((decided, took), ()) = tokio::join!(decide(&lab, 1, &[], BUDGET), async {
        tokio::time::sleep(BACK_AFTER).await;
        pod0.call(&["REPLICAOF", "NO", "ONE"])
            .await
            .expect("valkey-0 is master again");
    });
    eprintln!("followed valkey-0 after {took:?}");
    assert_eq!(decided.expect("decides"), replica_of(&lab, 0));
    assert!(
        took >= BACK_AFTER,
        "decided before valkey-0 was master: {took:?}"
    );
    lab.start_data(1, StartRole::Included)
        .await
        .expect("valkey-1 starts");
    lab.wait_replica_of(1, master, WAIT)
        .await
        .expect("valkey-1 replicates valkey-0");
}

/// Scenario 9: with one sentinel hung (SIGSTOP: its port accepts, nothing answers), a
/// restarting replica's startup decides from the other two, a majority of three, in under 5 s.
async fn with_one_sentinel_hung_startup_decides_from_the_other_two(version: ValkeyVersion) {
    let mut lab = LabSpec::new(version).start().await.expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    lab.pause(PodId::Sentinel(2)).expect("paused");
    lab.kill(PodId::Data(1));

    let (decided, took) = decide(&lab, 1, &[], BUDGET).await;
    eprintln!("one sentinel hung: {decided:?} after {took:?}");
    assert_eq!(decided.expect("two of three agree"), replica_of(&lab, 0));
    assert!(took < Duration::from_secs(5), "{took:?}");
    lab.start_data(1, StartRole::Included)
        .await
        .expect("valkey-1 starts");
    lab.wait_replica_of(1, lab.data_addr(0), WAIT)
        .await
        .expect("valkey-1 replicates valkey-0");
}

valkey_lab::on_every_version!(
    a_fresh_cluster_started_in_order_makes_pod_0_master,
    after_a_failover_to_pod_1_pod_0_restarts_as_its_replica,
    after_a_full_stop_with_every_sentinel_wiped_the_newest_data_wins,
    sentinels_split_or_short_of_a_majority_fail_within_the_budget,
    a_replica_with_no_provable_master_is_refused,
    an_agreed_master_answering_as_a_replica_is_retried_never_chained,
    with_one_sentinel_hung_startup_decides_from_the_other_two,
);
