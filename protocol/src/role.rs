//! The `ROLE` reply, typed.
//!
//! `ROLE` is the cheapest way to ask a data node who it follows, and the one answer clients such as
//! ioredis and redis-rs insist on before they trust an address: a node that says `slave` is not
//! the master whatever a sentinel claimed. The coordinator reads it from data pods (startup,
//! role-probe) and answers it itself as a sentinel.

use std::fmt;

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame as Resp2Frame;
use redis_protocol::resp3::types::BytesFrame as Resp3Frame;

use crate::sentinel::{FromReply, ReplyError, Value};

/// One replica as its master lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleReplica {
    pub ip: String,
    pub port: u16,
    /// Acknowledged replication offset.
    pub offset: i64,
}

/// A replica's link to its master, in Valkey's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Must connect; not trying yet.
    Connect,
    Connecting,
    Handshake,
    /// Receiving the initial payload.
    Sync,
    Connected,
    /// A state a later Valkey may add, kept verbatim.
    Other(String),
}

impl LinkState {
    pub fn parse(s: &str) -> Self {
        match s {
            "connect" => LinkState::Connect,
            "connecting" => LinkState::Connecting,
            "handshake" => LinkState::Handshake,
            "sync" => LinkState::Sync,
            "connected" => LinkState::Connected,
            other => LinkState::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            LinkState::Connect => "connect",
            LinkState::Connecting => "connecting",
            LinkState::Handshake => "handshake",
            LinkState::Sync => "sync",
            LinkState::Connected => "connected",
            LinkState::Other(s) => s,
        }
    }
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Master {
        offset: i64,
        replicas: Vec<RoleReplica>,
    },
    /// Valkey still says `slave` on the wire.
    Slave {
        master_ip: String,
        master_port: u16,
        state: LinkState,
        /// -1 until the first sync completes.
        offset: i64,
    },
    /// The master names this sentinel monitors.
    Sentinel { masters: Vec<String> },
}

fn text(v: &Value, what: &'static str) -> Result<String, ReplyError> {
    v.as_text().ok_or(ReplyError::Shape(what))
}

fn int<T: std::str::FromStr>(v: &Value, field: &'static str) -> Result<T, ReplyError> {
    let t = text(v, field)?;
    t.parse().map_err(|_| ReplyError::InvalidField {
        field: field.to_string(),
        value: t,
    })
}

impl FromReply for Role {
    fn from_value(value: &Value) -> Result<Self, ReplyError> {
        let items = value.as_array("a ROLE array")?;
        let kind = items
            .first()
            .and_then(Value::as_text)
            .ok_or(ReplyError::Shape("a ROLE array starting with the role"))?;
        match (kind.as_str(), items.len()) {
            ("master", 3) => {
                let replicas = items[2]
                    .as_array("a replica list")?
                    .iter()
                    .map(|r| {
                        let r = r.as_array("[ip, port, offset]")?;
                        if r.len() != 3 {
                            return Err(ReplyError::Shape("[ip, port, offset]"));
                        }
                        Ok(RoleReplica {
                            ip: text(&r[0], "a replica ip")?,
                            port: int(&r[1], "port")?,
                            offset: int(&r[2], "offset")?,
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Ok(Role::Master {
                    offset: int(&items[1], "offset")?,
                    replicas,
                })
            }
            ("slave", 5) => Ok(Role::Slave {
                master_ip: text(&items[1], "a master ip")?,
                master_port: int(&items[2], "master port")?,
                state: LinkState::parse(&text(&items[3], "a link state")?),
                offset: int(&items[4], "offset")?,
            }),
            ("sentinel", 2) => Ok(Role::Sentinel {
                masters: items[1]
                    .as_array("a list of master names")?
                    .iter()
                    .map(|n| text(n, "a master name"))
                    .collect::<Result<_, _>>()?,
            }),
            _ => Err(ReplyError::Shape("a master, slave or sentinel ROLE reply")),
        }
    }
}

fn bulk2(s: &str) -> Resp2Frame {
    Resp2Frame::BulkString(Bytes::copy_from_slice(s.as_bytes()))
}

fn bulk3(s: &str) -> Resp3Frame {
    Resp3Frame::BlobString {
        data: Bytes::copy_from_slice(s.as_bytes()),
        attributes: None,
    }
}

fn arr3(data: Vec<Resp3Frame>) -> Resp3Frame {
    Resp3Frame::Array {
        data,
        attributes: None,
    }
}

fn num3(data: i64) -> Resp3Frame {
    Resp3Frame::Number {
        data,
        attributes: None,
    }
}

impl Role {
    /// The reply as Valkey shapes it. Note the mix: a master lists replica ports and offsets as
    /// bulk strings, but its own offset and a replica's master port and offset as integers.
    pub fn to_resp2(&self) -> Resp2Frame {
        match self {
            Role::Master { offset, replicas } => Resp2Frame::Array(vec![
                bulk2("master"),
                Resp2Frame::Integer(*offset),
                Resp2Frame::Array(
                    replicas
                        .iter()
                        .map(|r| {
                            Resp2Frame::Array(vec![
                                bulk2(&r.ip),
                                bulk2(&r.port.to_string()),
                                bulk2(&r.offset.to_string()),
                            ])
                        })
                        .collect(),
                ),
            ]),
            Role::Slave {
                master_ip,
                master_port,
                state,
                offset,
            } => Resp2Frame::Array(vec![
                bulk2("slave"),
                bulk2(master_ip),
                Resp2Frame::Integer(i64::from(*master_port)),
                bulk2(state.as_str()),
                Resp2Frame::Integer(*offset),
            ]),
            Role::Sentinel { masters } => Resp2Frame::Array(vec![
                bulk2("sentinel"),
                Resp2Frame::Array(masters.iter().map(|m| bulk2(m)).collect()),
            ]),
        }
    }

    /// RESP3 has the same shape; only the frame types differ.
    pub fn to_resp3(&self) -> Resp3Frame {
        match self {
            Role::Master { offset, replicas } => arr3(vec![
                bulk3("master"),
                num3(*offset),
                arr3(
                    replicas
                        .iter()
                        .map(|r| {
                            arr3(vec![
                                bulk3(&r.ip),
                                bulk3(&r.port.to_string()),
                                bulk3(&r.offset.to_string()),
                            ])
                        })
                        .collect(),
                ),
            ]),
            Role::Slave {
                master_ip,
                master_port,
                state,
                offset,
            } => arr3(vec![
                bulk3("slave"),
                bulk3(master_ip),
                num3(i64::from(*master_port)),
                bulk3(state.as_str()),
                num3(*offset),
            ]),
            Role::Sentinel { masters } => arr3(vec![
                bulk3("sentinel"),
                arr3(masters.iter().map(|m| bulk3(m)).collect()),
            ]),
        }
    }
}
