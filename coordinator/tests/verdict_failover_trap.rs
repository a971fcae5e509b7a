//! The failover-leader trap (DESIGN section 2 rule 8, sentinel-clients.md A.5).
//!
//! From `+promoted-slave` until `+failover-end` the leader's `SENTINEL MASTER` record shows the
//! old master's address (and run id) at the *new* epoch, while its `GET-MASTER-ADDR-BY-NAME`
//! already answers with the promoted replica. These tests build reports the way the service
//! does, from both answers, and show what would go wrong with the record's address.

use std::time::Duration;

use valkey_coordinator::addr::{Addr, PodAliases, RunId};
use valkey_coordinator::verdict::{
    FailoverState, MasterFlags, MasterRecord, MonotonicTime, NoQuorumReason, ReportError,
    SentinelId, SentinelReport, SentinelView, Verdict, VerdictInput, decide,
};

const OLD_MASTER: &str = "10.0.0.1:6379";
const PROMOTED: &str = "10.0.0.2:6379";
const OLD_RUN_ID: &str = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f";
const NEW_RUN_ID: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const OLD_EPOCH: u64 = 5;
const NEW_EPOCH: u64 = 6;

fn addr(raw: &str) -> Addr {
    raw.parse().expect("valid test address")
}

fn now() -> MonotonicTime {
    MonotonicTime::from_elapsed(Duration::from_secs(500))
}

fn sentinel(index: usize) -> SentinelId {
    SentinelId::new(addr(&format!("10.9.0.{index}:26379")))
}

fn run_id(raw: &str) -> Option<RunId> {
    RunId::parse(raw).expect("valid test run id")
}

/// What a sentinel's `SENTINEL MASTER` record says when nothing unusual is going on.
fn record(master: &str, epoch: u64, run: &str) -> MasterRecord {
    MasterRecord {
        addr: addr(master),
        run_id: run_id(run),
        config_epoch: epoch,
        flags: MasterFlags::from_flag_list("master"),
        failover_state: FailoverState::Idle,
        num_replicas: 2,
        num_other_sentinels: 2,
    }
}

/// The leader between `+promoted-slave` and `+failover-end`: the record still describes the old
/// master instance (address, run id, down flags) but its epoch is already the new one.
fn leader_record_mid_failover() -> MasterRecord {
    MasterRecord {
        flags: MasterFlags::from_flag_list("master,s_down,o_down,failover_in_progress"),
        failover_state: FailoverState::from_record_field(Some("reconf_slaves")),
        ..record(OLD_MASTER, NEW_EPOCH, OLD_RUN_ID)
    }
}

/// The view built the right way: address from `GET-MASTER-ADDR-BY-NAME`.
fn view(record: &MasterRecord, master_addr_by_name: &str) -> SentinelView {
    SentinelView::from_answers(Some(record), Some(&addr(master_addr_by_name)), now())
        .expect("consistent answers")
}

/// The view built the wrong way: address from the record's `ip`/`port`.
fn view_from_record_alone(record: &MasterRecord) -> SentinelView {
    let mut report = SentinelReport::new(record.addr.clone(), record.config_epoch, now());
    report.master_run_id = record.run_id.clone();
    report.flags = record.flags;
    report.failover_state = record.failover_state.clone();
    SentinelView::Reports(report)
}

fn decide_three(views: [SentinelView; 3]) -> Verdict {
    let input = views
        .into_iter()
        .enumerate()
        .fold(VerdictInput::new(3, now()), |input, (i, view)| {
            input.with_view(sentinel(i), view)
        });
    decide(&input, &PodAliases::new())
}

/// Leader mid-failover; one follower has adopted the new configuration from the leader's hello
/// (its record was reset to the promoted replica, run id not yet known); one still lags.
fn leader_follower_laggard() -> (MasterRecord, MasterRecord, MasterRecord) {
    (
        leader_record_mid_failover(),
        record(PROMOTED, NEW_EPOCH, ""),
        record(OLD_MASTER, OLD_EPOCH, OLD_RUN_ID),
    )
}

#[test]
fn failover_leader_trap_is_not_a_split() {
    let (leader, follower, laggard) = leader_follower_laggard();
    let verdict = decide_three([
        view(&leader, PROMOTED),
        view(&follower, PROMOTED),
        view(&laggard, OLD_MASTER),
    ]);
    let agreement = verdict.agreement().expect("the promoted replica is agreed");
    assert_eq!(agreement.master, addr(PROMOTED));
    assert_eq!(agreement.config_epoch, NEW_EPOCH);
    assert_eq!(agreement.votes, 2);
    assert_eq!(agreement.voters, [sentinel(0), sentinel(1)]);
    assert!(agreement.failover_in_progress, "callers must wait, not act");
    // The leader's record run id is the old master's: it must not be attributed to the new one.
    assert_eq!(agreement.run_id, None);
}

#[test]
fn record_address_makes_the_trap_look_like_a_split() {
    let (leader, follower, laggard) = leader_follower_laggard();
    let verdict = decide_three([
        view_from_record_alone(&leader),
        view_from_record_alone(&follower),
        view_from_record_alone(&laggard),
    ]);
    let Verdict::NoQuorum(no_quorum) = verdict else {
        panic!("the record's address splits the top epoch: {verdict:?}");
    };
    assert_eq!(
        no_quorum.reason,
        NoQuorumReason::Split {
            epoch: NEW_EPOCH,
            masters: 2,
            best_votes: 1,
            needed: 2
        }
    );
}

#[test]
fn record_address_would_certify_the_deposed_master_at_the_new_epoch() {
    // Only the leader has the new epoch yet; both followers lag.
    let leader = leader_record_mid_failover();
    let laggard = record(OLD_MASTER, OLD_EPOCH, OLD_RUN_ID);

    let wrong = decide_three([
        view_from_record_alone(&leader),
        view_from_record_alone(&laggard),
        view_from_record_alone(&laggard),
    ]);
    let wrong = wrong.agreement().expect("the trap certifies something");
    assert_eq!(
        (wrong.master.clone(), wrong.config_epoch),
        (addr(OLD_MASTER), NEW_EPOCH),
        "using the record, the master being demoted is certified at the new epoch"
    );

    let right = decide_three([
        view(&leader, PROMOTED),
        view(&laggard, OLD_MASTER),
        view(&laggard, OLD_MASTER),
    ]);
    let right = right.agreement().expect("the newest epoch wins");
    assert_eq!(
        (right.master.clone(), right.config_epoch),
        (addr(PROMOTED), NEW_EPOCH)
    );
    assert_eq!(
        right.votes, 1,
        "only the leader attests the new configuration"
    );
    assert!(right.failover_in_progress);
}

#[test]
fn old_run_id_in_the_leader_record_does_not_conflict_with_the_new_master() {
    // Follower already knows the promoted replica's run id; the leader's record still carries
    // the old master's. Taking the record's run id would be a spurious conflict.
    let leader = leader_record_mid_failover();
    let follower = record(PROMOTED, NEW_EPOCH, NEW_RUN_ID);
    let verdict = decide_three([
        view(&leader, PROMOTED),
        view(&follower, PROMOTED),
        SentinelView::Unreachable,
    ]);
    let agreement = verdict.agreement().expect("no run id conflict");
    assert_eq!(agreement.run_id, run_id(NEW_RUN_ID));
}

#[test]
fn report_takes_address_from_get_master_addr_by_name() {
    let leader = leader_record_mid_failover();
    let report = SentinelReport::from_answers(&leader, &addr(PROMOTED), now());
    assert_eq!(report.master, addr(PROMOTED));
    assert_eq!(report.config_epoch, NEW_EPOCH);
    assert_eq!(report.master_run_id, None);
    assert!(report.failover_in_progress());
    assert!(report.master_down());
    assert_eq!(report.num_replicas, 2);
    assert_eq!(report.num_other_sentinels, 2);
}

#[test]
fn record_run_id_is_kept_when_the_record_describes_the_master() {
    let steady = record(OLD_MASTER, OLD_EPOCH, OLD_RUN_ID);
    let report = SentinelReport::from_answers(&steady, &addr("10.0.0.1:6379"), now());
    assert_eq!(report.master_run_id, run_id(OLD_RUN_ID));
    assert!(!report.failover_in_progress());
}

#[test]
fn the_two_answers_must_agree_on_whether_the_name_is_monitored() {
    let steady = record(OLD_MASTER, OLD_EPOCH, OLD_RUN_ID);
    assert_eq!(
        SentinelView::from_answers(None, None, now()),
        Ok(SentinelView::Unmonitored { observed_at: now() })
    );
    assert_eq!(
        SentinelView::from_answers(Some(&steady), None, now()),
        Err(ReportError::RecordWithoutAddress)
    );
    assert_eq!(
        SentinelView::from_answers(None, Some(&addr(OLD_MASTER)), now()),
        Err(ReportError::AddressWithoutRecord)
    );
}

#[test]
fn record_fields_parse_as_sentinel_sends_them() {
    let flags = MasterFlags::from_flag_list(
        "master,s_down,o_down,failover_in_progress,force_failover,disconnected,master_reboot,promoted",
    );
    assert!(flags.s_down && flags.o_down && flags.failover_in_progress);
    assert!(flags.force_failover && flags.disconnected && flags.master_reboot);
    assert_eq!(
        MasterFlags::from_flag_list("master"),
        MasterFlags::default()
    );
    assert_eq!(MasterFlags::from_flag_list(""), MasterFlags::default());

    assert_eq!(FailoverState::from_record_field(None), FailoverState::Idle);
    assert_eq!(
        FailoverState::from_record_field(Some("none")),
        FailoverState::Idle
    );
    assert!(FailoverState::from_record_field(Some("Wait_Promotion")).is_running());
    assert_eq!(
        FailoverState::from_record_field(Some("Wait_Promotion")),
        FailoverState::Running("wait_promotion".to_owned())
    );
}
