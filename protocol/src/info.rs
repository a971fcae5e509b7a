//! `INFO replication` (read from data pods) and `INFO sentinel` (read from sentinels and served by
//! the coordinator), typed.
//!
//! INFO is line-oriented text whose field set grows with every Valkey release, so both parsers type
//! what the coordinator decides on and keep every other line, in order, rather than failing on it.

use std::fmt;

use crate::sentinel::{FromReply, ReplyError, Value};

/// `key:value` lines of an INFO text, section headers and blank lines skipped.
fn lines(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
}

/// `a=1,b=2` as ordered pairs.
fn kv_list(v: &str) -> Vec<(&str, &str)> {
    v.split(',').filter_map(|p| p.split_once('=')).collect()
}

fn parse_num<T: std::str::FromStr>(field: &str, v: &str) -> Result<T, ReplyError> {
    v.parse().map_err(|_| ReplyError::InvalidField {
        field: field.to_string(),
        value: v.to_string(),
    })
}

fn info_text(value: &Value) -> Result<String, ReplyError> {
    match value.reject_error()? {
        Value::Str(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        _ => Err(ReplyError::Shape("an INFO text")),
    }
}

// ------------------------------------------------------------------------------------ replication

/// One `slaveN:` line of a master's INFO.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InfoReplica {
    pub ip: String,
    pub port: u16,
    /// `wait_bgsave`, `send_bulk`, `online`, ...
    pub state: String,
    pub offset: i64,
    pub lag: i64,
    /// Other `k=v` items (e.g. `type=replica`), in order.
    pub extra: Vec<(String, String)>,
}

/// `INFO replication` of a data node.
///
/// Only `role` is mandatory: a master has no `master_*` link fields, and older or newer versions
/// add and drop the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InfoReplication {
    /// `master` or `slave`.
    pub role: String,
    pub connected_slaves: Option<u64>,
    pub slaves: Vec<InfoReplica>,
    pub master_host: Option<String>,
    pub master_port: Option<u16>,
    /// `up` or `down`.
    pub master_link_status: Option<String>,
    pub master_last_io_seconds_ago: Option<i64>,
    pub master_sync_in_progress: Option<bool>,
    pub slave_read_repl_offset: Option<i64>,
    pub slave_repl_offset: Option<i64>,
    pub slave_priority: Option<i64>,
    pub slave_read_only: Option<bool>,
    pub replica_announced: Option<bool>,
    /// `no-failover`, `waiting-for-sync`, `failover-in-progress`.
    pub master_failover_state: Option<String>,
    pub master_replid: Option<String>,
    pub master_replid2: Option<String>,
    pub master_repl_offset: Option<i64>,
    pub second_repl_offset: Option<i64>,
    pub repl_backlog_active: Option<bool>,
    pub repl_backlog_size: Option<i64>,
    pub repl_backlog_first_byte_offset: Option<i64>,
    pub repl_backlog_histlen: Option<i64>,
    /// Lines this model does not name, in order.
    pub extra: Vec<(String, String)>,
}

impl InfoReplication {
    pub fn is_master(&self) -> bool {
        self.role == "master"
    }

    /// Parses the text of `INFO replication` (or a full `INFO`; other sections' lines land in
    /// `extra`).
    pub fn parse(text: &str) -> Result<Self, ReplyError> {
        let mut r = InfoReplication::default();
        let mut role = None;
        let flag = |k: &str, v: &str| parse_num::<u8>(k, v).map(|n| n != 0);
        for (k, v) in lines(text) {
            match k {
                "role" => role = Some(v.to_string()),
                "connected_slaves" => r.connected_slaves = Some(parse_num(k, v)?),
                "master_host" => r.master_host = Some(v.to_string()),
                "master_port" => r.master_port = Some(parse_num(k, v)?),
                "master_link_status" => r.master_link_status = Some(v.to_string()),
                "master_last_io_seconds_ago" => {
                    r.master_last_io_seconds_ago = Some(parse_num(k, v)?)
                }
                "master_sync_in_progress" => r.master_sync_in_progress = Some(flag(k, v)?),
                "slave_read_repl_offset" => r.slave_read_repl_offset = Some(parse_num(k, v)?),
                "slave_repl_offset" => r.slave_repl_offset = Some(parse_num(k, v)?),
                "slave_priority" => r.slave_priority = Some(parse_num(k, v)?),
                "slave_read_only" => r.slave_read_only = Some(flag(k, v)?),
                "replica_announced" => r.replica_announced = Some(flag(k, v)?),
                "master_failover_state" => r.master_failover_state = Some(v.to_string()),
                "master_replid" => r.master_replid = Some(v.to_string()),
                "master_replid2" => r.master_replid2 = Some(v.to_string()),
                "master_repl_offset" => r.master_repl_offset = Some(parse_num(k, v)?),
                "second_repl_offset" => r.second_repl_offset = Some(parse_num(k, v)?),
                "repl_backlog_active" => r.repl_backlog_active = Some(flag(k, v)?),
                "repl_backlog_size" => r.repl_backlog_size = Some(parse_num(k, v)?),
                "repl_backlog_first_byte_offset" => {
                    r.repl_backlog_first_byte_offset = Some(parse_num(k, v)?)
                }
                "repl_backlog_histlen" => r.repl_backlog_histlen = Some(parse_num(k, v)?),
                _ if is_slave_line(k) => r.slaves.push(parse_slave(k, v)?),
                _ => r.extra.push((k.to_string(), v.to_string())),
            }
        }
        r.role = role.ok_or(ReplyError::MissingField("role"))?;
        Ok(r)
    }
}

/// `slave0`, `slave1`, ...: the digits matter, or `slave_repl_offset` would match.
fn is_slave_line(k: &str) -> bool {
    k.strip_prefix("slave")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_slave(key: &str, v: &str) -> Result<InfoReplica, ReplyError> {
    let mut s = InfoReplica::default();
    let (mut ip, mut port) = (None, None);
    for (k, val) in kv_list(v) {
        match k {
            "ip" => ip = Some(val.to_string()),
            "port" => port = Some(parse_num("port", val)?),
            "state" => s.state = val.to_string(),
            "offset" => s.offset = parse_num("offset", val)?,
            "lag" => s.lag = parse_num("lag", val)?,
            _ => s.extra.push((k.to_string(), val.to_string())),
        }
    }
    let missing = || ReplyError::InvalidField {
        field: key.to_string(),
        value: v.to_string(),
    };
    s.ip = ip.ok_or_else(missing)?;
    s.port = port.ok_or_else(missing)?;
    Ok(s)
}

impl FromReply for InfoReplication {
    fn from_value(value: &Value) -> Result<Self, ReplyError> {
        Self::parse(&info_text(value)?)
    }
}

// --------------------------------------------------------------------------------------- sentinel

/// What a sentinel thinks of a master, as `INFO sentinel` words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterStatus {
    Ok,
    SDown,
    ODown,
    Other(String),
}

impl MasterStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "ok" => MasterStatus::Ok,
            "sdown" => MasterStatus::SDown,
            "odown" => MasterStatus::ODown,
            other => MasterStatus::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            MasterStatus::Ok => "ok",
            MasterStatus::SDown => "sdown",
            MasterStatus::ODown => "odown",
            MasterStatus::Other(s) => s,
        }
    }
}

/// `masterN:name=...,status=...,address=ip:port,slaves=N,sentinels=M`. Operators regex this line,
/// so formatting must keep the exact order and separators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelMasterLine {
    pub name: String,
    pub status: MasterStatus,
    pub ip: String,
    pub port: u16,
    pub slaves: u64,
    /// Counts the answering sentinel itself.
    pub sentinels: u64,
}

impl SentinelMasterLine {
    /// Parses the value part (after `masterN:`).
    pub fn parse(v: &str) -> Result<Self, ReplyError> {
        let bad = || ReplyError::InvalidField {
            field: "master".to_string(),
            value: v.to_string(),
        };
        let mut name = None;
        let mut status = None;
        let mut addr = None;
        let mut slaves = None;
        let mut sentinels = None;
        for (k, val) in kv_list(v) {
            match k {
                "name" => name = Some(val.to_string()),
                "status" => status = Some(MasterStatus::parse(val)),
                "address" => {
                    // The host may be an IPv6 literal: split at the last colon.
                    let (ip, port) = val.rsplit_once(':').ok_or_else(bad)?;
                    addr = Some((ip.to_string(), parse_num::<u16>("address", port)?));
                }
                "slaves" => slaves = Some(parse_num("slaves", val)?),
                "sentinels" => sentinels = Some(parse_num("sentinels", val)?),
                _ => {}
            }
        }
        let (ip, port) = addr.ok_or_else(bad)?;
        Ok(SentinelMasterLine {
            name: name.ok_or_else(bad)?,
            status: status.ok_or_else(bad)?,
            ip,
            port,
            slaves: slaves.ok_or_else(bad)?,
            sentinels: sentinels.ok_or_else(bad)?,
        })
    }
}

impl fmt::Display for SentinelMasterLine {
    /// The value part, without `masterN:`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "name={},status={},address={}:{},slaves={},sentinels={}",
            self.name,
            self.status.as_str(),
            self.ip,
            self.port,
            self.slaves,
            self.sentinels
        )
    }
}

/// The `# Sentinel` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InfoSentinel {
    /// Every non-master line (`sentinel_masters`, `sentinel_tilt`, ...), in order.
    pub fields: Vec<(String, String)>,
    pub masters: Vec<SentinelMasterLine>,
}

impl InfoSentinel {
    pub fn parse(text: &str) -> Result<Self, ReplyError> {
        let mut s = InfoSentinel::default();
        for (k, v) in lines(text) {
            let is_master = k
                .strip_prefix("master")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if is_master {
                s.masters.push(SentinelMasterLine::parse(v)?);
            } else {
                s.fields.push((k.to_string(), v.to_string()));
            }
        }
        Ok(s)
    }

    /// A field by name, e.g. `sentinel_tilt`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The section as sentinel sends it: header, fields, then `master0..`, each line CRLF-ended.
    pub fn to_text(&self) -> String {
        let mut out = String::from("# Sentinel\r\n");
        for (k, v) in &self.fields {
            out.push_str(&format!("{k}:{v}\r\n"));
        }
        for (i, m) in self.masters.iter().enumerate() {
            out.push_str(&format!("master{i}:{m}\r\n"));
        }
        out
    }
}

impl FromReply for InfoSentinel {
    fn from_value(value: &Value) -> Result<Self, ReplyError> {
        Self::parse(&info_text(value)?)
    }
}
