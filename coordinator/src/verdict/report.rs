//! What one sentinel says about one master name: the input of the verdict.
//!
//! The service fills these from its polls and events; [`SentinelView::from_answers`] is the one
//! place that turns a sentinel's two answers (its `SENTINEL MASTER` record and its
//! `GET-MASTER-ADDR-BY-NAME` reply) into a report, because taking the address from the wrong one
//! of the two is the failover-leader trap (DESIGN section 2, rule 8).

use std::fmt;
use std::time::{Duration, Instant};

use crate::addr::{Addr, RunId};

/// A point on the caller's monotonic clock, as the time elapsed since an origin the caller picks
/// (typically the `Instant` the service started).
///
/// The verdict never reads a clock: the caller passes `now` and every observation time, so the
/// same input always gives the same verdict and tests need no sleeping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonotonicTime(Duration);

impl MonotonicTime {
    /// The point `elapsed` after the origin.
    pub const fn from_elapsed(elapsed: Duration) -> Self {
        Self(elapsed)
    }

    /// The point `at`, measured from `origin` (an `at` before the origin is the origin itself).
    pub fn between(origin: Instant, at: Instant) -> Self {
        Self(at.saturating_duration_since(origin))
    }

    /// Time elapsed since the origin.
    pub const fn elapsed(self) -> Duration {
        self.0
    }

    /// How old an observation made at `self` is at `now`. An observation stamped after `now`
    /// (the caller read its clock before the last answer arrived) is as fresh as can be: zero.
    pub fn age_at(self, now: MonotonicTime) -> Duration {
        now.0.saturating_sub(self.0)
    }
}

/// The flags of a sentinel's master record that matter to the verdict (`flags` field,
/// comma-separated). Unknown flags are ignored: Valkey adds flags over time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MasterFlags {
    /// The sentinel itself cannot reach the master.
    pub s_down: bool,
    /// Enough sentinels agree the master is down: a failover is about to start.
    pub o_down: bool,
    /// This sentinel is running a failover of this master.
    pub failover_in_progress: bool,
    /// The running failover was forced (`SENTINEL FAILOVER`), skipping the leader vote.
    pub force_failover: bool,
    /// The sentinel's link to the master is down.
    pub disconnected: bool,
    /// The master restarted recently (`master-reboot-down-after-period`).
    pub master_reboot: bool,
}

impl MasterFlags {
    /// Reads the `flags` field of a `SENTINEL MASTER` record, e.g. `master,s_down,o_down`.
    pub fn from_flag_list(list: &str) -> Self {
        let mut flags = Self::default();
        for flag in list.split(',').map(str::trim) {
            match flag {
                "s_down" => flags.s_down = true,
                "o_down" => flags.o_down = true,
                "failover_in_progress" => flags.failover_in_progress = true,
                "force_failover" => flags.force_failover = true,
                "disconnected" => flags.disconnected = true,
                "master_reboot" => flags.master_reboot = true,
                _ => {}
            }
        }
        flags
    }
}

/// The `failover-state` field of a master record, present only while a failover runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum FailoverState {
    /// No failover (field absent, empty or `none`).
    #[default]
    Idle,
    /// The phase a running failover is in, as the sentinel spells it (`wait_promotion`,
    /// `reconf_slaves`, ...), lowercase.
    Running(String),
}

impl FailoverState {
    /// Reads the optional `failover-state` field.
    pub fn from_record_field(field: Option<&str>) -> Self {
        match field.map(str::trim) {
            None | Some("") => Self::Idle,
            Some(state) if state.eq_ignore_ascii_case("none") => Self::Idle,
            Some(state) => Self::Running(state.to_ascii_lowercase()),
        }
    }

    /// Whether a failover is running.
    pub fn is_running(&self) -> bool {
        matches!(self, Self::Running(_))
    }
}

/// One sentinel's current belief about one master name.
///
/// `master` must come from `GET-MASTER-ADDR-BY-NAME`, never from the record's `ip`/`port`: from
/// `+promoted-slave` until `+failover-end` the failover leader's record still shows the *old*
/// address at the *new* epoch. Build reports with [`SentinelReport::from_answers`] unless you
/// already have that address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SentinelReport {
    /// The master address, from `GET-MASTER-ADDR-BY-NAME`.
    pub master: Addr,
    /// The master's run id as this sentinel last saw it, when known and when it describes
    /// `master` (see [`SentinelReport::from_answers`]).
    pub master_run_id: Option<RunId>,
    /// The record's `config-epoch`.
    pub config_epoch: u64,
    /// The record's flags.
    pub flags: MasterFlags,
    /// The record's `failover-state`.
    pub failover_state: FailoverState,
    /// The record's `num-slaves`.
    pub num_replicas: u32,
    /// The record's `num-other-sentinels`.
    pub num_other_sentinels: u32,
    /// When this belief was last confirmed (a poll answer or a pub/sub event).
    pub observed_at: MonotonicTime,
}

impl SentinelReport {
    /// A report with no flags, no failover, no run id and zero counts: the starting point for
    /// callers and tests that set only what they know.
    pub fn new(master: Addr, config_epoch: u64, observed_at: MonotonicTime) -> Self {
        Self {
            master,
            master_run_id: None,
            config_epoch,
            flags: MasterFlags::default(),
            failover_state: FailoverState::Idle,
            num_replicas: 0,
            num_other_sentinels: 0,
            observed_at,
        }
    }

    /// Whether this sentinel is failing the master over right now.
    pub fn failover_in_progress(&self) -> bool {
        self.flags.failover_in_progress || self.failover_state.is_running()
    }

    /// Whether this sentinel considers the master down (subjectively or objectively).
    pub fn master_down(&self) -> bool {
        self.flags.s_down || self.flags.o_down
    }

    /// Builds a report from a sentinel's `SENTINEL MASTER` record and its
    /// `GET-MASTER-ADDR-BY-NAME` answer, taking the address from the latter.
    ///
    /// Why: when the promoted replica reports `role:master`, the failover leader raises the
    /// record's `config-epoch` but keeps the old master instance (address *and* run id) in the
    /// record until `+failover-end`, while `GET-MASTER-ADDR-BY-NAME` already returns the promoted
    /// replica. The record's run id is therefore kept only when the record describes the same
    /// address; otherwise it belongs to the old master and is dropped (unknown).
    pub fn from_answers(
        record: &MasterRecord,
        master_addr_by_name: &Addr,
        observed_at: MonotonicTime,
    ) -> Self {
        let master_run_id = if record.addr == *master_addr_by_name {
            record.run_id.clone()
        } else {
            None
        };
        Self {
            master: master_addr_by_name.clone(),
            master_run_id,
            config_epoch: record.config_epoch,
            flags: record.flags,
            failover_state: record.failover_state.clone(),
            num_replicas: record.num_replicas,
            num_other_sentinels: record.num_other_sentinels,
            observed_at,
        }
    }
}

/// The fields of a `SENTINEL MASTER <name>` record the verdict needs, already parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MasterRecord {
    /// The record's `ip`/`port`: the master *instance* the sentinel tracks, which lags behind
    /// the master address during a failover. Never use it as the master address.
    pub addr: Addr,
    /// The record's `runid` (empty means unknown).
    pub run_id: Option<RunId>,
    /// The record's `config-epoch`.
    pub config_epoch: u64,
    /// The record's `flags`.
    pub flags: MasterFlags,
    /// The record's `failover-state`.
    pub failover_state: FailoverState,
    /// The record's `num-slaves`.
    pub num_replicas: u32,
    /// The record's `num-other-sentinels`.
    pub num_other_sentinels: u32,
}

/// A sentinel's two answers contradict each other (the monitor was added or removed between
/// the two queries). The caller should ask again; until then the sentinel does not count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// `SENTINEL MASTER` returned a record but `GET-MASTER-ADDR-BY-NAME` returned null.
    #[error("the sentinel returned a master record but no master address")]
    RecordWithoutAddress,
    /// `GET-MASTER-ADDR-BY-NAME` returned an address but `SENTINEL MASTER` said no such master.
    #[error("the sentinel returned a master address but no master record")]
    AddressWithoutRecord,
}

/// The name of a configured sentinel: the address it was configured with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SentinelId(Addr);

impl SentinelId {
    /// The sentinel configured at `addr`.
    pub fn new(addr: Addr) -> Self {
        Self(addr)
    }

    /// Its configured address.
    pub fn addr(&self) -> &Addr {
        &self.0
    }
}

impl From<Addr> for SentinelId {
    fn from(addr: Addr) -> Self {
        Self(addr)
    }
}

impl fmt::Display for SentinelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What the coordinator currently knows from one configured sentinel about one master name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SentinelView {
    /// No answer (connection down, timed out, or not polled yet).
    Unreachable,
    /// The sentinel answered but monitors no master of that name (an emptyDir restart).
    /// Stamped, because a stale "I know nothing" proves nothing about now.
    Unmonitored {
        /// When the sentinel said so.
        observed_at: MonotonicTime,
    },
    /// The sentinel monitors the name and reports this master.
    Reports(SentinelReport),
}

impl SentinelView {
    /// Builds a view from a sentinel's answers to `SENTINEL MASTER <name>` (`None` for
    /// `-ERR No such master with that name`) and `GET-MASTER-ADDR-BY-NAME <name>` (`None` for
    /// null), taking the master address from the latter (see [`SentinelReport::from_answers`]).
    pub fn from_answers(
        record: Option<&MasterRecord>,
        master_addr_by_name: Option<&Addr>,
        observed_at: MonotonicTime,
    ) -> Result<Self, ReportError> {
        match (record, master_addr_by_name) {
            (None, None) => Ok(Self::Unmonitored { observed_at }),
            (Some(record), Some(addr)) => Ok(Self::Reports(SentinelReport::from_answers(
                record,
                addr,
                observed_at,
            ))),
            (Some(_), None) => Err(ReportError::RecordWithoutAddress),
            (None, Some(_)) => Err(ReportError::AddressWithoutRecord),
        }
    }
}
