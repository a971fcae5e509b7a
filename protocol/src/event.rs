//! Sentinel pub/sub events: `(channel, payload)` pairs typed, and formatted back byte for byte.
//!
//! The coordinator both consumes these (they refresh its view of a sentinel faster than polling)
//! and re-publishes them to its own subscribers, whose client libraries split payloads on spaces
//! (Jedis, go-redis) or match prefixes (Lettuce). So formatting must reproduce sentinel's text
//! exactly, and parsing must never fail: an event this model cannot read is kept verbatim, because
//! dropping it would hide a sentinel's news from clients.
//!
//! The channel list is taken from the `sentinelEvent` calls in Valkey's `src/sentinel.c`; most
//! payloads are the "instance details" (`%@`) form, optionally followed by free text.

use std::fmt;

use bytes::Bytes;

use crate::sentinel::{ReplyError, Value};

macro_rules! channels {
    ($($variant:ident => $name:literal,)*) => {
        /// Every channel a Valkey sentinel's `sentinelEvent` names, plus verbatim unknown ones.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum Channel {
            $($variant,)*
            /// A channel this model does not know (another version's, or a user's), verbatim.
            Other(Bytes),
        }

        impl Channel {
            const KNOWN: &'static [(Channel, &'static str)] = &[$((Channel::$variant, $name),)*];

            pub fn as_bytes(&self) -> &[u8] {
                match self {
                    $(Channel::$variant => $name.as_bytes(),)*
                    Channel::Other(b) => b,
                }
            }

            /// The name as shared bytes, without a copy.
            pub fn to_bytes(&self) -> Bytes {
                match self {
                    $(Channel::$variant => Bytes::from_static($name.as_bytes()),)*
                    Channel::Other(b) => b.clone(),
                }
            }
        }
    };
}

channels! {
    Monitor => "+monitor",
    Unmonitor => "-monitor",
    Set => "+set",
    ScriptError => "-script-error",
    ScriptTimeout => "-script-timeout",
    ScriptChild => "+script-child",
    ScriptChildExit => "-script-child",
    SentinelAddressUpdate => "+sentinel-address-update",
    SentinelAddressSwitch => "+sentinel-address-switch",
    SentinelInvalidAddr => "+sentinel-invalid-addr",
    ResetMaster => "+reset-master",
    Slave => "+slave",
    CmdLinkReconnection => "-cmd-link-reconnection",
    PubsubLinkReconnection => "-pubsub-link-reconnection",
    Reboot => "+reboot",
    RoleChangeExpected => "+role-change",
    RoleChangeUnexpected => "-role-change",
    PromotedSlave => "+promoted-slave",
    FailoverStateReconfSlaves => "+failover-state-reconf-slaves",
    ConvertToSlave => "+convert-to-slave",
    FixSlaveConfig => "+fix-slave-config",
    SlaveReconfSentBe => "+slave-reconf-sent-be",
    SlaveReconfSentTimeout => "-slave-reconf-sent-timeout",
    SlaveReconfSent => "+slave-reconf-sent",
    SlaveReconfInprog => "+slave-reconf-inprog",
    SlaveReconfDone => "+slave-reconf-done",
    Sentinel => "+sentinel",
    NewEpoch => "+new-epoch",
    ConfigUpdateFrom => "+config-update-from",
    SwitchMaster => "+switch-master",
    SDown => "+sdown",
    SDownCleared => "-sdown",
    ODown => "+odown",
    ODownCleared => "-odown",
    VoteForLeader => "+vote-for-leader",
    TryFailover => "+try-failover",
    FailoverAbortNotElected => "-failover-abort-not-elected",
    ElectedLeader => "+elected-leader",
    FailoverStateSelectSlave => "+failover-state-select-slave",
    FailoverAbortNoGoodSlave => "-failover-abort-no-good-slave",
    SelectedSlave => "+selected-slave",
    FailoverStateSendSlaveofNoone => "+failover-state-send-slaveof-noone",
    FailoverAbortSlaveTimeout => "-failover-abort-slave-timeout",
    FailoverStateWaitPromotion => "+failover-state-wait-promotion",
    FailoverEndForTimeout => "+failover-end-for-timeout",
    FailoverEnd => "+failover-end",
    Tilt => "+tilt",
    TiltExited => "-tilt",
}

impl Channel {
    pub fn parse(b: &[u8]) -> Channel {
        Channel::KNOWN
            .iter()
            .find(|(_, name)| name.as_bytes() == b)
            .map(|(c, _)| c.clone())
            .unwrap_or_else(|| Channel::Other(Bytes::copy_from_slice(b)))
    }

    /// Sentinel publishes every event except those it logs at debug level; these are the ones a
    /// subscriber can actually receive, and what the upstream tasks should `SUBSCRIBE` to.
    pub fn published() -> impl Iterator<Item = &'static str> {
        Channel::KNOWN
            .iter()
            .filter(|(c, _)| !c.is_debug_only())
            .map(|(_, name)| *name)
    }

    /// Logged at `LL_DEBUG`, hence never published.
    pub fn is_debug_only(&self) -> bool {
        matches!(
            self,
            Channel::ScriptChild
                | Channel::ScriptChildExit
                | Channel::CmdLinkReconnection
                | Channel::PubsubLinkReconnection
        )
    }

    /// The payload shape sentinel uses on this channel.
    fn form(&self) -> Form {
        match self {
            Channel::SwitchMaster => Form::SwitchMaster,
            Channel::NewEpoch => Form::Epoch,
            Channel::VoteForLeader => Form::Vote,
            Channel::ScriptError
            | Channel::ScriptTimeout
            | Channel::ScriptChild
            | Channel::ScriptChildExit
            | Channel::Tilt
            | Channel::TiltExited
            | Channel::Other(_) => Form::Text,
            _ => Form::Instance,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

enum Form {
    Instance,
    SwitchMaster,
    Epoch,
    Vote,
    Text,
}

/// `master`, `slave` or `sentinel`, as sentinel prints instance types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InstanceKind {
    Master,
    Slave,
    Sentinel,
}

impl InstanceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceKind::Master => "master",
            InstanceKind::Slave => "slave",
            InstanceKind::Sentinel => "sentinel",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "master" => Some(InstanceKind::Master),
            "slave" => Some(InstanceKind::Slave),
            "sentinel" => Some(InstanceKind::Sentinel),
            _ => None,
        }
    }
}

/// A name and announced address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub name: String,
    pub ip: String,
    pub port: u16,
}

/// Sentinel's "instance details": `<type> <name> <ip> <port>`, and for anything but a master
/// ` @ <master-name> <master-ip> <master-port>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Instance {
    pub kind: InstanceKind,
    pub instance: Endpoint,
    pub master: Option<Endpoint>,
}

impl Instance {
    /// The master name this instance belongs to.
    pub fn master_name(&self) -> &str {
        match &self.master {
            Some(m) => &m.name,
            None => &self.instance.name,
        }
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.instance;
        write!(f, "{} {} {} {}", self.kind.as_str(), i.name, i.ip, i.port)?;
        if let Some(m) = &self.master {
            write!(f, " @ {} {} {}", m.name, m.ip, m.port)?;
        }
        Ok(())
    }
}

/// An event payload, typed by its channel's form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Instance details, then whatever the event appends after a space (`#quorum 2/2`,
    /// `quorum 2`, `new reported role is master`, a `+set` option and value, ...).
    Instance {
        instance: Instance,
        detail: Option<String>,
    },
    /// `<name> <old-ip> <old-port> <new-ip> <new-port>`.
    SwitchMaster {
        name: String,
        old_ip: String,
        old_port: u16,
        new_ip: String,
        new_port: u16,
    },
    /// `+new-epoch <epoch>`.
    Epoch(u64),
    /// `+vote-for-leader <runid> <epoch>`.
    Vote { runid: String, epoch: u64 },
    /// Free text (`#tilt mode entered`, script events), unknown channels, and any payload that
    /// does not have its channel's usual form: kept byte for byte.
    Text(Bytes),
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Payload::Instance { instance, detail } => {
                write!(f, "{instance}")?;
                if let Some(d) = detail {
                    write!(f, " {d}")?;
                }
                Ok(())
            }
            Payload::SwitchMaster {
                name,
                old_ip,
                old_port,
                new_ip,
                new_port,
            } => write!(f, "{name} {old_ip} {old_port} {new_ip} {new_port}"),
            Payload::Epoch(e) => write!(f, "{e}"),
            Payload::Vote { runid, epoch } => write!(f, "{runid} {epoch}"),
            Payload::Text(b) => f.write_str(&String::from_utf8_lossy(b)),
        }
    }
}

impl Payload {
    pub fn to_bytes(&self) -> Bytes {
        match self {
            Payload::Text(b) => b.clone(),
            other => Bytes::from(other.to_string()),
        }
    }
}

/// One sentinel event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelEvent {
    pub channel: Channel,
    pub payload: Payload,
}

fn port(s: &str) -> Option<u16> {
    s.parse().ok()
}

fn parse_instance(s: &str) -> Option<(Instance, Option<String>)> {
    let mut words = s.splitn(5, ' ');
    let kind = InstanceKind::parse(words.next()?)?;
    let instance = Endpoint {
        name: words.next()?.to_string(),
        ip: words.next()?.to_string(),
        port: port(words.next()?)?,
    };
    let rest = words.next();
    let (master, detail) = match rest {
        Some(r) if r == "@" || r.starts_with("@ ") => {
            let mut m = r.splitn(5, ' ').skip(1);
            let master = Endpoint {
                name: m.next()?.to_string(),
                ip: m.next()?.to_string(),
                port: port(m.next()?)?,
            };
            (Some(master), m.next().map(str::to_string))
        }
        other => (None, other.map(str::to_string)),
    };
    Some((
        Instance {
            kind,
            instance,
            master,
        },
        detail,
    ))
}

fn parse_payload(form: Form, s: &str) -> Option<Payload> {
    match form {
        Form::Instance => {
            parse_instance(s).map(|(instance, detail)| Payload::Instance { instance, detail })
        }
        Form::SwitchMaster => {
            let w: Vec<&str> = s.split(' ').collect();
            match w.as_slice() {
                [name, old_ip, old_port, new_ip, new_port] => Some(Payload::SwitchMaster {
                    name: name.to_string(),
                    old_ip: old_ip.to_string(),
                    old_port: port(old_port)?,
                    new_ip: new_ip.to_string(),
                    new_port: port(new_port)?,
                }),
                _ => None,
            }
        }
        Form::Epoch => s.parse().ok().map(Payload::Epoch),
        Form::Vote => {
            let (runid, epoch) = s.split_once(' ')?;
            Some(Payload::Vote {
                runid: runid.to_string(),
                epoch: epoch.parse().ok()?,
            })
        }
        Form::Text => None,
    }
}

impl SentinelEvent {
    /// Types a published message. Never fails: what does not read as its channel's form is kept as
    /// [`Payload::Text`], so `format(parse(x)) == x` for every input.
    pub fn parse(channel: &[u8], payload: &[u8]) -> SentinelEvent {
        let channel = Channel::parse(channel);
        let typed = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| parse_payload(channel.form(), s))
            // Accept a typed reading only if it writes back the same bytes (rules out `06379`,
            // double spaces, a `+` before a number, ...).
            .filter(|p| p.to_string().as_bytes() == payload);
        SentinelEvent {
            channel,
            payload: typed.unwrap_or_else(|| Payload::Text(Bytes::copy_from_slice(payload))),
        }
    }

    /// The `(channel, payload)` bytes to publish.
    pub fn format(&self) -> (Bytes, Bytes) {
        (self.channel.to_bytes(), self.payload.to_bytes())
    }

    /// The master name the event concerns, when the payload names one.
    pub fn master_name(&self) -> Option<&str> {
        match &self.payload {
            Payload::Instance { instance, .. } => Some(instance.master_name()),
            Payload::SwitchMaster { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The `+switch-master` event the coordinator publishes once per verdict change.
    pub fn switch_master(name: &str, old: (&str, u16), new: (&str, u16)) -> SentinelEvent {
        SentinelEvent {
            channel: Channel::SwitchMaster,
            payload: Payload::SwitchMaster {
                name: name.to_string(),
                old_ip: old.0.to_string(),
                old_port: old.1,
                new_ip: new.0.to_string(),
                new_port: new.1,
            },
        }
    }
}

/// One frame a subscribed connection receives: RESP2 arrays and RESP3 pushes read alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubSubFrame {
    /// `message <channel> <payload>` or `pmessage <pattern> <channel> <payload>`.
    Message {
        pattern: Option<Bytes>,
        channel: Bytes,
        payload: Bytes,
    },
    /// `subscribe`, `psubscribe`, `unsubscribe`, `punsubscribe` confirmations: kind, channel or
    /// pattern (null for an unsubscribe with nothing left), and the subscription count after it.
    Confirmation {
        kind: String,
        channel: Option<Bytes>,
        count: i64,
    },
}

impl PubSubFrame {
    pub fn from_value(value: &Value) -> Result<Self, ReplyError> {
        let items = value.as_array("a pub/sub array or push")?;
        let bytes = |v: &Value| match v {
            Value::Str(b) => Ok(b.clone()),
            _ => Err(ReplyError::Shape("a pub/sub string")),
        };
        let kind = items
            .first()
            .and_then(Value::as_text)
            .ok_or(ReplyError::Shape("a pub/sub kind"))?;
        match (kind.as_str(), items.len()) {
            ("message", 3) => Ok(PubSubFrame::Message {
                pattern: None,
                channel: bytes(&items[1])?,
                payload: bytes(&items[2])?,
            }),
            ("pmessage", 4) => Ok(PubSubFrame::Message {
                pattern: Some(bytes(&items[1])?),
                channel: bytes(&items[2])?,
                payload: bytes(&items[3])?,
            }),
            ("subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe", 3) => {
                let count = match &items[2] {
                    Value::Int(n) => *n,
                    _ => return Err(ReplyError::Shape("a subscription count")),
                };
                let channel = match &items[1] {
                    Value::Null => None,
                    v => Some(bytes(v)?),
                };
                Ok(PubSubFrame::Confirmation {
                    kind,
                    channel,
                    count,
                })
            }
            _ => Err(ReplyError::Shape(
                "message, pmessage or a (un)subscribe confirmation",
            )),
        }
    }

    /// The sentinel event a message carries; `None` for confirmations.
    pub fn event(&self) -> Option<SentinelEvent> {
        match self {
            PubSubFrame::Message {
                channel, payload, ..
            } => Some(SentinelEvent::parse(channel, payload)),
            PubSubFrame::Confirmation { .. } => None,
        }
    }
}
