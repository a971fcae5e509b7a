//! A schedule: what a seed expands into. Pure: no I/O, no clock; the same seed always gives the
//! same schedule, and `Display` prints all of it, so a failing seed can be read and replayed.

use std::fmt;

use crate::version::ValkeyVersion;

/// A small, dependency-free PRNG (splitmix64): good enough to pick faults, and stable across
/// releases of anything, which a replayable seed needs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_fa17_0000_0000)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A pod named relative to the group's state when the step runs: the agreed master at that
/// moment, or one of its replicas (`0` or `1`, in ordinal order), or a sentinel by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The agreed master.
    Master,
    /// The `k`-th replica of the agreed master, in ordinal order.
    Replica(usize),
    /// Sentinel `j`.
    Sentinel(usize),
    /// The coordinator (only in network faults: it is restarted by its own action).
    Coordinator,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Master => f.write_str("master"),
            Role::Replica(k) => write!(f, "replica#{k}"),
            Role::Sentinel(j) => write!(f, "sentinel-{j}"),
            Role::Coordinator => f.write_str("coordinator"),
        }
    }
}

/// A network fault over roles; the runner turns it into a [`crate::netns::Fault`] on members.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NetFault {
    /// Nothing passes between `a` and `b` (silent).
    Partition {
        /// One side.
        a: Vec<Role>,
        /// The other side (the coordinator stays with this side unless `a` holds it).
        b: Vec<Role>,
    },
    /// What `from` sends to `to` is dropped; the other way flows.
    OneWay {
        /// Senders.
        from: Vec<Role>,
        /// Receivers.
        to: Vec<Role>,
    },
    /// Sentinel `j` cut from every other member, the coordinator included: a black hole.
    SentinelBlackHole(usize),
    /// Each packet the pod sends lost with this probability.
    Lossy(Role, u8),
    /// The pod's egress limited to this many kbit/s.
    Slow(Role, u32),
    /// Every packet the pod sends held `ms`, plus a random extra up to `jitter_ms` (which
    /// reorders them).
    Delay {
        /// Whose egress.
        role: Role,
        /// The fixed part, in milliseconds.
        ms: u64,
        /// The random extra's bound, in milliseconds.
        jitter_ms: u64,
    },
}

impl NetFault {
    /// The kind, for counting faults by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            NetFault::Partition { .. } => "partition",
            NetFault::OneWay { .. } => "one-way",
            NetFault::SentinelBlackHole(_) => "sentinel-black-hole",
            NetFault::Lossy(..) => "lossy",
            NetFault::Slow(..) => "slow",
            NetFault::Delay { .. } => "delay",
        }
    }
}

fn roles(set: &[Role]) -> String {
    let names: Vec<String> = set.iter().map(Role::to_string).collect();
    format!("{{{}}}", names.join(" "))
}

impl fmt::Display for NetFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetFault::Partition { a, b } => write!(f, "partition {} | {}", roles(a), roles(b)),
            NetFault::OneWay { from, to } => write!(f, "one-way {} -> {}", roles(from), roles(to)),
            NetFault::SentinelBlackHole(j) => {
                write!(
                    f,
                    "black-hole sentinel-{j} (from everyone, coordinator included)"
                )
            }
            NetFault::Lossy(role, p) => write!(f, "lossy {role} {p}%"),
            NetFault::Slow(role, kbit) => write!(f, "slow {role} to {kbit}kbit"),
            NetFault::Delay {
                role,
                ms,
                jitter_ms: 0,
            } => write!(f, "delay {role} by {ms} ms"),
            NetFault::Delay {
                role,
                ms,
                jitter_ms,
            } => write!(
                f,
                "delay {role} by {ms} to {} ms (reordered)",
                ms + jitter_ms
            ),
        }
    }
}

/// What one step does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// `kill -9` a data pod; once the sentinels agree on a master (a new one, if it was the
    /// master) restart it on its data as that master's replica, as its start script would.
    Kill(Role),
    /// `kill -9` sentinel `j`; restart it from its own config.
    KillSentinel(usize),
    /// SIGSTOP the pod for the hold, then SIGCONT.
    Pause(Role),
    /// Restart sentinel `j` with a wiped config (emptyDir): the coordinator must re-register it.
    WipeSentinel(usize),
    /// `kill -9` the coordinator; start it again after the hold.
    RestartCoordinator,
    /// A network fault for the hold, then healed.
    Net(NetFault),
    /// A planned, untargeted `switchover`: no acknowledged write may be lost.
    Switchover,
    /// A planned `member-leave` of the master (a scale-in of that pod): no acknowledged write
    /// may be lost. The pod then comes back as a replica (the scale-out after).
    MemberLeave,
}

impl Action {
    /// The kind, for counting faults by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Kill(Role::Master) => "kill-9-master",
            Action::Kill(_) => "restart-replica",
            Action::KillSentinel(_) => "kill-9-sentinel",
            Action::Pause(Role::Sentinel(_)) => "sigstop-sentinel",
            Action::Pause(_) => "sigstop-master",
            Action::WipeSentinel(_) => "wiped-sentinel",
            Action::RestartCoordinator => "restart-coordinator",
            Action::Net(net) => net.kind(),
            Action::Switchover => "switchover",
            Action::MemberLeave => "member-leave",
        }
    }

    /// Whether it is a planned operation.
    pub fn is_planned(&self) -> bool {
        matches!(self, Action::Switchover | Action::MemberLeave)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Kill(role) => write!(f, "kill -9 {role}, restart it as a replica"),
            Action::KillSentinel(j) => write!(f, "kill -9 sentinel-{j}, restart it"),
            Action::Pause(role) => write!(f, "SIGSTOP {role}, then SIGCONT"),
            Action::WipeSentinel(j) => write!(f, "restart sentinel-{j} wiped"),
            Action::RestartCoordinator => f.write_str("kill -9 the coordinator, start it again"),
            Action::Net(net) => write!(f, "{net}, then heal"),
            Action::Switchover => f.write_str("planned switchover (untargeted)"),
            Action::MemberLeave => {
                f.write_str("planned member-leave of the master, which then rejoins as a replica")
            }
        }
    }
}

/// One step: an action held for `hold_ms` (what it holds: a pod down, a pod stopped, a cut),
/// after which the runner heals it and waits for the group to settle before the next step.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Step {
    /// What.
    pub action: Action,
    /// For how long, in milliseconds.
    pub hold_ms: u64,
}

/// A bounded list of steps expanded from a seed, and the build it runs on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Schedule {
    /// The seed it came from.
    pub seed: u64,
    /// The Valkey build of the data pods and sentinels ([`Schedule::DEFAULT_VERSION`] unless
    /// [`Schedule::on`] says otherwise); a seed gives the same steps on every build.
    pub version: ValkeyVersion,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// Steps per schedule.
const MIN_STEPS: u64 = 2;
const MAX_STEPS: u64 = 3;
/// Hold times, in milliseconds: from below the sentinels' `down-after-milliseconds` (2000) to
/// well past it, so some faults heal before any failover and some after one.
const MIN_HOLD_MS: u64 = 400;
const MAX_HOLD_MS: u64 = 3500;
/// Chance a schedule of [`MIN_STEPS`] faults carries a planned operation too (a switchover or a
/// member-leave), in percent: a schedule has at most [`MAX_STEPS`] steps, so that a seed, failovers
/// and settling included, stays well under 30 s.
const PLANNED_PERCENT: u64 = 80;

impl Schedule {
    /// The build a schedule runs on unless [`Schedule::on`] names another.
    pub const DEFAULT_VERSION: ValkeyVersion = ValkeyVersion::V9_1_2;

    /// The same steps on `version`.
    pub fn on(self, version: ValkeyVersion) -> Schedule {
        Schedule { version, ..self }
    }

    /// The schedule for `seed`, for a group of 3 data pods and 3 sentinels.
    pub fn from_seed(seed: u64) -> Schedule {
        let mut rng = Rng::new(seed);
        let count = rng.between(MIN_STEPS, MAX_STEPS);
        let mut steps: Vec<Step> = (0..count)
            .map(|_| Step {
                action: random_fault(&mut rng),
                hold_ms: rng.between(MIN_HOLD_MS, MAX_HOLD_MS) / 100 * 100,
            })
            .collect();
        if count < MAX_STEPS && rng.chance(PLANNED_PERCENT) {
            let at = rng.below(steps.len() as u64 + 1) as usize;
            let action = if rng.chance(50) {
                Action::Switchover
            } else {
                Action::MemberLeave
            };
            steps.insert(at, Step { action, hold_ms: 0 });
        }
        Schedule {
            seed,
            version: Self::DEFAULT_VERSION,
            steps,
        }
    }
}

fn random_fault(rng: &mut Rng) -> Action {
    let sentinel = |rng: &mut Rng| rng.below(3) as usize;
    let sentinels = [Role::Sentinel(0), Role::Sentinel(1), Role::Sentinel(2)];
    let pods = [
        Role::Master,
        Role::Replica(0),
        Role::Replica(1),
        Role::Sentinel(0),
        Role::Sentinel(1),
        Role::Sentinel(2),
    ];
    match rng.below(14) {
        0 => Action::Kill(Role::Master),
        1 => Action::Pause(Role::Master),
        2 => Action::KillSentinel(sentinel(rng)),
        3 => Action::Pause(Role::Sentinel(sentinel(rng))),
        4 => Action::WipeSentinel(sentinel(rng)),
        5 => Action::Kill(Role::Replica(rng.below(2) as usize)),
        6 => Action::RestartCoordinator,
        // The master from the sentinels only: replicas and clients still reach it.
        7 => Action::Net(NetFault::Partition {
            a: vec![Role::Master],
            b: sentinels.to_vec(),
        }),
        8 => Action::Net(NetFault::SentinelBlackHole(sentinel(rng))),
        // Any set of pods against the rest: a random non-empty proper subset.
        9 => {
            let mask = rng.between(1, (1 << pods.len()) - 2);
            let (a, b): (Vec<_>, Vec<_>) = pods
                .iter()
                .enumerate()
                .partition(|(i, _)| mask & (1 << i) != 0);
            let side = |set: Vec<(usize, &Role)>| set.into_iter().map(|(_, r)| *r).collect();
            let (a, b) = (side(a), side(b));
            Action::Net(NetFault::Partition { a, b })
        }
        // One way: the master and the sentinels either way, or any set of members (the
        // coordinator among them) towards any set of the others.
        10 => match rng.below(4) {
            0 => Action::Net(NetFault::OneWay {
                from: vec![Role::Master],
                to: sentinels.to_vec(),
            }),
            1 => Action::Net(NetFault::OneWay {
                from: sentinels.to_vec(),
                to: vec![Role::Master],
            }),
            _ => {
                let mut everyone = pods.to_vec();
                everyone.push(Role::Coordinator);
                let mask = rng.between(1, (1 << everyone.len()) - 2);
                let (from, rest): (Vec<_>, Vec<_>) = everyone
                    .iter()
                    .enumerate()
                    .partition(|(i, _)| mask & (1 << i) != 0);
                let from: Vec<Role> = from.into_iter().map(|(_, r)| *r).collect();
                let rest: Vec<Role> = rest.into_iter().map(|(_, r)| *r).collect();
                // A non-empty subset of the others receives nothing from `from`.
                let pick = rng.between(1, (1 << rest.len()) - 1);
                let to = rest
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| pick & (1 << i) != 0)
                    .map(|(_, r)| *r)
                    .collect();
                Action::Net(NetFault::OneWay { from, to })
            }
        },
        11 => {
            let role = pods[rng.below(pods.len() as u64) as usize];
            Action::Net(NetFault::Lossy(role, rng.between(10, 60) as u8))
        }
        12 => {
            let mut everyone = pods.to_vec();
            everyone.push(Role::Coordinator);
            let role = everyone[rng.below(everyone.len() as u64) as usize];
            let ms = [20, 100, 300, 1000][rng.below(4) as usize];
            let jitter_ms = if rng.chance(50) { ms } else { 0 };
            Action::Net(NetFault::Delay {
                role,
                ms,
                jitter_ms,
            })
        }
        _ => {
            let role = pods[rng.below(pods.len() as u64) as usize];
            Action::Net(NetFault::Slow(role, [64, 256, 1000][rng.below(3) as usize]))
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = if self.version == Self::DEFAULT_VERSION {
            String::new()
        } else {
            format!("FAULT_VERSION={} ", self.version.as_str())
        };
        writeln!(
            f,
            "seed {} on {} ({} steps; replay: {version}FAULT_SEED={} cargo nextest run \
             -p valkey-lab --all-features --test faults --run-ignored all replay)",
            self.seed,
            self.version.as_str(),
            self.steps.len(),
            self.seed
        )?;
        for (k, step) in self.steps.iter().enumerate() {
            if step.action.is_planned() {
                writeln!(f, "  {}. {}", k + 1, step.action)?;
            } else {
                writeln!(f, "  {}. {}, hold {} ms", k + 1, step.action, step.hold_ms)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_expands_to_the_same_schedule() {
        for seed in 0..200 {
            assert_eq!(Schedule::from_seed(seed), Schedule::from_seed(seed));
        }
        assert_ne!(Schedule::from_seed(1), Schedule::from_seed(2));
    }

    #[test]
    fn schedules_are_bounded_and_cover_every_kind() {
        let mut kinds = std::collections::BTreeSet::new();
        for seed in 0..500 {
            let schedule = Schedule::from_seed(seed);
            let steps = schedule.steps.len() as u64;
            assert!((MIN_STEPS..=MAX_STEPS).contains(&steps), "{schedule}");
            for step in &schedule.steps {
                assert!(step.hold_ms <= MAX_HOLD_MS, "{schedule}");
                kinds.insert(step.action.kind());
            }
        }
        assert_eq!(kinds.len(), 15, "{kinds:?}");
    }

    #[test]
    fn the_ci_seeds_cover_every_kind_and_both_planned_operations() {
        let mut kinds = std::collections::BTreeMap::new();
        for seed in 1..=20 {
            for step in Schedule::from_seed(seed).steps {
                *kinds.entry(step.action.kind()).or_insert(0) += 1;
            }
        }
        eprintln!("{kinds:?}");
        assert!(kinds.len() >= 13, "{kinds:?}");
        assert!(
            kinds.get("switchover").copied().unwrap_or(0) >= 2,
            "{kinds:?}"
        );
        assert!(
            kinds.get("member-leave").copied().unwrap_or(0) >= 2,
            "{kinds:?}"
        );
    }

    #[test]
    fn a_partition_has_two_non_empty_sides() {
        for seed in 0..500 {
            for step in Schedule::from_seed(seed).steps {
                if let Action::Net(NetFault::Partition { a, b }) = step.action {
                    assert!(!a.is_empty() && !b.is_empty());
                    assert!(a.iter().all(|role| !b.contains(role)), "{a:?} | {b:?}");
                }
            }
        }
    }
}
