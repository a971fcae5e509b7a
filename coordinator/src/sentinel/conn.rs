//! One RESP2 connection to a sentinel, a data pod or a coordinator, plain or TLS.
//!
//! [`Connection`] is generic over the byte stream; [`connect`] is the one place the transport is
//! chosen, from the [`Access`] the caller holds for that kind of peer (its credentials and, when
//! the group speaks TLS, the shared [`ClientTls`]). A TLS failure, in the handshake or as an alert
//! on the first reply (a server that wants a client certificate says so only then, under TLS 1.3),
//! is [`ConnError::Tls`], naming the peer and the cause; there is no fallback to plaintext. Every reply goes through [`ReplyCodec`], whose limit
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
use tokio_util::either::Either;

use crate::addr::{Addr, AddrError};
use crate::secret::Secret;
use crate::tls::{self, ClientTls, HandshakeError};

/// The stream [`connect`] opens: plain TCP, or TLS over it.
pub type Stream = Either<TcpStream, tokio_rustls::client::TlsStream<TcpStream>>;

/// How to reach one kind of peer (sentinels, data pods, coordinators): who to log in as, and
/// whether to speak TLS. Cheap to clone (the TLS config is shared).
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub credentials: Option<Credentials>,
    pub tls: Option<ClientTls>,
}

impl Access {
    /// Plain TCP with these credentials.
    pub fn plain(credentials: Option<Credentials>) -> Self {
        Self {
            credentials,
            tls: None,
        }
    }

    /// The same transport with other credentials.
    pub fn with_credentials(&self, credentials: Option<Credentials>) -> Self {
        Self {
            credentials,
            tls: self.tls.clone(),
        }
    }
}

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
    #[error("{0}")]
    Tls(#[from] HandshakeError),
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
pub struct Connection<S = Stream> {
    stream: S,
    codec: ReplyCodec,
    read: BytesMut,
    write: BytesMut,
    /// For a TLS link: the peer and the name its certificate was checked for, so an alert read
    /// later names them too.
    tls_peer: Option<(String, String)>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps an established stream.
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            codec: ReplyCodec::new(),
            read: BytesMut::with_capacity(16 * 1024),
            write: BytesMut::with_capacity(1024),
            tls_peer: None,
        }
    }

    /// An I/O error as the caller should see it: a TLS alert names the peer and the cause.
    fn io_error(&self, error: std::io::Error) -> ConnError {
        match &self.tls_peer {
            Some((peer, name)) if tls::is_tls_error(&error) => ConnError::Tls(HandshakeError {
                peer: peer.clone(),
                name: name.clone(),
                cause: tls::cause_of(&error),
            }),
            _ => ConnError::Io(error),
        }
    }

    /// Queues one command; [`Self::flush`] sends every queued command in one write.
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        encode_command(args, &mut self.write);
    }

    /// Writes the queued commands.
    pub async fn flush(&mut self) -> Result<(), ConnError> {
        if let Err(error) = self.stream.write_all(&self.write).await {
            return Err(self.io_error(error));
        }
        self.write.clear();
        Ok(())
    }

    /// Reads the next reply frame.
    pub async fn next_frame(&mut self) -> Result<Resp2Frame, ConnError> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.read)? {
                return Ok(frame);
            }
            match self.stream.read_buf(&mut self.read).await {
                Ok(0) => return Err(ConnError::Closed),
                Ok(_) => {}
                Err(error) => return Err(self.io_error(error)),
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

/// Opens a connection, with TLS when `access` says so, and authenticates when it holds
/// credentials.
pub async fn connect(addr: &Addr, access: &Access) -> Result<Connection, ConnError> {
    let host = addr.host().to_string();
    let tcp = TcpStream::connect((host.as_str(), addr.port()))
        .await
        .map_err(ConnError::Connect)?;
    tcp.set_nodelay(true).map_err(ConnError::Connect)?;
    let mut connection = match &access.tls {
        None => Connection::new(Either::Left(tcp)),
        Some(client) => {
            let stream = client.connect(tcp, &host, addr.port()).await?;
            let name = client.checked_name(&host);
            let mut connection = Connection::new(Either::Right(stream));
            connection.tls_peer = Some((addr.to_string(), name));
            connection
        }
    };
    if let Some(credentials) = &access.credentials {
        connection.auth(credentials).await?;
    }
    Ok(connection)
}

/// [`connect`] under a deadline.
pub async fn connect_within(
    addr: &Addr,
    access: &Access,
    timeout: Duration,
) -> Result<Connection, ConnError> {
    tokio::time::timeout(timeout, connect(addr, access))
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
