//! One RESP2 connection to a sentinel or a data pod.
//!
//! [`Connection`] is generic over the byte stream, so a TLS stream slots in where [`connect`]
//! chooses the transport and nowhere else. Every reply goes through [`ReplyCodec`], whose limit
//! scanner guards the decoder against oversized or deeply nested frames, without `Framed`
//! (which would need a stream-combinator crate for one `next()`).

use std::fmt;
use std::time::Duration;

use bytes::BytesMut;
use sentinel_protocol::codec::{ReplyCodec, ReplyCodecError, Resp2Frame, encode_command};
use sentinel_protocol::sentinel::{ReplyError, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use crate::addr::{Addr, AddrError};
use crate::secret::Secret;

/// Who to authenticate as: `AUTH [user] password`. No user means the `default` user.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: Option<String>,
    pub password: Secret,
}

impl Credentials {
    /// The `default` user with this password.
    pub fn password(password: Secret) -> Self {
        Self {
            user: None,
            password,
        }
    }

    /// A named ACL user.
    pub fn user(user: impl Into<String>, password: Secret) -> Self {
        Self {
            user: Some(user.into()),
            password,
        }
    }

    /// The user name as a log line may show it.
    pub fn user_name(&self) -> &str {
        self.user.as_deref().unwrap_or("default")
    }
}

/// Written by hand so the password never reaches a log line through `{:?}`.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user={}, password=<redacted>", self.user_name())
    }
}

/// Why a conversation with a server failed. Never carries a secret: `AUTH` errors hold the
/// server's words only.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("timed out after {0:?} {1}")]
    Timeout(Duration, &'static str),
    #[error("connection closed by the server")]
    Closed,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("reply refused: {0}")]
    Codec(#[from] ReplyCodecError),
    #[error("authentication refused: {0}")]
    Auth(String),
    #[error("the server answered {command} with an error: {error}")]
    Server {
        command: &'static str,
        error: String,
    },
    #[error("unreadable reply to {command}: {error}")]
    Reply {
        command: &'static str,
        error: ReplyError,
    },
    #[error("unreadable address in the reply to {command}: {error}")]
    Address {
        command: &'static str,
        error: AddrError,
    },
    #[error("unexpected reply to SUBSCRIBE: {0}")]
    Subscribe(String),
}

/// One RESP2 connection over any byte stream.
pub struct Connection<S = TcpStream> {
    stream: S,
    codec: ReplyCodec,
    read: BytesMut,
    write: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps an established stream.
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            codec: ReplyCodec::new(),
            read: BytesMut::with_capacity(16 * 1024),
            write: BytesMut::with_capacity(1024),
        }
    }

    /// Queues one command; [`Self::flush`] sends every queued command in one write.
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        encode_command(args, &mut self.write);
    }

    /// Writes the queued commands.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        self.stream.write_all(&self.write).await?;
        self.write.clear();
        Ok(())
    }

    /// Reads the next reply frame.
    pub async fn next_frame(&mut self) -> Result<Resp2Frame, ConnError> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.read)? {
                return Ok(frame);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return Err(ConnError::Closed);
            }
        }
    }

    /// Sends one command and reads its reply. An error reply is a value, not an `Err`: the
    /// caller knows which errors are answers (`No such master`) and which are failures.
    pub async fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Value, ConnError> {
        self.queue(args);
        self.flush().await?;
        Ok(Value::from(&self.next_frame().await?))
    }

    /// Authenticates; an error reply is [`ConnError::Auth`].
    pub async fn auth(&mut self, credentials: &Credentials) -> Result<(), ConnError> {
        let password = credentials.password.expose();
        match &credentials.user {
            Some(user) => self.queue(&[b"AUTH".as_slice(), user.as_bytes(), password]),
            None => self.queue(&[b"AUTH".as_slice(), password]),
        }
        self.flush().await?;
        let reply = Value::from(&self.next_frame().await?);
        match reply {
            Value::Error(error) => Err(ConnError::Auth(error)),
            _ => Ok(()),
        }
    }
}

/// Opens a connection and authenticates if credentials are given. The one place a transport is
/// chosen: TLS goes here.
pub async fn connect(
    addr: &Addr,
    credentials: Option<&Credentials>,
) -> Result<Connection, ConnError> {
    let stream = TcpStream::connect((addr.host().to_string(), addr.port()))
        .await
        .map_err(ConnError::Connect)?;
    stream.set_nodelay(true).map_err(ConnError::Connect)?;
    let mut connection = Connection::new(stream);
    if let Some(credentials) = credentials {
        connection.auth(credentials).await?;
    }
    Ok(connection)
}

/// [`connect`] under a deadline.
pub async fn connect_within(
    addr: &Addr,
    credentials: Option<&Credentials>,
    timeout: Duration,
) -> Result<Connection, ConnError> {
    tokio::time::timeout(timeout, connect(addr, credentials))
        .await
        .unwrap_or(Err(ConnError::Timeout(timeout, "connecting")))
}

/// The text of a bulk or simple string reply (`INFO`, `CONFIG GET` values), or the reason it
/// is not one.
pub fn text_reply(value: Value, command: &'static str) -> Result<String, ConnError> {
    match value {
        Value::Str(text) => Ok(String::from_utf8_lossy(&text).into_owned()),
        Value::Error(error) => Err(ConnError::Server { command, error }),
        other => Err(ConnError::Server {
            command,
            error: format!("unexpected reply {other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debug_form_of_credentials_never_shows_the_password() {
        let credentials = Credentials::user("coordinator", Secret::new("s3cret-pw"));
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(shown.contains("coordinator"), "{shown}");
    }
}
