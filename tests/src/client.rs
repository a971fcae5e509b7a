//! A minimal async RESP2 client: enough to drive and observe Valkey and sentinels from a test.
//!
//! One connection, one command in flight, every command under a timeout (a SIGSTOPped pod accepts
//! the TCP handshake in the kernel and then answers nothing, so without a timeout a probe would
//! hang forever). Replies are `redis_protocol` RESP2 frames, the type the protocol crate's codec
//! yields too.
//!
//! NOTE: framing is the lab's own small codec on `redis_protocol::resp2::decode::decode_bytes_mut`.
//! `sentinel_protocol::codec` was still a stub when the lab was written; switch [`RespCodec`] to
//! it once it exists (the frame type is the same, so nothing else changes).

use std::{fmt::Write as _, net::SocketAddr, time::Duration};

use bytes::{BufMut, BytesMut};
use redis_protocol::resp2::decode::decode_bytes_mut;
use tokio::io::AsyncWriteExt;
use tokio::{net::TcpStream, time::timeout};
use tokio_util::codec::{Decoder, Encoder, Framed};

use crate::error::{LabError, Result};

/// A RESP2 reply frame.
pub type Frame = redis_protocol::resp2::types::BytesFrame;

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

/// Frames replies with `redis_protocol` and encodes commands as arrays of bulk strings.
#[derive(Debug, Default)]
pub struct RespCodec;

impl Decoder for RespCodec {
    type Item = Frame;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> std::io::Result<Option<Frame>> {
        match decode_bytes_mut(src) {
            Ok(Some((frame, _, _))) => Ok(Some(frame)),
            Ok(None) => Ok(None),
            Err(e) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.to_string(),
            )),
        }
    }
}

impl<A: AsRef<[u8]>> Encoder<&[A]> for RespCodec {
    type Error = std::io::Error;

    fn encode(&mut self, args: &[A], dst: &mut BytesMut) -> std::io::Result<()> {
        dst.put_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            let arg = arg.as_ref();
            dst.put_slice(format!("${}\r\n", arg.len()).as_bytes());
            dst.put_slice(arg);
            dst.put_slice(b"\r\n");
        }
        Ok(())
    }
}

/// One connection to a Valkey server or sentinel.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    framed: Framed<TcpStream, RespCodec>,
    timeout: Duration,
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
            framed: Framed::new(stream, RespCodec),
            timeout: limit,
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
        let mut buf = BytesMut::new();
        RespCodec.encode(args, &mut buf).map_err(|e| self.lost(e))?;
        let write = self.framed.get_mut().write_all(&buf);
        match timeout(self.timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.lost(e)),
            Err(_) => Err(LabError::CommandTimeout {
                addr: self.addr,
                command: render_command(args),
                after: self.timeout,
            }),
        }
    }

    /// Reads the next frame with no timeout (a pub/sub message may take a while); `None` when the
    /// peer closed the connection.
    pub async fn next(&mut self) -> Result<Option<Frame>> {
        use tokio_stream_shim::next;
        next(&mut self.framed)
            .await
            .transpose()
            .map_err(|e| self.lost(e))
    }

    async fn read(&mut self, command: &str) -> Result<Frame> {
        use tokio_stream_shim::next;
        match timeout(self.timeout, next(&mut self.framed)).await {
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
        }
    }

    fn lost(&self, e: std::io::Error) -> LabError {
        LabError::ConnectionLost {
            addr: self.addr,
            reason: e.to_string(),
        }
    }

    /// `PING`, expecting `PONG`.
    pub async fn ping(&mut self) -> Result<()> {
        self.call(&["PING"]).await.map(|_| ())
    }

    /// `INFO <section>` parsed into `(field, value)` pairs in order.
    pub async fn info(&mut self, section: &str) -> Result<Vec<(String, String)>> {
        let frame = self.call(&["INFO", section]).await?;
        let text = crate::replies::text(&frame).ok_or_else(|| self.unexpected("INFO", &frame))?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim_end().to_string()))
            .collect())
    }

    /// `ROLE`, parsed.
    pub async fn role(&mut self) -> Result<crate::replies::RoleReply> {
        let frame = self.call(&["ROLE"]).await?;
        crate::replies::RoleReply::from_frame(&frame).ok_or_else(|| self.unexpected("ROLE", &frame))
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
