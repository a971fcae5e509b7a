//! One client connection: read whatever arrived, run every complete request in it, write all
//! the replies with one write, strictly in request order.
//!
//! Batching matters for throughput (a pipelining client gets one syscall per read, not one per
//! command) and costs nothing in latency (a lone request is a batch of one). Pub/sub messages
//! from the tap are written between batches, never inside one, so replies and messages cannot
//! interleave mid-frame.
//!
//! An idle plaintext client holds no buffer, as an idle Valkey client holds none of its own: it
//! waits for readiness, then reads into the thread's scratch buffer, runs the batch from there
//! and writes the replies from the thread's scratch output at once. Only what is left over (a
//! request cut mid-frame, a reply the socket would not take whole) is copied into buffers of
//! the connection's own, which are freed again once drained. A TLS client waits on the buffer
//! rustls keeps per connection anyway, and holds a read buffer of its own only while a request
//! is in it; it writes through an output of its own.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use sentinel_protocol::codec::RequestCodec;
use sentinel_protocol::reply::Reply;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::dispatch::{Session, execute};
use crate::service::registry::{LocalLatency, Stats, TapMessage, TapScope};

/// What a plaintext connection reads at most per turn into the thread's scratch. A batch of 16
/// pipelined `GET-MASTER-ADDR-BY-NAME` is about 1 KiB and should arrive in one read: measured
/// with bench/run.sh on 2 cores, 512 bytes cost 15 % of the P16 throughput and 2 KiB 10 %.
const INPUT_CAPACITY: usize = 4096;
/// What the thread's scratch output keeps between batches; a larger one (a big `INFO`, a
/// burst of tap messages) is let go after use.
const SCRATCH_OUTPUT_KEEP: usize = 64 * 1024;

thread_local! {
    /// The plaintext connections' read and write scratch, one pair per thread. Only borrowed
    /// between two awaits, never across one, so a task moving between threads never sees
    /// another's bytes.
    static SCRATCH: RefCell<(BytesMut, BytesMut)> =
        RefCell::new((BytesMut::with_capacity(INPUT_CAPACITY), BytesMut::new()));
}

/// How a connection's bytes move: through the thread's scratch (plain TCP, which can wait for
/// readiness without a buffer and write without waiting), or through buffers of its own (TLS).
pub(super) trait Wire: AsyncRead + AsyncWrite + Unpin {
    /// Whether [`Wire::ready`] only waits, leaving the read to [`Wire::try_read_into`].
    const SCRATCH: bool;

    /// Waits for input. With scratch it reads nothing and returns `None`; without, it reads
    /// into `input` and returns how much (0: the peer closed).
    async fn ready(&mut self, input: &mut BytesMut) -> io::Result<Option<usize>>;

    /// Reads what is there now into `buf` without waiting (`WouldBlock`: nothing).
    fn try_read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize>;

    /// Writes what the socket takes now, without waiting (`WouldBlock`: nothing).
    fn try_write_now(&mut self, bytes: &[u8]) -> io::Result<usize>;
}

impl Wire for tokio::net::TcpStream {
    const SCRATCH: bool = true;

    async fn ready(&mut self, _input: &mut BytesMut) -> io::Result<Option<usize>> {
        self.readable().await.map(|()| None)
    }

    /// A read through `poll_read` rather than `try_read`: a short read then clears the
    /// socket's readiness (epoll is edge-triggered), where `try_read` keeps it until a read
    /// fails with `WouldBlock`, one more read syscall per request. The no-op waker is
    /// harmless: [`Wire::ready`] registers the task's own before the connection waits again.
    fn try_read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        buf.reserve(INPUT_CAPACITY);
        let mut cx = Context::from_waker(Waker::noop());
        match tokio_util::io::poll_read_buf(Pin::new(self), &mut cx, buf) {
            Poll::Ready(read) => read,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn try_write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.try_write(bytes)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire for tokio_rustls::server::TlsStream<S> {
    const SCRATCH: bool = false;

    /// Waits on rustls's own buffer of decrypted bytes and copies them out only once they are
    /// there, so an idle TLS client holds no read buffer besides the one rustls keeps anyway.
    async fn ready(&mut self, input: &mut BytesMut) -> io::Result<Option<usize>> {
        let arrived = self.fill_buf().await?;
        let n = arrived.len();
        input.extend_from_slice(arrived);
        self.consume(n);
        Ok(Some(n))
    }

    fn try_read_into(&mut self, _buf: &mut BytesMut) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn try_write_now(&mut self, _bytes: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// What one turn of reading found.
enum Turn {
    /// The peer closed, or reading failed.
    Closed(Close),
    /// Nothing to read after all (a spurious readiness).
    Nothing,
    /// A batch ran: how many requests, and whether a protocol error ended it.
    Ran(usize, bool),
}

/// Why a connection ended, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    PeerClosed,
    ReadError,
    WriteFailed,
    ProtocolError,
    Quit,
    HandshakeTimeout,
    IdleTimeout,
    SubscriberLagged,
    Shutdown,
}

/// Serves one client until it leaves, misbehaves, times out or the server shuts down.
///
/// Any byte stream will do (plain TCP, TLS): reads and writes never overlap (a batch's replies
/// are written before the next read), so the stream is not split.
pub async fn serve<S: Wire>(
    mut stream: S,
    peer: SocketAddr,
    shared: &Shared,
    shutdown: CancellationToken,
) {
    let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let config = &shared.config;
    let mut codec = RequestCodec::new(config.limits, config.users.auth_required());
    let mut session = Session::new(id, peer, config.users.initial_identity());
    // The connection's own buffers: empty (no allocation) while idle, but on TLS the output,
    // grown by the first reply and kept (cleared, not freed).
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    let mut tap: Option<Tap> = None;
    let mut batch_counts = BatchCounts::default();
    // Until the first command has run and the client is authenticated, the short handshake
    // timeout applies; afterwards the idle timeout (which subscribers are exempt from).
    let mut established = false;
    let mut deadline = Instant::now() + config.handshake_timeout;
    // One timer for the connection's life, re-armed only when it fires early: moving
    // `deadline` on every request costs nothing, where a fresh timer per request would add a
    // timer-wheel insert and removal to the hot path.
    let timer = tokio::time::sleep_until(deadline);
    tokio::pin!(timer);
    // Registered with the shared token once: a fresh `cancelled()` per loop turn would lock the
    // token's waiter list twice per request, and every connection contends for that one lock
    // (10,000 subscribers woken by one `+switch-master` most of all).
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    tracing::debug!(client = id, %peer, "client connected");

    let close = loop {
        let idle_exempt =
            established && (session.subscriptions.is_active() || config.idle_timeout.is_zero());
        tokio::select! {
            // Tap messages before reads: a subscriber that also sends commands (RESP3 allows
            // it) must not starve its own deliveries into a lag disconnect.
            biased;
            () = &mut cancelled => break Close::Shutdown,
            message = next_tap_message(&mut tap) => {
                match message {
                    Ok(message) => {
                        if tap.as_mut().is_some_and(|tap| tap.already_delivered(message.seq)) {
                            continue;
                        }
                        let mut frames = Vec::new();
                        session.subscriptions.deliver(&message, &mut frames);
                        let protocol = session.protocol;
                        let encoded = write_now(&mut stream, &mut output, |out| {
                            for frame in frames {
                                let _ = frame.encode(protocol, out);
                            }
                        });
                        if encoded.is_err() || !flush(&mut stream, &mut output, shared).await {
                            break Close::WriteFailed;
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            client = id, %peer, missed,
                            "subscriber fell behind the event tap; disconnecting it rather than \
                             letting it miss events silently"
                        );
                        break Close::SubscriberLagged;
                    }
                    // The registry is gone: the service is stopping.
                    Err(RecvError::Closed) => break Close::Shutdown,
                }
            }
            ready = stream.ready(&mut input) => {
                let mut batch = |input: &mut BytesMut, output: &mut BytesMut| {
                    let (ran, protocol_error) = run_batch(
                        input,
                        output,
                        &mut session,
                        shared,
                        &mut codec,
                        &mut batch_counts,
                    );
                    // Join (or move to) the tap before the confirmations go out, so every
                    // message published after the client saw "subscribed" reaches it.
                    let wanted = session.subscriptions.tap_scope();
                    if wanted != tap.as_ref().map(|tap| tap.scope) {
                        match Tap::join(wanted, tap.take(), &session, shared, output) {
                            Ok(joined) => tap = joined,
                            Err(missed) => {
                                tracing::warn!(
                                    client = id, %peer, missed,
                                    "subscriber fell behind the event tap; disconnecting it"
                                );
                                return Turn::Closed(Close::SubscriberLagged);
                            }
                        }
                    }
                    Turn::Ran(ran, protocol_error)
                };
                let turn = match ready {
                    Err(_) => Turn::Closed(Close::ReadError),
                    Ok(Some(0)) => Turn::Closed(Close::PeerClosed),
                    Ok(Some(_)) => {
                        let turn = batch(&mut input, &mut output);
                        if input.is_empty() {
                            input = BytesMut::new();
                        }
                        turn
                    }
                    Ok(None) => scratch_turn(&mut stream, &mut input, &mut output, &mut batch),
                };
                let (ran, protocol_error) = match turn {
                    Turn::Closed(close) => break close,
                    Turn::Nothing => continue,
                    Turn::Ran(ran, protocol_error) => (ran, protocol_error),
                };
                if !flush(&mut stream, &mut output, shared).await {
                    break Close::WriteFailed;
                }
                if protocol_error {
                    break Close::ProtocolError;
                }
                if session.closing {
                    break Close::Quit;
                }
                // The handshake deadline runs from the connection's start and is not
                // extended by activity: a client that keeps sending without ever
                // authenticating is still out at the handshake timeout.
                if ran > 0 && session.identity.is_some() {
                    established = true;
                    deadline = Instant::now() + config.idle_timeout;
                }
            }
            () = &mut timer, if !idle_exempt => {
                if Instant::now() < deadline {
                    timer.as_mut().reset(deadline);
                    continue;
                }
                break if established { Close::IdleTimeout } else { Close::HandshakeTimeout };
            }
        }
    };
    let _ = stream.shutdown().await;
    tracing::debug!(client = id, %peer, reason = ?close, "client disconnected");
}

/// One plaintext turn, with no await in it: read what arrived (into the thread's scratch when
/// the connection holds no partial request, else into its own `input`), run the batch with
/// replies into the thread's scratch output, and write them at once. What is left over goes to
/// the connection's own buffers: the rest of a cut request into `input`, the part of the
/// replies the socket did not take into `output` (the caller flushes it, waiting).
fn scratch_turn<S: Wire>(
    stream: &mut S,
    input: &mut BytesMut,
    output: &mut BytesMut,
    batch: &mut impl FnMut(&mut BytesMut, &mut BytesMut) -> Turn,
) -> Turn {
    SCRATCH.with_borrow_mut(|(scratch_in, scratch_out)| {
        let own_input = !input.is_empty();
        let buf = if own_input {
            &mut *input
        } else {
            &mut *scratch_in
        };
        match stream.try_read_into(buf) {
            Ok(0) => return Turn::Closed(Close::PeerClosed),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Turn::Nothing,
            Err(_) => return Turn::Closed(Close::ReadError),
        }
        let mut turn = Turn::Nothing;
        let written = encode_and_write(stream, scratch_out, output, |out| turn = batch(buf, out));
        if !own_input && !scratch_in.is_empty() {
            input.extend_from_slice(scratch_in);
            scratch_in.clear();
        }
        if own_input && input.is_empty() {
            *input = BytesMut::new();
        }
        match written {
            Ok(()) => turn,
            Err(_) => Turn::Closed(Close::WriteFailed),
        }
    })
}

/// Encodes with `encode` and, on plain TCP, writes through the thread's scratch output at once
/// (see [`encode_and_write`]); on TLS appends to `output` for the caller's flush. `Err`: the
/// write failed.
fn write_now<S: Wire>(
    stream: &mut S,
    output: &mut BytesMut,
    encode: impl FnOnce(&mut BytesMut),
) -> io::Result<()> {
    if !S::SCRATCH {
        encode(output);
        return Ok(());
    }
    SCRATCH
        .with_borrow_mut(|(_, scratch_out)| encode_and_write(stream, scratch_out, output, encode))
}

/// Encodes into the scratch output and writes it as far as the socket takes it now, moving the
/// rest to `output` for the caller's flush; the scratch is emptied after. With bytes already
/// waiting in `output`, encodes after them instead: replies never overtake what is queued.
fn encode_and_write<S: Wire>(
    stream: &mut S,
    scratch_out: &mut BytesMut,
    output: &mut BytesMut,
    encode: impl FnOnce(&mut BytesMut),
) -> io::Result<()> {
    if !output.is_empty() {
        encode(output);
        return Ok(());
    }
    encode(scratch_out);
    let written = match stream.try_write_now(scratch_out) {
        Ok(n) => Ok(n),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(error) => Err(error),
    };
    if let Ok(n) = written
        && n < scratch_out.len()
    {
        output.extend_from_slice(&scratch_out[n..]);
    }
    release_scratch_output(scratch_out);
    written.map(drop)
}

/// Empties the scratch output, and lets a grown one go.
fn release_scratch_output(scratch_out: &mut BytesMut) {
    scratch_out.clear();
    if scratch_out.capacity() > SCRATCH_OUTPUT_KEEP {
        *scratch_out = BytesMut::new();
    }
}

/// Runs every complete request in `input`, appending replies to `output`. Returns how many
/// requests ran and whether a protocol error ended the batch (its error reply is already in
/// `output`; the connection must close, since the next request's start is unknown).
///
/// The batch's counters go to the shared ones once, at its end: a pipelining client's batch
/// then costs one set of atomic additions, not one per command.
fn run_batch(
    input: &mut BytesMut,
    output: &mut BytesMut,
    session: &mut Session,
    shared: &Shared,
    codec: &mut RequestCodec,
    counts: &mut BatchCounts,
) -> (usize, bool) {
    let mut ran = 0;
    // A command's time runs from the end of the one before it in the batch (from the batch's
    // start for the first), so it includes its own decoding and costs one clock read, not two:
    // at pipeline 16, reading the clock took 3 % of the coordinator's CPU samples.
    let mut mark = Instant::now();
    let protocol_error = loop {
        if session.closing {
            break false;
        }
        match codec.decode(input) {
            Ok(Some(args)) => {
                let name = execute(&args, session, shared, codec, output);
                let done = Instant::now();
                counts.count(name);
                counts.latency.observe(done - mark);
                mark = done;
                ran += 1;
            }
            Ok(None) => break false,
            Err(error) => {
                if let Some(reply) = error.reply() {
                    let _ = reply.encode(session.protocol, output);
                } else {
                    let _ = Reply::error("ERR Protocol error").encode(session.protocol, output);
                }
                tracing::debug!(client = session.id, peer = %session.peer, %error, "protocol error");
                break true;
            }
        }
    };
    counts.add_to(shared.registry.stats());
    (ran, protocol_error)
}

/// What one batch ran, by command (consecutive runs of one command share an entry), and how
/// long each took. Kept by the connection and emptied after each batch, so counting allocates
/// nothing once warm.
#[derive(Default)]
struct BatchCounts {
    commands: Vec<(&'static str, u64)>,
    latency: LocalLatency,
}

impl BatchCounts {
    fn count(&mut self, name: &'static str) {
        match self.commands.last_mut() {
            Some((last, count)) if *last == name => *count += 1,
            _ => self.commands.push((name, 1)),
        }
    }

    /// Adds the batch to the shared counters and empties it.
    fn add_to(&mut self, stats: &Stats) {
        for (name, count) in self.commands.drain(..) {
            stats.count_commands(name, count);
        }
        stats
            .command_latency
            .merge(&std::mem::take(&mut self.latency));
    }
}

/// Writes everything buffered, within the write timeout. `false`: the client is gone or stuck.
async fn flush<S: Wire>(writer: &mut S, output: &mut BytesMut, shared: &Shared) -> bool {
    if output.is_empty() {
        return true;
    }
    let written = tokio::time::timeout(shared.config.write_timeout, writer.write_all(output)).await;
    output.clear();
    // A plaintext connection writes through the thread's scratch: what it had to buffer here
    // is let go, so an idle client keeps nothing.
    if S::SCRATCH {
        *output = BytesMut::new();
    }
    matches!(written, Ok(Ok(())))
}

/// One connection's place in the event tap.
struct Tap {
    scope: TapScope,
    receiver: broadcast::Receiver<TapMessage>,
    /// Messages delivered from the previous receiver that this one may carry too (it was
    /// joined before the previous one was drained), with the highest of them.
    delivered: Vec<u64>,
    delivered_up_to: u64,
}

impl Tap {
    /// Joins the tap `scope` asks for. Moving from another tap, the new receiver is joined
    /// first and the old one drained after (its messages delivered by the current
    /// subscriptions), so a change of scope neither loses nor repeats a message. Fails with the
    /// count of messages missed when the old receiver had already fallen behind.
    fn join(
        scope: Option<TapScope>,
        previous: Option<Tap>,
        session: &Session,
        shared: &Shared,
        output: &mut BytesMut,
    ) -> Result<Option<Tap>, u64> {
        let Some(scope) = scope else {
            return Ok(None);
        };
        let mut tap = Tap {
            scope,
            receiver: shared.registry.subscribe_tap_scoped(scope),
            delivered: Vec::new(),
            delivered_up_to: 0,
        };
        if let Some(mut previous) = previous {
            let mut frames = Vec::new();
            loop {
                match previous.receiver.try_recv() {
                    Ok(message) => {
                        if !previous.already_delivered(message.seq) {
                            session.subscriptions.deliver(&message, &mut frames);
                        }
                        tap.delivered.push(message.seq);
                        tap.delivered_up_to = message.seq;
                    }
                    Err(TryRecvError::Lagged(missed)) => return Err(missed),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                }
            }
            for frame in frames {
                let _ = frame.encode(session.protocol, output);
            }
        }
        Ok(Some(tap))
    }

    /// Whether `seq` went out already from the previous receiver; forgets what can no longer
    /// come.
    fn already_delivered(&mut self, seq: u64) -> bool {
        if seq > self.delivered_up_to {
            self.delivered.clear();
            return false;
        }
        self.delivered.contains(&seq)
    }
}

/// The next tap message, or never when the connection has not subscribed.
async fn next_tap_message(tap: &mut Option<Tap>) -> Result<TapMessage, RecvError> {
    match tap {
        Some(tap) => tap.receiver.recv().await,
        None => std::future::pending().await,
    }
}
