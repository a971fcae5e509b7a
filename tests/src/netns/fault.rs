//! Faults as plain values: what a seeded schedule builds, prints and replays. Nothing here runs a
//! command; how a [`Network`](super::Network) realises each fault is in the parent module.

use std::{collections::BTreeSet, fmt, time::Duration};

use super::{Network, Result};

/// One member ("pod") of a network: its own namespace, `eth0` and address. Printed `m<i>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member(pub(super) usize);

impl Member {
    /// The member's index, 0-based.
    pub fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m{}", self.0)
    }
}

/// How a cut treats the packets it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cut {
    /// They vanish: the sender sees nothing but silence (retransmits, connect timeouts).
    Blackhole,
    /// The sender's kernel refuses them at once: connects fail with `EHOSTUNREACH`, as after
    /// an ICMP host-unreachable from a real router.
    Refuse,
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cut::Blackhole => "blackhole",
            Cut::Refuse => "refuse",
        })
    }
}

/// A rate for [`Fault::slow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate {
    kbit: u32,
}

impl Rate {
    /// `n` kilobits (1000 bits) per second.
    pub fn kbit(n: u32) -> Self {
        Rate { kbit: n }
    }

    /// `n` megabits per second.
    pub fn mbit(n: u32) -> Self {
        Rate { kbit: n * 1000 }
    }

    /// Bytes per second.
    pub fn bytes_per_sec(self) -> u64 {
        u64::from(self.kbit) * 1000 / 8
    }
}

impl fmt::Display for Rate {
    /// As tc writes it: `256kbit`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}kbit", self.kbit)
    }
}

/// One network fault. [`Fault::apply`] puts it in place on a network, [`Fault::undo`] takes it
/// away, [`Network::heal_all`] undoes everything in place.
///
/// Faults may overlap (two cuts of the same pair are two rules; undoing one leaves the other),
/// except that a fault cannot be in place twice at once, and a member has at most one
/// [`Fault::Slow`], one [`Fault::Lossy`] and one [`Fault::Delay`] at a time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Nothing passes between any member of `a` and any member of `b`, either way.
    Partition {
        /// One side.
        a: Vec<Member>,
        /// The other side.
        b: Vec<Member>,
        /// Silent or refused.
        cut: Cut,
    },
    /// Packets from any member of `from` to any member of `to` are stopped; the other way flows.
    OneWay {
        /// The senders whose packets are stopped.
        from: Vec<Member>,
        /// The receivers they no longer reach.
        to: Vec<Member>,
        /// Silent or refused.
        cut: Cut,
    },
    /// The member's link is down: it reaches nobody and nobody (the harness included) reaches it.
    Isolate {
        /// The member cut off.
        member: Member,
    },
    /// What the member sends is limited to `rate`, queued for up to 1 s and dropped beyond.
    Slow {
        /// The member slowed.
        member: Member,
        /// Its egress rate.
        rate: Rate,
    },
    /// Each IPv4 packet the member sends is lost with probability `percent` / 100.
    Lossy {
        /// The member.
        member: Member,
        /// 1..=100.
        percent: u8,
    },
    /// Each IPv4 packet the member sends leaves `delay` plus a uniform extra in `0..=jitter`
    /// late; with jitter, packets leave in the order of their release times, not their own.
    Delay {
        /// The member delayed.
        member: Member,
        /// What every packet waits at least.
        delay: Duration,
        /// The most a packet waits beyond `delay`.
        jitter: Duration,
    },
}

/// The longest a [`Fault::Delay`] may hold a packet, jitter included: a held packet stays in the
/// kernel's queue, whose length is bounded.
pub(super) const MAX_DELAY: Duration = Duration::from_secs(10);

impl Fault {
    /// A silent, symmetric partition between `a` and `b`. To isolate `x` from a set `s` only:
    /// `partition(&[x], s)`.
    pub fn partition(a: &[Member], b: &[Member]) -> Fault {
        Fault::Partition {
            a: a.to_vec(),
            b: b.to_vec(),
            cut: Cut::Blackhole,
        }
    }

    /// A silent cut of the packets `from` sends to `to`; what `to` sends to `from` still arrives.
    pub fn partition_one_way(from: &[Member], to: &[Member]) -> Fault {
        Fault::OneWay {
            from: from.to_vec(),
            to: to.to_vec(),
            cut: Cut::Blackhole,
        }
    }

    /// [`Fault::partition`], refused instead of silent.
    pub fn refuse(a: &[Member], b: &[Member]) -> Fault {
        Fault::Partition {
            a: a.to_vec(),
            b: b.to_vec(),
            cut: Cut::Refuse,
        }
    }

    /// [`Fault::partition_one_way`], refused instead of silent.
    pub fn refuse_one_way(from: &[Member], to: &[Member]) -> Fault {
        Fault::OneWay {
            from: from.to_vec(),
            to: to.to_vec(),
            cut: Cut::Refuse,
        }
    }

    /// The member's link down.
    pub fn isolate(member: Member) -> Fault {
        Fault::Isolate { member }
    }

    /// The member's egress limited to `rate`.
    pub fn slow(member: Member, rate: Rate) -> Fault {
        Fault::Slow { member, rate }
    }

    /// The member's packets lost with probability `percent` / 100.
    pub fn lossy(member: Member, percent: u8) -> Fault {
        Fault::Lossy { member, percent }
    }

    /// The member's packets each held for `delay` plus a uniform extra in `0..=jitter`. The
    /// extras are drawn from a generator seeded with the member's index, so a replayed schedule
    /// draws the same sequence (which packet gets which still depends on when each is sent).
    pub fn delay(member: Member, delay: Duration, jitter: Duration) -> Fault {
        Fault::Delay {
            member,
            delay,
            jitter,
        }
    }

    /// Puts the fault in place on `net`. Nothing is left half applied: if a step fails, the
    /// steps already taken are undone before the error returns.
    pub fn apply(&self, net: &Network) -> Result<()> {
        net.apply(self)
    }

    /// Takes the fault away from `net`; it must be in place there.
    pub fn undo(&self, net: &Network) -> Result<()> {
        net.undo(self)
    }

    /// The one-way cuts the fault is made of: a partition is two, a one-way cut one, any other
    /// fault none.
    pub(super) fn directed_cuts(&self) -> Vec<DirectedCut> {
        let directed = |from: &[Member], to: &[Member], cut: Cut| DirectedCut {
            from: from.iter().copied().collect(),
            to: to.iter().copied().collect(),
            cut,
        };
        match self {
            Fault::Partition { a, b, cut } => vec![directed(a, b, *cut), directed(b, a, *cut)],
            Fault::OneWay { from, to, cut } => vec![directed(from, to, *cut)],
            _ => Vec::new(),
        }
    }

    /// Whether `self` and `other` may not be in place at the same time.
    pub(super) fn conflicts_with(&self, other: &Fault) -> bool {
        match (self, other) {
            (Fault::Slow { member: a, .. }, Fault::Slow { member: b, .. })
            | (Fault::Lossy { member: a, .. }, Fault::Lossy { member: b, .. })
            | (Fault::Delay { member: a, .. }, Fault::Delay { member: b, .. }) => a == b,
            _ => self == other,
        }
    }

    /// Why the fault cannot be applied to a network of `members` members, if it cannot.
    pub(super) fn invalid_for(&self, members: usize) -> Option<String> {
        let named = match self {
            Fault::Partition { a, b, .. } => [a.as_slice(), b].concat(),
            Fault::OneWay { from, to, .. } => [from.as_slice(), to].concat(),
            Fault::Isolate { member }
            | Fault::Slow { member, .. }
            | Fault::Lossy { member, .. }
            | Fault::Delay { member, .. } => vec![*member],
        };
        if let Some(stranger) = named.iter().find(|m| m.0 >= members) {
            return Some(format!("{stranger} is not one of the {members} members"));
        }
        match self {
            Fault::Partition { a: x, b: y, .. } | Fault::OneWay { from: x, to: y, .. } => {
                if x.is_empty() || y.is_empty() {
                    return Some("both sides of a cut need a member".into());
                }
                let both = x.iter().find(|m| y.contains(m));
                both.map(|m| format!("{m} is on both sides"))
            }
            Fault::Lossy { percent, .. } if !(1..=100).contains(percent) => {
                Some("a loss is 1 to 100 percent".into())
            }
            Fault::Slow { rate, .. } if rate.kbit == 0 => Some("a rate is at least 1kbit".into()),
            Fault::Delay { delay, jitter, .. } if delay.is_zero() && jitter.is_zero() => {
                Some("no delay is not a fault".into())
            }
            Fault::Delay { delay, jitter, .. } if delay.saturating_add(*jitter) > MAX_DELAY => {
                Some(format!("a delay is at most {MAX_DELAY:?}, jitter included"))
            }
            _ => None,
        }
    }
}

/// Packets from each of `from` to each of `to` stopped, as `cut` says.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct DirectedCut {
    pub(super) from: BTreeSet<Member>,
    pub(super) to: BTreeSet<Member>,
    pub(super) cut: Cut,
}

impl fmt::Display for Fault {
    /// One line a schedule can print: `partition {m0} | {m1 m2} (blackhole)`,
    /// `one-way {m1} -> {m0} (refuse)`, `isolate m2`, `slow m0 to 256kbit`, `lossy m1 25%`,
    /// `delay m0 by 50ms`, `delay m1 by 20ms to 60ms` (with 40 ms of jitter).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |members: &[Member]| {
            let names: Vec<String> = members.iter().map(Member::to_string).collect();
            format!("{{{}}}", names.join(" "))
        };
        match self {
            Fault::Partition { a, b, cut } => {
                write!(f, "partition {} | {} ({cut})", set(a), set(b))
            }
            Fault::OneWay { from, to, cut } => {
                write!(f, "one-way {} -> {} ({cut})", set(from), set(to))
            }
            Fault::Isolate { member } => write!(f, "isolate {member}"),
            Fault::Slow { member, rate } => write!(f, "slow {member} to {rate}"),
            Fault::Lossy { member, percent } => write!(f, "lossy {member} {percent}%"),
            Fault::Delay {
                member,
                delay,
                jitter,
            } => {
                write!(f, "delay {member} by {delay:?}")?;
                if !jitter.is_zero() {
                    write!(f, " to {:?}", *delay + *jitter)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_print_as_a_schedule_line() {
        let (m0, m1, m2) = (Member(0), Member(1), Member(2));
        assert_eq!(
            Fault::partition(&[m0], &[m1, m2]).to_string(),
            "partition {m0} | {m1 m2} (blackhole)"
        );
        assert_eq!(
            Fault::refuse_one_way(&[m1], &[m0]).to_string(),
            "one-way {m1} -> {m0} (refuse)"
        );
        assert_eq!(Fault::isolate(m2).to_string(), "isolate m2");
        let slow = Fault::slow(m0, Rate::kbit(256));
        assert_eq!(slow.to_string(), "slow m0 to 256kbit");
        assert_eq!(Fault::lossy(m1, 25).to_string(), "lossy m1 25%");
        let ms = Duration::from_millis;
        assert_eq!(
            Fault::delay(m0, ms(50), Duration::ZERO).to_string(),
            "delay m0 by 50ms"
        );
        assert_eq!(
            Fault::delay(m1, ms(20), ms(40)).to_string(),
            "delay m1 by 20ms to 60ms"
        );
    }

    #[test]
    fn only_the_same_member_slowed_lossy_or_delayed_twice_conflicts() {
        let (m0, m1) = (Member(0), Member(1));
        let slow = Fault::slow(m0, Rate::kbit(64));
        assert!(slow.conflicts_with(&Fault::slow(m0, Rate::mbit(1))));
        assert!(!slow.conflicts_with(&Fault::slow(m1, Rate::kbit(64))));
        assert!(Fault::lossy(m0, 5).conflicts_with(&Fault::lossy(m0, 50)));
        let delay = Fault::delay(m0, Duration::from_millis(10), Duration::ZERO);
        let other = Fault::delay(m0, Duration::from_millis(20), Duration::from_millis(5));
        assert!(delay.conflicts_with(&other));
        assert!(!delay.conflicts_with(&Fault::delay(
            m1,
            Duration::from_millis(10),
            Duration::ZERO
        )));
        let cut = Fault::partition(&[m0], &[m1]);
        assert!(cut.conflicts_with(&cut.clone()));
        assert!(!cut.conflicts_with(&Fault::partition_one_way(&[m0], &[m1])));
    }

    #[test]
    fn a_fault_names_members_of_the_network_on_distinct_sides() {
        let (m0, m1, m5) = (Member(0), Member(1), Member(5));
        assert_eq!(Fault::partition(&[m0], &[m1]).invalid_for(2), None);
        assert!(Fault::partition(&[m0], &[m5]).invalid_for(2).is_some());
        assert!(Fault::partition(&[m0], &[m0, m1]).invalid_for(2).is_some());
        assert!(
            Fault::partition_one_way(&[], &[m1])
                .invalid_for(2)
                .is_some()
        );
        assert!(Fault::lossy(m0, 0).invalid_for(2).is_some());
        assert!(Fault::lossy(m0, 101).invalid_for(2).is_some());
        assert!(Fault::slow(m1, Rate::kbit(0)).invalid_for(2).is_some());
        let ms = Duration::from_millis;
        assert_eq!(Fault::delay(m1, ms(0), ms(5)).invalid_for(2), None);
        assert!(Fault::delay(m1, ms(0), ms(0)).invalid_for(2).is_some());
        assert!(Fault::delay(m0, MAX_DELAY, ms(1)).invalid_for(2).is_some());
        assert!(Fault::delay(m5, ms(5), ms(0)).invalid_for(2).is_some());
    }

    #[test]
    fn a_partition_is_the_two_one_way_cuts() {
        let (m0, m1, m2) = (Member(0), Member(1), Member(2));
        let cuts = Fault::partition(&[m0], &[m1, m2, m1]).directed_cuts();
        let directed = |from: &[Member], to: &[Member]| DirectedCut {
            from: from.iter().copied().collect(),
            to: to.iter().copied().collect(),
            cut: Cut::Blackhole,
        };
        assert_eq!(
            cuts,
            [directed(&[m0], &[m1, m2]), directed(&[m1, m2], &[m0])]
        );
    }
}
