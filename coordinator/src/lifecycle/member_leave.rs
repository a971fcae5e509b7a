//! `member-leave`: makes the leaving pod safe to remove (DESIGN section 5).
//!
//! Rules:
//!
//! 1. No sentinel reachable: a pod answering `ROLE` as a replica may leave; a master, or a pod
//!    whose role is unknown, may not (non-zero).
//! 2. The agreed master is another pod: the leaving pod is a replica as far as the group is
//!    concerned (even if it still answers master, not yet converted): leave, no failover, no
//!    reset.
//! 3. The agreed master is the leaving pod (reachable or not): one planned failover, exactly as
//!    an untargeted switchover does it (the pause machinery, so no acknowledged write is lost),
//!    completed when the verdict names another master and no reachable sentinel runs a
//!    failover. Only then reset the sentinels, one at a time, each waited for until it knows
//!    its peers again: a reset while the leader still reconfigures replicas aborts its
//!    failover, and resetting all at once leaves no sentinel able to vote.
//! 4. No agreement: the leaving pod may be the master nobody can certify; a pod that answers
//!    `ROLE` as a replica and that no reachable sentinel names may leave, otherwise non-zero.

use std::time::Duration;

use sentinel_protocol::role::Role;

use crate::addr::Addr;
use crate::sentinel::admin;
use crate::sentinel::conn;
use crate::sentinel::dataplane;
use crate::sentinel::query::{self, Survey};
use crate::verdict::{SentinelView, Verdict};

use super::knowledge;
use super::switchover::{self, OldMaster, step};
use super::{ActionError, Budget, Target};

/// One connection plus one command.
const STEP: Duration = Duration::from_millis(1_500);
/// How long one reset sentinel may take to rediscover its peers.
const REDISCOVER: Duration = Duration::from_millis(10_000);
/// How long a sentinel may take to answer before its reset is given up as unreachable.
const REACH: Duration = Duration::from_millis(5_000);

/// What the survey says to do with the leaving pod. Pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeavePlan {
    /// No sentinel answered: the pod's own role decides (rule 1).
    AskThePod,
    /// Another pod is the agreed master (rule 2).
    Leave { master: Addr },
    /// The leaving pod is the agreed master (rule 3).
    FailOverFirst,
    /// No agreement (rule 4).
    Uncertain { named: bool },
}

/// Plans from a survey. Pure.
pub fn plan(survey: &Survey, pod: &Addr, target: &Target) -> LeavePlan {
    if survey.polled().next().is_none() {
        return LeavePlan::AskThePod;
    }
    match survey.verdict(&target.aliases) {
        Verdict::Agreed(agreement) if target.same_pod(&agreement.master, pod) => {
            LeavePlan::FailOverFirst
        }
        Verdict::Agreed(agreement) => LeavePlan::Leave {
            master: agreement.master,
        },
        Verdict::NoQuorum(_) => LeavePlan::Uncertain {
            named: survey.polled().any(|(_, polled)| match &polled.view {
                SentinelView::Reports(report) => target.same_pod(&report.master, pod),
                _ => false,
            }),
        },
    }
}

/// Makes the pod safe to remove; returns the line to print.
pub async fn run(target: &Target, budget: &Budget) -> Result<String, ActionError> {
    let pod = target.pod()?.clone();
    let survey = knowledge::survey(target, budget).await;
    match plan(&survey, &pod, target) {
        LeavePlan::Leave { master } => Ok(format!(
            "member-leave: {pod} is not the master ({master} is); nothing to do"
        )),
        LeavePlan::AskThePod | LeavePlan::Uncertain { named: false } => {
            match pod_role(target, budget, &pod).await {
                Some(Role::Slave { .. }) => Ok(format!(
                    "member-leave: {pod} is a replica and no master is agreed; nothing to do"
                )),
                Some(role) => Err(ActionError::refused(format!(
                    "{pod} answers {role:?} and no sentinel agreement names a master"
                ))),
                None => Err(ActionError::refused(format!(
                    "{pod}'s role is unknown and no sentinel agreement names a master"
                ))),
            }
        }
        LeavePlan::Uncertain { named: true } => Err(ActionError::refused(format!(
            "a sentinel still names {pod} as master but no master is agreed"
        ))),
        LeavePlan::FailOverFirst => {
            let work = Budget::new(budget.remaining().saturating_sub(switchover::RESERVE));
            let settled = switchover::settled_master(target, &work).await?.master;
            if !target.same_pod(&settled.master, &pod) {
                // A failover already moved the master while this action waited.
                return Ok(format!(
                    "member-leave: {pod} is not the master ({} is); nothing to do",
                    settled.master
                ));
            }
            may_reset_all(target, budget).await?;
            let new = switchover::planned_failover(
                target,
                &work,
                &pod,
                None,
                OldMaster::PauseIfReachable,
            )
            .await?;
            let reset = reset_all(target, budget).await?;
            switchover::confirm_single_master(target, budget, &new.master).await?;
            Ok(format!(
                "member-leave: {pod} left; {} is master at epoch {}; {reset}",
                new.master, new.config_epoch
            ))
        }
    }
}

/// Refuses before the failover when a reachable sentinel would refuse the reset that follows
/// it (rule 3), so a missing permission fails the action with nothing changed rather than after
/// the master moved. An unreachable sentinel is left to the reset step, which names it.
async fn may_reset_all(target: &Target, budget: &Budget) -> Result<(), ActionError> {
    let mut asking = tokio::task::JoinSet::new();
    for sentinel in target.sentinels.iter().cloned() {
        let access = target.sentinel_access.clone();
        let budget = *budget;
        asking.spawn(async move {
            let asked = step(
                &budget,
                STEP,
                format!("SENTINEL RESET check on {sentinel}"),
                async {
                    let mut connection = conn::connect(&sentinel, &access).await?;
                    admin::probe_reset(&mut connection).await
                },
            )
            .await;
            (sentinel, asked)
        });
    }
    for (sentinel, asked) in asking.join_all().await {
        if let Err(error) = asked
            && error.to_string().contains("NOPERM")
        {
            return Err(ActionError::refused(format!(
                "{sentinel} would refuse the reset after the failover, so none was started: \
                 {error}"
            )));
        }
    }
    Ok(())
}

async fn pod_role(target: &Target, budget: &Budget, pod: &Addr) -> Option<Role> {
    step(budget, STEP, format!("ROLE of {pod}"), async {
        let mut connection = conn::connect(pod, &target.data_access).await?;
        dataplane::role(&mut connection).await
    })
    .await
    .ok()
}

/// Rule 3's reset: every configured sentinel that answers, one at a time, each waited for
/// until it knows again every other sentinel that answered (a peer that is down sends no
/// hello, so counting it would wait forever). Each sentinel's own `SENTINEL MASTER` right
/// before its reset is the baseline: a survey's answer can be missing for a sentinel that was
/// merely slow, and skipping it would leave it remembering the departed pod. Returns what was
/// done, naming any sentinel that could not be reached.
async fn reset_all(target: &Target, budget: &Budget) -> Result<String, ActionError> {
    let access = &target.sentinel_access;
    let mut asking = tokio::task::JoinSet::new();
    for sentinel in target.sentinels.iter().cloned() {
        let access = access.clone();
        let budget = *budget;
        let name = target.master_name.clone();
        asking.spawn(async move {
            // A sentinel busy with the failover it just led may be slow: ask again until REACH.
            let reach = Budget::new(budget.share(REACH));
            loop {
                let answered = step(
                    &reach,
                    STEP,
                    format!("SENTINEL MASTER on {sentinel}"),
                    async {
                        let mut connection = conn::connect(&sentinel, &access).await?;
                        let reply = connection
                            .call(&["SENTINEL", "MASTER", name.as_str()])
                            .await?;
                        query::read_master_record(&reply)
                    },
                )
                .await;
                if answered.is_ok() || reach.remaining() <= Duration::from_millis(200) {
                    return (sentinel, answered);
                }
                reach.pause(Duration::from_millis(200)).await;
            }
        });
    }
    let mut reachable = Vec::new();
    let mut unreachable = Vec::new();
    for (sentinel, answered) in asking.join_all().await {
        match answered {
            Ok(Some(record)) => reachable.push((sentinel, record.num_other_sentinels)),
            Ok(None) => unreachable.push(format!("{sentinel} (does not monitor the name)")),
            Err(error) => unreachable.push(format!("{sentinel} ({error})")),
        }
    }
    reachable.sort();
    let others = reachable.len().saturating_sub(1) as u64;
    for (sentinel, baseline) in &reachable {
        let expected = (*baseline).min(others);
        let mut connection = step(
            budget,
            STEP,
            format!("connecting to sentinel {sentinel}"),
            conn::connect(sentinel, access),
        )
        .await?;
        step(
            budget,
            STEP,
            format!("SENTINEL RESET on {sentinel}"),
            admin::reset(&mut connection, &target.master_name),
        )
        .await?;
        let bound = Budget::new(budget.share(REDISCOVER));
        let mut known = None;
        loop {
            let answer = step(
                &bound,
                STEP,
                format!("SENTINEL MASTER on {sentinel}"),
                async {
                    let reply = connection
                        .call(&["SENTINEL", "MASTER", target.master_name.as_str()])
                        .await?;
                    query::read_master_record(&reply)
                },
            )
            .await;
            if let Ok(Some(record)) = &answer {
                known = Some(record.num_other_sentinels);
                if record.num_other_sentinels >= expected {
                    break;
                }
            }
            if bound.remaining() <= Duration::from_millis(100) {
                return Err(ActionError::refused(format!(
                    "sentinel {sentinel} did not rediscover its peers after the reset \
                     (knows {known:?} of {expected})"
                )));
            }
            bound.pause(Duration::from_millis(100)).await;
        }
    }
    if unreachable.is_empty() {
        Ok("sentinels reset".to_owned())
    } else {
        Ok(format!(
            "{} of {} sentinels reset; not reached: {}",
            reachable.len(),
            target.sentinels.len(),
            unreachable.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::switchover::tests::{Says, addr, survey_of, target};
    use super::*;

    fn names(master: usize) -> Says {
        Says::Names {
            master,
            epoch: 1,
            failing_over: false,
        }
    }

    #[test]
    fn the_plan_follows_the_agreement_not_the_pods_own_word() {
        let target = target(3);
        let agreed_on_0 = survey_of(&[names(0), names(0), Says::Nothing]);
        assert_eq!(
            plan(&agreed_on_0, &addr(0), &target),
            LeavePlan::FailOverFirst
        );
        assert_eq!(
            plan(&agreed_on_0, &addr(2), &target),
            LeavePlan::Leave { master: addr(0) }
        );
        let nobody = survey_of(&[Says::Nothing, Says::Nothing, Says::Nothing]);
        assert_eq!(plan(&nobody, &addr(0), &target), LeavePlan::AskThePod);
        let split = survey_of(&[names(0), names(1), Says::Nothing]);
        assert_eq!(
            plan(&split, &addr(0), &target),
            LeavePlan::Uncertain { named: true }
        );
        assert_eq!(
            plan(&split, &addr(2), &target),
            LeavePlan::Uncertain { named: false }
        );
    }
}
