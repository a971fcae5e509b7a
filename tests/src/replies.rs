//! Small readers for the replies the lab itself needs (ROLE, sentinel records, INFO).
//!
//! NOTE: these are the lab's stopgap. The typed replies of `sentinel_protocol::{role, sentinel,
//! info}` were still stubs when the lab was written; scenario tests should assert through those
//! types once they exist, and these helpers should then be replaced by them.

use std::{collections::HashMap, net::SocketAddr};

use crate::client::Frame;

/// The text of a string-like frame.
pub fn text(frame: &Frame) -> Option<String> {
    match frame {
        Frame::SimpleString(b) | Frame::BulkString(b) => Some(String::from_utf8_lossy(b).into()),
        Frame::Error(s) => Some(s.to_string()),
        Frame::Integer(i) => Some(i.to_string()),
        Frame::Array(_) | Frame::Null => None,
    }
}

/// A frame rendered for humans (error messages and reports).
pub fn render(frame: &Frame) -> String {
    match frame {
        Frame::SimpleString(b) => format!("+{}", String::from_utf8_lossy(b)),
        Frame::BulkString(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Frame::Error(s) => format!("-{s}"),
        Frame::Integer(i) => format!(":{i}"),
        Frame::Null => "(nil)".into(),
        Frame::Array(items) => {
            let inner: Vec<String> = items.iter().map(render).collect();
            format!("[{}]", inner.join(", "))
        }
    }
}

/// A flat `[field, value, field, value, ...]` record (what `SENTINEL MASTER`, `REPLICAS`, and
/// `SENTINELS` return per entry) as a map.
pub fn record(frame: &Frame) -> Option<HashMap<String, String>> {
    let Frame::Array(items) = frame else {
        return None;
    };
    items
        .chunks(2)
        .map(|pair| match pair {
            [k, v] => Some((text(k)?, text(v)?)),
            _ => None,
        })
        .collect()
}

/// An array of records (`SENTINEL REPLICAS`, `SENTINEL SENTINELS`).
pub fn records(frame: &Frame) -> Option<Vec<HashMap<String, String>>> {
    let Frame::Array(items) = frame else {
        return None;
    };
    items.iter().map(record).collect()
}

/// `[ip, port]` (`SENTINEL GET-MASTER-ADDR-BY-NAME`): `Some(None)` for a null reply (unknown
/// name), `None` for a reply of another shape.
pub fn addr_pair(frame: &Frame) -> Option<Option<SocketAddr>> {
    match frame {
        Frame::Null => Some(None),
        Frame::Array(items) if items.is_empty() => Some(None),
        Frame::Array(items) if items.len() == 2 => {
            let ip = text(&items[0])?;
            let port = text(&items[1])?;
            format!("{ip}:{port}").parse().ok().map(Some)
        }
        _ => None,
    }
}

/// What `ROLE` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleReply {
    /// `["master", offset, [[ip, port, offset], ...]]`
    Master {
        /// Replication offset.
        offset: i64,
        /// Connected replicas as `ip:port`.
        replicas: Vec<String>,
    },
    /// `["slave", ip, port, state, offset]`
    Replica {
        /// The master it follows, `ip:port`.
        master: String,
        /// `connect`, `connecting`, `sync`, `connected`, ...
        state: String,
        /// Replication offset (-1 before the first sync).
        offset: i64,
    },
    /// `["sentinel", [names]]`
    Sentinel {
        /// Monitored master names.
        masters: Vec<String>,
    },
}

impl RoleReply {
    /// Parses a `ROLE` reply.
    pub fn from_frame(frame: &Frame) -> Option<Self> {
        let Frame::Array(items) = frame else {
            return None;
        };
        let int = |f: &Frame| match f {
            Frame::Integer(i) => Some(*i),
            other => text(other)?.parse().ok(),
        };
        match text(items.first()?)?.as_str() {
            "master" => {
                let Frame::Array(list) = items.get(2)? else {
                    return None;
                };
                let replicas = list
                    .iter()
                    .map(|r| match r {
                        Frame::Array(parts) if parts.len() >= 2 => {
                            Some(format!("{}:{}", text(&parts[0])?, text(&parts[1])?))
                        }
                        _ => None,
                    })
                    .collect::<Option<_>>()?;
                Some(RoleReply::Master {
                    offset: int(items.get(1)?)?,
                    replicas,
                })
            }
            "slave" | "replica" => Some(RoleReply::Replica {
                master: format!("{}:{}", text(items.get(1)?)?, text(items.get(2)?)?),
                state: text(items.get(3)?)?,
                offset: int(items.get(4)?)?,
            }),
            "sentinel" => {
                let Frame::Array(names) = items.get(1)? else {
                    return None;
                };
                Some(RoleReply::Sentinel {
                    masters: names.iter().map(text).collect::<Option<_>>()?,
                })
            }
            _ => None,
        }
    }

    /// Whether this is a master.
    pub fn is_master(&self) -> bool {
        matches!(self, RoleReply::Master { .. })
    }
}

/// `flags` of a sentinel record say the instance is down or disconnected.
pub fn flags_down(record: &HashMap<String, String>) -> bool {
    record.get("flags").is_some_and(|flags| {
        flags
            .split(',')
            .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"))
    })
}
