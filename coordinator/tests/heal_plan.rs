//! The healer's decisions, without a sentinel in sight: each rule of `heal::plan` (H1-H6) as a
//! scenario, then properties over random views run through the real verdict, and the data-plane
//! choice of `heal::bootstrap`.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use sentinel_protocol::sentinel::MonitorSettings;
use valkey_coordinator::addr::{Addr, PodAliases};
use valkey_coordinator::service::heal::plan::{
    ExplicitSettings, HealReason, Plan, Planner, PlannerConfig, Snapshot,
};
use valkey_coordinator::verdict::dataplane::{PodProbe, Refusal, choose_master};
use valkey_coordinator::verdict::{
    DEFAULT_FRESHNESS, FailoverState, MonotonicTime, SentinelId, SentinelReport, SentinelView,
    Verdict, VerdictInput, decide, majority_of,
};

const GRACE: Duration = Duration::from_secs(5);
const COOL_DOWN: Duration = Duration::from_secs(1);

fn addr(raw: &str) -> Addr {
    raw.parse().expect("valid test address")
}

fn sentinel(index: usize) -> SentinelId {
    SentinelId::new(addr(&format!("10.9.0.{index}:26379")))
}

fn at(seconds: f64) -> MonotonicTime {
    MonotonicTime::from_elapsed(Duration::from_secs_f64(seconds))
}

fn reports(master: &str, epoch: u64, seconds: f64) -> SentinelView {
    SentinelView::Reports(SentinelReport::new(addr(master), epoch, at(seconds)))
}

fn unmonitored(seconds: f64) -> SentinelView {
    SentinelView::Unmonitored {
        observed_at: at(seconds),
    }
}

fn config(explicit: ExplicitSettings) -> PlannerConfig {
    PlannerConfig {
        grace: GRACE,
        cool_down: COOL_DOWN,
        explicit,
        aliases: PodAliases::new(),
    }
}

/// Builds the verdict with the real `decide` and plans on it at `now`.
#[derive(Debug)]
struct World {
    views: BTreeMap<SentinelId, SentinelView>,
    monitors: BTreeMap<SentinelId, MonitorSettings>,
    configured: usize,
}

impl World {
    fn new(views: Vec<SentinelView>) -> Self {
        let configured = views.len();
        Self {
            views: views
                .into_iter()
                .enumerate()
                .map(|(i, view)| (sentinel(i), view))
                .collect(),
            monitors: BTreeMap::new(),
            configured,
        }
    }

    fn verdict(&self, now: f64) -> Verdict {
        let mut input = VerdictInput::new(self.configured, at(now));
        input.views = self.views.clone();
        decide(&input, &PodAliases::new())
    }

    fn plan(&self, planner: &mut Planner, now: f64, config: &PlannerConfig) -> Plan {
        let verdict = self.verdict(now);
        planner.plan(
            &Snapshot {
                configured_sentinels: self.configured,
                verdict: &verdict,
                views: &self.views,
                monitors: &self.monitors,
                now: at(now),
                freshness: DEFAULT_FRESHNESS,
            },
            config,
        )
    }
}

fn heal_targets(plan: &Plan) -> Vec<(SentinelId, Addr, &'static str)> {
    match plan {
        Plan::Heal(actions) => actions
            .iter()
            .map(|a| (a.sentinel.clone(), a.master.clone(), a.reason.label()))
            .collect(),
        _ => Vec::new(),
    }
}

const M1: &str = "10.0.0.1:6379";
const M2: &str = "10.0.0.2:6379";

#[test]
fn a_wiped_sentinel_is_registered_at_once_on_the_master_the_other_two_agree_on() {
    let world = World::new(vec![
        reports(M2, 3, 100.0),
        reports(M2, 3, 100.0),
        unmonitored(100.0),
    ]);
    let plan = world.plan(
        &mut Planner::default(),
        100.0,
        &config(ExplicitSettings::default()),
    );
    assert_eq!(
        heal_targets(&plan),
        vec![(sentinel(2), addr(M2), "unmonitored")]
    );
}

#[test]
fn nothing_is_registered_without_a_majority_agreement() {
    // Two stopped (unreachable), the third wiped: no quorum, and too few reachable.
    let world = World::new(vec![
        SentinelView::Unreachable,
        SentinelView::Unreachable,
        unmonitored(100.0),
    ]);
    let plan = world.plan(
        &mut Planner::default(),
        100.0,
        &config(ExplicitSettings::default()),
    );
    assert!(matches!(plan, Plan::Idle(_)), "{plan:?}");

    // The epoch rule agrees on a lone leader at a higher epoch: not a majority, no heal.
    let world = World::new(vec![
        reports(M2, 4, 100.0),
        reports(M1, 3, 100.0),
        unmonitored(100.0),
    ]);
    assert!(world.verdict(100.0).agreement().is_some());
    let plan = world.plan(
        &mut Planner::default(),
        100.0,
        &config(ExplicitSettings::default()),
    );
    assert!(matches!(plan, Plan::Idle(_)), "{plan:?}");
}

#[test]
fn nothing_is_registered_while_a_failover_runs() {
    let mut leader = SentinelReport::new(addr(M2), 3, at(100.0));
    leader.failover_state = FailoverState::from_record_field(Some("reconf_slaves"));
    let world = World::new(vec![
        SentinelView::Reports(leader),
        reports(M2, 3, 100.0),
        unmonitored(100.0),
    ]);
    let plan = world.plan(
        &mut Planner::default(),
        100.0,
        &config(ExplicitSettings::default()),
    );
    assert!(matches!(plan, Plan::Idle(_)), "{plan:?}");
}

#[test]
fn stale_or_unreachable_views_are_never_acted_on() {
    let world = World::new(vec![
        reports(M2, 3, 100.0),
        reports(M2, 3, 100.0),
        unmonitored(90.0),
        SentinelView::Unreachable,
        reports(M1, 1, 90.0),
    ]);
    let plan = world.plan(
        &mut Planner::default(),
        100.0,
        &config(ExplicitSettings::default()),
    );
    // 2 of 5 is no majority: nothing at all.
    assert!(matches!(plan, Plan::Idle(_)), "{plan:?}");

    let world = World::new(vec![
        reports(M2, 3, 100.0),
        reports(M2, 3, 100.0),
        reports(M2, 3, 100.0),
        unmonitored(90.0),
        SentinelView::Unreachable,
    ]);
    let plan = world.plan(
        &mut Planner::default(),
        100.0,
        &config(ExplicitSettings::default()),
    );
    assert!(matches!(plan, Plan::Idle(_)), "{plan:?}");
}

#[test]
fn a_wrong_master_is_corrected_only_after_the_grace_period() {
    // Registered by hand on the old master at epoch 0 while the others agree at epoch 1.
    let mut world = World::new(vec![
        reports(M2, 1, 100.0),
        reports(M2, 1, 100.0),
        reports(M1, 0, 100.0),
    ]);
    let mut planner = Planner::default();
    let config = config(ExplicitSettings::default());
    assert!(matches!(
        world.plan(&mut planner, 100.0, &config),
        Plan::Idle(_)
    ));

    // Still wrong 4 s later: within the grace, the sentinels' gossip may fix it yet.
    for view in world.views.values_mut() {
        if let SentinelView::Reports(report) = view {
            report.observed_at = at(104.0);
        }
    }
    assert!(matches!(
        world.plan(&mut planner, 104.0, &config),
        Plan::Idle(_)
    ));

    for view in world.views.values_mut() {
        if let SentinelView::Reports(report) = view {
            report.observed_at = at(105.0);
        }
    }
    let plan = world.plan(&mut planner, 105.0, &config);
    assert_eq!(
        heal_targets(&plan),
        vec![(sentinel(2), addr(M2), "wrong_master")]
    );
    let Plan::Heal(actions) = plan else {
        unreachable!()
    };
    assert_eq!(
        actions[0].reason,
        HealReason::WrongMaster {
            reported: addr(M1),
            config_epoch: 0
        }
    );
}

#[test]
fn a_wrong_master_that_converges_by_gossip_restarts_the_grace() {
    let mut world = World::new(vec![
        reports(M2, 1, 100.0),
        reports(M2, 1, 100.0),
        reports(M1, 0, 100.0),
    ]);
    let mut planner = Planner::default();
    let config = config(ExplicitSettings::default());
    world.plan(&mut planner, 100.0, &config);
    // Gossip fixed it at 102 s ...
    world.views.insert(sentinel(2), reports(M2, 1, 102.0));
    world.plan(&mut planner, 102.0, &config);
    // ... and it went wrong again at 103 s: the grace counts from 103 s, not from 100 s.
    world.views.insert(sentinel(2), reports(M1, 0, 103.0));
    for (seconds, heals) in [(103.0, false), (107.5, false), (108.0, true)] {
        for view in world.views.values_mut() {
            if let SentinelView::Reports(report) = view {
                report.observed_at = at(seconds);
            }
        }
        let plan = world.plan(&mut planner, seconds, &config);
        assert_eq!(
            matches!(plan, Plan::Heal(_)),
            heals,
            "at {seconds}: {plan:?}"
        );
    }
}

#[test]
fn the_agreed_master_at_a_lower_epoch_is_left_to_gossip() {
    let world = World::new(vec![
        reports(M2, 4, 100.0),
        reports(M2, 4, 100.0),
        reports(M2, 0, 100.0),
    ]);
    let mut planner = Planner::default();
    let config = config(ExplicitSettings::default());
    assert!(matches!(
        world.plan(&mut planner, 100.0, &config),
        Plan::Idle(_)
    ));
    // Long past the grace, still fresh: still nothing to do.
    let mut later = World::new(vec![
        reports(M2, 4, 110.0),
        reports(M2, 4, 110.0),
        reports(M2, 0, 110.0),
    ]);
    later.monitors = world.monitors.clone();
    let plan = later.plan(&mut planner, 110.0, &config);
    assert!(matches!(plan, Plan::Idle(_)), "{plan:?}");
}

#[test]
fn explicit_settings_are_enforced_and_copied_ones_are_not() {
    let settings = |down_after_ms| MonitorSettings {
        quorum: 2,
        down_after_ms,
        failover_timeout_ms: 60_000,
        parallel_syncs: 1,
    };
    let mut world = World::new(vec![
        reports(M2, 1, 100.0),
        reports(M2, 1, 100.0),
        reports(M2, 1, 100.0),
    ]);
    world.monitors.insert(sentinel(0), settings(20_000));
    world.monitors.insert(sentinel(1), settings(20_000));
    world.monitors.insert(sentinel(2), settings(30_000));

    let plan = world.plan(
        &mut Planner::default(),
        100.0,
        &config(ExplicitSettings::default()),
    );
    assert!(matches!(plan, Plan::Idle(_)), "{plan:?}");

    let explicit = ExplicitSettings {
        down_after_ms: Some(20_000),
        ..ExplicitSettings::default()
    };
    let plan = world.plan(&mut Planner::default(), 100.0, &config(explicit));
    let Plan::Heal(actions) = plan else {
        panic!("{plan:?}")
    };
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].sentinel, sentinel(2));
    assert_eq!(
        actions[0].reason,
        HealReason::Settings {
            differences: vec![("down-after-milliseconds", 20_000)]
        }
    );
}

#[test]
fn a_sentinel_just_acted_on_is_left_alone_for_the_cool_down() {
    let world = World::new(vec![
        reports(M2, 3, 100.0),
        reports(M2, 3, 100.0),
        unmonitored(100.0),
    ]);
    let mut planner = Planner::default();
    let config = config(ExplicitSettings::default());
    assert!(matches!(
        world.plan(&mut planner, 100.0, &config),
        Plan::Heal(_)
    ));
    planner.acted(&sentinel(2), at(100.0));
    assert!(matches!(
        world.plan(&mut planner, 100.5, &config),
        Plan::Idle(_)
    ));
    assert!(matches!(
        world.plan(&mut planner, 101.0, &config),
        Plan::Heal(_)
    ));
}

#[test]
fn lost_monitors_with_a_reachable_majority_ask_the_data_pods() {
    // Two wiped, one still monitoring.
    let world = World::new(vec![
        reports(M2, 3, 100.0),
        unmonitored(100.0),
        unmonitored(100.0),
    ]);
    let plan = world.plan(
        &mut Planner::default(),
        100.0,
        &config(ExplicitSettings::default()),
    );
    assert_eq!(
        plan,
        Plan::ProbeDataPods {
            targets: vec![sentinel(1), sentinel(2)],
            named: Some(addr(M2)),
        }
    );
    // All three wiped.
    let world = World::new(vec![unmonitored(100.0); 3]);
    let plan = world.plan(
        &mut Planner::default(),
        100.0,
        &config(ExplicitSettings::default()),
    );
    assert_eq!(
        plan,
        Plan::ProbeDataPods {
            targets: vec![sentinel(0), sentinel(1), sentinel(2)],
            named: None,
        }
    );
    // One wiped, one unreachable, one monitoring: a reachable majority, so the pods decide.
    let world = World::new(vec![
        reports(M2, 3, 100.0),
        SentinelView::Unreachable,
        unmonitored(100.0),
    ]);
    let plan = world.plan(
        &mut Planner::default(),
        100.0,
        &config(ExplicitSettings::default()),
    );
    assert!(matches!(plan, Plan::ProbeDataPods { .. }), "{plan:?}");
    // Of five, one monitoring and one wiped are a minority: nothing.
    let world = World::new(vec![
        reports(M2, 3, 100.0),
        SentinelView::Unreachable,
        unmonitored(100.0),
        SentinelView::Unreachable,
        SentinelView::Unreachable,
    ]);
    let plan = world.plan(
        &mut Planner::default(),
        100.0,
        &config(ExplicitSettings::default()),
    );
    assert!(matches!(plan, Plan::Idle(_)), "{plan:?}");
    // The monitoring ones disagree: nothing.
    let world = World::new(vec![
        reports(M2, 3, 100.0),
        reports(M1, 3, 100.0),
        unmonitored(100.0),
        unmonitored(100.0),
        SentinelView::Unreachable,
    ]);
    let plan = world.plan(
        &mut Planner::default(),
        100.0,
        &config(ExplicitSettings::default()),
    );
    assert!(matches!(plan, Plan::Idle(_)), "{plan:?}");
}

fn master(attached: &[&str], offset: i64) -> PodProbe {
    PodProbe::Master {
        attached: attached.iter().map(|a| addr(a)).collect(),
        offset,
    }
}

fn replica_of(master: &str) -> PodProbe {
    PodProbe::Replica {
        master: Some(addr(master)),
        link_up: true,
    }
}

const D0: &str = "10.0.0.10:6379";
const D1: &str = "10.0.0.11:6379";
const D2: &str = "10.0.0.12:6379";

#[test]
fn the_data_pods_prove_the_one_master_with_attached_replicas() {
    let probes = vec![
        (addr(D0), replica_of(D1)),
        (addr(D1), master(&[D0, D2], 500)),
        (addr(D2), replica_of(D1)),
    ];
    assert_eq!(
        choose_master(&probes, None, &PodAliases::new()),
        Ok(addr(D1))
    );
    assert_eq!(
        choose_master(&probes, Some(&addr(D1)), &PodAliases::new()),
        Ok(addr(D1))
    );
    assert_eq!(
        choose_master(&probes, Some(&addr(D0)), &PodAliases::new()),
        Err(Refusal::Conflict {
            proven: addr(D1),
            named: addr(D0)
        })
    );
}

#[test]
fn a_master_without_replicas_is_never_chosen_even_when_listed_first() {
    let probes = vec![
        (addr(D0), master(&[], 900)),
        (addr(D1), master(&[D2], 500)),
        (addr(D2), replica_of(D1)),
    ];
    assert_eq!(
        choose_master(&probes, None, &PodAliases::new()),
        Ok(addr(D1))
    );

    let lonely = vec![
        (addr(D0), master(&[], 900)),
        (addr(D1), PodProbe::Unreachable),
        (addr(D2), replica_of(D1)),
    ];
    assert_eq!(
        choose_master(&lonely, None, &PodAliases::new()),
        Err(Refusal::NoMasterWithReplicas {
            masters: vec![addr(D0)]
        })
    );
}

#[test]
fn two_masters_with_replicas_resolve_by_the_newest_offset_or_not_at_all() {
    let probes = vec![
        (addr(D0), master(&[D2], 400)),
        (addr(D1), master(&["10.0.0.13:6379"], 500)),
    ];
    assert_eq!(
        choose_master(&probes, None, &PodAliases::new()),
        Ok(addr(D1))
    );
    let tie = vec![
        (addr(D0), master(&[D2], 500)),
        (addr(D1), master(&["10.0.0.13:6379"], 500)),
    ];
    assert_eq!(
        choose_master(&tie, None, &PodAliases::new()),
        Err(Refusal::Tie {
            masters: vec![addr(D0), addr(D1)],
            offset: 500
        })
    );
}

// ---- properties ----

fn any_view() -> impl Strategy<Value = SentinelView> {
    let master = prop_oneof![Just(M1), Just(M2), Just("10.0.0.3:6379")];
    let seconds = prop_oneof![4 => Just(100.0), 1 => Just(97.0)];
    prop_oneof![
        1 => Just(SentinelView::Unreachable),
        2 => seconds.clone().prop_map(unmonitored),
        5 => (master, 0u64..3, seconds, any::<bool>()).prop_map(|(m, epoch, s, failing)| {
            let mut report = SentinelReport::new(addr(m), epoch, at(s));
            if failing {
                report.failover_state = FailoverState::from_record_field(Some("wait_promotion"));
            }
            SentinelView::Reports(report)
        }),
    ]
}

fn any_world() -> impl Strategy<Value = World> {
    prop_oneof![Just(3usize), Just(5usize)]
        .prop_flat_map(|n| proptest::collection::vec(any_view(), n))
        .prop_map(World::new)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// H1 and H5: every registration names the master a majority agreed on with no failover
    /// running, and goes to a sentinel whose view is fresh and not a vote for that master.
    #[test]
    fn registrations_only_follow_a_settled_majority(world in any_world(), later in 0.0f64..20.0) {
        let config = config(ExplicitSettings::default());
        let mut planner = Planner::default();
        // Plan twice: once now, once after `later` seconds with the same views (grace).
        for now in [100.0, 100.0 + later] {
            let verdict = world.verdict(now);
            let plan = world.plan(&mut planner, now, &config);
            match &plan {
                Plan::Heal(actions) => {
                    let agreement = verdict.agreement().expect("heals only under an agreement");
                    prop_assert!(agreement.votes >= majority_of(world.configured));
                    prop_assert!(!agreement.failover_in_progress);
                    for action in actions {
                        prop_assert_eq!(&action.master, &agreement.master);
                        prop_assert!(!agreement.voters.contains(&action.sentinel));
                        let view = &world.views[&action.sentinel];
                        let fresh = match view {
                            SentinelView::Unreachable => false,
                            SentinelView::Unmonitored { observed_at } => observed_at.age_at(at(now)) <= DEFAULT_FRESHNESS,
                            SentinelView::Reports(report) => report.observed_at.age_at(at(now)) <= DEFAULT_FRESHNESS,
                        };
                        prop_assert!(fresh, "acted on a stale view {view:?}");
                    }
                }
                Plan::ProbeDataPods { targets, .. } => {
                    prop_assert!(verdict.agreement().is_none());
                    for target in targets {
                        let is_unmonitored = matches!(world.views[target], SentinelView::Unmonitored { .. });
                        prop_assert!(is_unmonitored);
                    }
                }
                Plan::Idle(_) => {}
            }
        }
    }

    /// The plan does not depend on which sentinel id holds which view.
    #[test]
    fn the_plan_is_the_same_under_any_order_of_sentinels(world in any_world(), seed in any::<u64>()) {
        let config = config(ExplicitSettings::default());
        let plan = world.plan(&mut Planner::default(), 100.0, &config);
        let mut views: Vec<SentinelView> = world.views.values().cloned().collect();
        let len = views.len();
        let mut state = seed;
        for i in (1..len).rev() {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            views.swap(i, (state >> 33) as usize % (i + 1));
        }
        let shuffled = World::new(views);
        let other = shuffled.plan(&mut Planner::default(), 100.0, &config);
        let summary = |plan: &Plan, world: &World| -> Vec<String> {
            let mut out: Vec<String> = match plan {
                Plan::Heal(actions) => actions.iter().map(|a| format!("{:?} {} {}", world.views[&a.sentinel], a.master, a.reason.label())).collect(),
                Plan::ProbeDataPods { targets, named } => targets.iter().map(|t| format!("probe {:?} {named:?}", world.views[t])).collect(),
                Plan::Idle(_) => vec!["idle".to_owned()],
            };
            out.sort();
            out
        };
        prop_assert_eq!(summary(&plan, &world), summary(&other, &shuffled));
    }

    /// The data pods' choice is a master with attached replicas and the newest offset among
    /// such masters, whatever the order of the pods; or a refusal.
    #[test]
    fn the_data_plane_choice_is_order_free_and_never_a_master_without_replicas(
        pods in proptest::collection::vec((0usize..3, 0i64..3, any::<bool>()), 1..5),
        seed in any::<u64>(),
    ) {
        let probes: Vec<(Addr, PodProbe)> = pods
            .iter()
            .enumerate()
            .map(|(i, (kind, offset, attached))| {
                let me = addr(&format!("10.0.1.{i}:6379"));
                let probe = match kind {
                    0 => PodProbe::Unreachable,
                    1 => master(if *attached { &["10.0.2.1:6379"] } else { &[] }, *offset),
                    _ => replica_of("10.0.1.0:6379"),
                };
                (me, probe)
            })
            .collect();
        let chosen = choose_master(&probes, None, &PodAliases::new());
        let mut reversed = probes.clone();
        reversed.reverse();
        let shift = (seed as usize) % reversed.len().max(1);
        reversed.rotate_left(shift);
        prop_assert_eq!(&chosen, &choose_master(&reversed, None, &PodAliases::new()));
        if let Ok(master) = chosen {
            let newest = probes.iter().filter_map(|(_, p)| match p {
                PodProbe::Master { attached, offset } if !attached.is_empty() => Some(*offset),
                _ => None,
            }).max();
            let (_, probe) = probes.iter().find(|(a, _)| *a == master).expect("a probed pod");
            let is_newest_attached = matches!(probe, PodProbe::Master { attached, offset } if !attached.is_empty() && Some(*offset) == newest);
            prop_assert!(is_newest_attached);
        }
    }
}
