//! Property tests of the verdict: symmetry, partitions, safety, consistency of an agreement,
//! ordering of candidates, totality.
//!
//! Inputs are drawn from small alphabets (three masters, one of them under two address forms,
//! epochs 0..=3, two run ids, freshness edges) so that agreements, splits, conflicts and stale
//! reports all occur often.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use proptest::prelude::*;
use valkey_coordinator::addr::{Addr, Identity, PodAliases, PodId, RunId};
use valkey_coordinator::verdict::{
    DEFAULT_FRESHNESS, FailoverState, MasterFlags, MonotonicTime, NoQuorumReason, SentinelId,
    SentinelReport, SentinelView, Verdict, VerdictInput, decide, majority_of,
};

const NOW: Duration = Duration::from_secs(1_000);

fn addr(raw: &str) -> Addr {
    raw.parse().expect("valid test address")
}

/// Master X under two forms (aliased to one pod), Y (aliased), Z (IPv6, no alias).
fn master_forms() -> [Addr; 4] {
    [
        addr("10.0.0.1:6379"),
        addr("c-valkey-0.c-valkey-headless:6379"),
        addr("10.0.0.2:6379"),
        addr("[fd00::3]:6379"),
    ]
}

fn aliases() -> PodAliases {
    let [x_ip, x_name, y, _] = master_forms();
    let mut aliases = PodAliases::new();
    aliases.insert(x_ip, PodId::new("c-valkey-0")).unwrap();
    aliases.insert(x_name, PodId::new("c-valkey-0")).unwrap();
    aliases.insert(y, PodId::new("c-valkey-1")).unwrap();
    aliases
}

fn sentinel(index: usize) -> SentinelId {
    SentinelId::new(addr(&format!("10.9.0.{index}:26379")))
}

fn observed_at() -> impl Strategy<Value = MonotonicTime> {
    prop_oneof![
        6 => Just(NOW),
        1 => Just(NOW - DEFAULT_FRESHNESS),
        1 => Just(NOW - DEFAULT_FRESHNESS - Duration::from_nanos(1)),
        1 => Just(NOW - Duration::from_secs(30)),
        1 => Just(NOW + Duration::from_millis(10)),
    ]
    .prop_map(MonotonicTime::from_elapsed)
}

fn run_id() -> impl Strategy<Value = Option<RunId>> {
    prop_oneof![
        6 => Just(None),
        1 => Just(RunId::parse("aa").unwrap()),
        1 => Just(RunId::parse("bb").unwrap()),
    ]
}

fn report() -> impl Strategy<Value = SentinelReport> {
    (
        0..4usize,
        0..4u64,
        run_id(),
        (any::<bool>(), any::<bool>(), prop::bool::weighted(0.15)),
        prop::bool::weighted(0.15),
        observed_at(),
    )
        .prop_map(
            |(
                form,
                config_epoch,
                master_run_id,
                (s_down, o_down, flagged),
                running,
                observed_at,
            )| {
                let mut report =
                    SentinelReport::new(master_forms()[form].clone(), config_epoch, observed_at);
                report.master_run_id = master_run_id;
                report.flags = MasterFlags {
                    s_down,
                    o_down,
                    failover_in_progress: flagged,
                    ..MasterFlags::default()
                };
                if running {
                    report.failover_state = FailoverState::Running("reconf_slaves".to_owned());
                }
                report
            },
        )
}

fn view() -> impl Strategy<Value = SentinelView> {
    prop_oneof![
        1 => Just(SentinelView::Unreachable),
        1 => observed_at().prop_map(|observed_at| SentinelView::Unmonitored { observed_at }),
        6 => report().prop_map(SentinelView::Reports),
    ]
}

/// Three or five views, the sizes DESIGN asks to cover exhaustively.
fn views() -> impl Strategy<Value = Vec<SentinelView>> {
    prop_oneof![
        prop::collection::vec(view(), 3),
        prop::collection::vec(view(), 5)
    ]
}

/// Sentinel `ids(i)` sees `views[i]`; N is the number of views.
fn input(views: &[SentinelView], ids: impl Fn(usize) -> SentinelId) -> VerdictInput {
    let mut input = VerdictInput::new(views.len(), MonotonicTime::from_elapsed(NOW));
    for (i, view) in views.iter().enumerate() {
        input.views.insert(ids(i), view.clone());
    }
    input
}

fn verdict_of(views: &[SentinelView]) -> Verdict {
    decide(&input(views, sentinel), &aliases())
}

fn is_fresh(observed_at: MonotonicTime) -> bool {
    observed_at.age_at(MonotonicTime::from_elapsed(NOW)) <= DEFAULT_FRESHNESS
}

/// The reports that count, with their index.
fn counting(views: &[SentinelView]) -> Vec<(usize, &SentinelReport)> {
    views
        .iter()
        .enumerate()
        .filter_map(|(i, view)| match view {
            SentinelView::Reports(report) if is_fresh(report.observed_at) => Some((i, report)),
            _ => None,
        })
        .collect()
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn extend(prefix: &mut Vec<usize>, n: usize, out: &mut Vec<Vec<usize>>) {
        if prefix.len() == n {
            out.push(prefix.clone());
            return;
        }
        for next in 0..n {
            if !prefix.contains(&next) {
                prefix.push(next);
                extend(prefix, n, out);
                prefix.pop();
            }
        }
    }
    let mut out = Vec::new();
    extend(&mut Vec::new(), n, &mut out);
    out
}

/// `views` with every sentinel outside `mask` unreachable.
fn only(views: &[SentinelView], mask: u32) -> Vec<SentinelView> {
    views
        .iter()
        .enumerate()
        .map(|(i, view)| {
            if mask & (1 << i) != 0 {
                view.clone()
            } else {
                SentinelView::Unreachable
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (a) Which sentinel said what does not matter: under every relabelling of the sentinels
    /// the verdict is the same, except that the voters follow their views. Insertion order of
    /// the views is irrelevant as well.
    #[test]
    fn verdict_is_invariant_under_every_permutation_of_sentinels(views in views()) {
        let base = verdict_of(&views);
        for permutation in permutations(views.len()) {
            // Sentinel `permutation[i]` now holds `views[i]`.
            let relabelled = decide(&input(&views, |i| sentinel(permutation[i])), &aliases());
            let mut relabelled_back = relabelled.clone();
            if let Verdict::Agreed(agreement) = &mut relabelled_back {
                let mut voters: Vec<SentinelId> = agreement
                    .voters
                    .iter()
                    .map(|voter| {
                        let holder = (0..views.len())
                            .find(|&i| sentinel(permutation[i]) == *voter)
                            .expect("voters are configured sentinels");
                        sentinel(holder)
                    })
                    .collect();
                voters.sort();
                agreement.voters = voters;
            }
            prop_assert_eq!(&relabelled_back, &base);

            // Same ids, views inserted in permuted order.
            let mut reordered = VerdictInput::new(views.len(), MonotonicTime::from_elapsed(NOW));
            for &i in &permutation {
                reordered.views.insert(sentinel(i), views[i].clone());
            }
            prop_assert_eq!(&decide(&reordered, &aliases()), &base);
        }
    }

    /// (b) For every subset of reachable sentinels: fewer than a majority of the configured
    /// count reachable, or fewer than a majority counting, never yields an agreement, and an
    /// agreement's voters are always among the reachable.
    #[test]
    fn a_minority_never_yields_agreed(views in views()) {
        let n = views.len();
        for mask in 0..(1u32 << n) {
            let reachable = only(&views, mask);
            let verdict = verdict_of(&reachable);
            let counting = counting(&reachable).len();
            if (mask.count_ones() as usize) < majority_of(n) || counting < majority_of(n) {
                prop_assert!(verdict.agreement().is_none(), "mask {:b}: {:?}", mask, verdict);
            }
            if let Some(agreement) = verdict.agreement() {
                for voter in &agreement.voters {
                    let index = (0..n).find(|&i| sentinel(i) == *voter).unwrap();
                    prop_assert!(mask & (1 << index) != 0);
                }
            }
        }
    }

    /// (c) Safety under a network partition: coordinators on the two sides of any split of the
    /// sentinels, each seeing only its own side's (independently chosen) reports, never both
    /// certify a master. (Stronger than "never two masters at one epoch", which it implies.)
    #[test]
    fn two_sides_of_a_partition_never_both_agree(
        (side_a, side_b) in prop_oneof![
            (prop::collection::vec(view(), 3), prop::collection::vec(view(), 3)),
            (prop::collection::vec(view(), 5), prop::collection::vec(view(), 5)),
        ]
    ) {
        let n = side_a.len();
        let everyone = (1u32 << n) - 1;
        for mask in 0..=everyone {
            let verdict_a = verdict_of(&only(&side_a, mask));
            let verdict_b = verdict_of(&only(&side_b, everyone & !mask));
            if let (Some(a), Some(b)) = (verdict_a.agreement(), verdict_b.agreement()) {
                prop_assert!(
                    false,
                    "both sides agreed: {} and {} (mask {:b})",
                    Verdict::Agreed(a.clone()),
                    Verdict::Agreed(b.clone()),
                    mask
                );
            }
        }
    }

    /// (d) An agreement is exactly what the rules say: the master is named by counting
    /// sentinels at the top epoch, the voters are all of those and only those, and anyone else
    /// at the top epoch is outvoted by a majority of N.
    #[test]
    fn agreed_is_backed_by_the_top_epoch(views in views()) {
        let aliases = aliases();
        let verdict = verdict_of(&views);
        let counting = counting(&views);
        let n = views.len();
        match &verdict {
            Verdict::Agreed(agreement) => {
                prop_assert!(agreement.votes >= 1);
                prop_assert_eq!(agreement.votes, agreement.voters.len());
                prop_assert!(agreement.voters.windows(2).all(|pair| pair[0] < pair[1]));
                prop_assert!(counting.len() >= majority_of(n));

                let top = counting.iter().map(|(_, r)| r.config_epoch).max().unwrap();
                prop_assert_eq!(agreement.config_epoch, top);
                let identity = aliases.identify(&agreement.master);
                let backers: BTreeSet<SentinelId> = counting
                    .iter()
                    .filter(|(_, r)| r.config_epoch == top && aliases.identify(&r.master) == identity)
                    .map(|(i, _)| sentinel(*i))
                    .collect();
                let voters: BTreeSet<SentinelId> = agreement.voters.iter().cloned().collect();
                prop_assert!(voters.is_subset(&backers));
                prop_assert!(counting.iter().any(|(_, r)| r.config_epoch == top && r.master == agreement.master));

                let disputed = counting
                    .iter()
                    .any(|(_, r)| r.config_epoch == top && aliases.identify(&r.master) != identity);
                prop_assert!(!disputed || agreement.votes >= majority_of(n));

                // Run ids: the backers' one known run id, or the one a majority of N report;
                // voters are the backers that report it or none.
                let mut run_ids: BTreeMap<&RunId, usize> = BTreeMap::new();
                for (i, report) in &counting {
                    if let (true, Some(run_id)) = (backers.contains(&sentinel(*i)), &report.master_run_id) {
                        *run_ids.entry(run_id).or_default() += 1;
                    }
                }
                let expected_run_id = if run_ids.len() <= 1 {
                    run_ids.keys().next().copied()
                } else {
                    run_ids.iter().find(|(_, n)| **n >= majority_of(views.len())).map(|(r, _)| *r)
                };
                prop_assert!(run_ids.len() <= 1 || expected_run_id.is_some());
                prop_assert_eq!(agreement.run_id.as_ref(), expected_run_id);
                let expected_voters: BTreeSet<SentinelId> = counting
                    .iter()
                    .filter(|(i, r)| {
                        backers.contains(&sentinel(*i))
                            && (r.master_run_id.is_none() || r.master_run_id.as_ref() == expected_run_id)
                    })
                    .map(|(i, _)| sentinel(*i))
                    .collect();
                prop_assert_eq!(&voters, &expected_voters);
                prop_assert_eq!(
                    agreement.failover_in_progress,
                    counting.iter().any(|(_, r)| r.failover_in_progress())
                );
                prop_assert_eq!(agreement.pod.as_ref(), aliases.pod_of(&agreement.master));
            }
            Verdict::NoQuorum(no_quorum) => match &no_quorum.reason {
                NoQuorumReason::NotEnoughSentinels { counting: c, needed, .. } => {
                    prop_assert_eq!(*c, counting.len());
                    prop_assert!(c < needed);
                }
                NoQuorumReason::AllUnmonitored { .. } => prop_assert!(counting.is_empty()),
                NoQuorumReason::Split { epoch, masters, best_votes, needed } => {
                    prop_assert!(*masters >= 2);
                    prop_assert!(best_votes < needed);
                    let top = counting.iter().map(|(_, r)| r.config_epoch).max();
                    prop_assert_eq!(Some(*epoch), top);
                }
                NoQuorumReason::RunIdConflict { run_ids, epoch, .. } => {
                    prop_assert!(run_ids.len() >= 2);
                    let top = counting.iter().map(|(_, r)| r.config_epoch).max();
                    prop_assert_eq!(Some(*epoch), top);
                }
                other => prop_assert!(false, "unexpected reason {:?}", other),
            },
        }
    }

    /// (e) Candidates are the counting reports grouped by (epoch, identity), each group once,
    /// sorted by epoch descending, votes descending, address, pod.
    #[test]
    fn no_quorum_candidates_are_sorted_deterministically(views in views()) {
        let aliases = aliases();
        let Verdict::NoQuorum(no_quorum) = verdict_of(&views) else {
            return Ok(());
        };
        let candidates = &no_quorum.candidates;
        let key = |c: &valkey_coordinator::verdict::Candidate| {
            (std::cmp::Reverse(c.config_epoch), std::cmp::Reverse(c.votes), c.master.clone(), c.pod.clone())
        };
        prop_assert!(candidates.windows(2).all(|pair| key(&pair[0]) <= key(&pair[1])));

        let counting = counting(&views);
        let mut expected: BTreeMap<(u64, Identity), usize> = BTreeMap::new();
        for (_, report) in &counting {
            *expected.entry((report.config_epoch, aliases.identify(&report.master))).or_default() += 1;
        }
        let listed: BTreeMap<(u64, Identity), usize> = candidates
            .iter()
            .map(|c| ((c.config_epoch, aliases.identify(&c.master)), c.votes))
            .collect();
        prop_assert_eq!(listed.len(), candidates.len(), "a group is listed twice");
        prop_assert_eq!(listed, expected);
    }

    /// (f) Totality: any input, however inconsistent, gives a verdict and a printable reason.
    #[test]
    fn decide_never_panics(
        configured in 0..8usize,
        raw_views in prop::collection::vec(
            (0..3u8, any::<u64>(), any::<u64>(), 0..6usize, any::<String>()), 0..8),
        now in any::<u64>(),
        freshness in prop_oneof![Just(Duration::MAX), Just(Duration::ZERO), any::<u64>().prop_map(Duration::from_nanos)],
    ) {
        let forms = master_forms();
        let mut input = VerdictInput::new(configured, MonotonicTime::from_elapsed(Duration::from_nanos(now)));
        input.freshness = freshness;
        for (i, (kind, epoch, at, form, run)) in raw_views.into_iter().enumerate() {
            let observed_at = MonotonicTime::from_elapsed(if at % 7 == 0 { Duration::MAX } else { Duration::from_nanos(at) });
            let view = match kind {
                0 => SentinelView::Unreachable,
                1 => SentinelView::Unmonitored { observed_at },
                _ => {
                    let master = forms.get(form).cloned().or_else(|| run.parse().ok()).unwrap_or_else(|| forms[0].clone());
                    let mut report = SentinelReport::new(master, epoch, observed_at);
                    report.master_run_id = RunId::parse(&run).ok().flatten();
                    SentinelView::Reports(report)
                }
            };
            input.views.insert(sentinel(i), view);
        }
        let first = decide(&input, &aliases());
        let _ = first.to_string();
        prop_assert_eq!(first, decide(&input, &aliases()), "deterministic");
    }

    /// Address parsing is total too, and what it prints parses back to the same address.
    #[test]
    fn address_parsing_never_panics_and_round_trips(raw in any::<String>(), host in "[a-zA-Z0-9.:\\[\\]-]{0,20}", port in any::<u16>()) {
        if let Ok(parsed) = raw.parse::<Addr>() {
            prop_assert_eq!(parsed.to_string().parse::<Addr>(), Ok(parsed.clone()));
        }
        if let Ok(parsed) = Addr::from_parts(&host, &port.to_string()) {
            prop_assert_eq!(parsed.to_string().parse::<Addr>(), Ok(parsed.clone()));
            prop_assert_eq!(Addr::from_parts(&parsed.host().to_string(), &port.to_string()), Ok(parsed));
        }
        let _ = MasterFlags::from_flag_list(&raw);
        let _ = FailoverState::from_record_field(Some(&raw));
        let _ = RunId::parse(&raw);
    }
}
