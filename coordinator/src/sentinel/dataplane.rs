//! What a data pod says of itself: `INFO replication`, `INFO server`'s run id and `ROLE`, each
//! on a connection of the caller's, read into the protocol crate's types. The reasoning over
//! these answers is pure and lives in [`crate::verdict::dataplane`].

use sentinel_protocol::info::InfoReplication;
use sentinel_protocol::role::Role;
use sentinel_protocol::sentinel::FromReply;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::addr::{Addr, RunId};
use crate::verdict::dataplane::{PodProbe, probe_of};

use super::conn::{self, Access, ConnError, Connection, text_reply};

/// `INFO replication`, parsed.
pub async fn replication<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
) -> Result<InfoReplication, ConnError> {
    const COMMAND: &str = "INFO replication";
    let text = text_reply(connection.call(&["INFO", "replication"]).await?, COMMAND)?;
    InfoReplication::parse(&text).map_err(|error| ConnError::Reply {
        command: COMMAND,
        error,
    })
}

/// The server's `run_id` from `INFO server`.
pub async fn run_id<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
) -> Result<RunId, ConnError> {
    const COMMAND: &str = "INFO server";
    let text = text_reply(connection.call(&["INFO", "server"]).await?, COMMAND)?;
    text.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .and_then(|raw| RunId::parse(raw.trim()).ok().flatten())
        .ok_or_else(|| ConnError::Server {
            command: COMMAND,
            error: "no run_id line".into(),
        })
}

/// `ROLE`, parsed.
pub async fn role<S: AsyncRead + AsyncWrite + Unpin>(
    connection: &mut Connection<S>,
) -> Result<Role, ConnError> {
    const COMMAND: &str = "ROLE";
    let value = connection.call(&["ROLE"]).await?;
    if let sentinel_protocol::sentinel::Value::Error(error) = value {
        return Err(ConnError::Server {
            command: COMMAND,
            error,
        });
    }
    Role::from_value(&value).map_err(|error| ConnError::Reply {
        command: COMMAND,
        error,
    })
}

/// Connects to one data pod and reads its replication state as the data-plane choice sees it.
pub async fn probe(pod: &Addr, access: &Access) -> Result<PodProbe, ConnError> {
    let mut connection = conn::connect(pod, access).await?;
    Ok(probe_of(&replication(&mut connection).await?))
}
