//! Sentinel-shaped answers built from published state.
//!
//! A served master record is a voter's `SENTINEL MASTER` record with the fields that must speak
//! for the verdict rather than for that one sentinel overwritten: `ip`/`port` are the agreed
//! master; `flags` what the voters say of it: `master`, plus `s_down`, `o_down` and
//! `disconnected` when a voter reports them, `disconnected` also while the server's own link to
//! the master is down, and `failover_in_progress` when the verdict says so (node-redis skips a
//! master flagged down and asks again, while one served as plainly `master` after a kill -9 is
//! connected to and waited on for good); `config-epoch` the agreed epoch; `num-other-sentinels`
//! votes - 1 (so redis-py's `min_other_sentinels=1` means "two sentinels agreed"); and
//! `num-slaves` the replicas we list. Everything else keeps sentinel's field order, because some
//! clients index records positionally.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};
use sentinel_protocol::info::{InfoSentinel, MasterStatus, SentinelMasterLine};
use sentinel_protocol::reply::{Protocol, Reply};
use sentinel_protocol::sentinel::{Flag, Flags, MasterRecord, SentinelRecord};

use crate::addr::Addr;
use crate::service::registry::{NameState, Registry};
use crate::verdict::{Agreement, FailoverState, SentinelReport, SentinelView, majority_of};

/// Turns ordered text pairs into a record reply.
fn record(pairs: Vec<(String, String)>) -> Reply {
    Reply::record(
        pairs
            .into_iter()
            .map(|(key, value)| (Bytes::from(key), Bytes::from(value))),
    )
}

/// The record `SENTINEL MASTER <name>` serves for an agreed master; `link_down`: the server's
/// own link to it is down ([`super::master_link`]).
pub fn master_record(
    state: &NameState,
    agreement: &Agreement,
    configured_sentinels: usize,
    link_down: bool,
) -> Reply {
    let mut served = state.master_record.clone().unwrap_or_else(|| {
        // The owner had no record to copy (it publishes one with every agreement; this is the
        // defensive path): the mandatory fields, with sentinel's defaults elsewhere.
        let mut minimal = MasterRecord::default();
        minimal.instance.name = state.name.clone();
        minimal.quorum = majority_of(configured_sentinels) as u64;
        minimal.info.role_reported = "master".to_owned();
        minimal
    });
    served.instance.name = state.name.clone();
    let describes_master = Addr::from_parts(&served.instance.ip, &served.instance.port.to_string())
        .is_ok_and(|addr| addr == agreement.master);
    served.instance.ip = agreement.master.host().to_string();
    served.instance.port = agreement.master.port();
    if let Some(run_id) = &agreement.run_id {
        served.instance.runid = run_id.as_str().to_owned();
    }
    let mut flags = served_flags(state, agreement);
    if link_down {
        flags.insert(Flag::Disconnected);
    }
    if !agreement.failover_in_progress {
        served.failover_state = None;
    }
    // Sentinel prints the down times exactly next to the down flags; the copied record's own
    // times are kept only where it describes the agreed master and the flag is served.
    if !(describes_master && flags.contains(Flag::SDown)) {
        served.instance.s_down_time = None;
    }
    if !(describes_master && flags.contains(Flag::ODown)) {
        served.instance.o_down_time = None;
    }
    served.instance.flags = flags;
    served.config_epoch = agreement.config_epoch;
    served.num_slaves = state.replicas.len() as u64;
    served.num_other_sentinels = agreement.votes.saturating_sub(1) as u64;
    record(served.to_pairs())
}

/// The flags of the served master record: `master`; `s_down`, `o_down` and `disconnected` when
/// any voter's report of the agreed master carries them (as that sentinel would show them);
/// `failover_in_progress` when the verdict says so.
fn served_flags(state: &NameState, agreement: &Agreement) -> Flags {
    let mut flags = Flags::new(&[Flag::Master]);
    for voter in &agreement.voters {
        let Some(SentinelView::Reports(report)) = state.views.get(voter) else {
            continue;
        };
        if !flags_describe_the_address(report) {
            continue;
        }
        for (reported, flag) in [
            (report.flags.s_down, Flag::SDown),
            (report.flags.o_down, Flag::ODown),
            (report.flags.disconnected, Flag::Disconnected),
        ] {
            if reported {
                flags.insert(flag);
            }
        }
    }
    if agreement.failover_in_progress {
        flags.insert(Flag::FailoverInProgress);
    }
    flags
}

/// Whether a report's flags are about the address it names. From `reconf_slaves` on, a failover
/// leader's record still describes the old master instance (down flags and all) while the
/// address it answers, the one the vote counted, is already the promoted replica (sentinel.c
/// `sentinelGetCurrentMasterAddress`): those flags say nothing of the agreed master.
fn flags_describe_the_address(report: &SentinelReport) -> bool {
    !matches!(
        &report.failover_state,
        FailoverState::Running(phase) if phase == "reconf_slaves" || phase == "update_config"
    )
}

/// `SENTINEL REPLICAS <name>`: the replicas a voter reports, as it reports them.
pub fn replica_records(state: &NameState) -> Reply {
    Reply::Array(
        state
            .replicas
            .iter()
            .map(|replica| record(replica.to_pairs()))
            .collect(),
    )
}

/// `SENTINEL SENTINELS <name>`: the configured coordinator peers, shaped as sentinel records.
pub fn peer_records(peers: &[Addr]) -> Reply {
    Reply::Array(
        peers
            .iter()
            .map(|peer| {
                let mut peer_record = SentinelRecord::default();
                peer_record.instance.name = peer.to_string();
                peer_record.instance.ip = peer.host().to_string();
                peer_record.instance.port = peer.port();
                peer_record.instance.flags = Flags::new(&[Flag::Sentinel]);
                peer_record.voted_leader = "?".to_owned();
                record(peer_record.to_pairs())
            })
            .collect(),
    )
}

/// The `# Sentinel` section of `INFO`: one `masterN` line per agreed master, as a sentinel
/// shows the masters it monitors.
pub fn info_sentinel(registry: &Registry) -> String {
    let mut masters = Vec::new();
    for name in registry.names() {
        let Some(state) = registry.get(name) else {
            continue;
        };
        let Some(agreement) = state.verdict.agreement() else {
            continue;
        };
        masters.push(SentinelMasterLine {
            name: name.clone(),
            status: if agreement.master_reported_down {
                MasterStatus::SDown
            } else {
                MasterStatus::Ok
            },
            ip: agreement.master.host().to_string(),
            port: agreement.master.port(),
            slaves: state.replicas.len() as u64,
            sentinels: agreement.votes as u64,
        });
    }
    let fields = [
        ("sentinel_masters", masters.len().to_string()),
        ("sentinel_tilt", "0".to_owned()),
        ("sentinel_tilt_since_seconds", "-1".to_owned()),
        ("sentinel_total_tilt", "0".to_owned()),
        ("sentinel_running_scripts", "0".to_owned()),
        ("sentinel_scripts_queue_length", "0".to_owned()),
        ("sentinel_simulate_failure_flags", "0".to_owned()),
    ];
    InfoSentinel {
        fields: fields
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
        masters,
    }
    .to_text()
}

/// A fixed-size text buffer, so the hot path can format an address without touching the heap.
pub struct StackText {
    bytes: [u8; 64],
    len: usize,
}

impl StackText {
    pub fn new() -> Self {
        Self {
            bytes: [0; 64],
            len: 0,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        if end > self.bytes.len() {
            return Err(std::fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The `[ip, port]` reply, identical in RESP2 and RESP3. Encoded once per published state (the
/// registry's `ReplyCache`) and copied by every `GET-MASTER-ADDR-BY-NAME` after, so it may
/// allocate.
pub fn master_addr_reply(master: &Addr) -> Box<[u8]> {
    let host = master.host().to_string();
    let port = master.port().to_string();
    let mut out = BytesMut::new();
    put_pair(&mut out, host.as_bytes(), port.as_bytes());
    out.to_vec().into_boxed_slice()
}

fn put_pair(out: &mut BytesMut, host: &[u8], port: &[u8]) {
    out.reserve(host.len() + port.len() + 24);
    out.put_slice(b"*2\r\n");
    for item in [host, port] {
        put_bulk_header(out, item.len());
        out.put_slice(item);
        out.put_slice(b"\r\n");
    }
}

fn put_bulk_header(out: &mut BytesMut, len: usize) {
    let mut digits = StackText::new();
    let _ = write!(digits, "${len}\r\n");
    out.put_slice(digits.as_bytes());
}

/// The reply for a name without an agreed master (or not configured): a sentinel's answer for
/// a name it does not know.
pub fn put_unknown_master_addr(out: &mut BytesMut, protocol: Protocol) {
    out.put_slice(match protocol {
        Protocol::Resp2 => b"*-1\r\n",
        Protocol::Resp3 => b"_\r\n",
    });
}
