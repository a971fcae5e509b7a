//! Every lifecycle action ends within its budget, also when sentinels hang or black-hole traffic
//! (DESIGN section 5, "every action has a time budget"; upstream-failures Part D scenario 80).
//!
//! A SIGSTOPped process keeps its listening socket: the kernel completes the TCP handshake and
//! queues what is sent, and nothing ever answers. That is the fault a timeout on `connect` alone
//! does not catch. Each scenario runs every action through the library, as the binary does
//! (`lifecycle::<action>::run` with a [`Target`] and a [`Budget`]), under a short budget, and
//! asserts it returns, `Ok` or `Err` as the rules say, within the budget and [`MARGIN`]. The
//! actions that change nothing run side by side (each timed on its own); the ones that change
//! the group run last, one at a time.
//!
//! The data-pod faults are three address forms next to the lab's pods: a name that does not
//! resolve, a loopback address with nothing listening (refused at once), and a SIGSTOPped data
//! pod (black-holed).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;
use valkey_coordinator::addr::Addr;
use valkey_coordinator::lifecycle::{
    Budget, Target, member_leave, role_probe, startup, status, switchover,
};
use valkey_lab::sentinel_protocol::role::Role;
use valkey_lab::wait::{POLL_EVERY, Probe, poll_until};
use valkey_lab::{Lab, LabSpec, PodId, ValkeyVersion};

/// Budget for any single wait of the lab; scenarios finish far sooner.
const WAIT: Duration = Duration::from_secs(20);
/// Every action's budget here.
const BUDGET: Duration = Duration::from_secs(4);
/// How far past its budget an action may return: the last step's own cleanup and scheduling.
const MARGIN: Duration = Duration::from_millis(500);
/// The switchover's budget where it should get as far as sending its failover: 4 s would leave
/// 1.5 s after its 2.5 s reserve for restoring, one survey's worth with a sentinel hung, and it
/// would never start.
const SWITCHOVER_BUDGET: Duration = Duration::from_secs(10);
/// `--replica-priority`.
const PRIORITY: u64 = 100;
/// A data pod whose name resolves nowhere (`.invalid` is reserved for that, RFC 2606).
const UNRESOLVABLE: &str = "valkey-9.budgets.invalid:6379";

fn addr(socket: SocketAddr) -> Addr {
    Addr::from(socket)
}

fn unresolvable() -> Addr {
    UNRESOLVABLE.parse().expect("a plausible DNS name")
}

/// A loopback address of the lab's block with nothing listening on it.
fn refusing(lab: &Lab) -> Addr {
    addr(SocketAddr::from((lab.block().spare_ip(50), 6379)))
}

/// The group as the actions see it: the lab's sentinels, its data pods and then `extra` ones,
/// about `pod`.
fn target(lab: &Lab, pod: Option<Addr>, extra: &[Addr]) -> Target {
    let mut data_pods: Vec<Addr> = lab.data_addrs().into_iter().map(addr).collect();
    data_pods.extend(extra.iter().cloned());
    let mut target = Target::new(
        lab.master_name(),
        lab.sentinel_addrs().into_iter().map(addr).collect(),
        data_pods,
    );
    target.pod = pod;
    target
}

/// One action's outcome as the binary would print it (stdout line, or stderr reason), and its
/// wall time.
#[derive(Debug)]
struct Ran {
    what: String,
    outcome: Result<String, String>,
    took: Duration,
}

impl Ran {
    /// Asserts it ended within `budget` and the margin, and returns it.
    fn in_budget(self, budget: Duration) -> Self {
        eprintln!("{} -> {:?} in {:?}", self.what, self.outcome, self.took);
        assert!(
            self.took <= budget + MARGIN,
            "{} took {:?}, over its {budget:?} budget: {:?}",
            self.what,
            self.took,
            self.outcome
        );
        self
    }

    fn ok(&self) -> &str {
        match &self.outcome {
            Ok(line) => line,
            Err(error) => panic!("{} failed: {error}", self.what),
        }
    }

    fn err(&self) -> &str {
        match &self.outcome {
            Ok(line) => panic!("{} succeeded without proof: {line}", self.what),
            Err(error) => error,
        }
    }
}

/// Runs `action` under a fresh `budget` and times it.
async fn timed<F, Fut>(what: impl Into<String>, budget: Duration, action: F) -> Ran
where
    F: FnOnce(Budget) -> Fut,
    Fut: Future<Output = Result<String, String>>,
{
    let started = Instant::now();
    let outcome = action(Budget::new(budget)).await;
    Ran {
        what: what.into(),
        outcome,
        took: started.elapsed(),
    }
    .in_budget(budget)
}

async fn role_probe(target: Target, budget: Duration) -> Ran {
    let what = format!("role-probe {}", target.pod.as_ref().expect("pod"));
    timed(what, budget, |budget| async move {
        role_probe::run(&target, &budget, None)
            .await
            .map(|probe| probe.to_string())
            .map_err(|e| e.to_string())
    })
    .await
}

/// Startup, writing its decision to `valkey-{i}`'s include file (the pod keeps running with its
/// own config; the file is only read back).
async fn startup(lab: &Lab, target: Target, i: usize, budget: Duration) -> Ran {
    let path = lab.include_path(i);
    timed(format!("startup valkey-{i}"), budget, |budget| async move {
        startup::run(&target, &budget, &path, PRIORITY)
            .await
            .map(|decision| decision.to_string())
            .map_err(|e| e.to_string())
    })
    .await
}

/// Status: the table either way, after the reason when it fails.
async fn status(target: Target, budget: Duration) -> Ran {
    timed("status", budget, |budget| async move {
        let status = status::run(&target, &budget).await;
        let table = status.table();
        match status.outcome() {
            Ok(()) => Ok(table),
            Err(error) => Err(format!("{error}\n{table}")),
        }
    })
    .await
}

async fn member_leave(target: Target, budget: Duration) -> Ran {
    let what = format!("member-leave {}", target.pod.as_ref().expect("pod"));
    timed(what, budget, |budget| async move {
        member_leave::run(&target, &budget)
            .await
            .map_err(|e| e.to_string())
    })
    .await
}

async fn switchover(target: Target, candidate: Option<Addr>, budget: Duration) -> Ran {
    let what = match &candidate {
        Some(candidate) => format!("switchover --candidate {candidate}"),
        None => "switchover".to_owned(),
    };
    timed(what, budget, |budget| async move {
        switchover::run(&target, &budget, candidate.as_ref(), None)
            .await
            .map_err(|e| e.to_string())
    })
    .await
}

/// The line of `table` about `peer`.
fn row<'a>(table: &'a str, peer: &str) -> &'a str {
    table
        .lines()
        .find(|line| line.starts_with(peer))
        .unwrap_or_else(|| panic!("no row for {peer} in\n{table}"))
}

/// Waits until the sentinels (those running) agree on a master, then until it is the one data
/// pod that answers `ROLE` as master (the deposed one converts a moment after the promotion).
async fn wait_one_master(lab: &Lab) -> usize {
    let agreed = lab
        .wait_sentinels_agree(WAIT, |_, _| true)
        .await
        .expect("the sentinels agree");
    let master = lab.data_index(agreed.addr).expect("a data pod");
    poll_until("exactly one master", WAIT, POLL_EVERY, || async move {
        let mut masters = Vec::new();
        for i in 0..lab.data_count() {
            if let Ok(Role::Master { .. }) = lab.role(PodId::Data(i)).await {
                masters.push(i);
            }
        }
        if masters == [master] {
            Probe::Ready(())
        } else {
            Probe::Pending(format!("masters {masters:?}, agreed valkey-{master}"))
        }
    })
    .await
    .expect("exactly the agreed pod is master");
    master
}

/// A formed lab whose master every sentinel also knows by run id (role-probe's proof); the
/// agreed epoch.
async fn formed(version: ValkeyVersion) -> (Lab, u64) {
    let lab = LabSpec::new(version).start().await.expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    let master = addr(lab.data_addr(0));
    poll_until("valkey-0 to be proven primary", WAIT, POLL_EVERY, || {
        let target = target(&lab, Some(master.clone()), &[]);
        async move {
            match role_probe::run(&target, &Budget::new(BUDGET), None).await {
                Ok(probe) if probe.to_string().starts_with("primary ") => Probe::Ready(()),
                other => Probe::Pending(format!("{other:?}")),
            }
        }
    })
    .await
    .expect("valkey-0 is primary");
    let epoch = lab
        .sentinel_master(0)
        .await
        .expect("SENTINEL MASTER")
        .expect("monitored")
        .config_epoch;
    (lab, epoch)
}

/// Scenario 80 with one sentinel hung and one data pod's name unresolvable: the actions that
/// need only a majority succeed from the other two sentinels (the master is `primary E`, a
/// replica starts as the master's replica, status agrees, a replica and the unresolvable pod
/// leave), status names the two peers it could not reach, and an untargeted switchover,
/// whichever way it ends, ends in time and leaves exactly one master.
async fn with_one_sentinel_hung_every_action_ends_in_budget_and_majority_actions_succeed(
    version: ValkeyVersion,
) {
    let (mut lab, epoch) = formed(version).await;
    lab.pause(PodId::Sentinel(2)).expect("paused");
    let extra = [unresolvable()];
    let pod = |i: usize| Some(addr(lab.data_addr(i)));
    let (probe_master, probe_replica, probe_unresolvable, started, status, leave, leave_gone) = tokio::join!(
        role_probe(target(&lab, pod(0), &extra), BUDGET),
        role_probe(target(&lab, pod(1), &extra), BUDGET),
        role_probe(target(&lab, Some(unresolvable()), &extra), BUDGET),
        startup(&lab, target(&lab, pod(1), &extra), 1, BUDGET),
        status(target(&lab, None, &extra), BUDGET),
        member_leave(target(&lab, pod(2), &extra), BUDGET),
        member_leave(target(&lab, Some(unresolvable()), &extra), BUDGET),
    );
    assert_eq!(probe_master.ok(), format!("primary {epoch}"));
    assert_eq!(probe_replica.ok(), format!("secondary {epoch}"));
    assert_eq!(probe_unresolvable.ok(), format!("secondary {epoch}"));
    let master = lab.data_addr(0);
    assert_eq!(
        started.ok(),
        format!("replica {} {}", master.ip(), master.port())
    );
    let table = status.ok();
    assert!(table.starts_with("verdict   agreed: master"), "{table}");
    let hung = lab.sentinel_addr(2).to_string();
    assert!(row(table, &hung).contains("unreachable"), "{table}");
    assert!(row(table, UNRESOLVABLE).contains("unreachable"), "{table}");
    assert!(leave.ok().contains("is not the master"), "{}", leave.ok());
    assert!(leave_gone.ok().contains("is not the master"));

    let switched = switchover(target(&lab, None, &extra), None, SWITCHOVER_BUDGET).await;
    eprintln!("switchover with one sentinel hung: {:?}", switched.outcome);
    let now = wait_one_master(&lab).await;
    eprintln!("valkey-{now} is the one master");
    if switched.outcome.is_ok() {
        assert_ne!(now, 0, "a successful switchover moved the master");
    }
}

/// Scenario 80 with two of three sentinels hung: no action claims a master or a change it
/// cannot prove, and each ends in time: role-probe of the master and startup fail (startup
/// writes nothing), a replica's role-probe is an unversioned `secondary`, status fails and says
/// why, a replica may leave but the master may not, a switchover fails, and valkey-0 is still the
/// one master.
async fn with_two_sentinels_hung_every_action_ends_in_budget_and_none_claims_a_master(
    version: ValkeyVersion,
) {
    let (mut lab, _) = formed(version).await;
    lab.pause(PodId::Sentinel(1)).expect("paused");
    lab.pause(PodId::Sentinel(2)).expect("paused");
    let include = lab.include_path(1);
    let pod = |i: usize| Some(addr(lab.data_addr(i)));
    let (probe_master, probe_replica, started, status, leave, leave_master, switched) = tokio::join!(
        role_probe(target(&lab, pod(0), &[]), BUDGET),
        role_probe(target(&lab, pod(1), &[]), BUDGET),
        startup(&lab, target(&lab, pod(1), &[]), 1, BUDGET),
        status(target(&lab, None, &[]), BUDGET),
        member_leave(target(&lab, pod(2), &[]), BUDGET),
        member_leave(target(&lab, pod(0), &[]), BUDGET),
        switchover(target(&lab, None, &[]), None, BUDGET),
    );
    let error = probe_master.err();
    assert!(error.contains("not claiming primary"), "{error}");
    assert_eq!(probe_replica.ok(), "secondary");
    let error = started.err();
    assert!(error.contains("no master is agreed"), "{error}");
    for j in [1, 2] {
        let hung = lab.sentinel_addr(j).to_string();
        assert!(error.contains(&hung), "startup names {hung}: {error}");
    }
    assert!(!include.exists(), "startup wrote {}", include.display());
    let error = status.err();
    assert!(error.starts_with("no master is agreed"), "{error}");
    for j in [1, 2] {
        let hung = lab.sentinel_addr(j).to_string();
        assert!(row(error, &hung).contains("unreachable"), "{error}");
    }
    assert!(leave.ok().contains("is a replica"), "{}", leave.ok());
    let error = leave_master.err();
    assert!(error.contains(&lab.data_addr(0).to_string()), "{error}");
    let error = switched.err();
    assert!(error.contains("no agreed master"), "{error}");
    assert_eq!(
        lab.role(PodId::Data(0)).await.ok().map(is_master),
        Some(true)
    );
    for i in [1, 2] {
        assert_eq!(
            lab.role(PodId::Data(i)).await.ok().map(is_master),
            Some(false)
        );
    }
}

fn is_master(role: Role) -> bool {
    matches!(role, Role::Master { .. })
}

/// Scenario 80's data-pod half: a black-holed replica (SIGSTOP), a name that does not resolve
/// and an address that refuses cost only their own answers: status agrees and names each on its
/// row, every probe of them is a versioned `secondary` (rule 3: the agreement decides), a
/// switchover to any of them fails before changing anything and names it, the black-holed
/// replica leaves, a replica starts as the master's; and a startup whose agreed master is
/// black-holed follows it all the same (S3) after one peer timeout.
async fn a_black_holed_unresolvable_or_refusing_data_pod_costs_only_its_own_answer(
    version: ValkeyVersion,
) {
    let (mut lab, epoch) = formed(version).await;
    lab.pause(PodId::Data(2)).expect("paused");
    let holed = addr(lab.data_addr(2));
    let extra = [unresolvable(), refusing(&lab)];
    let faulty = [holed.clone(), extra[0].clone(), extra[1].clone()];
    // The probes own their target: spawned, they run side by side with the rest.
    let probes: Vec<_> = faulty
        .iter()
        .map(|pod| tokio::spawn(role_probe(target(&lab, Some(pod.clone()), &extra), BUDGET)))
        .collect();
    let to = |i: usize| switchover(target(&lab, None, &extra), Some(faulty[i].clone()), BUDGET);
    let (status, leave, started, to_holed, to_unresolvable, to_refusing) = tokio::join!(
        status(target(&lab, None, &extra), BUDGET),
        member_leave(target(&lab, Some(holed.clone()), &extra), BUDGET),
        startup(
            &lab,
            target(&lab, Some(addr(lab.data_addr(1))), &extra),
            1,
            BUDGET
        ),
        to(0),
        to(1),
        to(2),
    );
    let table = status.ok();
    assert!(table.starts_with("verdict   agreed: master"), "{table}");
    for peer in &faulty {
        assert!(
            row(table, &peer.to_string()).contains("unreachable"),
            "{table}"
        );
    }
    for probe in probes {
        let probe = probe.await.expect("the probe ran");
        assert_eq!(probe.ok(), format!("secondary {epoch}"));
    }
    for (switched, candidate) in [to_holed, to_unresolvable, to_refusing].iter().zip(&faulty) {
        let error = switched.err();
        assert!(
            error.contains(&candidate.to_string()),
            "the failure names {candidate}: {error}"
        );
    }
    assert!(leave.ok().contains("is not the master"), "{}", leave.ok());
    let master = lab.data_addr(0);
    let following = format!("replica {} {}", master.ip(), master.port());
    assert_eq!(started.ok(), following);
    lab.resume(PodId::Data(2)).expect("resumed");

    // The agreed master black-holed for less than down-after: startup follows it after one
    // peer timeout, and the master is resumed before the sentinels could call it down.
    lab.pause(PodId::Data(0)).expect("paused");
    let started = startup(
        &lab,
        target(&lab, Some(addr(lab.data_addr(1))), &[]),
        1,
        BUDGET,
    )
    .await;
    lab.resume(PodId::Data(0)).expect("resumed");
    assert_eq!(started.ok(), following);
    assert!(started.took < Duration::from_secs(2), "{:?}", started.took);
    assert_eq!(wait_one_master(&lab).await, 0);
}

valkey_lab::on_every_version!(
    with_one_sentinel_hung_every_action_ends_in_budget_and_majority_actions_succeed,
    with_two_sentinels_hung_every_action_ends_in_budget_and_none_claims_a_master,
    a_black_holed_unresolvable_or_refusing_data_pod_costs_only_its_own_answer,
);
