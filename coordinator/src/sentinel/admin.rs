//! Sentinel and data-pod administration for the lifecycle actions. This is the single place that
//! sends `SENTINEL FAILOVER`, and it sends it once per call: whoever calls [`failover`] owns the
//! rule "one failover per operation, never retried on another sentinel" (DESIGN section 5).
//!
//! The rest are the small commands a planned operation needs around that one send:
//! `CLIENT PAUSE <ms> WRITE` / `CLIENT UNPAUSE` on the old master, `CONFIG GET/SET
//! replica-priority` on the replicas, `REPLICAOF` to demote a paused old master, `CLIENT KILL`
//! of its clients once demoted, and `SENTINEL RESET`. Offsets and roles are read through [`super::dataplane`]; nothing here reads them again.

use std::time::Duration;

use sentinel_protocol::info::InfoSentinel;
use sentinel_protocol::sentinel::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::addr::Addr;

use super::conn::{ConnError, Connection, text_reply};

/// A name no sentinel monitors: the support probe asks about it so that it can never start a
/// failover.
const PROBE_NAME: &str = "valkey-coordinator-probe-no-such-master";

/// How a sentinel answered `SENTINEL FAILOVER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailoverReply {
    /// `+OK`: the sentinel started a forced failover.
    Started,
    /// `-INPROG ...`: a failover already runs.
    InProgress(String),
    /// `-NOGOODSLAVE ...`: no replica is eligible (all at priority 0, down, or lagging).
    NoGoodReplica(String),
    /// Any other reply: refused (unknown name, no permission, syntax).
    Refused(String),
}

impl FailoverReply {
    /// Reads a reply. Pure.
    pub fn from_value(value: &Value) -> Self {
        match value {
            Value::Str(text) if text.as_ref() == b"OK" => FailoverReply::Started,
            Value::Error(error) if error.starts_with("INPROG") => {
                FailoverReply::InProgress(error.clone())
            }
            Value::Error(error) if error.starts_with("NOGOODSLAVE") => {
                FailoverReply::NoGoodReplica(error.clone())
            }
            Value::Error(error) => FailoverReply::Refused(error.clone()),
            other => FailoverReply::Refused(format!("unexpected reply {other:?}")),
        }
    }
}

/// Which failover to ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverMode {
    /// `SENTINEL FAILOVER <name>`: the caller must close the old master's write window itself.
    Plain,
    /// `SENTINEL FAILOVER <name> COORDINATED` (Valkey 9): the old master pauses writes, waits
    /// for the chosen replica to catch up and demotes itself before the promotion.
    Coordinated,
}

/// Whether a sentinel takes `COORDINATED`, read from its answer to a failover of a name it does
/// not monitor: a version that knows the argument looks the name up (`No such master`), one that
/// does not rejects the argument count first. Pure.
pub fn coordinated_supported(reply: &Value) -> bool {
    match reply {
        Value::Error(error) => {
            let error = error.to_ascii_lowercase();
            error.contains("no such master") || error.contains("no such primary")
        }
        _ => false,
    }
}

/// Asks one sentinel whether it takes `COORDINATED`, without any chance of starting a failover.
/// A `NOPERM` is an error, not "unsupported": the failover itself would be refused the same way,
/// so the caller can stop before it closes the old master's write window. A version without
/// `COORDINATED` rejects the argument count before it checks permissions, so it is asked once
/// more without the argument.
pub async fn probe_coordinated<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
) -> Result<bool, ConnError> {
    let reply = connection
        .call(&["SENTINEL", "FAILOVER", PROBE_NAME, "COORDINATED"])
        .await?;
    if coordinated_supported(&refused_for_permission(reply)?) {
        return Ok(true);
    }
    let reply = connection
        .call(&["SENTINEL", "FAILOVER", PROBE_NAME])
        .await?;
    refused_for_permission(reply)?;
    Ok(false)
}

/// A `NOPERM` reply to `SENTINEL FAILOVER` as the error it is; any other reply as it came.
fn refused_for_permission(reply: Value) -> Result<Value, ConnError> {
    refused_for_permission_to(reply, "SENTINEL FAILOVER")
}

fn refused_for_permission_to(reply: Value, command: &'static str) -> Result<Value, ConnError> {
    match reply {
        Value::Error(error) if error.starts_with("NOPERM") => {
            Err(ConnError::Server { command, error })
        }
        reply => Ok(reply),
    }
}

/// Whether this sentinel lets us `SENTINEL RESET`, asked with a pattern no monitored name
/// matches (it resets nothing): an action that will have to reset after a failover asks before
/// it, so a missing permission fails it with nothing changed.
pub async fn probe_reset<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
) -> Result<(), ConnError> {
    let reply = connection.call(&["SENTINEL", "RESET", PROBE_NAME]).await?;
    refused_for_permission_to(reply, "SENTINEL RESET").map(|_| ())
}

/// Whether this sentinel is in TILT (`INFO sentinel`'s `sentinel_tilt:1`), and for how many
/// seconds. A sentinel in TILT takes `SENTINEL FAILOVER` with `+OK` and flags the failover, but
/// runs no failover state machine until TILT ends (30 s after its clock last jumped: a process
/// stopped or starved for over 2 s), so the one failover of an operation must not go there.
pub async fn tilt<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
) -> Result<Option<u64>, ConnError> {
    const COMMAND: &str = "INFO sentinel";
    let text = text_reply(connection.call(&["INFO", "sentinel"]).await?, COMMAND)?;
    let info = InfoSentinel::parse(&text).map_err(|error| ConnError::Reply {
        command: COMMAND,
        error,
    })?;
    match info.field("sentinel_tilt") {
        Some("0") => Ok(None),
        Some("1") => Ok(Some(
            info.field("sentinel_tilt_since_seconds")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
        )),
        other => Err(ConnError::Server {
            command: COMMAND,
            error: format!("sentinel_tilt is {other:?}, not 0 or 1"),
        }),
    }
}

/// Sends `SENTINEL FAILOVER <name> [COORDINATED]`, once.
pub async fn failover<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
    name: &str,
    mode: FailoverMode,
) -> Result<FailoverReply, ConnError> {
    let reply = match mode {
        FailoverMode::Plain => connection.call(&["SENTINEL", "FAILOVER", name]).await?,
        FailoverMode::Coordinated => {
            connection
                .call(&["SENTINEL", "FAILOVER", name, "COORDINATED"])
                .await?
        }
    };
    Ok(FailoverReply::from_value(&reply))
}

/// `SENTINEL RESET <name>`: the sentinel forgets the name's replicas and sentinels and
/// rediscovers them. Returns how many masters matched.
pub async fn reset<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
    name: &str,
) -> Result<i64, ConnError> {
    match connection.call(&["SENTINEL", "RESET", name]).await? {
        Value::Int(count) => Ok(count),
        other => Err(unexpected("SENTINEL RESET", other)),
    }
}

/// `CLIENT PAUSE <ms> WRITE`: writes block (not fail) until the pause ends or is lifted. A
/// pause always carries its own end, so a process killed mid-way never leaves a master paused.
pub async fn pause_writes<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
    for_: Duration,
) -> Result<(), ConnError> {
    let ms = for_.as_millis().max(1).to_string();
    expect_ok(
        connection
            .call(&["CLIENT", "PAUSE", ms.as_str(), "WRITE"])
            .await?,
        "CLIENT PAUSE",
    )
}

/// `CLIENT UNPAUSE`.
pub async fn unpause<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
) -> Result<(), ConnError> {
    expect_ok(
        connection.call(&["CLIENT", "UNPAUSE"]).await?,
        "CLIENT UNPAUSE",
    )
}

/// `REPLICAOF <host> <port>`: demotes a paused, caught-up old master before the promotion (so
/// no moment has two masters) and points it at the agreed new one after; the writes its pause
/// holds back are then refused (`READONLY`) rather than acknowledged by a discarded master.
pub async fn replicaof<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
    master: &Addr,
) -> Result<(), ConnError> {
    let host = master.host().to_string();
    let port = master.port().to_string();
    expect_ok(
        connection
            .call(&["REPLICAOF", host.as_str(), port.as_str()])
            .await?,
        "REPLICAOF",
    )
}

/// `REPLICAOF NO ONE`: takes back a demotion when the failover it prepared was refused.
pub async fn replicaof_no_one<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
) -> Result<(), ConnError> {
    expect_ok(
        connection.call(&["REPLICAOF", "NO", "ONE"]).await?,
        "REPLICAOF NO ONE",
    )
}

/// `CONFIG GET replica-priority`.
pub async fn replica_priority<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
) -> Result<u64, ConnError> {
    const COMMAND: &str = "CONFIG GET replica-priority";
    let reply = connection
        .call(&["CONFIG", "GET", "replica-priority"])
        .await?;
    priority_of(reply).ok_or_else(|| ConnError::Server {
        command: COMMAND,
        error: "no numeric replica-priority".into(),
    })
}

/// The value of a `CONFIG GET replica-priority` reply (RESP2 pair array or RESP3 map). Pure.
pub fn priority_of(reply: Value) -> Option<u64> {
    let value = match reply {
        Value::Array(items) => items.into_iter().nth(1)?,
        Value::Map(pairs) => pairs.into_iter().next()?.1,
        _ => return None,
    };
    text_reply(value, "CONFIG GET").ok()?.trim().parse().ok()
}

/// `CONFIG SET replica-priority <n>`.
pub async fn set_replica_priority<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
    priority: u64,
) -> Result<(), ConnError> {
    let value = priority.to_string();
    expect_ok(
        connection
            .call(&["CONFIG", "SET", "replica-priority", value.as_str()])
            .await?,
        "CONFIG SET replica-priority",
    )
}

/// `CLIENT KILL TYPE normal` and `CLIENT KILL TYPE pubsub` (the caller's own connection is
/// skipped): what a sentinel sends a demoted master, so clients still connected to it reconnect
/// and ask where the master went instead of reading `READONLY` forever (ioredis does not
/// reconnect on it by itself). Replication links are another type and stay. Returns how many
/// clients were closed.
pub async fn disconnect_clients<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
) -> Result<i64, ConnError> {
    let mut closed = 0;
    for kind in ["normal", "pubsub"] {
        match connection.call(&["CLIENT", "KILL", "TYPE", kind]).await? {
            Value::Int(count) => closed += count,
            other => return Err(unexpected("CLIENT KILL TYPE", other)),
        }
    }
    Ok(closed)
}

fn expect_ok(reply: Value, command: &'static str) -> Result<(), ConnError> {
    match reply {
        // `REPLICAOF` to the current master says `OK Already connected to specified master`.
        Value::Str(text) if text.starts_with(b"OK") => Ok(()),
        other => Err(unexpected(command, other)),
    }
}

fn unexpected(command: &'static str, reply: Value) -> ConnError {
    match reply {
        Value::Error(error) => ConnError::Server { command, error },
        other => ConnError::Server {
            command,
            error: format!("unexpected reply {other:?}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn error(text: &str) -> Value {
        Value::Error(text.into())
    }

    #[test]
    fn failover_replies_are_told_apart() {
        assert_eq!(
            FailoverReply::from_value(&Value::Str(Bytes::from_static(b"OK"))),
            FailoverReply::Started
        );
        assert!(matches!(
            FailoverReply::from_value(&error("INPROG Failover already in progress")),
            FailoverReply::InProgress(_)
        ));
        assert!(matches!(
            FailoverReply::from_value(&error("NOGOODSLAVE No suitable replica to promote")),
            FailoverReply::NoGoodReplica(_)
        ));
        assert!(matches!(
            FailoverReply::from_value(&error("ERR No such master with that name")),
            FailoverReply::Refused(_)
        ));
        assert!(matches!(
            FailoverReply::from_value(&Value::Null),
            FailoverReply::Refused(_)
        ));
    }

    #[test]
    fn coordinated_support_is_read_from_the_probe_error() {
        assert!(coordinated_supported(&error(
            "ERR No such master with that name"
        )));
        assert!(coordinated_supported(&error(
            "ERR No such primary with that name"
        )));
        assert!(!coordinated_supported(&error(
            "ERR Wrong number of arguments for 'failover'"
        )));
        assert!(!coordinated_supported(&Value::Str(Bytes::from_static(
            b"OK"
        ))));
    }

    #[test]
    fn a_failover_refused_for_permission_is_an_error_not_an_answer() {
        let noperm = error(
            "NOPERM User coordinator has no permissions to run the 'sentinel|failover' command",
        );
        assert!(matches!(
            refused_for_permission(noperm),
            Err(ConnError::Server {
                command: "SENTINEL FAILOVER",
                ..
            })
        ));
        let unknown = error("ERR No such master with that name");
        assert_eq!(refused_for_permission(unknown.clone()).ok(), Some(unknown));
    }

    #[test]
    fn priorities_are_read_from_either_reply_shape() {
        let resp2 = Value::Array(vec![
            Value::Str(Bytes::from_static(b"replica-priority")),
            Value::Str(Bytes::from_static(b"42")),
        ]);
        assert_eq!(priority_of(resp2), Some(42));
        let resp3 = Value::Map(vec![(
            Value::Str(Bytes::from_static(b"replica-priority")),
            Value::Str(Bytes::from_static(b"0")),
        )]);
        assert_eq!(priority_of(resp3), Some(0));
        assert_eq!(priority_of(Value::Array(vec![])), None);
    }
}
