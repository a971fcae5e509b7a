//! One test per rule of the verdict (DESIGN section 2), named after the scenario it proves.

use std::time::Duration;

use valkey_coordinator::addr::{Addr, PodAliases, PodId, RunId};
use valkey_coordinator::verdict::{
    Agreement, Candidate, FailoverState, MasterFlags, MonotonicTime, NoQuorum, NoQuorumReason,
    SentinelId, SentinelReport, SentinelView, Verdict, VerdictInput, decide, majority_of,
};

const NOW: Duration = Duration::from_secs(1_000);

fn addr(raw: &str) -> Addr {
    raw.parse().expect("valid test address")
}

fn sentinel(index: usize) -> SentinelId {
    SentinelId::new(addr(&format!("10.9.0.{index}:26379")))
}

fn now() -> MonotonicTime {
    MonotonicTime::from_elapsed(NOW)
}

fn ago(age: Duration) -> MonotonicTime {
    MonotonicTime::from_elapsed(NOW - age)
}

fn report(master: &str, epoch: u64) -> SentinelReport {
    SentinelReport::new(addr(master), epoch, now())
}

fn reports(master: &str, epoch: u64) -> SentinelView {
    SentinelView::Reports(report(master, epoch))
}

fn unmonitored() -> SentinelView {
    SentinelView::Unmonitored { observed_at: now() }
}

/// Sentinel `i` gets `views[i]`; sentinels beyond the list are configured but have no view.
fn input(configured: usize, views: Vec<SentinelView>) -> VerdictInput {
    views
        .into_iter()
        .enumerate()
        .fold(VerdictInput::new(configured, now()), |input, (i, view)| {
            input.with_view(sentinel(i), view)
        })
}

fn verdict(configured: usize, views: Vec<SentinelView>) -> Verdict {
    decide(&input(configured, views), &PodAliases::new())
}

fn agreed(verdict: Verdict) -> Agreement {
    match verdict {
        Verdict::Agreed(agreement) => agreement,
        Verdict::NoQuorum(no_quorum) => panic!("expected an agreement, got {no_quorum:?}"),
    }
}

fn refused(verdict: Verdict) -> NoQuorum {
    match verdict {
        Verdict::NoQuorum(no_quorum) => no_quorum,
        Verdict::Agreed(agreement) => panic!("expected no quorum, got {agreement:?}"),
    }
}

const X: &str = "10.0.0.1:6379";
const Y: &str = "10.0.0.2:6379";
const Z: &str = "10.0.0.3:6379";

#[test]
fn majority_is_half_the_configured_count_plus_one() {
    let needed: Vec<usize> = (0..=6).map(majority_of).collect();
    assert_eq!(needed, [1, 1, 2, 2, 3, 3, 4]);
}

#[test]
fn two_agreeing_sentinels_of_three_certify() {
    let agreement = agreed(verdict(
        3,
        vec![reports(X, 5), reports(X, 5), SentinelView::Unreachable],
    ));
    assert_eq!(agreement.master, addr(X));
    assert_eq!(agreement.config_epoch, 5);
    assert_eq!(agreement.votes, 2);
    assert_eq!(agreement.voters, [sentinel(0), sentinel(1)]);
    assert!(!agreement.failover_in_progress);
    assert!(!agreement.master_reported_down);
}

#[test]
fn one_reachable_sentinel_of_three_never_certifies() {
    for views in [
        vec![
            reports(X, 5),
            SentinelView::Unreachable,
            SentinelView::Unreachable,
        ],
        // Forgetting to pass the other two changes nothing: N is the configured count.
        vec![reports(X, 5)],
    ] {
        let no_quorum = refused(verdict(3, views));
        assert_eq!(
            no_quorum.reason,
            NoQuorumReason::NotEnoughSentinels {
                counting: 1,
                needed: 2,
                configured: 3,
                unreachable: 2,
                stale: 0,
                unmonitored: 0,
            }
        );
        assert_eq!(
            no_quorum.candidates,
            [Candidate {
                master: addr(X),
                pod: None,
                config_epoch: 5,
                votes: 1
            }]
        );
    }
}

#[test]
fn majority_is_of_the_configured_count_not_of_the_views() {
    // Two of five agree and nobody else answers: 2 of 2 reachable, but not 3 of 5.
    let no_quorum = refused(verdict(5, vec![reports(X, 1), reports(X, 1)]));
    assert!(matches!(
        no_quorum.reason,
        NoQuorumReason::NotEnoughSentinels {
            counting: 2,
            needed: 3,
            unreachable: 3,
            ..
        }
    ));
    let agreement = agreed(verdict(
        5,
        vec![reports(X, 1), reports(X, 1), reports(X, 1)],
    ));
    assert_eq!(agreement.votes, 3);
}

#[test]
fn five_sentinels_three_agree_two_unreachable_certify() {
    let agreement = agreed(verdict(
        5,
        vec![
            SentinelView::Unreachable,
            reports(Y, 7),
            reports(Y, 7),
            SentinelView::Unreachable,
            reports(Y, 7),
        ],
    ));
    assert_eq!(agreement.voters, [sentinel(1), sentinel(2), sentinel(4)]);
}

#[test]
fn stale_master_at_lower_epoch_changes_nothing() {
    let agreement = agreed(verdict(
        3,
        vec![reports(X, 5), reports(Y, 4), reports(X, 5)],
    ));
    assert_eq!(agreement.master, addr(X));
    assert_eq!(agreement.config_epoch, 5);
    assert_eq!(agreement.votes, 2);
    assert_eq!(agreement.voters, [sentinel(0), sentinel(2)]);
}

#[test]
fn highest_epoch_wins_alone_when_nobody_disputes_it_at_that_epoch() {
    // DESIGN rule 2, second clause: X@5 is newer than every other report. One vote.
    let agreement = agreed(verdict(
        3,
        vec![reports(X, 5), reports(Y, 4), SentinelView::Unreachable],
    ));
    assert_eq!((agreement.master, agreement.config_epoch), (addr(X), 5));
    assert_eq!(agreement.votes, 1);
    assert_eq!(agreement.voters, [sentinel(0)]);

    // A majority at an older epoch does not outvote a newer epoch: epochs are raised only by
    // a leader a majority elected, and the laggards will adopt it on the next hello.
    let agreement = agreed(verdict(
        3,
        vec![reports(Y, 4), reports(X, 5), reports(Y, 4)],
    ));
    assert_eq!((agreement.master, agreement.votes), (addr(X), 1));
}

#[test]
fn lower_epoch_reports_of_the_same_master_are_not_votes() {
    // A freshly re-registered sentinel names the agreed master at epoch 0 until the next hello.
    let agreement = agreed(verdict(
        3,
        vec![reports(X, 5), reports(X, 0), SentinelView::Unreachable],
    ));
    assert_eq!(agreement.votes, 1);
    assert_eq!(agreement.voters, [sentinel(0)]);
}

#[test]
fn epoch_zero_split_resolves_only_by_majority() {
    let no_quorum = refused(verdict(
        3,
        vec![reports(X, 0), reports(Y, 0), SentinelView::Unreachable],
    ));
    assert_eq!(
        no_quorum.reason,
        NoQuorumReason::Split {
            epoch: 0,
            masters: 2,
            best_votes: 1,
            needed: 2
        }
    );

    let agreement = agreed(verdict(
        3,
        vec![reports(X, 0), reports(Y, 0), reports(X, 0)],
    ));
    assert_eq!((agreement.master, agreement.votes), (addr(X), 2));

    // Five sentinels: two for X is a plurality, not a majority.
    let no_quorum = refused(verdict(
        5,
        vec![
            reports(X, 0),
            reports(X, 0),
            reports(Y, 0),
            reports(Z, 0),
            SentinelView::Unreachable,
        ],
    ));
    assert!(matches!(
        no_quorum.reason,
        NoQuorumReason::Split {
            masters: 3,
            best_votes: 2,
            needed: 3,
            ..
        }
    ));
}

#[test]
fn top_epoch_split_resolves_only_by_majority_at_that_epoch() {
    // Concurrent forced failovers can leave two masters at one epoch.
    let agreement = agreed(verdict(
        3,
        vec![reports(X, 5), reports(Y, 5), reports(X, 5)],
    ));
    assert_eq!((agreement.master, agreement.votes), (addr(X), 2));

    // X is named twice, but once at an older epoch: that is no majority at epoch 5.
    let no_quorum = refused(verdict(
        3,
        vec![reports(X, 5), reports(Y, 5), reports(X, 4)],
    ));
    assert!(matches!(
        no_quorum.reason,
        NoQuorumReason::Split { epoch: 5, .. }
    ));
}

#[test]
fn stale_reports_do_not_count() {
    let stale = SentinelView::Reports(SentinelReport::new(
        addr(X),
        5,
        ago(Duration::from_millis(2_001)),
    ));
    let no_quorum = refused(verdict(
        3,
        vec![reports(X, 5), stale, SentinelView::Unreachable],
    ));
    assert!(matches!(
        no_quorum.reason,
        NoQuorumReason::NotEnoughSentinels {
            counting: 1,
            stale: 1,
            unreachable: 1,
            ..
        }
    ));
    // A stale report does not show up among the candidates either.
    assert_eq!(no_quorum.candidates.len(), 1);
}

#[test]
fn a_report_exactly_at_the_freshness_limit_still_counts() {
    let edge = SentinelView::Reports(SentinelReport::new(addr(X), 5, ago(Duration::from_secs(2))));
    let agreement = agreed(verdict(3, vec![reports(X, 5), edge]));
    assert_eq!(agreement.votes, 2);
}

#[test]
fn freshness_window_is_the_callers_to_choose() {
    let old = SentinelView::Reports(SentinelReport::new(addr(X), 5, ago(Duration::from_secs(9))));
    let mut input = input(3, vec![reports(X, 5), old]);
    assert!(decide(&input, &PodAliases::new()).agreement().is_none());
    input.freshness = Duration::from_secs(10);
    assert_eq!(
        decide(&input, &PodAliases::new())
            .agreement()
            .map(|agreement| agreement.votes),
        Some(2)
    );
}

#[test]
fn observations_stamped_after_now_are_fresh() {
    let later = MonotonicTime::from_elapsed(NOW + Duration::from_millis(5));
    let agreement = agreed(verdict(
        3,
        vec![
            reports(X, 5),
            SentinelView::Reports(SentinelReport::new(addr(X), 5, later)),
        ],
    ));
    assert_eq!(agreement.votes, 2);
}

#[test]
fn all_unmonitored_is_no_quorum() {
    let no_quorum = refused(verdict(
        3,
        vec![unmonitored(), unmonitored(), unmonitored()],
    ));
    assert_eq!(
        no_quorum.reason,
        NoQuorumReason::AllUnmonitored { configured: 3 }
    );
    assert!(no_quorum.candidates.is_empty());
}

#[test]
fn unmonitored_with_one_unreachable_is_not_all_unmonitored() {
    // The unreachable sentinel may still monitor the name: bootstrap is not proven.
    let no_quorum = refused(verdict(
        3,
        vec![unmonitored(), unmonitored(), SentinelView::Unreachable],
    ));
    assert!(matches!(
        no_quorum.reason,
        NoQuorumReason::NotEnoughSentinels {
            counting: 0,
            unmonitored: 2,
            unreachable: 1,
            ..
        }
    ));
    // Nor is an old "I monitor nothing".
    let old = SentinelView::Unmonitored {
        observed_at: ago(Duration::from_secs(60)),
    };
    let no_quorum = refused(verdict(3, vec![unmonitored(), unmonitored(), old]));
    assert!(matches!(
        no_quorum.reason,
        NoQuorumReason::NotEnoughSentinels { stale: 1, .. }
    ));
}

#[test]
fn unmonitored_sentinels_do_not_make_a_majority() {
    let no_quorum = refused(verdict(
        3,
        vec![reports(X, 3), unmonitored(), unmonitored()],
    ));
    assert!(matches!(
        no_quorum.reason,
        NoQuorumReason::NotEnoughSentinels {
            counting: 1,
            unmonitored: 2,
            ..
        }
    ));
}

#[test]
fn unmonitored_sentinels_do_not_block_an_agreement() {
    // One sentinel restarted on emptyDir; the other two still agree.
    let agreement = agreed(verdict(
        3,
        vec![reports(X, 3), unmonitored(), reports(X, 3)],
    ));
    assert_eq!(agreement.voters, [sentinel(0), sentinel(2)]);
}

#[test]
fn down_and_failover_flags_still_count_but_are_carried() {
    let mut o_down = report(X, 5);
    o_down.flags = MasterFlags::from_flag_list("master,s_down,o_down");
    let mut failing_over = report(X, 5);
    failing_over.failover_state = FailoverState::from_record_field(Some("wait_promotion"));
    let agreement = agreed(verdict(
        3,
        vec![
            SentinelView::Reports(o_down),
            SentinelView::Reports(failing_over),
        ],
    ));
    assert_eq!(agreement.votes, 2);
    assert!(agreement.failover_in_progress);
    assert!(agreement.master_reported_down);
}

#[test]
fn a_failover_seen_by_a_non_voter_is_carried_too() {
    let mut lagging_leader = report(Y, 4);
    lagging_leader.flags = MasterFlags::from_flag_list("master,failover_in_progress");
    let agreement = agreed(verdict(
        3,
        vec![
            reports(X, 5),
            reports(X, 5),
            SentinelView::Reports(lagging_leader),
        ],
    ));
    assert_eq!(agreement.master, addr(X));
    assert!(agreement.failover_in_progress);
    assert!(!agreement.master_reported_down);
}

#[test]
fn more_views_than_configured_is_refused() {
    let no_quorum = refused(verdict(1, vec![reports(X, 1), reports(X, 1)]));
    assert_eq!(
        no_quorum.reason,
        NoQuorumReason::MoreViewsThanConfigured {
            views: 2,
            configured: 1
        }
    );
}

#[test]
fn no_sentinels_configured_is_no_quorum() {
    let no_quorum = refused(verdict(0, vec![]));
    assert_eq!(no_quorum.reason, NoQuorumReason::NoSentinelsConfigured);
}

#[test]
fn address_forms_of_one_pod_agree_through_the_alias_table() {
    let ip = "10.0.0.1:6379";
    let hostname = "c-valkey-0.c-valkey-headless.default.svc.cluster.local:6379";
    let shouted = "C-Valkey-0.C-Valkey-Headless.Default.svc.cluster.local.:6379";
    let views = vec![reports(ip, 2), reports(hostname, 2), reports(shouted, 2)];

    let mut aliases = PodAliases::new();
    let pod = PodId::new("c-valkey-0");
    aliases.insert(addr(ip), pod.clone()).unwrap();
    aliases.insert(addr(hostname), pod.clone()).unwrap();
    let agreement = agreed(decide(&input(5, views.clone()), &aliases));
    assert_eq!(agreement.votes, 3);
    assert_eq!(agreement.pod, Some(pod));
    // The form most voters used is what clients get.
    assert_eq!(agreement.master, addr(hostname));

    // Without the table an IP and a hostname are different masters: fail closed.
    let no_quorum = refused(decide(&input(5, views), &PodAliases::new()));
    assert!(matches!(
        no_quorum.reason,
        NoQuorumReason::Split {
            masters: 2,
            best_votes: 2,
            needed: 3,
            ..
        }
    ));
}

fn with_run_id(master: &str, epoch: u64, run_id: &str) -> SentinelView {
    let mut report = report(master, epoch);
    report.master_run_id = RunId::parse(run_id).unwrap();
    SentinelView::Reports(report)
}

#[test]
fn run_id_conflict_fails_closed() {
    let no_quorum = refused(verdict(
        3,
        vec![
            with_run_id(X, 5, "aa11"),
            with_run_id(X, 5, "BB22"),
            with_run_id(X, 5, ""),
        ],
    ));
    assert_eq!(
        no_quorum.reason,
        NoQuorumReason::RunIdConflict {
            master: addr(X),
            epoch: 5,
            run_ids: vec![
                RunId::parse("aa11").unwrap().unwrap(),
                RunId::parse("bb22").unwrap().unwrap()
            ],
        }
    );
}

#[test]
fn run_id_split_resolves_only_by_majority() {
    // The master restarted in place: two sentinels have seen the new process, one has not.
    let agreement = agreed(verdict(
        3,
        vec![
            with_run_id(X, 5, "bb22"),
            with_run_id(X, 5, "aa11"),
            with_run_id(X, 5, "bb22"),
        ],
    ));
    assert_eq!(agreement.run_id, RunId::parse("bb22").unwrap());
    // The sentinel that names another process is not a vote; one that knows none is.
    assert_eq!(agreement.voters, [sentinel(0), sentinel(2)]);
    let agreement = agreed(verdict(
        5,
        vec![
            with_run_id(X, 5, "bb22"),
            with_run_id(X, 5, "aa11"),
            with_run_id(X, 5, "bb22"),
            with_run_id(X, 5, ""),
            with_run_id(X, 5, "bb22"),
        ],
    ));
    assert_eq!(agreement.votes, 4);
    // Two of five is no majority, even with the unknowns on its side.
    let refused = refused(verdict(
        5,
        vec![
            with_run_id(X, 5, "bb22"),
            with_run_id(X, 5, "aa11"),
            with_run_id(X, 5, "bb22"),
            with_run_id(X, 5, ""),
            with_run_id(X, 5, "aa11"),
        ],
    ));
    assert!(matches!(
        refused.reason,
        NoQuorumReason::RunIdConflict { .. }
    ));
}

#[test]
fn unknown_run_ids_are_compatible_and_the_known_one_is_carried() {
    let agreement = agreed(verdict(
        3,
        vec![with_run_id(X, 5, ""), with_run_id(X, 5, "AA11")],
    ));
    assert_eq!(agreement.run_id, RunId::parse("aa11").unwrap());
    let agreement = agreed(verdict(3, vec![reports(X, 5), reports(X, 5)]));
    assert_eq!(agreement.run_id, None);
    // A different run id at an older epoch is history, not a conflict.
    let agreement = agreed(verdict(
        3,
        vec![with_run_id(X, 5, "aa11"), with_run_id(X, 4, "cc33")],
    ));
    assert_eq!(agreement.run_id, RunId::parse("aa11").unwrap());
}

#[test]
fn candidates_are_sorted_by_epoch_then_votes_then_address() {
    let no_quorum = refused(verdict(
        5,
        vec![
            reports(Z, 4),
            reports(Y, 5),
            reports(Y, 4),
            reports(X, 5),
            reports(Z, 4),
        ],
    ));
    let listed: Vec<(String, u64, usize)> = no_quorum
        .candidates
        .iter()
        .map(|c| (c.master.to_string(), c.config_epoch, c.votes))
        .collect();
    assert_eq!(
        listed,
        [
            (X.to_owned(), 5, 1),
            (Y.to_owned(), 5, 1),
            (Z.to_owned(), 4, 2),
            (Y.to_owned(), 4, 1),
        ]
    );
}

#[test]
fn reasons_read_well_for_operators() {
    let text = verdict(3, vec![reports(X, 5)]).to_string();
    assert_eq!(
        text,
        "no quorum: only 1 of 3 sentinels report this master freshly, 2 needed \
         (2 unreachable, 0 stale, 0 not monitoring)"
    );
    let text = verdict(3, vec![reports(X, 0), reports(Y, 0)]).to_string();
    assert_eq!(
        text,
        "no quorum: sentinels at the highest config epoch 0 name 2 different masters; \
         the best has 1 votes, 2 needed"
    );
    let text = verdict(3, vec![reports(X, 5), reports(X, 5)]).to_string();
    assert_eq!(text, "master 10.0.0.1:6379 at config epoch 5, 2 vote(s)");
}
