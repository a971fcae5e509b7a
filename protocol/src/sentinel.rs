//! Typed records from the replies of `SENTINEL MASTER(S)`, `REPLICAS`, `SENTINELS`,
//! `GET-MASTER-ADDR-BY-NAME` and `CKQUORUM`, and the way back to the exact field list a sentinel
//! sends.
//!
//! The coordinator stands on both sides of these replies: it polls real sentinels (so it must read
//! whatever a Valkey 8.0 to 9.x sentinel says, RESP2 or RESP3) and it serves records of its own to
//! clients that index them positionally (so it must write fields in sentinel's own order). Both
//! directions go through the same structs, which is what keeps the two honest with each other.
//!
//! Every field sentinel emits is typed; a field this model does not know is kept, in arrival order,
//! in `extra`, because sentinel versions add fields and a poller must not drop what it cannot name.

use std::fmt;

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame as Resp2Frame;
use redis_protocol::resp3::types::BytesFrame as Resp3Frame;

/// A decoded reply seen through one lens, whichever protocol carried it.
///
/// RESP2 and RESP3 differ in shape (flat pairs versus maps, `*-1` versus `_`) but not in meaning;
/// folding both into this view lets each parser in this crate be written once.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Simple, bulk, verbatim and big-number strings.
    Str(Bytes),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// `$-1`, `*-1` and RESP3 `_`: sentinel uses all three for "no such thing".
    Null,
    /// An error reply, without the leading `-`.
    Error(String),
    /// Arrays, sets and pushes.
    Array(Vec<Value>),
    /// RESP3 maps, in wire order.
    Map(Vec<(Value, Value)>),
}

impl From<&Resp2Frame> for Value {
    fn from(frame: &Resp2Frame) -> Self {
        match frame {
            Resp2Frame::SimpleString(b) | Resp2Frame::BulkString(b) => Value::Str(b.clone()),
            Resp2Frame::Error(s) => Value::Error(s.to_string()),
            Resp2Frame::Integer(i) => Value::Int(*i),
            Resp2Frame::Array(items) => Value::Array(items.iter().map(Value::from).collect()),
            Resp2Frame::Null => Value::Null,
        }
    }
}

impl From<&Resp3Frame> for Value {
    fn from(frame: &Resp3Frame) -> Self {
        match frame {
            Resp3Frame::BlobString { data, .. }
            | Resp3Frame::SimpleString { data, .. }
            | Resp3Frame::BigNumber { data, .. }
            | Resp3Frame::VerbatimString { data, .. }
            | Resp3Frame::ChunkedString(data) => Value::Str(data.clone()),
            Resp3Frame::BlobError { data, .. } => {
                Value::Error(String::from_utf8_lossy(data).into_owned())
            }
            Resp3Frame::SimpleError { data, .. } => Value::Error(data.to_string()),
            Resp3Frame::Boolean { data, .. } => Value::Bool(*data),
            Resp3Frame::Null => Value::Null,
            Resp3Frame::Number { data, .. } => Value::Int(*data),
            Resp3Frame::Double { data, .. } => Value::Double(*data),
            Resp3Frame::Array { data, .. } | Resp3Frame::Push { data, .. } => {
                Value::Array(data.iter().map(Value::from).collect())
            }
            Resp3Frame::Set { data, .. } => Value::Array(data.iter().map(Value::from).collect()),
            Resp3Frame::Map { data, .. } => Value::Map(
                data.iter()
                    .map(|(k, v)| (Value::from(k), Value::from(v)))
                    .collect(),
            ),
            // Only a client sends HELLO; seeing one in a reply is a shape error for every parser.
            Resp3Frame::Hello { .. } => Value::Error("unexpected HELLO frame in a reply".into()),
        }
    }
}

impl Value {
    /// The text of a string-like value; integers are rendered, since RESP3 servers may send
    /// numbers where RESP2 sent strings.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Str(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::Int(i) => Some(i.to_string()),
            Value::Double(d) => Some(d.to_string()),
            Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
            _ => None,
        }
    }

    /// Refuse an error reply up front, so every parser reports the server's own words.
    pub(crate) fn reject_error(&self) -> Result<&Self, ReplyError> {
        match self {
            Value::Error(e) => Err(ReplyError::Server(e.clone())),
            v => Ok(v),
        }
    }

    pub(crate) fn as_array(&self, what: &'static str) -> Result<&[Value], ReplyError> {
        match self.reject_error()? {
            Value::Array(items) => Ok(items),
            _ => Err(ReplyError::Shape(what)),
        }
    }

    /// A record as ordered (field, value) text pairs, from a RESP2 flat array or a RESP3 map.
    pub fn to_pairs(&self) -> Result<Vec<(String, String)>, ReplyError> {
        let text = |v: &Value| {
            v.as_text()
                .ok_or(ReplyError::Shape("a record of string fields"))
        };
        match self.reject_error()? {
            Value::Map(kv) => kv.iter().map(|(k, v)| Ok((text(k)?, text(v)?))).collect(),
            Value::Array(items) if items.len() % 2 == 0 => items
                .chunks(2)
                .map(|kv| Ok((text(&kv[0])?, text(&kv[1])?)))
                .collect(),
            _ => Err(ReplyError::Shape("a record (field/value array or map)")),
        }
    }
}

/// Why a reply could not be read into the typed model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The server answered with an error; its text, without the leading `-`.
    #[error("server replied with an error: {0}")]
    Server(String),
    #[error("reply has the wrong shape: expected {0}")]
    Shape(&'static str),
    #[error("record is missing mandatory field '{0}'")]
    MissingField(&'static str),
    #[error("field '{field}' has an unparsable value '{value}'")]
    InvalidField { field: String, value: String },
}

fn invalid(field: &str, value: &str) -> ReplyError {
    ReplyError::InvalidField {
        field: field.to_string(),
        value: value.to_string(),
    }
}

/// Readers from either protocol, so callers never convert frames by hand.
pub trait FromReply: Sized {
    fn from_value(value: &Value) -> Result<Self, ReplyError>;

    fn from_resp2(frame: &Resp2Frame) -> Result<Self, ReplyError> {
        Self::from_value(&Value::from(frame))
    }

    fn from_resp3(frame: &Resp3Frame) -> Result<Self, ReplyError> {
        Self::from_value(&Value::from(frame))
    }
}

/// `SENTINEL MASTERS|REPLICAS|SENTINELS` are arrays of records.
impl<T: FromReply> FromReply for Vec<T> {
    fn from_value(value: &Value) -> Result<Self, ReplyError> {
        value
            .as_array("an array of records")?
            .iter()
            .map(T::from_value)
            .collect()
    }
}

// ------------------------------------------------------------------------------------------ flags

/// One instance flag, in the order sentinel prints them (`addReplySentinelValkeyInstance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flag {
    SDown,
    ODown,
    Master,
    Slave,
    Sentinel,
    Disconnected,
    MasterDown,
    FailoverInProgress,
    Promoted,
    ReconfSent,
    ReconfInprog,
    ReconfDone,
    ForceFailover,
    ScriptKillSent,
    MasterReboot,
}

impl Flag {
    /// Every flag in sentinel's print order; formatting walks this list.
    pub const ALL: [Flag; 15] = [
        Flag::SDown,
        Flag::ODown,
        Flag::Master,
        Flag::Slave,
        Flag::Sentinel,
        Flag::Disconnected,
        Flag::MasterDown,
        Flag::FailoverInProgress,
        Flag::Promoted,
        Flag::ReconfSent,
        Flag::ReconfInprog,
        Flag::ReconfDone,
        Flag::ForceFailover,
        Flag::ScriptKillSent,
        Flag::MasterReboot,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Flag::SDown => "s_down",
            Flag::ODown => "o_down",
            Flag::Master => "master",
            Flag::Slave => "slave",
            Flag::Sentinel => "sentinel",
            Flag::Disconnected => "disconnected",
            Flag::MasterDown => "master_down",
            Flag::FailoverInProgress => "failover_in_progress",
            Flag::Promoted => "promoted",
            Flag::ReconfSent => "reconf_sent",
            Flag::ReconfInprog => "reconf_inprog",
            Flag::ReconfDone => "reconf_done",
            Flag::ForceFailover => "force_failover",
            Flag::ScriptKillSent => "script_kill_sent",
            Flag::MasterReboot => "master_reboot",
        }
    }

    pub fn parse(s: &str) -> Option<Flag> {
        Flag::ALL.into_iter().find(|f| f.as_str() == s)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The `flags` field: a set of known flags plus any a newer sentinel added, kept verbatim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    bits: u16,
    unknown: Vec<String>,
}

impl Flags {
    pub fn new(flags: &[Flag]) -> Self {
        let mut f = Flags::default();
        for &flag in flags {
            f.insert(flag);
        }
        f
    }

    pub fn contains(&self, flag: Flag) -> bool {
        self.bits & flag.bit() != 0
    }

    pub fn insert(&mut self, flag: Flag) {
        self.bits |= flag.bit();
    }

    pub fn remove(&mut self, flag: Flag) {
        self.bits &= !flag.bit();
    }

    pub fn iter(&self) -> impl Iterator<Item = Flag> + '_ {
        Flag::ALL.into_iter().filter(|f| self.contains(*f))
    }

    /// Flags this model does not name, in the order they arrived.
    pub fn unknown(&self) -> &[String] {
        &self.unknown
    }

    /// Sentinel's own comma list; never fails, unknown words are kept.
    pub fn parse(s: &str) -> Self {
        let mut f = Flags::default();
        for word in s.split(',').filter(|w| !w.is_empty()) {
            match Flag::parse(word) {
                Some(flag) => f.insert(flag),
                None => f.unknown.push(word.to_string()),
            }
        }
        f
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known = self.iter().map(|flag| flag.as_str().to_string());
        let words: Vec<String> = known.chain(self.unknown.iter().cloned()).collect();
        f.write_str(&words.join(","))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------- field reading

/// Fields of one record, consumed by name; what is left over becomes `extra`.
struct Fields(Vec<Option<(String, String)>>);

impl Fields {
    fn new(value: &Value) -> Result<Self, ReplyError> {
        Ok(Fields(value.to_pairs()?.into_iter().map(Some).collect()))
    }

    fn take(&mut self, name: &str) -> Option<String> {
        self.0
            .iter_mut()
            .find(|slot| slot.as_ref().is_some_and(|(k, _)| k == name))
            .and_then(|slot| slot.take())
            .map(|(_, v)| v)
    }

    fn text(&mut self, name: &'static str) -> Result<String, ReplyError> {
        self.take(name).ok_or(ReplyError::MissingField(name))
    }

    fn num<T: std::str::FromStr>(&mut self, name: &'static str) -> Result<T, ReplyError> {
        let v = self.text(name)?;
        v.parse().map_err(|_| invalid(name, &v))
    }

    fn opt_num<T: std::str::FromStr>(
        &mut self,
        name: &'static str,
    ) -> Result<Option<T>, ReplyError> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| invalid(name, &v)),
        }
    }

    fn rest(self) -> Vec<(String, String)> {
        self.0.into_iter().flatten().collect()
    }
}

/// Ordered output pairs; numbers become decimal text because sentinel sends every value as a bulk
/// string (`port` is `$4 6379`, never `:6379`).
#[derive(Default)]
struct Pairs(Vec<(String, String)>);

impl Pairs {
    fn put(&mut self, k: &str, v: impl ToString) {
        self.0.push((k.to_string(), v.to_string()));
    }

    fn put_opt(&mut self, k: &str, v: Option<impl ToString>) {
        if let Some(v) = v {
            self.put(k, v);
        }
    }
}

// ------------------------------------------------------------------------------ common to all three

/// The fields sentinel reports for every kind of instance it tracks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceFields {
    /// The master name, a replica's `ip:port`, or a sentinel's run id.
    pub name: String,
    pub ip: String,
    pub port: u16,
    /// Empty until sentinel has read the instance's INFO.
    pub runid: String,
    pub flags: Flags,
    pub link_pending_commands: i64,
    pub link_refcount: i64,
    /// Milliseconds since the pending ping was sent, 0 if none is pending.
    pub last_ping_sent: i64,
    pub last_ok_ping_reply: i64,
    pub last_ping_reply: i64,
    /// Present only while the instance is flagged `s_down`.
    pub s_down_time: Option<i64>,
    /// Present only while the master is flagged `o_down`.
    pub o_down_time: Option<i64>,
    pub down_after_milliseconds: i64,
}

impl InstanceFields {
    fn read(f: &mut Fields) -> Result<Self, ReplyError> {
        Ok(InstanceFields {
            name: f.text("name")?,
            ip: f.text("ip")?,
            port: f.num("port")?,
            runid: f.text("runid")?,
            flags: Flags::parse(&f.text("flags")?),
            link_pending_commands: f.num("link-pending-commands")?,
            link_refcount: f.num("link-refcount")?,
            last_ping_sent: f.num("last-ping-sent")?,
            last_ok_ping_reply: f.num("last-ok-ping-reply")?,
            last_ping_reply: f.num("last-ping-reply")?,
            s_down_time: f.opt_num("s-down-time")?,
            o_down_time: f.opt_num("o-down-time")?,
            down_after_milliseconds: f.num("down-after-milliseconds")?,
        })
    }

    /// Writes up to `link-refcount`; sentinel puts `failover-state` right after it.
    fn write_head(&self, p: &mut Pairs) {
        p.put("name", &self.name);
        p.put("ip", &self.ip);
        p.put("port", self.port);
        p.put("runid", &self.runid);
        p.put("flags", &self.flags);
        p.put("link-pending-commands", self.link_pending_commands);
        p.put("link-refcount", self.link_refcount);
    }

    fn write_tail(&self, p: &mut Pairs) {
        p.put("last-ping-sent", self.last_ping_sent);
        p.put("last-ok-ping-reply", self.last_ok_ping_reply);
        p.put("last-ping-reply", self.last_ping_reply);
        p.put_opt("s-down-time", self.s_down_time);
        p.put_opt("o-down-time", self.o_down_time);
        p.put("down-after-milliseconds", self.down_after_milliseconds);
    }
}

/// What sentinel learned from a data node's INFO (masters and replicas only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InfoFields {
    pub info_refresh: i64,
    /// `master` or `slave`: what the node itself last said, which lags the flags during a failover.
    pub role_reported: String,
    pub role_reported_time: i64,
}

impl InfoFields {
    fn read(f: &mut Fields) -> Result<Self, ReplyError> {
        Ok(InfoFields {
            info_refresh: f.num("info-refresh")?,
            role_reported: f.text("role-reported")?,
            role_reported_time: f.num("role-reported-time")?,
        })
    }

    fn write(&self, p: &mut Pairs) {
        p.put("info-refresh", self.info_refresh);
        p.put("role-reported", &self.role_reported);
        p.put("role-reported-time", self.role_reported_time);
    }
}

// ----------------------------------------------------------------------------------------- records

/// A master as `SENTINEL MASTER <name>` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MasterRecord {
    pub instance: InstanceFields,
    /// Present only while `failover_in_progress` is set, e.g. `wait_start`, `select_slave`,
    /// `send_slaveof_noone`, `wait_promotion`, `reconf_slaves`, `update_config`. From
    /// `reconf_slaves` on, the leader's `ip`/`port` still name the old master (DESIGN 2.8).
    pub failover_state: Option<String>,
    pub info: InfoFields,
    pub config_epoch: u64,
    pub num_slaves: u64,
    pub num_other_sentinels: u64,
    pub quorum: u64,
    pub failover_timeout: i64,
    pub parallel_syncs: i64,
    pub notification_script: Option<String>,
    pub client_reconfig_script: Option<String>,
    /// Fields this model does not name, in arrival order.
    pub extra: Vec<(String, String)>,
}

/// A replica as `SENTINEL REPLICAS <name>` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaRecord {
    pub instance: InstanceFields,
    pub info: InfoFields,
    pub master_link_down_time: i64,
    /// `ok` or `err`.
    pub master_link_status: String,
    /// `?` until the replica's INFO names its master.
    pub master_host: String,
    pub master_port: u16,
    pub slave_priority: i64,
    pub slave_repl_offset: i64,
    pub replica_announced: i64,
    pub extra: Vec<(String, String)>,
}

/// Another sentinel as `SENTINEL SENTINELS <name>` describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentinelRecord {
    pub instance: InstanceFields,
    pub last_hello_message: i64,
    /// `?` when it has not voted.
    pub voted_leader: String,
    pub voted_leader_epoch: u64,
    pub extra: Vec<(String, String)>,
}

/// What a sentinel's monitor of one name is configured with: the options `SENTINEL MONITOR` and
/// `SENTINEL SET` write, read back from the master record (see [`MasterRecord::monitor_settings`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MonitorSettings {
    pub quorum: u64,
    pub down_after_ms: u64,
    pub failover_timeout_ms: u64,
    pub parallel_syncs: u64,
}

impl MonitorSettings {
    /// The sentinel option each setting is, in the order a registration sets them (`quorum`
    /// last: `MONITOR` takes it, but a monitor that already existed keeps its own).
    pub const OPTIONS: [&'static str; 4] = [
        "down-after-milliseconds",
        "failover-timeout",
        "parallel-syncs",
        "quorum",
    ];

    /// The values, in the order of [`Self::OPTIONS`].
    pub fn values(&self) -> [u64; 4] {
        [
            self.down_after_ms,
            self.failover_timeout_ms,
            self.parallel_syncs,
            self.quorum,
        ]
    }
}

impl MasterRecord {
    /// The monitor's settings as this record shows them (negative numbers read as 0).
    pub fn monitor_settings(&self) -> MonitorSettings {
        let unsigned = |value: i64| u64::try_from(value).unwrap_or(0);
        MonitorSettings {
            quorum: self.quorum,
            down_after_ms: unsigned(self.instance.down_after_milliseconds),
            failover_timeout_ms: unsigned(self.failover_timeout),
            parallel_syncs: unsigned(self.parallel_syncs),
        }
    }

    /// Ordered (field, value) pairs exactly as sentinel would send this record.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut p = Pairs::default();
        self.instance.write_head(&mut p);
        p.put_opt("failover-state", self.failover_state.as_ref());
        self.instance.write_tail(&mut p);
        self.info.write(&mut p);
        p.put("config-epoch", self.config_epoch);
        p.put("num-slaves", self.num_slaves);
        p.put("num-other-sentinels", self.num_other_sentinels);
        p.put("quorum", self.quorum);
        p.put("failover-timeout", self.failover_timeout);
        p.put("parallel-syncs", self.parallel_syncs);
        p.put_opt("notification-script", self.notification_script.as_ref());
        p.put_opt(
            "client-reconfig-script",
            self.client_reconfig_script.as_ref(),
        );
        p.0.extend(self.extra.iter().cloned());
        p.0
    }
}

impl FromReply for MasterRecord {
    fn from_value(value: &Value) -> Result<Self, ReplyError> {
        let mut f = Fields::new(value)?;
        let instance = InstanceFields::read(&mut f)?;
        Ok(MasterRecord {
            instance,
            failover_state: f.take("failover-state"),
            info: InfoFields::read(&mut f)?,
            config_epoch: f.num("config-epoch")?,
            num_slaves: f.num("num-slaves")?,
            num_other_sentinels: f.num("num-other-sentinels")?,
            quorum: f.num("quorum")?,
            failover_timeout: f.num("failover-timeout")?,
            parallel_syncs: f.num("parallel-syncs")?,
            notification_script: f.take("notification-script"),
            client_reconfig_script: f.take("client-reconfig-script"),
            extra: f.rest(),
        })
    }
}

impl ReplicaRecord {
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut p = Pairs::default();
        self.instance.write_head(&mut p);
        self.instance.write_tail(&mut p);
        self.info.write(&mut p);
        p.put("master-link-down-time", self.master_link_down_time);
        p.put("master-link-status", &self.master_link_status);
        p.put("master-host", &self.master_host);
        p.put("master-port", self.master_port);
        p.put("slave-priority", self.slave_priority);
        p.put("slave-repl-offset", self.slave_repl_offset);
        p.put("replica-announced", self.replica_announced);
        p.0.extend(self.extra.iter().cloned());
        p.0
    }
}

impl FromReply for ReplicaRecord {
    fn from_value(value: &Value) -> Result<Self, ReplyError> {
        let mut f = Fields::new(value)?;
        Ok(ReplicaRecord {
            instance: InstanceFields::read(&mut f)?,
            info: InfoFields::read(&mut f)?,
            master_link_down_time: f.num("master-link-down-time")?,
            master_link_status: f.text("master-link-status")?,
            master_host: f.text("master-host")?,
            master_port: f.num("master-port")?,
            slave_priority: f.num("slave-priority")?,
            slave_repl_offset: f.num("slave-repl-offset")?,
            replica_announced: f.num("replica-announced")?,
            extra: f.rest(),
        })
    }
}

impl SentinelRecord {
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut p = Pairs::default();
        self.instance.write_head(&mut p);
        self.instance.write_tail(&mut p);
        p.put("last-hello-message", self.last_hello_message);
        p.put("voted-leader", &self.voted_leader);
        p.put("voted-leader-epoch", self.voted_leader_epoch);
        p.0.extend(self.extra.iter().cloned());
        p.0
    }
}

impl FromReply for SentinelRecord {
    fn from_value(value: &Value) -> Result<Self, ReplyError> {
        let mut f = Fields::new(value)?;
        Ok(SentinelRecord {
            instance: InstanceFields::read(&mut f)?,
            last_hello_message: f.num("last-hello-message")?,
            voted_leader: f.text("voted-leader")?,
            voted_leader_epoch: f.num("voted-leader-epoch")?,
            extra: f.rest(),
        })
    }
}

/// A record in RESP2: a flat array of bulk strings, field then value.
pub fn pairs_to_resp2(pairs: &[(String, String)]) -> Resp2Frame {
    let bulk = |s: &String| Resp2Frame::BulkString(Bytes::copy_from_slice(s.as_bytes()));
    Resp2Frame::Array(pairs.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect())
}

/// A record in RESP3: a map of bulk strings, in field order.
pub fn pairs_to_resp3(pairs: &[(String, String)]) -> Resp3Frame {
    let blob = |s: &String| Resp3Frame::BlobString {
        data: Bytes::copy_from_slice(s.as_bytes()),
        attributes: None,
    };
    Resp3Frame::Map {
        data: pairs.iter().map(|(k, v)| (blob(k), blob(v))).collect(),
        attributes: None,
    }
}

// ------------------------------------------------------------------------- address and ckquorum

/// `SENTINEL GET-MASTER-ADDR-BY-NAME`: `None` when the sentinel does not know the name (RESP2
/// `*-1` or `$-1`, RESP3 `_`), which is also how the coordinator says "no agreed master".
pub fn master_addr(value: &Value) -> Result<Option<(String, u16)>, ReplyError> {
    match value.reject_error()? {
        Value::Null => Ok(None),
        Value::Array(items) if items.len() == 2 => {
            let host = items[0]
                .as_text()
                .ok_or(ReplyError::Shape("a host string"))?;
            let port_text = items[1]
                .as_text()
                .ok_or(ReplyError::Shape("a port string"))?;
            let port = port_text.parse().map_err(|_| invalid("port", &port_text))?;
            Ok(Some((host, port)))
        }
        _ => Err(ReplyError::Shape("[host, port] or null")),
    }
}

/// `SENTINEL CKQUORUM`: the one sentinel reply whose verdict lives in the status-versus-error
/// distinction, so it is kept typed rather than as a bare `Result`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ckquorum {
    /// `+OK ...` rather than `-NOQUORUM ...`.
    pub ok: bool,
    /// Sentinels that can vote, the answering one included.
    pub usable: u32,
    /// The rest of the line after `<usable> usable Sentinels. `.
    pub detail: String,
}

impl Ckquorum {
    const OK_DETAIL: &'static str = "Quorum and failover authorization can be reached";

    /// The reachable answer, worded as sentinel words it.
    pub fn reachable(usable: u32) -> Self {
        Ckquorum {
            ok: true,
            usable,
            detail: Self::OK_DETAIL.to_string(),
        }
    }

    /// The wire text without the leading `+`/`-`: a status line when `ok`, an error otherwise.
    pub fn wire_text(&self) -> String {
        let code = if self.ok { "OK" } else { "NOQUORUM" };
        format!("{code} {} usable Sentinels. {}", self.usable, self.detail)
    }

    fn parse_text(text: &str, ok: bool) -> Result<Self, ReplyError> {
        let code = if ok { "OK " } else { "NOQUORUM " };
        let bad = || invalid("ckquorum", text);
        let rest = text.strip_prefix(code).ok_or_else(bad)?;
        let (n, detail) = rest.split_once(" usable Sentinels.").ok_or_else(bad)?;
        Ok(Ckquorum {
            ok,
            usable: n.parse().map_err(|_| bad())?,
            detail: detail.strip_prefix(' ').unwrap_or(detail).to_string(),
        })
    }
}

impl FromReply for Ckquorum {
    fn from_value(value: &Value) -> Result<Self, ReplyError> {
        match value {
            Value::Str(b) => Self::parse_text(&String::from_utf8_lossy(b), true),
            Value::Error(e) if e.starts_with("NOQUORUM ") => Self::parse_text(e, false),
            Value::Error(e) => Err(ReplyError::Server(e.clone())),
            _ => Err(ReplyError::Shape("a status line or NOQUORUM error")),
        }
    }
}
