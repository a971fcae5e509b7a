//! A minimal async RESP2 client: enough to drive and observe Valkey and sentinels from a test.
//!
//! One connection, one command in flight, every command under a timeout (a SIGSTOPped pod accepts
//! the TCP handshake in the kernel and then answers nothing, so without a timeout a probe would
//! hang forever). Framing is the protocol crate's [`ReplyCodec`] (RESP2, with its limit scanner),
//! so the lab reads replies exactly as the coordinator's upstream links do, and typed replies come
//! from the protocol crate's [`FromReply`] readers ([`Client::call_typed`]).
//!
//! Under the codec is a [`Transport`]: plaintext TCP, or TLS over TCP (tokio-rustls on ring) for
//! a TLS lab. The connect timeout covers the TLS handshake too: a SIGSTOPped pod completes the
//! TCP handshake in the kernel and would then never answer the ClientHello.

use std::{
    fmt::Write as _,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::BytesMut;
use sentinel_protocol::{
    codec::{ReplyCodec, ReplyCodecError, encode_command},
    info::InfoReplication,
    role::Role,
    sentinel::{FromReply, ReplyError},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
    time::timeout,
};
use tokio_rustls::{TlsConnector, client::TlsStream, rustls::ClientConfig};
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

/// How a [`Client`] reaches its peer. A lab is plaintext or TLS throughout, so one transport
/// serves its data pods and sentinels alike (credentials differ per role; see `Lab::client`).
#[derive(Clone, Default)]
pub enum Transport {
    /// Plaintext TCP.
    #[default]
    Plain,
    /// TLS with this config (see `tls::client_config`). The peer is verified against the IP
    /// dialled, as a client given a pod's address would: lab certificates carry their pod's IP.
    Tls(Arc<ClientConfig>),
}

impl std::fmt::Debug for Transport {
    /// Just the kind: a `ClientConfig` dump would bury whatever printed it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Plain => "Plain",
            Transport::Tls(_) => "Tls",
        })
    }
}

impl Transport {
    /// Connects and, for TLS, completes the handshake, all within `limit`.
    async fn open(&self, addr: SocketAddr, limit: Duration) -> Result<Stream> {
        let failed = |source| LabError::Connect { addr, source };
        let attempt = async {
            let tcp = TcpStream::connect(addr).await?;
            let _ = tcp.set_nodelay(true);
            match self {
                Transport::Plain => Ok(Stream::Plain(tcp)),
                Transport::Tls(config) => {
                    let connector = TlsConnector::from(config.clone());
                    let tls = connector.connect(addr.ip().into(), tcp).await?;
                    Ok(Stream::Tls(Box::new(tls)))
                }
            }
        };
        match timeout(limit, attempt).await {
            Ok(result) => result.map_err(failed),
            Err(_) => Err(failed(io::Error::new(
                io::ErrorKind::TimedOut,
                "connect timed out",
            ))),
        }
    }
}

/// The connection under the codec: one enum rather than a type parameter, so [`Client`] stays a
/// single type for every caller.
#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One connection to a Valkey server or sentinel.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    framed: Framed<Stream, ReplyCodec>,
    timeout: Duration,
    /// Set after a timeout or I/O error: a reply may still be in flight, so the next read could
    /// pair a command with an earlier command's reply. Every later call fails instead.
    broken: Option<String>,
}

impl Client {
    /// Connects over plaintext TCP (and authenticates if `credentials` is given) with
    /// [`DEFAULT_TIMEOUT`].
    pub async fn connect(addr: SocketAddr, credentials: Option<&Credentials>) -> Result<Self> {
        Self::connect_over(addr, &Transport::Plain, credentials, DEFAULT_TIMEOUT).await
    }

    /// Connects over plaintext TCP with a timeout that also applies to every later command.
    pub async fn connect_with_timeout(
        addr: SocketAddr,
        credentials: Option<&Credentials>,
        limit: Duration,
    ) -> Result<Self> {
        Self::connect_over(addr, &Transport::Plain, credentials, limit).await
    }

    /// Connects over `transport` with a timeout that covers the TCP connect and the TLS
    /// handshake together, and then every later command.
    pub async fn connect_over(
        addr: SocketAddr,
        transport: &Transport,
        credentials: Option<&Credentials>,
        limit: Duration,
    ) -> Result<Self> {
        let stream = transport.open(addr, limit).await?;
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
        // The flush matters under TLS: it pushes out the records the write left buffered.
        let stream = self.framed.get_mut();
        let write = async {
            stream.write_all(&buf).await?;
            stream.flush().await
        };
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
