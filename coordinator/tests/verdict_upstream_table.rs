//! The upstream role-probe quorum table (upstream-failures.md D.12, item 87), replayed through
//! the verdict. Upstream rows are `(epoch, run id)` per sentinel; here every record is built the
//! way the service builds it, with the address from `GET-MASTER-ADDR-BY-NAME`.
//!
//! Two rows deliberately differ from upstream, because DESIGN section 2 rule 2 says a higher
//! epoch is newer truth ("or is at an epoch higher than every other report"):
//! - `(16,a), (16,a), (17,empty)`: upstream keeps `(16,a)`; here the epoch-17 master is agreed
//!   with one vote and no run id. Clients see `num-other-sentinels` 0, and a probe that needs the
//!   run id cannot call the new master primary yet, so no two pods are labelled primary.
//! - two valid reports at different epochs: upstream refuses; here the newer one is agreed with
//!   one vote.
//!
//! And one differs because upstream read the record's address (the failover-leader trap):
//! `(17,a, failover_in_progress+force_failover), (17,empty), (17,b)` is, with the address from
//! `GET-MASTER-ADDR-BY-NAME`, three sentinels naming the promoted master at 17: agreed, with
//! `failover_in_progress` so that callers wait.

use std::time::Duration;

use valkey_coordinator::addr::{Addr, PodAliases, RunId};
use valkey_coordinator::verdict::{
    FailoverState, MasterFlags, MasterRecord, MonotonicTime, NoQuorumReason, SentinelId,
    SentinelView, Verdict, VerdictInput, decide, majority_of,
};

const OLD: &str = "10.0.0.1:6379";
const NEW: &str = "10.0.0.2:6379";
const A: &str = "aaaa"; // the old master's run id
const B: &str = "bbbb"; // the promoted master's run id

fn addr(raw: &str) -> Addr {
    raw.parse().unwrap()
}

fn now() -> MonotonicTime {
    MonotonicTime::from_elapsed(Duration::from_secs(77))
}

/// A steady sentinel naming `master` at `epoch` with the given run id ("" = unknown).
fn steady(master: &str, epoch: u64, run_id: &str) -> SentinelView {
    let record = MasterRecord {
        addr: addr(master),
        run_id: RunId::parse(run_id).unwrap(),
        config_epoch: epoch,
        flags: MasterFlags::from_flag_list("master"),
        failover_state: FailoverState::Idle,
        num_replicas: 2,
        num_other_sentinels: 2,
    };
    SentinelView::from_answers(Some(&record), Some(&addr(master)), now()).unwrap()
}

/// The failover leader between `+promoted-slave` and `+failover-end`: its record still holds the
/// old master and its run id at the new epoch; `GET-MASTER-ADDR-BY-NAME` says `NEW`.
fn leader_mid_failover(epoch: u64, forced: bool) -> SentinelView {
    let flags = if forced {
        "master,failover_in_progress,force_failover"
    } else {
        "master,s_down,o_down,failover_in_progress"
    };
    let record = MasterRecord {
        addr: addr(OLD),
        run_id: RunId::parse(A).unwrap(),
        config_epoch: epoch,
        flags: MasterFlags::from_flag_list(flags),
        failover_state: FailoverState::from_record_field(Some("reconf_slaves")),
        num_replicas: 2,
        num_other_sentinels: 2,
    };
    SentinelView::from_answers(Some(&record), Some(&addr(NEW)), now()).unwrap()
}

fn unmonitored() -> SentinelView {
    SentinelView::Unmonitored { observed_at: now() }
}

/// A record the service could not parse (non-numeric epoch, non-hex run id): it does not count.
fn invalid() -> SentinelView {
    SentinelView::Unreachable
}

fn verdict(views: Vec<SentinelView>) -> Verdict {
    let n = views.len();
    let input =
        views
            .into_iter()
            .enumerate()
            .fold(VerdictInput::new(n, now()), |input, (i, view)| {
                input.with_view(SentinelId::new(addr(&format!("10.9.0.{i}:26379"))), view)
            });
    decide(&input, &PodAliases::new())
}

/// (master, epoch, run id, votes, failover in progress) of an agreement.
fn agreed(views: Vec<SentinelView>) -> (Addr, u64, Option<RunId>, usize, bool) {
    match verdict(views) {
        Verdict::Agreed(a) => (
            a.master,
            a.config_epoch,
            a.run_id,
            a.votes,
            a.failover_in_progress,
        ),
        Verdict::NoQuorum(no_quorum) => panic!("expected an agreement, got {no_quorum:?}"),
    }
}

fn reason(views: Vec<SentinelView>) -> NoQuorumReason {
    match verdict(views) {
        Verdict::NoQuorum(no_quorum) => no_quorum.reason,
        Verdict::Agreed(a) => panic!("expected no quorum, got {a:?}"),
    }
}

fn run(raw: &str) -> Option<RunId> {
    RunId::parse(raw).unwrap()
}

#[test]
fn three_agreeing_sentinels_are_versioned() {
    let views = || vec![steady(OLD, 16, A), steady(OLD, 16, A), steady(OLD, 16, A)];
    assert_eq!(agreed(views()), (addr(OLD), 16, run(A), 3, false));
    let views = vec![steady(NEW, 17, B), steady(NEW, 17, B), steady(NEW, 17, B)];
    assert_eq!(agreed(views), (addr(NEW), 17, run(B), 3, false));
}

#[test]
fn one_sentinel_at_a_newer_epoch_wins_with_one_vote_and_no_run_id() {
    // Upstream: versioned (16, a). Here: rule 2, see the module doc.
    let views = vec![steady(OLD, 16, A), steady(OLD, 16, A), steady(NEW, 17, "")];
    assert_eq!(agreed(views), (addr(NEW), 17, None, 1, false));
}

#[test]
fn forced_failover_leader_with_followers_agrees_and_says_wait() {
    // Upstream: invalid (the leader's record named the old master). Here: the trap is avoided.
    let views = vec![
        leader_mid_failover(17, true),
        steady(NEW, 17, ""),
        steady(NEW, 17, B),
    ];
    assert_eq!(agreed(views), (addr(NEW), 17, run(B), 3, true));
}

#[test]
fn an_unknown_run_id_or_an_invalid_record_beside_two_agreeing_is_versioned() {
    let views = vec![steady(NEW, 17, B), steady(NEW, 17, B), steady(NEW, 17, "")];
    assert_eq!(agreed(views), (addr(NEW), 17, run(B), 3, false));
    let views = vec![steady(NEW, 17, B), steady(NEW, 17, B), invalid()];
    assert_eq!(agreed(views), (addr(NEW), 17, run(B), 2, false));
}

#[test]
fn a_failover_leader_beside_two_agreeing_is_versioned_and_says_wait() {
    let views = vec![
        steady(NEW, 17, B),
        steady(NEW, 17, B),
        leader_mid_failover(17, false),
    ];
    assert_eq!(agreed(views), (addr(NEW), 17, run(B), 3, true));
}

#[test]
fn one_valid_of_three_is_invalid() {
    let views = vec![steady(OLD, 16, A), invalid(), invalid()];
    assert!(matches!(
        reason(views),
        NoQuorumReason::NotEnoughSentinels { counting: 1, .. }
    ));
}

#[test]
fn only_all_answering_without_a_master_means_bootstrap() {
    let views = vec![unmonitored(), unmonitored(), unmonitored()];
    assert_eq!(
        reason(views),
        NoQuorumReason::AllUnmonitored { configured: 3 }
    );
    // All unreachable, or all records unusable: not bootstrap.
    for views in [
        vec![SentinelView::Unreachable; 3],
        vec![invalid(), invalid(), invalid()],
    ] {
        assert!(matches!(
            reason(views),
            NoQuorumReason::NotEnoughSentinels { counting: 0, .. }
        ));
    }
}

#[test]
fn two_valid_at_one_epoch_that_disagree_are_invalid() {
    let views = vec![steady(OLD, 17, A), steady(NEW, 17, B), invalid()];
    assert!(matches!(reason(views), NoQuorumReason::Split { .. }));
    let views = vec![steady(OLD, 17, A), steady(OLD, 17, B), invalid()];
    assert!(matches!(
        reason(views),
        NoQuorumReason::RunIdConflict { .. }
    ));
}

#[test]
fn two_valid_at_different_epochs_agree_on_the_newer() {
    // Upstream: invalid. Here: rule 2, one vote.
    let views = vec![steady(OLD, 16, A), steady(NEW, 17, B), invalid()];
    assert_eq!(agreed(views), (addr(NEW), 17, run(B), 1, false));
}

#[test]
fn five_sentinels_need_three() {
    let views = vec![
        steady(NEW, 17, B),
        invalid(),
        steady(NEW, 17, B),
        invalid(),
        steady(NEW, 17, B),
    ];
    assert_eq!(agreed(views), (addr(NEW), 17, run(B), 3, false));
    let views = vec![
        steady(NEW, 17, B),
        invalid(),
        steady(NEW, 17, B),
        invalid(),
        invalid(),
    ];
    assert!(matches!(
        reason(views),
        NoQuorumReason::NotEnoughSentinels {
            counting: 2,
            needed: 3,
            ..
        }
    ));
    assert_eq!((majority_of(3), majority_of(4), majority_of(5)), (2, 3, 3));
}
