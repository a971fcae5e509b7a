//! Many clients at once: plain connections (for memory) and then the same connections subscribed
//! to `+switch-master` (for the tap's fan-out). Each client is a bare socket reading raw bytes, so
//! that what is timed is the coordinator's delivery, not a client library's parsing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
const SUBSCRIBE: &[u8] = b"*2\r\n$9\r\nSUBSCRIBE\r\n$14\r\n+switch-master\r\n";
/// Lines in `*3 $9 subscribe $14 +switch-master :1`.
const CONFIRMATION_LINES: usize = 6;
/// Lines in `*3 $7 message $14 +switch-master $N <payload>`.
const MESSAGE_LINES: usize = 7;
/// Connections opened at once: well under the listen backlog, so none is refused.
const CONNECTING_AT_ONCE: usize = 200;

/// Opens `count` connections to `addr`, each proven live by one `PING`.
pub async fn connect(addr: SocketAddr, count: usize) -> anyhow::Result<Vec<TcpStream>> {
    connect_from(addr, &[], count).await
}

/// The same, the connections spread over `sources` (loopback addresses bound before connecting),
/// since one source address has only about 28,000 ephemeral ports towards one server.
pub async fn connect_from(
    addr: SocketAddr,
    sources: &[IpAddr],
    count: usize,
) -> anyhow::Result<Vec<TcpStream>> {
    let sources: Arc<[IpAddr]> = sources.into();
    open(count, move |index| {
        let sources = Arc::clone(&sources);
        async move {
            let stream = match sources.get(index % sources.len().max(1)) {
                Some(source) => {
                    let socket = TcpSocket::new_v4()?;
                    socket.bind(SocketAddr::new(*source, 0))?;
                    socket.connect(addr).await?
                }
                None => TcpStream::connect(addr).await?,
            };
            stream.set_nodelay(true)?;
            ping(stream).await
        }
    })
    .await
}

/// The payload of a pub/sub message as a subscriber reads it (`*3 $7 message $N channel $M
/// payload`), to publish the same bytes elsewhere.
pub fn payload_of(message: &str) -> Option<String> {
    let lines: Vec<&str> = message.split("\r\n").collect();
    (lines.len() >= MESSAGE_LINES).then(|| lines[MESSAGE_LINES - 1].to_owned())
}

/// The same over TLS: `count` handshakes with `config` (a client certificate when the server
/// asks), each proven by one `PING`, so the server holds every session's full state.
pub async fn connect_tls(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    count: usize,
) -> anyhow::Result<Vec<tokio_rustls::client::TlsStream<TcpStream>>> {
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = rustls::pki_types::ServerName::from(addr.ip());
    open(count, move |_| {
        let connector = connector.clone();
        let name = name.clone();
        async move {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            ping(connector.connect(name, tcp).await?).await
        }
    })
    .await
}

/// Opens `count` streams with `dial` (given each connection's index), at most
/// [`CONNECTING_AT_ONCE`] at a time.
async fn open<S, F, Fut>(count: usize, dial: F) -> anyhow::Result<Vec<S>>
where
    S: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<S>> + Send,
{
    let gate = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    let mut tasks = JoinSet::new();
    for index in 0..count {
        let gate = Arc::clone(&gate);
        let dial = dial.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            // A burst of connects can overflow a listen backlog, which loopback answers with a
            // reset; a client would retry, and so does this one, a couple of times.
            let mut attempt = 0;
            loop {
                match dial(index).await {
                    Ok(stream) => return anyhow::Ok(stream),
                    Err(error) if attempt >= 3 => return Err(error),
                    Err(_) => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }
    let mut streams = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        streams.push(joined.context("a connecting task panicked")??);
    }
    Ok(streams)
}

/// Sends one `PING` on `stream` and checks the `PONG`.
async fn ping<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> anyhow::Result<S> {
    stream.write_all(PING).await?;
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).await?;
    if &reply != b"+PONG\r\n" {
        bail!("PING answered {:?}", String::from_utf8_lossy(&reply));
    }
    Ok(stream)
}

/// Subscribers waiting for one `+switch-master`.
pub struct Subscribers {
    /// Each task hands its stream back with its message, so that no connection closes while
    /// others are still waiting: closing is work for the coordinator too, and would be timed.
    tasks: JoinSet<anyhow::Result<(Instant, String, TcpStream)>>,
}

/// Subscribes every stream to `+switch-master` and returns once every subscription is confirmed.
pub async fn subscribe(streams: Vec<TcpStream>, timeout: Duration) -> anyhow::Result<Subscribers> {
    let count = streams.len();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut tasks = JoinSet::new();
    for mut stream in streams {
        let ready = ready_tx.clone();
        tasks.spawn(async move {
            stream.write_all(SUBSCRIBE).await?;
            let mut buffer = Vec::with_capacity(128);
            read_lines(&mut stream, &mut buffer, CONFIRMATION_LINES).await?;
            if !buffer.starts_with(b"*3\r\n$9\r\nsubscribe\r\n") {
                bail!("SUBSCRIBE answered {:?}", String::from_utf8_lossy(&buffer));
            }
            let _ = ready.send(());
            buffer.clear();
            let mut chunk = [0u8; 256];
            let n = stream.read(&mut chunk).await?;
            // The moment the first bytes of the message arrive is the delivery.
            let at = Instant::now();
            if n == 0 {
                bail!("the coordinator closed a subscriber");
            }
            buffer.extend_from_slice(&chunk[..n]);
            if count_lines(&buffer) < MESSAGE_LINES {
                read_lines(&mut stream, &mut buffer, MESSAGE_LINES).await?;
            }
            Ok((at, String::from_utf8_lossy(&buffer).into_owned(), stream))
        });
    }
    drop(ready_tx);
    let deadline = Instant::now() + timeout;
    for confirmed in 0..count {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(())) => {}
            Ok(None) => {
                // Every task has ended: one failed; report its error.
                while let Some(joined) = tasks.join_next().await {
                    joined??;
                }
                bail!("subscribers ended after {confirmed} confirmations");
            }
            Err(_) => bail!("only {confirmed} of {count} subscriptions confirmed in {timeout:?}"),
        }
    }
    Ok(Subscribers { tasks })
}

impl Subscribers {
    /// Waits for every subscriber's message; returns the arrival times and the distinct messages.
    /// The connections close only after the last message arrived.
    pub async fn deliveries(
        mut self,
        timeout: Duration,
    ) -> anyhow::Result<(Vec<Instant>, Vec<String>)> {
        let deadline = Instant::now() + timeout;
        let mut arrivals = Vec::with_capacity(self.tasks.len());
        let mut messages: Vec<String> = Vec::new();
        let mut streams = Vec::with_capacity(self.tasks.len());
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(joined)) => {
                    let (at, message, stream) = joined.context("a subscriber panicked")??;
                    streams.push(stream);
                    arrivals.push(at);
                    if !messages.contains(&message) {
                        messages.push(message);
                    }
                }
                Ok(None) => return Ok((arrivals, messages)),
                Err(_) => bail!(
                    "{} subscribers had no message after {timeout:?} ({} had)",
                    self.tasks.len(),
                    arrivals.len()
                ),
            }
        }
    }
}

fn count_lines(buffer: &[u8]) -> usize {
    buffer.windows(2).filter(|w| w == b"\r\n").count()
}

async fn read_lines(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    lines: usize,
) -> anyhow::Result<()> {
    let mut chunk = [0u8; 256];
    while count_lines(buffer) < lines {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!(
                "connection closed after {:?}",
                String::from_utf8_lossy(buffer)
            );
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}

/// Every tap message on every channel (`PSUBSCRIBE *`), with its arrival time: what each
/// subscriber's connection is woken for, whether or not it subscribed to that channel.
pub struct TapRecorder {
    seen: Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TapRecorder {
    pub async fn start(addr: SocketAddr) -> anyhow::Result<Self> {
        let mut client = valkey_lab::Client::connect(addr, None).await?;
        client.send(&["PSUBSCRIBE", "*"]).await?;
        client.next().await?.context("closed before confirming")?;
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok(Some(frame)) = client.next().await {
                let at = Instant::now();
                let text = valkey_lab::replies::render(&frame);
                record.lock().expect("tap recorder").push((at, text));
            }
        });
        Ok(Self { seen, task })
    }

    /// The messages that arrived between `from` and `to`.
    pub fn between(&self, from: Instant, to: Instant) -> Vec<String> {
        self.seen
            .lock()
            .expect("tap recorder")
            .iter()
            .filter(|(at, _)| *at >= from && *at <= to)
            .map(|(_, text)| text.clone())
            .collect()
    }
}

impl Drop for TapRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
