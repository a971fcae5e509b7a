//! The invariants over the samples of a run. Pure: each check takes samples and returns one
//! line per violation, naming the sample times that prove it.
//!
//! 1. Never two pods called primary at overlapping moments: in no `role-probe` round do two
//!    pods print `primary`, and no pod prints `primary` while every coordinator sample around
//!    it (within [`LAG`] either side, at least one on each side) names another pod.
//! 2. The coordinator never names a master that a majority of the configured sentinels did not
//!    name: for every answer naming `M` at `t`, a majority of sentinels were sampled naming `M`
//!    within its freshness window before `t` (plus [`LAG`] after, for sampling skew), or, as
//!    the verdict's rule 2 allows, `M` was named at a config epoch above every other answer
//!    in that window while a majority answered (a failover leader's new epoch, before the
//!    others hear of it).
//! 3. The coordinator answers within its deadline: no sample timed out or failed, except in the
//!    windows where the runner itself had it down (a restart), and except when the harness
//!    itself was stalled: a question under a 1 s timeout that returns after more than
//!    [`STALL`] beyond it was not running, not waiting (a starved machine; the sentinels' TILT
//!    shows the same stall), and is counted by [`harness_stalls`] instead.

use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use super::sample::{Answer, DEADLINE, Sample};

/// How far apart two views may be and still count as one moment: sampling skew and the
/// coordinator's event delivery together.
pub const LAG: Duration = Duration::from_millis(300);
/// How old a sentinel's answer may be and still count for the coordinator (its freshness
/// window, 2 s by default, plus a poll period).
pub const FRESHNESS: Duration = Duration::from_millis(2500);

/// How late past its own timeout a sample may return before the harness counts as stalled.
pub const STALL: Duration = Duration::from_millis(250);

/// A time span the runner caused (a coordinator restart), excused from check 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Start, since the run started.
    pub from: Duration,
    /// End.
    pub to: Duration,
}

fn secs(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// Check 1. `data` maps a probe's source (pod index) to its address.
pub fn overlapping_primaries(
    probes: &[Sample],
    coordinator: &[Sample],
    data: &[SocketAddr],
) -> Vec<String> {
    let mut found = Vec::new();
    let rounds: BTreeSet<u64> = probes.iter().map(|s| s.round).collect();
    for round in rounds {
        let primaries: Vec<&Sample> = probes
            .iter()
            .filter(|s| s.round == round && matches!(s.answer, Answer::Primary(_)))
            .collect();
        if primaries.len() > 1 {
            let list: Vec<String> = primaries.iter().map(|s| s.to_string()).collect();
            found.push(format!(
                "role-probe round {round}: several pods primary at once: {}",
                list.join(", ")
            ));
        }
    }
    for probe in probes {
        let Answer::Primary(_) = probe.answer else {
            continue;
        };
        let me = data.get(probe.source).copied();
        let near: Vec<&Sample> = coordinator
            .iter()
            .filter(|c| c.at + LAG >= probe.at && c.at <= probe.at + LAG)
            .collect();
        let before = near.iter().any(|c| c.at <= probe.at);
        let after = near.iter().any(|c| c.at > probe.at);
        let others = near.iter().all(|c| match c.answer {
            Answer::Names(Some(addr)) => Some(addr) != me,
            _ => false,
        });
        if before && after && others {
            let list: Vec<String> = near.iter().map(|s| s.to_string()).collect();
            found.push(format!(
                "valkey-{} primary by role-probe at {} while the coordinator named another pod \
                 throughout: {}",
                probe.source,
                secs(probe.at),
                list.join(", ")
            ));
        }
    }
    found
}

/// Check 2. Sentinel samples have the sentinel's index as source.
pub fn coordinator_without_majority(
    coordinator: &[Sample],
    sentinels: &[Sample],
    sentinel_count: usize,
) -> Vec<String> {
    let majority = sentinel_count / 2 + 1;
    let mut found = Vec::new();
    for answer in coordinator {
        let Answer::Names(Some(master)) = answer.answer else {
            continue;
        };
        let voters: BTreeSet<usize> = sentinels
            .iter()
            .filter(|s| s.at + FRESHNESS >= answer.at && s.at <= answer.at + LAG)
            .filter(|s| s.answer == Answer::Names(Some(master)))
            .map(|s| s.source)
            .collect();
        if voters.len() < majority && !stands_above(answer.at, master, sentinels, majority) {
            let near: Vec<String> = sentinels
                .iter()
                .filter(|s| s.at + FRESHNESS >= answer.at && s.at <= answer.at + LAG)
                .map(|s| s.to_string())
                .collect();
            found.push(format!(
                "the coordinator named {master} at {} but only sentinels {voters:?} named it \
                 within {} before; sentinel samples: {}",
                secs(answer.at),
                secs(FRESHNESS),
                near.join(", ")
            ));
        }
    }
    found
}

/// The verdict's rule 2 seen from outside: a config epoch is raised only by a failover leader
/// a majority elected, so a master named at an epoch above that of every other sentinel
/// sampled in the window is the newest truth, while a majority of sentinels answered at all
/// (the others may take a hello period to follow the leader).
fn stands_above(at: Duration, master: SocketAddr, sentinels: &[Sample], majority: usize) -> bool {
    let fresh: Vec<&Sample> = sentinels
        .iter()
        .filter(|s| s.at + FRESHNESS >= at && s.at <= at + LAG)
        .filter(|s| matches!(s.answer, Answer::Names(Some(_))))
        .collect();
    let answered: BTreeSet<usize> = fresh.iter().map(|s| s.source).collect();
    let Some(top) = fresh
        .iter()
        .filter(|s| s.answer == Answer::Names(Some(master)))
        .filter_map(|s| s.epoch)
        .max()
    else {
        return false;
    };
    answered.len() >= majority
        && fresh
            .iter()
            .filter(|s| s.answer != Answer::Names(Some(master)))
            .all(|s| s.epoch.is_some_and(|e| e < top))
}

/// Check 3.
pub fn coordinator_deadline(coordinator: &[Sample], excused: &[Window]) -> Vec<String> {
    coordinator
        .iter()
        .filter(|s| matches!(s.answer, Answer::TimedOut | Answer::Failed(_)))
        .filter(|s| s.latency <= DEADLINE + STALL)
        .filter(|s| !excused.iter().any(|w| s.at + LAG >= w.from && s.at <= w.to))
        .map(|s| format!("the coordinator did not answer within its deadline: {s}"))
        .collect()
}

/// Samples that came back more than [`STALL`] after their timeout: moments the harness (and,
/// on a starved machine, every process) was not running.
pub fn harness_stalls(samples: &[Sample]) -> Vec<&Sample> {
    samples
        .iter()
        .filter(|s| s.latency > DEADLINE + STALL)
        .collect()
}

/// The changes in what each source answered, one line per change: a timeline that fits a
/// panic message.
pub fn changes(samples: &[Sample]) -> String {
    let mut last: Vec<(usize, &Answer)> = Vec::new();
    let mut out = String::new();
    for s in samples {
        match last.iter_mut().find(|(source, _)| *source == s.source) {
            Some((_, answer)) if **answer == s.answer => continue,
            Some(entry) => entry.1 = &s.answer,
            None => last.push((s.source, &s.answer)),
        }
        out.push_str(&format!("    {s}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64, source: usize, round: u64, answer: Answer) -> Sample {
        Sample {
            at: Duration::from_millis(ms),
            source,
            round,
            answer,
            epoch: None,
            latency: Duration::from_millis(1),
        }
    }

    fn at_epoch(sample: Sample, epoch: u64) -> Sample {
        Sample {
            epoch: Some(epoch),
            ..sample
        }
    }

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 6379))
    }

    #[test]
    fn two_primaries_in_one_round_are_a_violation() {
        let probes = [
            sample(100, 0, 1, Answer::Primary(1)),
            sample(100, 1, 1, Answer::Primary(2)),
            sample(200, 0, 2, Answer::Secondary),
            sample(200, 1, 2, Answer::Primary(2)),
        ];
        let found = overlapping_primaries(&probes, &[], &[addr(0), addr(1)]);
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn a_primary_the_coordinator_names_elsewhere_throughout_is_a_violation() {
        let data = [addr(0), addr(1)];
        let probes = [sample(1000, 1, 1, Answer::Primary(2))];
        let elsewhere = [
            sample(900, 0, 1, Answer::Names(Some(addr(0)))),
            sample(1100, 0, 2, Answer::Names(Some(addr(0)))),
        ];
        assert_eq!(overlapping_primaries(&probes, &elsewhere, &data).len(), 1);
        let switching = [
            sample(900, 0, 1, Answer::Names(Some(addr(0)))),
            sample(1100, 0, 2, Answer::Names(Some(addr(1)))),
        ];
        assert!(overlapping_primaries(&probes, &switching, &data).is_empty());
    }

    #[test]
    fn a_master_named_by_one_sentinel_only_is_a_violation() {
        let coordinator = [sample(3000, 0, 1, Answer::Names(Some(addr(1))))];
        let one = [
            sample(2000, 0, 1, Answer::Names(Some(addr(1)))),
            sample(2000, 1, 1, Answer::Names(Some(addr(0)))),
        ];
        assert_eq!(coordinator_without_majority(&coordinator, &one, 3).len(), 1);
        let two = [
            sample(2000, 0, 1, Answer::Names(Some(addr(1)))),
            sample(1000, 1, 1, Answer::Names(Some(addr(1)))),
        ];
        assert!(coordinator_without_majority(&coordinator, &two, 3).is_empty());
    }

    #[test]
    fn a_leaders_newer_epoch_stands_above_the_others_until_they_follow() {
        let coordinator = [sample(3000, 0, 1, Answer::Names(Some(addr(1))))];
        let leader_ahead = [
            at_epoch(sample(2900, 0, 1, Answer::Names(Some(addr(1)))), 2),
            at_epoch(sample(2900, 1, 1, Answer::Names(Some(addr(0)))), 1),
            at_epoch(sample(2900, 2, 1, Answer::Names(Some(addr(0)))), 1),
        ];
        assert!(coordinator_without_majority(&coordinator, &leader_ahead, 3).is_empty());
        // The same epoch naming two masters resolves only by a majority.
        let tied = [
            at_epoch(sample(2900, 0, 1, Answer::Names(Some(addr(1)))), 2),
            at_epoch(sample(2900, 1, 1, Answer::Names(Some(addr(0)))), 2),
            at_epoch(sample(2900, 2, 1, Answer::Names(Some(addr(0)))), 1),
        ];
        assert_eq!(
            coordinator_without_majority(&coordinator, &tied, 3).len(),
            1
        );
        // One sentinel answering alone certifies nothing, whatever its epoch.
        let alone = [at_epoch(
            sample(2900, 0, 1, Answer::Names(Some(addr(1)))),
            5,
        )];
        assert_eq!(
            coordinator_without_majority(&coordinator, &alone, 3).len(),
            1
        );
    }

    #[test]
    fn a_timeout_outside_a_restart_is_a_violation() {
        let stalled = Sample {
            latency: Duration::from_millis(2100),
            ..sample(3000, 0, 3, Answer::TimedOut)
        };
        let coordinator = [
            sample(1000, 0, 1, Answer::TimedOut),
            sample(5000, 0, 2, Answer::Failed("refused".into())),
            stalled,
        ];
        let restart = [Window {
            from: Duration::from_millis(4900),
            to: Duration::from_millis(6000),
        }];
        assert_eq!(coordinator_deadline(&coordinator, &restart).len(), 1);
        assert_eq!(harness_stalls(&coordinator).len(), 1);
    }
}
