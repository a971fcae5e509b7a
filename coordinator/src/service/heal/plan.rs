//! Which sentinels to re-register, and on which master: a pure decision over one published
//! [`NameState`]-like snapshot, so every rule is testable without a sentinel in sight.
//!
//! # Rules
//!
//! - **H1. Only on proof.** Sentinels are healed towards a master only when the verdict is
//!   `Agreed` by a majority of the configured N (not the epoch rule's lone leader) with no
//!   failover in progress. Mid-failover, lower epochs and odd addresses are expected and the
//!   sentinels settle them themselves.
//! - **H2. Unmonitored → register at once.** A fresh `Unmonitored` view is an emptyDir restart:
//!   nothing will teach that sentinel the master but a `SENTINEL MONITOR`, so there is no reason
//!   to wait.
//! - **H3. Wrong master → correct after the grace period.** A fresh report naming another master
//!   than the agreed one, for longer than the grace period, is corrected (`REMOVE`, then the
//!   whole registration). The grace lets the sentinels' own gossip win first: a sentinel at a
//!   lower epoch adopts the newer configuration from the next hello message (within about 2 s);
//!   only a report at the *same* epoch (hand-made registrations at epoch 0) never converges by
//!   itself. A report naming the agreed master at a lower epoch is left alone: it already names
//!   the right master and its epoch catches up through the same gossip.
//! - **H4. Explicit settings are enforced.** A sentinel that names the agreed master but whose
//!   monitor differs from a setting the operator gave explicitly (quorum, down-after,
//!   failover-timeout, parallel-syncs) gets a `SENTINEL SET`. Settings left unset are copied from
//!   the agreed master's record at registration and never enforced.
//! - **H5. Unreachable or stale views are never acted on**: nothing is known about them now.
//! - **H6. Lost monitors, data-plane proof.** When the sentinels cannot agree only because too
//!   few of them still monitor the name (a majority of N is reachable and fresh, fewer than a
//!   majority monitor, the ones that do name one master and none is failing over), the data
//!   pods decide (see [`crate::verdict::dataplane`]). This covers two and three sentinels wiped at once,
//!   where waiting for a sentinel majority would wait forever: emptyDir restarts never give a
//!   monitor back by themselves.
//!
//! A sentinel that was just acted on is left alone for a cool-down, so one heal is not sent
//! again while its effect travels back through the next poll.

use std::collections::BTreeMap;
use std::time::Duration;

use sentinel_protocol::sentinel::MonitorSettings;

use crate::addr::{Addr, PodAliases};
use crate::verdict::{MonotonicTime, SentinelId, SentinelView, Verdict, majority_of};

/// The monitor settings an operator gave explicitly; `None` means "copy from the agreed
/// master's record, do not enforce".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExplicitSettings {
    pub quorum: Option<u64>,
    pub down_after_ms: Option<u64>,
    pub failover_timeout_ms: Option<u64>,
    pub parallel_syncs: Option<u64>,
}

impl ExplicitSettings {
    /// The values, in the order of [`MonitorSettings::OPTIONS`].
    fn values(&self) -> [Option<u64>; 4] {
        [
            self.down_after_ms,
            self.failover_timeout_ms,
            self.parallel_syncs,
            self.quorum,
        ]
    }

    /// The settings of `actual` that differ from an explicit one, as `(option, wanted)`.
    pub fn differences(&self, actual: &MonitorSettings) -> Vec<(&'static str, u64)> {
        MonitorSettings::OPTIONS
            .into_iter()
            .zip(self.values())
            .zip(actual.values())
            .filter_map(|((option, wanted), found)| {
                wanted
                    .filter(|wanted| *wanted != found)
                    .map(|wanted| (option, wanted))
            })
            .collect()
    }
}

/// Why a sentinel is acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealReason {
    /// It monitors nothing of this name (H2).
    Unmonitored,
    /// It names another master than the agreed one, since longer than the grace period (H3).
    WrongMaster { reported: Addr, config_epoch: u64 },
    /// It names the agreed master with settings that differ from explicit ones (H4).
    Settings {
        differences: Vec<(&'static str, u64)>,
    },
    /// Every monitor was lost and the data pods prove the master (H6).
    DataPlane,
}

impl std::fmt::Display for HealReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealReason::Unmonitored => f.write_str("monitored nothing"),
            HealReason::WrongMaster {
                reported,
                config_epoch,
            } => write!(f, "named {reported} at epoch {config_epoch}"),
            HealReason::Settings { differences } => {
                f.write_str("differed in")?;
                for (option, value) in differences {
                    write!(f, " {option} (expected {value})")?;
                }
                Ok(())
            }
            HealReason::DataPlane => {
                f.write_str("every monitor lost; the data pods prove the master")
            }
        }
    }
}

impl HealReason {
    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            HealReason::Unmonitored => "unmonitored",
            HealReason::WrongMaster { .. } => "wrong_master",
            HealReason::Settings { .. } => "settings",
            HealReason::DataPlane => "data_plane",
        }
    }
}

/// One thing to do to one sentinel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealAction {
    pub sentinel: SentinelId,
    /// The master it must monitor.
    pub master: Addr,
    pub reason: HealReason,
}

/// What the planner decided for one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Act on these sentinels (never empty).
    Heal(Vec<HealAction>),
    /// Ask the data pods (H6), then register the master they prove on `targets` (never empty).
    /// `named` is the master the still-monitoring sentinels name, if any: the data pods' answer
    /// must agree with it.
    ProbeDataPods {
        targets: Vec<SentinelId>,
        named: Option<Addr>,
    },
    /// Nothing to do, and why (for debug logs).
    Idle(&'static str),
}

/// What the planner reads: one name's verdict and views, and the settings each monitoring
/// sentinel reports.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    pub configured_sentinels: usize,
    pub verdict: &'a Verdict,
    pub views: &'a BTreeMap<SentinelId, SentinelView>,
    pub monitors: &'a BTreeMap<SentinelId, MonitorSettings>,
    pub now: MonotonicTime,
    pub freshness: Duration,
}

/// The planner's memory between snapshots: since when each sentinel has named a wrong master,
/// and when each was last acted on.
#[derive(Debug, Clone, Default)]
pub struct Planner {
    wrong_since: BTreeMap<SentinelId, (Addr, MonotonicTime)>,
    acted_at: BTreeMap<SentinelId, MonotonicTime>,
}

/// How the planner is tuned.
#[derive(Debug, Clone)]
pub struct PlannerConfig {
    /// How long a wrong master may be reported before it is corrected (H3).
    pub grace: Duration,
    /// How long a sentinel is left alone after an action.
    pub cool_down: Duration,
    /// Settings to enforce (H4).
    pub explicit: ExplicitSettings,
    /// Address forms that stand for the same pod.
    pub aliases: PodAliases,
}

impl Planner {
    /// Decides what to do with `snapshot`, remembering what it needs for the next one.
    pub fn plan(&mut self, snapshot: &Snapshot<'_>, config: &PlannerConfig) -> Plan {
        let fresh =
            |observed_at: MonotonicTime| observed_at.age_at(snapshot.now) <= snapshot.freshness;
        let same = |a: &Addr, b: &Addr| config.aliases.identify(a) == config.aliases.identify(b);
        self.forget_wrong_masters_that_ended(snapshot, &fresh, &same);
        let cooling = |sentinel: &SentinelId| {
            self.acted_at
                .get(sentinel)
                .is_some_and(|at| at.age_at(snapshot.now) < config.cool_down)
        };

        let majority = majority_of(snapshot.configured_sentinels);
        let agreement = match snapshot.verdict {
            Verdict::Agreed(agreement) => agreement,
            Verdict::NoQuorum(_) => {
                return self.plan_data_plane(snapshot, majority, &fresh, &same, &cooling);
            }
        };
        if agreement.votes < majority {
            return Plan::Idle("the agreement is not (yet) a majority of the configured sentinels");
        }
        if agreement.failover_in_progress {
            return Plan::Idle("a failover is in progress");
        }

        let mut actions = Vec::new();
        for (sentinel, view) in snapshot.views {
            if cooling(sentinel) {
                continue;
            }
            let reason = match view {
                SentinelView::Unreachable => None,
                SentinelView::Unmonitored { observed_at } => {
                    fresh(*observed_at).then_some(HealReason::Unmonitored)
                }
                SentinelView::Reports(report) if !fresh(report.observed_at) => None,
                SentinelView::Reports(report) if same(&report.master, &agreement.master) => {
                    let differences = snapshot
                        .monitors
                        .get(sentinel)
                        .map(|settings| config.explicit.differences(settings))
                        .unwrap_or_default();
                    (!differences.is_empty()).then_some(HealReason::Settings { differences })
                }
                SentinelView::Reports(report) => {
                    let since = self
                        .wrong_since
                        .entry(sentinel.clone())
                        .or_insert_with(|| (report.master.clone(), report.observed_at))
                        .1;
                    (since.age_at(snapshot.now) >= config.grace).then(|| HealReason::WrongMaster {
                        reported: report.master.clone(),
                        config_epoch: report.config_epoch,
                    })
                }
            };
            if let Some(reason) = reason {
                actions.push(HealAction {
                    sentinel: sentinel.clone(),
                    master: agreement.master.clone(),
                    reason,
                });
            }
        }
        if actions.is_empty() {
            Plan::Idle("every reachable sentinel monitors the agreed master")
        } else {
            Plan::Heal(actions)
        }
    }

    /// Records that `sentinel` was acted on at `at`, starting its cool-down.
    pub fn acted(&mut self, sentinel: &SentinelId, at: MonotonicTime) {
        self.acted_at.insert(sentinel.clone(), at);
        self.wrong_since.remove(sentinel);
    }

    /// H6: the verdict has no quorum; is it only because monitors were lost?
    fn plan_data_plane(
        &self,
        snapshot: &Snapshot<'_>,
        majority: usize,
        fresh: &impl Fn(MonotonicTime) -> bool,
        same: &impl Fn(&Addr, &Addr) -> bool,
        cooling: &impl Fn(&SentinelId) -> bool,
    ) -> Plan {
        let mut unmonitored = Vec::new();
        let mut named: Option<&Addr> = None;
        let mut monitoring = 0;
        for (sentinel, view) in snapshot.views {
            match view {
                SentinelView::Unmonitored { observed_at } if fresh(*observed_at) => {
                    unmonitored.push(sentinel.clone());
                }
                SentinelView::Reports(report) if fresh(report.observed_at) => {
                    if report.failover_in_progress() {
                        return Plan::Idle("a monitoring sentinel is failing over");
                    }
                    match named {
                        Some(addr) if !same(addr, &report.master) => {
                            return Plan::Idle("the monitoring sentinels name different masters");
                        }
                        _ => named = Some(&report.master),
                    }
                    monitoring += 1;
                }
                _ => {}
            }
        }
        if unmonitored.is_empty() {
            return Plan::Idle("no quorum, and no sentinel lost its monitor");
        }
        if monitoring >= majority {
            return Plan::Idle("a majority monitors the name: the sentinels decide");
        }
        if monitoring + unmonitored.len() < majority {
            return Plan::Idle("fewer than a majority of the sentinels are reachable");
        }
        unmonitored.retain(|sentinel| !cooling(sentinel));
        if unmonitored.is_empty() {
            return Plan::Idle("the unmonitored sentinels were just registered");
        }
        Plan::ProbeDataPods {
            targets: unmonitored,
            named: named.cloned(),
        }
    }

    /// A wrong-master spell ends when the sentinel stops naming that master freshly.
    fn forget_wrong_masters_that_ended(
        &mut self,
        snapshot: &Snapshot<'_>,
        fresh: &impl Fn(MonotonicTime) -> bool,
        same: &impl Fn(&Addr, &Addr) -> bool,
    ) {
        let agreed = snapshot.verdict.agreement().map(|a| &a.master);
        self.wrong_since.retain(|sentinel, (reported, _)| {
            matches!(
                snapshot.views.get(sentinel),
                Some(SentinelView::Reports(report))
                    if fresh(report.observed_at)
                        && same(&report.master, reported)
                        && agreed.is_none_or(|agreed| !same(agreed, reported))
            )
        });
    }
}
