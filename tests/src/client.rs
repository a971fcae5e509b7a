//! A minimal async RESP2 client: enough to drive and observe Valkey and sentinels from a test.
//!
//! One connection, one command in flight, every command under a timeout (a SIGSTOPped pod accepts
//! the TCP handshake in the kernel and then answers nothing, so without a timeout a probe would
//! hang forever). Framing is the protocol crate's [`ReplyCodec`] (RESP2, with its limit scanner),
//! so the lab reads replies exactly as the coordinator's upstream links do, and typed replies come
//! from the protocol crate's [`FromReply`] readers ([`Client::call_typed`]).

use std::{fmt::Write as _, net::SocketAddr, time::Duration};

use bytes::BytesMut;
use sentinel_protocol::{
    codec::{ReplyCodec, ReplyCodecError, encode_command},
    info::InfoReplication,
    role::Role,
    sentinel::{FromReply, ReplyError},
};
use tokio::{io::AsyncWriteExt, net::TcpStream, time::timeout};
use tokio_util::codec::Framed;

use crate::error::{LabError, Result};

/// A RESP2 reply frame (`redis_protocol`'s `BytesFrame`, as the protocol crate re-exports it).
pub type Frame = sentinel_protocol::codec::Resp2Frame;

/// Default timeout for connecting and for each command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1500);

/// Credentials sent with `AUTH` right after connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// ACL user; `None` authenticates the `default` user (`requirepass`).
    pub user: Option<String>,
    /// The password.
    pub password: String,
}

impl Credentials {
    /// `AUTH <password>` for the default user.
    pub fn password(password: impl Into<String>) -> Self {
        Credentials {
            user: None,
            password: password.into(),
        }
    }

    /// `AUTH <user> <password>`.
    pub fn user(user: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            user: Some(user.into()),
            password: password.into(),
        }
    }
}

/// One connection to a Valkey server or sentinel.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    framed: Framed<TcpStream, ReplyCodec>,
    timeout: Duration,
    /// Set after a timeout or I/O error: a reply may still be in flight, so the next read could
    /// pair a command with an earlier command's reply. Every later call fails instead.
    broken: Option<String>,
}

impl Client {
    /// Connects (and authenticates if `credentials` is given) with [`DEFAULT_TIMEOUT`].
    pub async fn connect(addr: SocketAddr, credentials: Option<&Credentials>) -> Result<Self> {
        Self::connect_with_timeout(addr, credentials, DEFAULT_TIMEOUT).await
    }

    /// Connects with a timeout that also applies to every later command.
    pub async fn connect_with_timeout(
        addr: SocketAddr,
        credentials: Option<&Credentials>,
        limit: Duration,
    ) -> Result<Self> {
        let stream = match timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => return Err(LabError::Connect { addr, source }),
            Err(_) => {
                return Err(LabError::Connect {
                    addr,
                    source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"),
                });
            }
        };
        let _ = stream.set_nodelay(true);
        let mut client = Client {
            addr,
            framed: Framed::new(stream, ReplyCodec::new()),
            timeout: limit,
            broken: None,
        };
        if let Some(creds) = credentials {
            let mut args = vec!["AUTH"];
            if let Some(user) = &creds.user {
                args.push(user);
            }
            args.push(&creds.password);
            // Never echo the password into an error: report the command as plain `AUTH`.
            client.send(&args).await?;
            if let Frame::Error(message) = client.read("AUTH").await? {
                return Err(LabError::Server {
                    addr,
                    command: "AUTH".into(),
                    message: message.to_string(),
                });
            }
        }
        Ok(client)
    }

    /// The peer address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends a command and returns its reply; an error reply becomes [`LabError::Server`].
    pub async fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame> {
        match self.call_raw(args).await? {
            Frame::Error(message) => Err(LabError::Server {
                addr: self.addr,
                command: render_command(args),
                message: message.to_string(),
            }),
            frame => Ok(frame),
        }
    }

    /// Sends a command and returns its reply as is, error replies included.
    pub async fn call_raw<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Frame> {
        self.send(args).await?;
        self.read(&render_command(args)).await
    }

    /// Sends a command without reading a reply (for `SUBSCRIBE`-style use with [`Self::next`]).
    pub async fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<()> {
        self.check_usable()?;
        let mut buf = BytesMut::new();
        encode_command(args, &mut buf);
        let write = self.framed.get_mut().write_all(&buf);
        let result = match timeout(self.timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.lost(e.into())),
            Err(_) => Err(LabError::CommandTimeout {
                addr: self.addr,
                command: render_command(args),
                after: self.timeout,
            }),
        };
        self.poison_on_error(result)
    }

    fn check_usable(&self) -> Result<()> {
        match &self.broken {
            None => Ok(()),
            Some(why) => Err(LabError::ConnectionLost {
                addr: self.addr,
                reason: format!("unusable after an earlier failure ({why}); reconnect"),
            }),
        }
    }

    fn poison_on_error<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            self.broken = Some(e.to_string());
        }
        result
    }

    /// Reads the next frame with no timeout (a pub/sub message may take a while); `None` when the
    /// peer closed the connection.
    pub async fn next(&mut self) -> Result<Option<Frame>> {
        use tokio_stream_shim::next;
        self.check_usable()?;
        let result = next(&mut self.framed)
            .await
            .transpose()
            .map_err(|e| self.lost(e));
        self.poison_on_error(result)
    }

    async fn read(&mut self, command: &str) -> Result<Frame> {
        use tokio_stream_shim::next;
        let result = match timeout(self.timeout, next(&mut self.framed)).await {
            Ok(Some(Ok(frame))) => Ok(frame),
            Ok(Some(Err(e))) => Err(self.lost(e)),
            Ok(None) => Err(LabError::ConnectionLost {
                addr: self.addr,
                reason: "closed by peer".into(),
            }),
            Err(_) => Err(LabError::CommandTimeout {
                addr: self.addr,
                command: command.to_string(),
                after: self.timeout,
            }),
        };
        self.poison_on_error(result)
    }

    fn lost(&self, e: ReplyCodecError) -> LabError {
        LabError::ConnectionLost {
            addr: self.addr,
            reason: e.to_string(),
        }
    }

    /// `PING`, expecting `PONG`.
    pub async fn ping(&mut self) -> Result<()> {
        self.call(&["PING"]).await.map(|_| ())
    }

    /// Sends a command and reads its reply into a protocol-crate type.
    pub async fn call_typed<T: FromReply, A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<T> {
        let frame = self.call_raw(args).await?;
        T::from_resp2(&frame).map_err(|e| match e {
            ReplyError::Server(message) => LabError::Server {
                addr: self.addr,
                command: render_command(args),
                message,
            },
            other => LabError::UnexpectedReply {
                addr: self.addr,
                command: render_command(args),
                reply: format!("{other}: {}", crate::replies::render(&frame)),
            },
        })
    }

    /// `INFO replication`, typed.
    pub async fn info_replication(&mut self) -> Result<InfoReplication> {
        self.call_typed(&["INFO", "replication"]).await
    }

    /// `ROLE`, typed.
    pub async fn role(&mut self) -> Result<Role> {
        self.call_typed(&["ROLE"]).await
    }

    pub(crate) fn unexpected(&self, command: &str, frame: &Frame) -> LabError {
        LabError::UnexpectedReply {
            addr: self.addr,
            command: command.to_string(),
            reply: crate::replies::render(frame),
        }
    }
}

/// Renders a command for messages, hiding the argument of `AUTH`-like commands.
fn render_command<A: AsRef<[u8]>>(args: &[A]) -> String {
    let mut out = String::new();
    let secret = args
        .first()
        .map(|a| {
            let a = String::from_utf8_lossy(a.as_ref()).to_ascii_uppercase();
            a == "AUTH" || a == "HELLO"
        })
        .unwrap_or(false);
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if secret && i > 0 {
            out.push_str("***");
        } else {
            let _ = write!(out, "{}", String::from_utf8_lossy(arg.as_ref()));
        }
    }
    out
}

/// `futures::StreamExt::next` without the `futures` crate: `Framed` is a `futures_core::Stream`.
mod tokio_stream_shim {
    use std::{future::poll_fn, pin::Pin};

    use futures_core::Stream;
    use tokio_util::codec::{Decoder, Framed};

    pub(super) async fn next<T, C>(framed: &mut Framed<T, C>) -> Option<Result<C::Item, C::Error>>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        C: Decoder,
    {
        poll_fn(|cx| Pin::new(&mut *framed).poll_next(cx)).await
    }
}
