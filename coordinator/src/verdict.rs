//! The verdict: which master a majority of the configured sentinels agree on, or why none.
//!
//! [`decide`] is the centre of the system (DESIGN section 2). It is pure, deterministic and total:
//! no I/O, no clock (the caller passes `now` and every observation time), no panics, and the same
//! views give the same verdict whatever order or which sentinel ids they come with.
//!
//! # Rules
//!
//! 1. A sentinel *counts* only if it reports a master and its report was observed within the
//!    freshness window ([`DEFAULT_FRESHNESS`], 2 s; the age is `now - observed_at`, inclusive).
//!    Fewer than [`majority_of`]`(N)` counting sentinels → [`NoQuorumReason::NotEnoughSentinels`]
//!    (or [`NoQuorumReason::AllUnmonitored`] when every configured sentinel freshly said it
//!    monitors nothing).
//! 2. Config epochs are only raised by a leader a majority elected, so among counting sentinels
//!    the highest epoch `E` is the newest truth. If every counting sentinel at `E` names the same
//!    master, that master is agreed, however few they are: every other report is then at a lower
//!    epoch, which is exactly the clause "or is at an epoch higher than every other report".
//! 3. If the reports at `E` name different masters, one of them wins only if a majority of N name
//!    it *at `E`*; otherwise [`NoQuorumReason::Split`].
//! 4. Down flags and failovers do not stop a sentinel from counting; the agreement carries
//!    `failover_in_progress` (and `master_reported_down`) so callers can wait instead of acting.
//! 5. Where the rules give no answer the answer is [`Verdict::NoQuorum`], with a typed reason
//!    and the candidates seen.
//! 6. Majorities are of the *configured* N: missing views count as unreachable, and more views
//!    than N is an inconsistent input ([`NoQuorumReason::MoreViewsThanConfigured`]).
//! 7. Reports name the same master when their addresses map to the same [`Identity`] through
//!    [`PodAliases`] (normalised address otherwise). Run ids refine that identity: if the
//!    reporters of the winning address at `E` know two different run ids, one run id wins only
//!    if a majority of N report it, and reporters of the other run ids are not votes; otherwise
//!    [`NoQuorumReason::RunIdConflict`].
//! 8. The address in a report must come from `GET-MASTER-ADDR-BY-NAME`, not the record's
//!    `ip`/`port` (see [`SentinelReport::from_answers`]): during a failover the leader's record
//!    shows the old address at the new epoch, which would look like a split at the top epoch, or
//!    worse, certify the old master at the new epoch.
//!
//! # Decisions on the open questions
//!
//! - **Votes** are the counting sentinels that name the agreed master *at the agreed epoch `E`*
//!   (with the agreed run id or none). A sentinel naming the same master at a lower epoch (a
//!   freshly re-registered one at epoch 0) is not a vote: it has not attested this
//!   configuration. So rule 2 can agree with one vote
//!   (A: X@5, B: Y@4, C unreachable → X@5, votes 1), and clients that ask for
//!   `num-other-sentinels` = votes - 1 ≥ 1 will rightly wait until a second sentinel catches up.
//! - **Unmonitored** sentinels are reachable but not monitoring: they never count towards the
//!   majority of rule 1, and never block an agreement reached by the others.
//! - **Run ids**: an unknown run id is compatible with any. Two different known run ids at the
//!   winning address mean the process there changed (a master restart) and not every sentinel
//!   has seen it yet; as with addresses, only a majority of N settles which one, else no quorum.
//!   The agreed run id is the one the voters know, or `None` if none knows one: callers that
//!   need the process (the role probe) must treat `None` as "not proven".
//! - **Address shown for the agreed master**: the form most voters used; ties go to the smallest
//!   address, so every coordinator shows the same one.
//! - **Candidates** group counting reports by (epoch, identity) and are sorted by epoch
//!   descending, votes descending, then address and pod ascending.
//! - **Future observation times** (stamped after `now`) are fresh: the caller read its clock
//!   before the last answer arrived; that answer is not stale.

pub mod dataplane;
mod report;

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub use report::{
    FailoverState, MasterFlags, MasterRecord, MonotonicTime, ReportError, SentinelId,
    SentinelReport, SentinelView,
};

use crate::addr::{Addr, Identity, PodAliases, PodId, RunId};

/// How long a sentinel's answer stays evidence (DESIGN section 2, rule 1).
pub const DEFAULT_FRESHNESS: Duration = Duration::from_secs(2);

/// The number of sentinels that make a majority of `configured`: `configured / 2 + 1`.
pub const fn majority_of(configured: usize) -> usize {
    configured / 2 + 1
}

/// Everything [`decide`] looks at for one master name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictInput {
    /// How many sentinels are configured (N). Majorities are of this, never of the views given.
    pub configured_sentinels: usize,
    /// How old a report may be and still count.
    pub freshness: Duration,
    /// The current point on the caller's monotonic clock.
    pub now: MonotonicTime,
    /// One view per configured sentinel; a configured sentinel without a view is unreachable.
    pub views: BTreeMap<SentinelId, SentinelView>,
}

impl VerdictInput {
    /// An input for `configured_sentinels` sentinels at `now`, with the default freshness window
    /// and no views yet (every sentinel unreachable).
    pub fn new(configured_sentinels: usize, now: MonotonicTime) -> Self {
        Self {
            configured_sentinels,
            freshness: DEFAULT_FRESHNESS,
            now,
            views: BTreeMap::new(),
        }
    }

    /// Sets (or replaces) one sentinel's view.
    pub fn with_view(mut self, sentinel: SentinelId, view: SentinelView) -> Self {
        self.views.insert(sentinel, view);
        self
    }
}

/// The outcome for one master name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A master the rules certify.
    Agreed(Agreement),
    /// No master can be certified; clients must see "unknown name".
    NoQuorum(NoQuorum),
}

impl Verdict {
    /// The agreement, if any.
    pub fn agreement(&self) -> Option<&Agreement> {
        match self {
            Verdict::Agreed(agreement) => Some(agreement),
            Verdict::NoQuorum(_) => None,
        }
    }
}

/// A certified master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreement {
    /// The master address to give clients.
    pub master: Addr,
    /// The pod behind it, when an alias is known.
    pub pod: Option<PodId>,
    /// The master's run id: the one run id its reporters know, or the one a majority of N
    /// report when they know several; `None` when no voter knows it.
    pub run_id: Option<RunId>,
    /// The highest config epoch among counting sentinels, at which the voters name the master.
    pub config_epoch: u64,
    /// How many sentinels name the master at `config_epoch` (with `run_id` or no run id);
    /// always `voters.len()`, at least 1. Clients see `num-other-sentinels` = votes - 1.
    pub votes: usize,
    /// Those sentinels, sorted.
    pub voters: Vec<SentinelId>,
    /// Some counting sentinel is running a failover: wait, do not act.
    pub failover_in_progress: bool,
    /// Some voter flags the master `s_down` or `o_down`: a failover may be about to start.
    pub master_reported_down: bool,
}

/// Why no master is certified, and what the sentinels said instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoQuorum {
    /// The rule that gave no answer.
    pub reason: NoQuorumReason,
    /// Every master named by a counting sentinel, grouped by (epoch, identity), sorted by epoch
    /// descending, votes descending, address, pod.
    pub candidates: Vec<Candidate>,
}

/// One master some counting sentinels name at one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The address form most of them used (ties: the smallest).
    pub master: Addr,
    /// The pod behind it, when an alias is known.
    pub pod: Option<PodId>,
    /// The epoch they name it at.
    pub config_epoch: u64,
    /// How many counting sentinels name it at that epoch.
    pub votes: usize,
}

/// The reason a verdict is [`Verdict::NoQuorum`], worded for operators.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoQuorumReason {
    /// N is zero: nothing can ever be a majority.
    #[error("no sentinels are configured")]
    NoSentinelsConfigured,
    /// The caller passed views for more sentinels than it configured.
    #[error("views from {views} sentinels but only {configured} configured; refusing to count")]
    MoreViewsThanConfigured {
        /// Views given.
        views: usize,
        /// Sentinels configured.
        configured: usize,
    },
    /// Every configured sentinel answered recently and monitors nothing (bootstrap, or all
    /// sentinels restarted on emptyDir).
    #[error("all {configured} sentinels are reachable and monitor nothing")]
    AllUnmonitored {
        /// Sentinels configured.
        configured: usize,
    },
    /// Fewer than a majority of the configured sentinels report a master with a fresh report.
    #[error(
        "only {counting} of {configured} sentinels report this master freshly, {needed} needed \
         ({unreachable} unreachable, {stale} stale, {unmonitored} not monitoring)"
    )]
    NotEnoughSentinels {
        /// Sentinels that count.
        counting: usize,
        /// The majority of the configured count.
        needed: usize,
        /// Sentinels configured.
        configured: usize,
        /// No answer (including configured sentinels without a view).
        unreachable: usize,
        /// An answer older than the freshness window.
        stale: usize,
        /// A fresh answer without a monitor for the name.
        unmonitored: usize,
    },
    /// The counting sentinels at the highest epoch name different masters and none has a
    /// majority of the configured sentinels.
    #[error(
        "sentinels at the highest config epoch {epoch} name {masters} different masters; \
         the best has {best_votes} votes, {needed} needed"
    )]
    Split {
        /// The highest epoch.
        epoch: u64,
        /// How many different masters are named at it.
        masters: usize,
        /// The most votes any of them has.
        best_votes: usize,
        /// The majority of the configured count.
        needed: usize,
    },
    /// The sentinels that agree on the master's address disagree on which process it is, and
    /// no run id has a majority of N.
    #[error(
        "sentinels agree on {master} at config epoch {epoch} but report different run ids \
         ({}) and none has a majority; the master restarted and not every sentinel has seen it",
        join(run_ids)
    )]
    RunIdConflict {
        /// The master they agree on.
        master: Addr,
        /// The epoch they agree at.
        epoch: u64,
        /// The distinct run ids reported, sorted.
        run_ids: Vec<RunId>,
    },
}

fn join(run_ids: &[RunId]) -> String {
    run_ids
        .iter()
        .map(RunId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Agreed(agreement) => {
                write!(
                    f,
                    "master {} at config epoch {}, {} vote(s)",
                    agreement.master, agreement.config_epoch, agreement.votes
                )?;
                if let Some(pod) = &agreement.pod {
                    write!(f, ", pod {pod}")?;
                }
                if agreement.failover_in_progress {
                    f.write_str(", failover in progress")?;
                }
                Ok(())
            }
            Verdict::NoQuorum(no_quorum) => write!(f, "no quorum: {}", no_quorum.reason),
        }
    }
}

/// A counting sentinel's report, with the identity its master address resolves to.
struct CountingReport<'a> {
    sentinel: &'a SentinelId,
    report: &'a SentinelReport,
    identity: Identity,
}

/// How the configured sentinels split up by what they can tell us.
struct Census<'a> {
    counting: Vec<CountingReport<'a>>,
    unreachable: usize,
    stale: usize,
    unmonitored: usize,
}

impl<'a> Census<'a> {
    fn take(input: &'a VerdictInput, aliases: &PodAliases) -> Self {
        let is_fresh =
            |observed_at: MonotonicTime| observed_at.age_at(input.now) <= input.freshness;
        let mut census = Census {
            counting: Vec::new(),
            unreachable: input.configured_sentinels.saturating_sub(input.views.len()),
            stale: 0,
            unmonitored: 0,
        };
        for (sentinel, view) in &input.views {
            match view {
                SentinelView::Unreachable => census.unreachable += 1,
                SentinelView::Unmonitored { observed_at } if is_fresh(*observed_at) => {
                    census.unmonitored += 1;
                }
                SentinelView::Reports(report) if is_fresh(report.observed_at) => {
                    census.counting.push(CountingReport {
                        sentinel,
                        report,
                        identity: aliases.identify(&report.master),
                    });
                }
                SentinelView::Unmonitored { .. } | SentinelView::Reports(_) => census.stale += 1,
            }
        }
        census
    }
}

/// Decides which master the sentinels agree on, following the rules in the module doc.
///
/// The reports' master addresses must come from `GET-MASTER-ADDR-BY-NAME` (or be built with
/// [`SentinelReport::from_answers`] / [`SentinelView::from_answers`]), never from the
/// `SENTINEL MASTER` record's `ip`/`port`: from `+promoted-slave` until `+failover-end` the
/// failover leader's record shows the old address at the new epoch.
pub fn decide(input: &VerdictInput, aliases: &PodAliases) -> Verdict {
    let census = Census::take(input, aliases);
    let configured = input.configured_sentinels;
    let no_quorum = |reason| {
        Verdict::NoQuorum(NoQuorum {
            reason,
            candidates: candidates(&census.counting),
        })
    };

    if configured == 0 {
        return no_quorum(NoQuorumReason::NoSentinelsConfigured);
    }
    if input.views.len() > configured {
        return no_quorum(NoQuorumReason::MoreViewsThanConfigured {
            views: input.views.len(),
            configured,
        });
    }

    // Rule 1 and 6: a majority of the configured sentinels must report, freshly.
    let needed = majority_of(configured);
    let top_epoch = census
        .counting
        .iter()
        .map(|counting| counting.report.config_epoch)
        .max();
    let top_epoch = match top_epoch {
        Some(epoch) if census.counting.len() >= needed => epoch,
        _ if census.unmonitored == configured => {
            return no_quorum(NoQuorumReason::AllUnmonitored { configured });
        }
        _ => {
            return no_quorum(NoQuorumReason::NotEnoughSentinels {
                counting: census.counting.len(),
                needed,
                configured,
                unreachable: census.unreachable,
                stale: census.stale,
                unmonitored: census.unmonitored,
            });
        }
    };

    // Rule 2: the highest epoch is the newest truth.
    let mut at_top: BTreeMap<&Identity, Vec<&CountingReport<'_>>> = BTreeMap::new();
    for counting in &census.counting {
        if counting.report.config_epoch == top_epoch {
            at_top.entry(&counting.identity).or_default().push(counting);
        }
    }

    // Rule 2 (one master named at the top epoch) or rule 3 (several, one with a majority of N).
    // At most one group can hold a majority, so the search is order independent.
    let winner = if at_top.len() == 1 {
        at_top.values().next()
    } else {
        at_top.values().find(|group| group.len() >= needed)
    };
    // Groups never are empty; splitting off the first voter keeps that visible to the compiler.
    let Some((voters, (first_voter, other_voters))) =
        winner.and_then(|group| Some((group, group.split_first()?)))
    else {
        return no_quorum(NoQuorumReason::Split {
            epoch: top_epoch,
            masters: at_top.len(),
            best_votes: at_top.values().map(Vec::len).max().unwrap_or(0),
            needed,
        });
    };

    // The address clients get: the form most reporters of this master at the top epoch used.
    let master = most_common_addr(
        &first_voter.report.master,
        other_voters.iter().map(|counting| &counting.report.master),
    );

    // Rule 7, run ids: (address, run id) is the identity. Two different known run ids at one
    // address and epoch are two processes; like two addresses (rule 3), they resolve only by a
    // majority of N, and a reporter of the losing run id is no vote. Unknown run ids (a
    // sentinel that has not had an INFO reply yet) are compatible with any.
    let mut run_id_counts: BTreeMap<&RunId, usize> = BTreeMap::new();
    for counting in voters.iter() {
        if let Some(run_id) = &counting.report.master_run_id {
            *run_id_counts.entry(run_id).or_default() += 1;
        }
    }
    let run_id = if run_id_counts.len() <= 1 {
        run_id_counts.keys().next().copied()
    } else if let Some((run_id, _)) = run_id_counts.iter().find(|(_, count)| **count >= needed) {
        Some(*run_id)
    } else {
        return no_quorum(NoQuorumReason::RunIdConflict {
            master,
            epoch: top_epoch,
            run_ids: run_id_counts.into_keys().cloned().collect(),
        });
    };
    let voters: Vec<&CountingReport<'_>> = voters
        .iter()
        .copied()
        .filter(|counting| {
            counting
                .report
                .master_run_id
                .as_ref()
                .is_none_or(|reported| Some(reported) == run_id)
        })
        .collect();

    let mut voter_ids: Vec<SentinelId> = voters
        .iter()
        .map(|counting| counting.sentinel.clone())
        .collect();
    voter_ids.sort();
    Verdict::Agreed(Agreement {
        pod: aliases.pod_of(&master).cloned(),
        master,
        run_id: run_id.cloned(),
        config_epoch: top_epoch,
        votes: voter_ids.len(),
        voters: voter_ids,
        failover_in_progress: census
            .counting
            .iter()
            .any(|counting| counting.report.failover_in_progress()),
        master_reported_down: voters.iter().any(|counting| counting.report.master_down()),
    })
}

/// The address form named most often; ties go to the smallest, so the choice is deterministic.
/// Taking the first form separately makes "no form at all" unrepresentable.
fn most_common_addr<'a>(first: &'a Addr, others: impl Iterator<Item = &'a Addr>) -> Addr {
    let mut counts: BTreeMap<&Addr, usize> = BTreeMap::new();
    for addr in std::iter::once(first).chain(others) {
        *counts.entry(addr).or_default() += 1;
    }
    let mut best = (first, 0);
    for (addr, count) in counts {
        // Ascending order: a later form replaces the best only with strictly more votes.
        if count > best.1 {
            best = (addr, count);
        }
    }
    best.0.clone()
}

/// Groups counting reports by (epoch, identity) and sorts them for display.
fn candidates(counting: &[CountingReport<'_>]) -> Vec<Candidate> {
    let mut groups: BTreeMap<(u64, &Identity), Vec<&Addr>> = BTreeMap::new();
    for report in counting {
        groups
            .entry((report.report.config_epoch, &report.identity))
            .or_default()
            .push(&report.report.master);
    }
    let mut candidates: Vec<Candidate> = groups
        .into_iter()
        .filter_map(|((config_epoch, identity), addrs)| {
            let (first, others) = addrs.split_first()?;
            Some(Candidate {
                master: most_common_addr(first, others.iter().copied()),
                pod: match identity {
                    Identity::Pod(pod) => Some(pod.clone()),
                    Identity::Addr(_) => None,
                },
                config_epoch,
                votes: addrs.len(),
            })
        })
        .collect();
    candidates.sort_by(|a, b| {
        (Reverse(a.config_epoch), Reverse(a.votes), &a.master, &a.pod).cmp(&(
            Reverse(b.config_epoch),
            Reverse(b.votes),
            &b.master,
            &b.pod,
        ))
    });
    candidates
}
