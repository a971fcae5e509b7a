//! `switchover`: moves the master without losing an acknowledged write (DESIGN section 5).
//!
//! Rules, in the order the executor applies them:
//!
//! 1. Act only on an agreed master with no failover in progress (any reachable sentinel's
//!    `failover_in_progress` counts): wait for it within the budget, else fail. Untargeted,
//!    a settled master other than the caller's `--pod` is the switchover done (a failover that
//!    was running, or a killed run of this action, moved it): success, no second failover;
//!    without `--pod`, only a failover seen running that ends on another master than the one
//!    it replaced (the leader's record keeps the replaced address until `+failover-end`)
//!    counts. A settled master that is `--pod` itself is moved, even just after a failover.
//! 2. Targeted and the candidate already is the agreed master: success, no failover.
//! 3. Targeted: the candidate must answer `ROLE` as a connected replica of the agreed master
//!    and have a captured `replica-priority` above 0 (a never-promote pod never becomes
//!    master), else fail with nothing changed.
//! 4. Capture every replica's `replica-priority` (any unreadable: fail before changing
//!    anything) and persist it in the state file before the first change; a re-run that finds
//!    the file takes it as the truth. Restore the captured values on every path afterwards.
//! 5. Bias: every replica but the candidate to 0; then wait until the `SENTINEL REPLICAS` of
//!    every reachable sentinel naming the master shows exactly that, and none of their records
//!    of a replica that may be promoted still says it reports `role:master` (a stale INFO:
//!    that sentinel would turn the promotion back at once, `+convert-to-slave`), within the
//!    budget, else fail.
//! 6. One `SENTINEL FAILOVER`, to the reachable sentinel with the highest config epoch that
//!    names the agreed master and is not in TILT (one there takes the failover and runs it only
//!    once TILT ends; all in TILT: wait within the budget, else fail with nothing changed); `COORDINATED` where that sentinel takes it and the old master
//!    answers (the engine pauses, waits for the chosen replica and demotes itself); otherwise
//!    the old master is paused (`CLIENT PAUSE WRITE`) first and the failover waits until the
//!    replicas sentinel may pick have the master's offset (bounded). Any refusal, `INPROG` or
//!    timeout ends the operation: never a second send. With the pause, the caught-up old
//!    master is demoted (`REPLICAOF` the candidate, or the first caught-up replica) before the
//!    failover is sent, so no moment has two masters; a refusal takes the demotion back
//!    (`REPLICAOF NO ONE`) before the pause is lifted, except `INPROG`: another operation's
//!    failover runs, and it may be promoting.
//! 7. Done when the verdict names another master and no reachable sentinel runs a failover;
//!    targeted, a different master agreed fails at once, and so does a new master that went
//!    down after its promotion (`o_down`, or a failover away from it: the pause and the bias
//!    must go for the sentinels to promote another); the leader reachable, no longer
//!    running the failover and still naming the old master (it aborted) fails at once, and a
//!    demotion is then taken back as after a refusal. A paused old master is then pointed at
//!    the agreed new master if it follows another, and only then is its pause lifted, so the
//!    writes the pause held back are refused instead of acknowledged by a master about to be
//!    discarded; the pause is lifted on every path.
//! 8. Success only when the new master answers `ROLE` as master and no other reachable pod does.

use std::path::Path;
use std::time::Duration;

use sentinel_protocol::info::InfoReplication;
use sentinel_protocol::role::{LinkState, Role};
use sentinel_protocol::sentinel::{Flag, ReplicaRecord};

use crate::addr::Addr;
use crate::sentinel::admin::{self, FailoverMode, FailoverReply};
use crate::sentinel::conn::{self, Access, ConnError, Connection};
use crate::sentinel::dataplane;
use crate::sentinel::query::{Polled, Survey};
use crate::verdict::{SentinelId, SentinelReport, SentinelView, Verdict};

use super::knowledge::{self, AgreedMaster};
use super::{ActionError, Budget, Target};

/// Kept back from the work for lifting a pause and restoring priorities on every path.
pub(super) const RESERVE: Duration = Duration::from_millis(2_500);
/// One connection plus one command.
const STEP: Duration = Duration::from_millis(1_500);
/// How long a paused master waits for the replicas to reach its offset.
const CATCH_UP: Duration = Duration::from_millis(3_000);
/// How often progress is polled.
const POLL: Duration = Duration::from_millis(100);

/// Moves the master; returns the line to print.
pub async fn run(
    target: &Target,
    budget: &Budget,
    candidate: Option<&Addr>,
    state_file: Option<&Path>,
) -> Result<String, ActionError> {
    let from_file = match state_file {
        Some(path) => read_state(path)?,
        None => None,
    };
    let work = Budget::new(budget.remaining().saturating_sub(RESERVE));
    let mut captured = from_file.clone();
    let result = switch(target, &work, candidate, state_file, &mut captured).await;
    let restored = match &captured {
        Some(priorities) => restore(target, budget, priorities, state_file).await,
        None => Ok(()),
    };
    let line = result?;
    restored?;
    Ok(line)
}

async fn switch(
    target: &Target,
    budget: &Budget,
    candidate: Option<&Addr>,
    state_file: Option<&Path>,
    captured: &mut Option<Vec<(Addr, u64)>>,
) -> Result<String, ActionError> {
    let Settled {
        master: agreed,
        replaced,
    } = settled_master(target, budget).await?;
    let old = agreed.master.clone();
    // Untargeted, the goal is a master other than the caller's `--pod`: when the settled
    // master already is another pod (a failover that was running moved it, or a killed run
    // of this action did), that is success without a second failover. Without `--pod`, only a
    // failover seen running counts.
    let moved_from = match &target.pod {
        Some(pod) if !target.same_pod(pod, &old) => Some(pod.clone()),
        Some(_) => None,
        None => replaced,
    };
    if let (None, Some(moved_from)) = (candidate, moved_from) {
        confirm_single_master(target, budget, &old).await?;
        return Ok(format!(
            "switchover: {old} is master at epoch {} (was {moved_from}; already moved)",
            agreed.config_epoch
        ));
    }
    let Some(candidate) = candidate else {
        let new = planned_failover(target, budget, &old, None, OldMaster::MustPause).await?;
        confirm_single_master(target, budget, &new.master).await?;
        return Ok(format!(
            "switchover: {} is master at epoch {} (was {old})",
            new.master, new.config_epoch
        ));
    };
    if target.same_pod(candidate, &old) {
        confirm_single_master(target, budget, &old).await?;
        return Ok(format!(
            "switchover: {old} is already master at epoch {}",
            agreed.config_epoch
        ));
    }
    check_candidate(target, budget, candidate, &old).await?;
    let priorities = match captured {
        Some(priorities) => priorities.clone(),
        None => capture(target, budget, &old, candidate).await?,
    };
    let wanted = bias(&priorities, candidate, target)?;
    if let Some(path) = state_file {
        write_state(path, &priorities)?;
    }
    *captured = Some(priorities.clone());
    apply(target, budget, &wanted, &priorities).await?;
    wait_bias_seen(target, budget, &old, &wanted).await?;
    let new = planned_failover(target, budget, &old, Some(candidate), OldMaster::MustPause).await?;
    confirm_single_master(target, budget, &new.master).await?;
    Ok(format!(
        "switchover: {} is master at epoch {} (was {old})",
        new.master, new.config_epoch
    ))
}

// ---------------------------------------------------------------------------------------------
// The pure plan.

/// The priorities to set: every replica but the candidate to 0 (never-promote replicas stay
/// at 0), the candidate unchanged. Fails when the candidate is itself never-promote (rule 3).
pub fn bias(
    captured: &[(Addr, u64)],
    candidate: &Addr,
    target: &Target,
) -> Result<Vec<(Addr, u64)>, ActionError> {
    let mut candidate_seen = false;
    let mut wanted = Vec::with_capacity(captured.len());
    for (pod, priority) in captured {
        if target.same_pod(pod, candidate) {
            if *priority == 0 {
                return Err(ActionError::refused(format!(
                    "candidate {candidate} has replica-priority 0 (never promote)"
                )));
            }
            candidate_seen = true;
            wanted.push((pod.clone(), *priority));
        } else {
            wanted.push((pod.clone(), 0));
        }
    }
    if !candidate_seen {
        return Err(ActionError::refused(format!(
            "candidate {candidate} is not one of the replicas"
        )));
    }
    Ok(wanted)
}

/// Whether one sentinel's `SENTINEL REPLICAS` shows the wanted priorities: every wanted pod it
/// lists at its wanted value, and the candidate (the one wanted above 0) listed at all.
pub fn bias_seen(replicas: &[ReplicaRecord], wanted: &[(Addr, u64)], target: &Target) -> bool {
    wanted.iter().all(|(pod, priority)| {
        let listed = replicas
            .iter()
            .find(|replica| record_addr(replica).is_some_and(|addr| target.same_pod(&addr, pod)));
        match listed {
            Some(replica) => u64::try_from(replica.slave_priority).ok() == Some(*priority),
            None => *priority == 0,
        }
    })
}

/// The polled sentinels whose report names `master` (as the same pod, whatever address form
/// it is written in), with their poll and report: the sentinels whose word about that master's
/// failover and replicas counts.
fn reporting<'a>(
    survey: &'a Survey,
    master: &'a Addr,
    target: &'a Target,
) -> impl Iterator<Item = (&'a SentinelId, &'a Polled, &'a SentinelReport)> {
    survey
        .polled()
        .filter_map(move |(id, polled)| match &polled.view {
            SentinelView::Reports(report) if target.same_pod(&report.master, master) => {
                Some((id, polled, report))
            }
            _ => None,
        })
}

/// The sentinel to send the one failover to: among those that name `master` and are not in
/// `skip` (found in TILT), the one with the highest config epoch (ties: the first configured).
/// A cut-off sentinel with an older epoch, or one naming another master, is never chosen.
pub fn choose_sentinel(
    survey: &Survey,
    master: &Addr,
    target: &Target,
    skip: &[Addr],
) -> Option<Addr> {
    let mut best: Option<(&Addr, u64)> = None;
    for (id, _, report) in reporting(survey, master, target) {
        if skip.contains(id.addr()) {
            continue;
        }
        if best.is_none_or(|(_, epoch)| report.config_epoch > epoch) {
            best = Some((id.addr(), report.config_epoch));
        }
    }
    best.map(|(addr, _)| addr.clone())
}

/// The master a running failover replaces: the `ip`/`port` of the record of a sentinel that
/// runs one (the leader keeps the old address there until `+failover-end`, DESIGN 2.8).
pub fn failing_over_from(survey: &Survey) -> Option<Addr> {
    survey.polled().find_map(|(_, polled)| match &polled.view {
        SentinelView::Reports(report) if report.failover_in_progress() => {
            let record = polled.record.as_ref()?;
            Addr::from_parts(&record.instance.ip, &record.instance.port.to_string()).ok()
        }
        _ => None,
    })
}

/// Whether the failover sent to `leader` ended without moving the master: the leader answers,
/// names `old` and runs no failover (it sets the flag before it answers `+OK`, so this is an
/// abort, never a failover not yet started), and no other reachable sentinel runs one.
pub fn failover_abandoned(survey: &Survey, leader: &Addr, old: &Addr, target: &Target) -> bool {
    let leader_gave_up = reporting(survey, old, target)
        .any(|(id, _, report)| id.addr() == leader && !report.failover_in_progress());
    leader_gave_up && !any_failover_running(survey)
}

/// Whether any reachable sentinel runs a failover of the name.
pub fn any_failover_running(survey: &Survey) -> bool {
    survey.polled().any(|(_, polled)| match &polled.view {
        SentinelView::Reports(report) => report.failover_in_progress(),
        _ => false,
    })
}

/// Where a failover stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not finished: no other master agreed yet, or some sentinel still runs the failover.
    Waiting,
    /// Another master is agreed and no reachable sentinel runs a failover.
    Moved(AgreedMaster),
    /// A master other than the candidate is agreed: the targeted operation failed.
    Wrong(Addr),
    /// The new master went down after its promotion (sentinels not running our failover flag
    /// it `o_down`, or run a failover away from it): the operation failed, and the pause and
    /// the bias must go at once so that the sentinels can promote another.
    Lost(Addr),
}

/// Reads a survey taken after the failover was sent (rule 7); `epoch` is the config epoch the
/// old master was agreed at before it. The old master agreed at a higher epoch was put back by
/// a later failover (the promoted pod died and the sentinels chose the old master): the move
/// failed, [`Progress::Wrong`].
pub fn progress(
    survey: &Survey,
    old: &Addr,
    epoch: u64,
    candidate: Option<&Addr>,
    target: &Target,
) -> Progress {
    let Verdict::Agreed(agreement) = survey.verdict(&target.aliases) else {
        return Progress::Waiting;
    };
    if target.same_pod(&agreement.master, old) {
        if agreement.config_epoch > epoch {
            return Progress::Wrong(agreement.master);
        }
        return Progress::Waiting;
    }
    if let Some(candidate) = candidate
        && !target.same_pod(&agreement.master, candidate)
    {
        return Progress::Wrong(agreement.master);
    }
    if master_lost(survey, &agreement.master, target) {
        return Progress::Lost(agreement.master);
    }
    if agreement.failover_in_progress || any_failover_running(survey) {
        return Progress::Waiting;
    }
    Progress::Moved(AgreedMaster::from(&agreement))
}

/// Whether the newly agreed `master` is down as the sentinels see it: one that names it and
/// runs no failover flags it `o_down` (a failover's leader keeps the old master's flags in its
/// record, DESIGN 2.8, so it is not asked), or a failover runs away from it.
fn master_lost(survey: &Survey, master: &Addr, target: &Target) -> bool {
    let down = survey.polled().any(|(_, polled)| match &polled.view {
        SentinelView::Reports(report) => {
            target.same_pod(&report.master, master)
                && report.flags.o_down
                && !report.failover_in_progress()
        }
        _ => false,
    });
    down || failing_over_from(survey).is_some_and(|from| target.same_pod(&from, master))
}

/// The sentinels that would turn a promotion straight back, with the replica: their record of
/// a replica that may be promoted (the candidate, or any when untargeted) says it reports
/// `role:master`, so their INFO of it predates its last change of role. A sentinel that sees
/// a replica claim master for over four hello periods, counted from the last change of role
/// it observed, with no failover it knows of, reconfigures it (`+convert-to-slave`): one that
/// never saw the replica as a replica does so the moment it is promoted, and the failover
/// aborts with the old master already demoted. Their next INFO of it clears this.
pub fn stale_role_views(
    survey: &Survey,
    master: &Addr,
    candidate: Option<&Addr>,
    target: &Target,
) -> Vec<(Addr, Addr)> {
    let mut stale = Vec::new();
    for (id, polled, _) in reporting(survey, master, target) {
        for replica in &polled.replicas {
            let Some(addr) = record_addr(replica) else {
                continue;
            };
            let may_be_promoted = candidate.is_none_or(|c| target.same_pod(c, &addr));
            if may_be_promoted && replica.info.role_reported == "master" {
                stale.push((id.addr().clone(), addr));
            }
        }
    }
    stale
}

/// The replicas a paused master must see caught up before the failover: the candidate when
/// targeted; otherwise every replica the chosen sentinel could pick (listed, its link to the
/// master up, not down, not disconnected, priority above 0).
pub fn must_catch_up(
    replicas: &[ReplicaRecord],
    candidate: Option<&Addr>,
    target: &Target,
) -> Vec<Addr> {
    if let Some(candidate) = candidate {
        return vec![candidate.clone()];
    }
    replicas
        .iter()
        .filter(|replica| {
            replica.slave_priority > 0
                && replica.master_link_status == "ok"
                && !replica.instance.flags.contains(Flag::SDown)
                && !replica.instance.flags.contains(Flag::ODown)
                && !replica.instance.flags.contains(Flag::Disconnected)
        })
        .filter_map(record_addr)
        .map(|addr| {
            target
                .data_pods
                .iter()
                .find(|pod| target.same_pod(pod, &addr))
                .cloned()
                .unwrap_or(addr)
        })
        .collect()
}

/// Whether every pod in `replicas` has acknowledged the master's whole offset, as the master's
/// `INFO replication` says. An empty list is never caught up: there is nobody to promote.
pub fn caught_up(info: &InfoReplication, replicas: &[Addr], target: &Target) -> bool {
    let Some(master_offset) = info.master_repl_offset else {
        return false;
    };
    !replicas.is_empty()
        && replicas.iter().all(|pod| {
            info.slaves.iter().any(|slave| {
                Addr::from_parts(&slave.ip, &slave.port.to_string())
                    .is_ok_and(|addr| target.same_pod(&addr, pod))
                    && slave.state == "online"
                    && slave.offset == master_offset
            })
        })
}

/// The state file's text: one `HOST:PORT PRIORITY` line per replica.
pub fn encode_state(priorities: &[(Addr, u64)]) -> String {
    priorities
        .iter()
        .map(|(pod, priority)| format!("{pod} {priority}\n"))
        .collect()
}

/// Reads the state file's text back; `None` if any line is unreadable.
pub fn decode_state(text: &str) -> Option<Vec<(Addr, u64)>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (pod, priority) = line.trim().rsplit_once(' ')?;
            Some((pod.parse().ok()?, priority.parse().ok()?))
        })
        .collect()
}

fn record_addr(replica: &ReplicaRecord) -> Option<Addr> {
    Addr::from_parts(&replica.instance.ip, &replica.instance.port.to_string()).ok()
}

// ---------------------------------------------------------------------------------------------
// The executor.

/// What to do with an old master that cannot be paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OldMaster {
    /// It must be paused (switchover: it is alive and taking writes).
    MustPause,
    /// Pause it if it answers; fail over anyway if not (member-leave of a dead master).
    PauseIfReachable,
}

/// Runs `step` under `cap` of the budget, naming `what` in its error.
pub(super) async fn step<T>(
    budget: &Budget,
    cap: Duration,
    what: impl Into<String>,
    step: impl Future<Output = Result<T, ConnError>>,
) -> Result<T, ActionError> {
    match tokio::time::timeout(budget.share(cap), step).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(ActionError::conn(what, error)),
        Err(_) => Err(ActionError::refused(format!("timed out: {}", what.into()))),
    }
}

async fn data(target: &Target, budget: &Budget, pod: &Addr) -> Result<Connection, ActionError> {
    connection(budget, pod, &target.data_access, "data pod").await
}

async fn connection(
    budget: &Budget,
    addr: &Addr,
    access: &Access,
    kind: &str,
) -> Result<Connection, ActionError> {
    step(
        budget,
        STEP,
        format!("connecting to {kind} {addr}"),
        conn::connect(addr, access),
    )
    .await
}

/// The agreed master once no failover runs, and what a failover seen running meanwhile
/// replaced.
pub(super) struct Settled {
    pub master: AgreedMaster,
    /// The master a failover seen running while waiting replaced, when the settled master is
    /// another pod (that failover moved it).
    pub replaced: Option<Addr>,
}

/// The agreed master once no failover runs (rule 1).
pub(super) async fn settled_master(
    target: &Target,
    budget: &Budget,
) -> Result<Settled, ActionError> {
    let mut replacing: Option<Addr> = None;
    loop {
        let survey = knowledge::survey(target, budget).await;
        if replacing.is_none() {
            replacing = failing_over_from(&survey);
        }
        let verdict = survey.verdict(&target.aliases);
        let why = match verdict {
            Verdict::Agreed(agreement)
                if !agreement.failover_in_progress && !any_failover_running(&survey) =>
            {
                let master = AgreedMaster::from(&agreement);
                let replaced = replacing.filter(|from| !target.same_pod(from, &master.master));
                return Ok(Settled { master, replaced });
            }
            Verdict::Agreed(agreement) => {
                format!("a failover of {} is in progress", agreement.master)
            }
            // Which sentinel did not answer and why (a refused password, TLS, a timeout).
            Verdict::NoQuorum(no) => survey.explain(format!("no agreed master: {}", no.reason)),
        };
        if budget.remaining() <= POLL * 5 {
            return Err(ActionError::refused(why));
        }
        budget.pause(POLL * 3).await;
    }
}

/// Rule 3: the candidate is a connected replica of the agreed master.
async fn check_candidate(
    target: &Target,
    budget: &Budget,
    candidate: &Addr,
    master: &Addr,
) -> Result<(), ActionError> {
    let mut connection = data(target, budget, candidate).await?;
    let role = step(
        budget,
        STEP,
        format!("ROLE of candidate {candidate}"),
        dataplane::role(&mut connection),
    )
    .await?;
    match role {
        Role::Slave {
            master_ip,
            master_port,
            state: LinkState::Connected,
            ..
        } if Addr::from_parts(&master_ip, &master_port.to_string())
            .is_ok_and(|addr| target.same_pod(&addr, master)) =>
        {
            Ok(())
        }
        other => Err(ActionError::refused(format!(
            "candidate {candidate} is not a connected replica of {master}: {other:?}"
        ))),
    }
}

/// Rule 4: every replica's `replica-priority` (every data pod but the master, and the
/// candidate even if the pod list misses it).
async fn capture(
    target: &Target,
    budget: &Budget,
    master: &Addr,
    candidate: &Addr,
) -> Result<Vec<(Addr, u64)>, ActionError> {
    let mut pods: Vec<Addr> = target
        .data_pods
        .iter()
        .filter(|pod| !target.same_pod(pod, master))
        .cloned()
        .collect();
    if !pods.iter().any(|pod| target.same_pod(pod, candidate)) {
        pods.push(candidate.clone());
    }
    let mut captured = Vec::with_capacity(pods.len());
    for pod in pods {
        let mut connection = data(target, budget, &pod).await?;
        let priority = step(
            budget,
            STEP,
            format!("reading replica-priority of {pod}"),
            admin::replica_priority(&mut connection),
        )
        .await?;
        captured.push((pod, priority));
    }
    Ok(captured)
}

/// Sets every wanted priority that differs from the captured one.
async fn apply(
    target: &Target,
    budget: &Budget,
    wanted: &[(Addr, u64)],
    captured: &[(Addr, u64)],
) -> Result<(), ActionError> {
    for (pod, priority) in wanted {
        let unchanged = captured
            .iter()
            .any(|(other, before)| other == pod && before == priority);
        if unchanged {
            continue;
        }
        let mut connection = data(target, budget, pod).await?;
        step(
            budget,
            STEP,
            format!("setting replica-priority of {pod}"),
            admin::set_replica_priority(&mut connection, *priority),
        )
        .await?;
    }
    Ok(())
}

/// Restores the captured priorities (every pod, whatever it holds now), with the whole budget
/// including the reserve; removes the state file once all are back.
async fn restore(
    target: &Target,
    budget: &Budget,
    captured: &[(Addr, u64)],
    state_file: Option<&Path>,
) -> Result<(), ActionError> {
    let mut failed = None;
    for (pod, priority) in captured {
        let restored = async {
            let mut connection = data(target, budget, pod).await?;
            step(
                budget,
                STEP,
                format!("restoring replica-priority of {pod}"),
                admin::set_replica_priority(&mut connection, *priority),
            )
            .await
        };
        if let Err(error) = restored.await {
            tracing::warn!(%pod, %error, "replica-priority not restored");
            failed.get_or_insert(error);
        }
    }
    match failed {
        Some(error) => Err(error),
        None => {
            if let Some(path) = state_file {
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(ActionError::Write {
                            path: path.to_owned(),
                            source,
                        });
                    }
                }
            }
            Ok(())
        }
    }
}

/// Rule 5: waits until every reachable sentinel that names the master lists the wanted
/// priorities.
async fn wait_bias_seen(
    target: &Target,
    budget: &Budget,
    master: &Addr,
    wanted: &[(Addr, u64)],
) -> Result<(), ActionError> {
    loop {
        let survey = knowledge::survey(target, budget).await;
        // The sentinels that name the master are the ones that could run the failover. (The
        // iterator ends here, before any await, so the future stays `Send` for a spawned task.)
        let monitoring: Vec<&[ReplicaRecord]> = survey
            .polled()
            .filter_map(|(_, polled)| match &polled.view {
                SentinelView::Reports(report) if target.same_pod(&report.master, master) => {
                    Some(polled.replicas.as_slice())
                }
                _ => None,
            })
            .collect();
        let seen = !monitoring.is_empty()
            && monitoring
                .iter()
                .all(|replicas| bias_seen(replicas, wanted, target));
        if seen {
            return Ok(());
        }
        if budget.remaining() <= POLL * 5 {
            return Err(ActionError::refused(
                "the sentinels did not see the biased replica priorities in time",
            ));
        }
        budget.pause(POLL * 2).await;
    }
}

/// Rules 6 and 7: the one failover, closed against lost writes, awaited. Shared with
/// member-leave.
pub(super) async fn planned_failover(
    target: &Target,
    budget: &Budget,
    old: &Addr,
    candidate: Option<&Addr>,
    old_master: OldMaster,
) -> Result<AgreedMaster, ActionError> {
    let mut held = Held::default();
    let result = budget
        .run(
            "failing over",
            fail_over(target, budget, old, candidate, old_master, &mut held),
        )
        .await
        .and_then(|inner| inner);
    if let Some(mut connection) = held.paused {
        if result.is_err() && held.demoted && !held.sent {
            // The failover this demotion prepared never started: the old master takes its
            // role back before its writes resume.
            let undone = tokio::time::timeout(STEP, admin::replicaof_no_one(&mut connection)).await;
            if !matches!(undone, Ok(Ok(()))) {
                tracing::warn!(%old, "REPLICAOF NO ONE failed on the demoted old master");
            }
        }
        // Lifted on every path; the pause also carries its own end (the budget).
        let lifted = tokio::time::timeout(STEP, admin::unpause(&mut connection)).await;
        if !matches!(lifted, Ok(Ok(()))) {
            tracing::warn!(%old, "CLIENT UNPAUSE failed; the pause ends by its own timeout");
        }
    }
    if result.is_ok() {
        disconnect_old_clients(target, budget, old).await;
    }
    result
}

/// Rule 6's sentinel: [`choose_sentinel`], asked in turn whether it is in TILT, the next one
/// taken while it is. `Ok(None)`: every sentinel naming `old` is (the caller waits within its
/// budget). None names `old`: refused. A refused `INFO` (no `+info`) fails the operation
/// before anything changed; an unreachable one is skipped like a tilted one.
async fn untilted_sentinel(
    target: &Target,
    budget: &Budget,
    survey: &Survey,
    old: &Addr,
) -> Result<Option<Addr>, ActionError> {
    let mut skip = Vec::new();
    while let Some(sentinel) = choose_sentinel(survey, old, target, &skip) {
        let asked = async {
            let mut connection = conn::connect(&sentinel, &target.sentinel_access).await?;
            admin::tilt(&mut connection).await
        };
        match tokio::time::timeout(budget.share(STEP), asked).await {
            Ok(Ok(None)) => return Ok(Some(sentinel)),
            Ok(Ok(Some(since))) => {
                tracing::info!(%sentinel, since_s = since, "sentinel in TILT: not sent the failover");
            }
            Ok(Err(error @ ConnError::Server { .. })) => {
                return Err(ActionError::conn(
                    format!("INFO sentinel on {sentinel}"),
                    error,
                ));
            }
            Ok(Err(error)) => tracing::warn!(%sentinel, %error, "cannot ask for TILT"),
            Err(_) => tracing::warn!(%sentinel, "no INFO sentinel reply in time"),
        }
        skip.push(sentinel);
    }
    if skip.is_empty() {
        return Err(ActionError::refused(format!(
            "no reachable sentinel names {old} as master"
        )));
    }
    Ok(None)
}

/// Closes the clients still connected to the demoted old master, as a sentinel does when it
/// reconfigures one: they reconnect and ask where the master went. Best effort: a client left
/// connected only reads `READONLY` until it does so itself.
async fn disconnect_old_clients(target: &Target, budget: &Budget, old: &Addr) {
    let closed = async {
        let mut connection = conn::connect(old, &target.data_access).await?;
        admin::disconnect_clients(&mut connection).await
    };
    match tokio::time::timeout(budget.share(STEP), closed).await {
        Ok(Ok(closed)) => tracing::debug!(%old, closed, "clients of the old master closed"),
        Ok(Err(error)) => tracing::warn!(%old, %error, "cannot close the old master's clients"),
        Err(_) => tracing::warn!(%old, "the old master did not answer CLIENT KILL in time"),
    }
}

/// What a failover holds while it runs, for the way out.
#[derive(Default)]
struct Held {
    /// The old master's connection, once its writes are paused.
    paused: Option<Connection>,
    /// The old master was demoted ahead of the promotion.
    demoted: bool,
    /// `SENTINEL FAILOVER` was sent (whatever came back): never undo the demotion then, the
    /// sentinel may be promoting.
    sent: bool,
}

async fn fail_over(
    target: &Target,
    budget: &Budget,
    old: &Addr,
    candidate: Option<&Addr>,
    old_master: OldMaster,
    held: &mut Held,
) -> Result<AgreedMaster, ActionError> {
    // Right after a failover the sentinels list the replicas as eligible again only after
    // their next INFO of them; a failover asked for before that is refused (`NOGOODSLAVE`), and
    // this operation sends only one. So an untargeted one waits, within the budget, until the
    // chosen sentinel lists a replica it could promote.
    let (epoch, chosen, chosen_replicas) = loop {
        let survey = knowledge::survey(target, budget).await;
        let epoch = match survey.verdict(&target.aliases) {
            Verdict::Agreed(agreement)
                if target.same_pod(&agreement.master, old)
                    && !agreement.failover_in_progress
                    && !any_failover_running(&survey) =>
            {
                agreement.config_epoch
            }
            _ => {
                return Err(ActionError::refused(format!(
                    "the sentinels no longer agree on {old} with no failover in progress"
                )));
            }
        };
        let Some(chosen) = untilted_sentinel(target, budget, &survey, old).await? else {
            if budget.remaining() <= STEP * 2 {
                return Err(ActionError::refused(format!(
                    "every reachable sentinel naming {old} is in TILT (a failover sent there \
                     would not run until TILT ends)"
                )));
            }
            budget.pause(POLL * 5).await;
            continue;
        };
        let chosen_replicas = survey
            .polled()
            .find(|(id, _)| id.addr() == &chosen)
            .map(|(_, polled)| polled.replicas.clone())
            .unwrap_or_default();
        let stale = stale_role_views(&survey, old, candidate, target);
        let promotable =
            candidate.is_some() || !must_catch_up(&chosen_replicas, None, target).is_empty();
        if promotable && stale.is_empty() {
            break (epoch, chosen, chosen_replicas);
        }
        if budget.remaining() <= STEP * 2 {
            return Err(ActionError::refused(match stale.first() {
                Some((sentinel, replica)) if promotable => format!(
                    "sentinel {sentinel} still has {replica} reporting role master (its INFO \
                     of it is stale): it would turn the promoted replica back"
                ),
                _ => format!("sentinel {chosen} lists no replica of {old} it could promote"),
            }));
        }
        budget.pause(POLL * 3).await;
    };
    let mut sentinel = connection(budget, &chosen, &target.sentinel_access, "sentinel").await?;
    // `COORDINATED` needs the old master's part (it pauses and hands over itself): a dead old
    // master (member-leave) gets a plain failover.
    let old_answers = old_master == OldMaster::MustPause || data(target, budget, old).await.is_ok();
    let coordinated = if old_answers {
        tokio::time::timeout(budget.share(STEP), admin::probe_coordinated(&mut sentinel)).await
    } else {
        Ok(Ok(false))
    };
    let mode = match coordinated {
        Ok(Ok(true)) => FailoverMode::Coordinated,
        Ok(Ok(false)) => FailoverMode::Plain,
        // Refused for want of permission: so would the failover be. Nothing is changed yet.
        Ok(Err(error @ ConnError::Server { .. })) => {
            return Err(ActionError::conn(
                format!("SENTINEL FAILOVER on {chosen}"),
                error,
            ));
        }
        // The probe's connection is in an unknown state: open another for the failover.
        _ => {
            sentinel = connection(budget, &chosen, &target.sentinel_access, "sentinel").await?;
            FailoverMode::Plain
        }
    };
    let mut follows = None;
    if mode == FailoverMode::Plain {
        follows = close_writes(
            target,
            budget,
            old,
            candidate,
            &chosen_replicas,
            old_master,
            held,
        )
        .await?;
    }
    tracing::info!(sentinel = %chosen, ?mode, "sending SENTINEL FAILOVER");
    held.sent = true;
    let reply = step(
        budget,
        STEP,
        format!("SENTINEL FAILOVER on {chosen}"),
        admin::failover(&mut sentinel, &target.master_name, mode),
    )
    .await?;
    match reply {
        FailoverReply::Started => {}
        // Another operation's failover runs and may be promoting the replica the old master
        // now follows: the demotion stays.
        FailoverReply::InProgress(error) => {
            return Err(ActionError::refused(format!(
                "sentinel {chosen} refused the failover: {error}"
            )));
        }
        FailoverReply::NoGoodReplica(error) | FailoverReply::Refused(error) => {
            // A refusal started nothing: the demotion may be taken back.
            held.sent = false;
            return Err(ActionError::refused(format!(
                "sentinel {chosen} refused the failover: {error}"
            )));
        }
    }
    let new = loop {
        let survey = knowledge::survey(target, budget).await;
        match progress(&survey, old, epoch, candidate, target) {
            Progress::Moved(new) => break new,
            Progress::Wrong(other) => {
                return Err(ActionError::refused(format!(
                    "the sentinels agreed on {other}: not what this failover was to promote"
                )));
            }
            Progress::Lost(lost) => {
                return Err(ActionError::refused(format!(
                    "{lost} went down after its promotion; the sentinels fail over again"
                )));
            }
            Progress::Waiting if failover_abandoned(&survey, &chosen, old, target) => {
                // Nothing is promoting any more: the demotion may be taken back.
                held.sent = false;
                return Err(ActionError::refused(format!(
                    "the failover on {chosen} ended without moving the master from {old}"
                )));
            }
            Progress::Waiting => {}
        }
        if budget.remaining() <= POLL {
            return Err(ActionError::OutOfTime(
                "waiting for the failover to complete",
            ));
        }
        budget.pause(POLL).await;
    };
    if let Some(connection) = held.paused.as_mut()
        && follows.is_none_or(|followed: Addr| !target.same_pod(&followed, &new.master))
    {
        demote(budget, connection, old, &new.master).await?;
    }
    Ok(new)
}

/// The pause fallback: pauses the old master's writes, waits until the replicas sentinel may
/// pick have its whole offset, then demotes the old master to a replica of the first of them
/// (the candidate when targeted), so that no moment has two masters: the promotion that
/// follows finds the old master already a replica. Returns whom the old master now follows
/// (`None`: it could not be paused and was left alone).
async fn close_writes(
    target: &Target,
    budget: &Budget,
    old: &Addr,
    candidate: Option<&Addr>,
    chosen_replicas: &[ReplicaRecord],
    old_master: OldMaster,
    held: &mut Held,
) -> Result<Option<Addr>, ActionError> {
    let mut connection = match data(target, budget, old).await {
        Ok(connection) => connection,
        Err(error) if old_master == OldMaster::PauseIfReachable => {
            tracing::warn!(%old, %error, "old master unreachable: failing over without a pause");
            return Ok(None);
        }
        Err(error) => return Err(error),
    };
    let wait_for = must_catch_up(chosen_replicas, candidate, target);
    let hold = budget.remaining().max(Duration::from_millis(1));
    step(
        budget,
        STEP,
        format!("pausing writes on {old}"),
        admin::pause_writes(&mut connection, hold),
    )
    .await?;
    let paused = held.paused.insert(connection);
    let bound = Budget::new(budget.share(CATCH_UP));
    loop {
        let info = step(
            &bound,
            STEP,
            format!("INFO replication of {old}"),
            dataplane::replication(paused),
        )
        .await;
        if let Ok(info) = &info
            && caught_up(info, &wait_for, target)
        {
            let follow = wait_for[0].clone();
            held.demoted = true;
            step(
                budget,
                STEP,
                format!("REPLICAOF on {old}"),
                admin::replicaof(paused, &follow),
            )
            .await?;
            return Ok(Some(follow));
        }
        if bound.remaining() <= POLL / 2 {
            return Err(ActionError::refused(format!(
                "replicas {} did not catch up with {old} in time",
                wait_for
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        bound.pause(POLL / 4).await;
    }
}

/// Points the paused old master at the agreed new one and waits until it answers as a replica.
async fn demote(
    budget: &Budget,
    connection: &mut Connection,
    old: &Addr,
    new: &Addr,
) -> Result<(), ActionError> {
    step(
        budget,
        STEP,
        format!("REPLICAOF on {old}"),
        admin::replicaof(connection, new),
    )
    .await?;
    loop {
        let role = step(
            budget,
            STEP,
            format!("ROLE of {old}"),
            dataplane::role(connection),
        )
        .await?;
        if matches!(role, Role::Slave { .. }) {
            return Ok(());
        }
        if budget.remaining() <= POLL {
            return Err(ActionError::OutOfTime("demoting the old master"));
        }
        budget.pause(POLL / 4).await;
    }
}

/// Rule 8: the new master answers `ROLE` as master and no other reachable pod does.
pub(super) async fn confirm_single_master(
    target: &Target,
    budget: &Budget,
    master: &Addr,
) -> Result<(), ActionError> {
    let mut pods = target.data_pods.clone();
    if !pods.iter().any(|pod| target.same_pod(pod, master)) {
        pods.push(master.clone());
    }
    loop {
        let mut asking = tokio::task::JoinSet::new();
        for pod in pods.iter().cloned() {
            let access = target.data_access.clone();
            let share = budget.share(STEP);
            asking.spawn(async move {
                let asked = async {
                    let mut connection = conn::connect(&pod, &access).await?;
                    dataplane::role(&mut connection).await
                };
                let role = tokio::time::timeout(share, asked)
                    .await
                    .ok()
                    .and_then(Result::ok);
                (pod, role)
            });
        }
        let answers = asking.join_all().await;
        let new_is_master = answers.iter().any(|(pod, role)| {
            target.same_pod(pod, master) && matches!(role, Some(Role::Master { .. }))
        });
        let others: Vec<&Addr> = answers
            .iter()
            .filter(|(pod, role)| {
                !target.same_pod(pod, master) && matches!(role, Some(Role::Master { .. }))
            })
            .map(|(pod, _)| pod)
            .collect();
        if new_is_master && others.is_empty() {
            return Ok(());
        }
        if budget.remaining() <= POLL * 3 {
            return Err(ActionError::refused(if new_is_master {
                format!(
                    "{} still answer ROLE as master besides {master}",
                    others
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                format!("{master} does not answer ROLE as master")
            }));
        }
        budget.pause(POLL * 2).await;
    }
}

fn read_state(path: &Path) -> Result<Option<Vec<(Addr, u64)>>, ActionError> {
    match std::fs::read_to_string(path) {
        Ok(text) => decode_state(&text).map(Some).ok_or_else(|| {
            ActionError::refused(format!(
                "state file {} is unreadable; restore replica priorities by hand",
                path.display()
            ))
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(ActionError::refused(format!(
            "cannot read state file {}: {error}",
            path.display()
        ))),
    }
}

/// Writes the captured priorities before anything changes: a temporary file renamed into
/// place, so a kill never leaves half a file.
fn write_state(path: &Path, priorities: &[(Addr, u64)]) -> Result<(), ActionError> {
    let temporary = path.with_extension("tmp");
    let written = std::fs::write(&temporary, encode_state(priorities))
        .and_then(|()| std::fs::rename(&temporary, path));
    written.map_err(|source| ActionError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use proptest::prelude::*;

    use crate::sentinel::query::{Answer, Polled};
    use crate::verdict::{MasterFlags, MonotonicTime, SentinelId, SentinelReport};

    use super::*;

    /// How one sentinel answers in a test survey: unreachable, or naming pod `master` at
    /// `epoch`, running a failover or not.
    #[derive(Clone, Copy)]
    pub(in crate::lifecycle) enum Says {
        Nothing,
        Names {
            master: usize,
            epoch: u64,
            failing_over: bool,
        },
    }

    /// A survey of one sentinel per entry (sentinel `j` at `127.0.0.(100+j):26379`).
    pub(in crate::lifecycle) fn survey_of(says: &[Says]) -> Survey {
        let answers = says
            .iter()
            .enumerate()
            .map(|(j, says)| {
                let id = SentinelId::new(sentinel(j));
                let answer = match *says {
                    Says::Nothing => Answer::Failed(ConnError::Closed),
                    Says::Names {
                        master,
                        epoch,
                        failing_over,
                    } => Answer::Polled(Box::new(Polled {
                        view: SentinelView::Reports(SentinelReport {
                            master: addr(master),
                            master_run_id: None,
                            config_epoch: epoch,
                            flags: MasterFlags {
                                failover_in_progress: failing_over,
                                ..MasterFlags::default()
                            },
                            failover_state: Default::default(),
                            num_replicas: 2,
                            num_other_sentinels: 2,
                            observed_at: MonotonicTime::default(),
                        }),
                        record: None,
                        replicas: Vec::new(),
                    })),
                };
                (id, answer)
            })
            .collect();
        Survey {
            name: "mymaster".into(),
            answers,
            finished: MonotonicTime::default(),
        }
    }

    pub(in crate::lifecycle) fn sentinel(j: usize) -> Addr {
        format!("127.0.0.{}:26379", 100 + j)
            .parse()
            .expect("address")
    }

    pub(in crate::lifecycle) fn addr(i: usize) -> Addr {
        format!("127.0.0.{}:6379", 10 + i).parse().expect("address")
    }

    pub(in crate::lifecycle) fn target(n: usize) -> Target {
        Target::new(
            "mymaster",
            (0..3).map(sentinel).collect(),
            (0..n).map(addr).collect(),
        )
    }

    fn names(master: usize, epoch: u64) -> Says {
        Says::Names {
            master,
            epoch,
            failing_over: false,
        }
    }

    #[test]
    fn the_failover_goes_to_the_highest_epoch_sentinel_naming_the_master() {
        let target = target(3);
        // Sentinel 2 is cut off at an older epoch still naming pod 1; sentinel 1 is newest.
        let survey = survey_of(&[names(0, 3), names(0, 4), names(1, 2)]);
        assert_eq!(
            choose_sentinel(&survey, &addr(0), &target, &[]),
            Some(sentinel(1))
        );
        let survey = survey_of(&[names(0, 4), names(0, 4), Says::Nothing]);
        assert_eq!(
            choose_sentinel(&survey, &addr(0), &target, &[]),
            Some(sentinel(0)),
            "ties go to the first configured"
        );
        assert_eq!(choose_sentinel(&survey, &addr(2), &target, &[]), None);
    }

    #[test]
    fn a_sentinel_in_tilt_is_passed_over_for_the_next_newest() {
        let target = target(3);
        let survey = survey_of(&[names(0, 3), names(0, 4), names(0, 4)]);
        assert_eq!(
            choose_sentinel(&survey, &addr(0), &target, &[sentinel(1)]),
            Some(sentinel(2))
        );
        assert_eq!(
            choose_sentinel(&survey, &addr(0), &target, &[sentinel(1), sentinel(2)]),
            Some(sentinel(0)),
            "an older epoch naming the master is still better than none"
        );
        assert_eq!(
            choose_sentinel(
                &survey,
                &addr(0),
                &target,
                &[sentinel(0), sentinel(1), sentinel(2)]
            ),
            None
        );
    }

    #[test]
    fn a_failover_is_done_only_when_another_master_is_agreed_and_nobody_fails_over() {
        let target = target(3);
        let before = survey_of(&[names(0, 1), names(0, 1), names(0, 1)]);
        assert_eq!(
            progress(&before, &addr(0), 1, None, &target),
            Progress::Waiting
        );
        let running = survey_of(&[
            Says::Names {
                master: 1,
                epoch: 2,
                failing_over: true,
            },
            names(1, 2),
            names(1, 2),
        ]);
        assert_eq!(
            progress(&running, &addr(0), 1, None, &target),
            Progress::Waiting
        );
        let done = survey_of(&[names(1, 2), names(1, 2), Says::Nothing]);
        assert!(matches!(
            progress(&done, &addr(0), 1, None, &target),
            Progress::Moved(master) if master.master == addr(1)
        ));
        assert!(matches!(
            progress(&done, &addr(0), 1, Some(&addr(1)), &target),
            Progress::Moved(_)
        ));
        assert_eq!(
            progress(&running, &addr(0), 1, Some(&addr(2)), &target),
            Progress::Wrong(addr(1)),
            "another master agreed fails at once, even mid-failover"
        );
        let put_back = survey_of(&[names(0, 3), names(0, 3), Says::Nothing]);
        assert_eq!(
            progress(&put_back, &addr(0), 1, None, &target),
            Progress::Wrong(addr(0)),
            "the old master put back by a later failover fails at once"
        );
    }

    #[test]
    fn a_failover_is_abandoned_only_when_the_reachable_leader_gave_it_up() {
        let target = target(3);
        let running = Says::Names {
            master: 0,
            epoch: 1,
            failing_over: true,
        };
        let gave_up = survey_of(&[names(0, 1), names(0, 1), names(0, 1)]);
        assert!(failover_abandoned(
            &gave_up,
            &sentinel(0),
            &addr(0),
            &target
        ));
        let still = survey_of(&[running, names(0, 1), names(0, 1)]);
        assert!(!failover_abandoned(&still, &sentinel(0), &addr(0), &target));
        let hung = survey_of(&[Says::Nothing, names(0, 1), names(0, 1)]);
        assert!(
            !failover_abandoned(&hung, &sentinel(0), &addr(0), &target),
            "a hung leader may still be promoting"
        );
        let moved = survey_of(&[names(1, 2), names(0, 1), names(0, 1)]);
        assert!(!failover_abandoned(&moved, &sentinel(0), &addr(0), &target));
    }

    fn record(i: usize, priority: i64) -> ReplicaRecord {
        let mut replica = ReplicaRecord::default();
        replica.instance.ip = format!("127.0.0.{}", 10 + i);
        replica.instance.port = 6379;
        replica.slave_priority = priority;
        replica.master_link_status = "ok".into();
        replica
    }

    #[test]
    fn a_sentinel_still_seeing_a_replica_as_master_holds_the_failover_back() {
        let target = target(3);
        let mut survey = survey_of(&[names(0, 4), names(0, 4), names(0, 4)]);
        for (j, (_, answer)) in survey.answers.iter_mut().enumerate() {
            let Answer::Polled(polled) = answer else {
                unreachable!("every sentinel answers")
            };
            polled.replicas = vec![record(1, 100), record(2, 100)];
            for replica in &mut polled.replicas {
                replica.info.role_reported = "slave".into();
            }
            if j == 1 {
                polled.replicas[0].info.role_reported = "master".into();
            }
        }
        assert_eq!(
            stale_role_views(&survey, &addr(0), None, &target),
            vec![(sentinel(1), addr(1))]
        );
        assert_eq!(
            stale_role_views(&survey, &addr(0), Some(&addr(2)), &target),
            Vec::<(Addr, Addr)>::new(),
            "targeted, only the candidate's records matter"
        );
    }

    #[test]
    fn the_others_are_made_ineligible_and_the_candidate_kept() {
        let target = target(4);
        let captured = vec![(addr(1), 42), (addr(2), 25), (addr(3), 0)];
        let wanted = bias(&captured, &addr(2), &target).expect("eligible");
        assert_eq!(wanted, vec![(addr(1), 0), (addr(2), 25), (addr(3), 0)]);
    }

    #[test]
    fn a_never_promote_candidate_is_refused() {
        let target = target(3);
        let captured = vec![(addr(1), 0), (addr(2), 100)];
        assert!(bias(&captured, &addr(1), &target).is_err());
        assert!(bias(&captured, &addr(0), &target).is_err(), "not a replica");
    }

    #[test]
    fn a_bias_is_seen_only_when_every_listed_replica_shows_it() {
        let target = target(3);
        let wanted = vec![(addr(1), 0), (addr(2), 100)];
        assert!(bias_seen(&[record(1, 0), record(2, 100)], &wanted, &target));
        assert!(!bias_seen(
            &[record(1, 42), record(2, 100)],
            &wanted,
            &target
        ));
        assert!(
            !bias_seen(&[record(1, 0)], &wanted, &target),
            "candidate unlisted"
        );
        assert!(
            bias_seen(&[record(2, 100)], &wanted, &target),
            "an unlisted pod is never picked"
        );
    }

    #[test]
    fn untargeted_waits_for_every_replica_sentinel_could_pick() {
        let target = target(4);
        let mut down = record(3, 100);
        down.instance.flags = sentinel_protocol::sentinel::Flags::new(&[Flag::Slave, Flag::SDown]);
        let mut unlinked = record(3, 100);
        unlinked.master_link_status = "err".into();
        let replicas = vec![record(1, 100), record(2, 0), down];
        assert_eq!(must_catch_up(&replicas, None, &target), vec![addr(1)]);
        let linking = vec![record(1, 100), unlinked];
        assert_eq!(
            must_catch_up(&linking, None, &target),
            vec![addr(1)],
            "a replica whose link sentinel last saw down is not one it could pick"
        );
        assert_eq!(
            must_catch_up(&replicas, Some(&addr(2)), &target),
            vec![addr(2)]
        );
    }

    #[test]
    fn caught_up_needs_the_masters_whole_offset() {
        let target = target(3);
        let info = InfoReplication::parse(
            "role:master\r\nconnected_slaves:2\r\n\
             slave0:ip=127.0.0.11,port=6379,state=online,offset=500,lag=0\r\n\
             slave1:ip=127.0.0.12,port=6379,state=online,offset=480,lag=0\r\n\
             master_repl_offset:500\r\n",
        )
        .expect("info");
        assert!(caught_up(&info, &[addr(1)], &target));
        assert!(!caught_up(&info, &[addr(1), addr(2)], &target));
        assert!(!caught_up(&info, &[], &target));
    }

    proptest! {
        #[test]
        fn the_state_file_reads_back_what_was_written(
            priorities in proptest::collection::vec((0usize..200, 0u64..1000), 0..8)
        ) {
            let priorities: Vec<(Addr, u64)> =
                priorities.into_iter().map(|(i, p)| (addr(i), p)).collect();
            prop_assert_eq!(decode_state(&encode_state(&priorities)), Some(priorities));
        }

        #[test]
        fn the_bias_leaves_exactly_the_candidate_eligible(
            priorities in proptest::collection::vec(0u64..200, 1..6),
            pick in 0usize..6,
        ) {
            let n = priorities.len();
            let target = target(n + 1);
            let captured: Vec<(Addr, u64)> = priorities
                .iter()
                .enumerate()
                .map(|(i, p)| (addr(i + 1), *p))
                .collect();
            let candidate = addr(pick % n + 1);
            match bias(&captured, &candidate, &target) {
                Ok(wanted) => {
                    prop_assert_eq!(wanted.len(), captured.len());
                    for ((pod, want), (_, before)) in wanted.iter().zip(&captured) {
                        if *pod == candidate {
                            prop_assert_eq!(want, before);
                            prop_assert!(*want > 0);
                        } else {
                            prop_assert_eq!(*want, 0);
                        }
                    }
                }
                Err(_) => prop_assert_eq!(priorities[pick % n], 0),
            }
        }
    }
}
