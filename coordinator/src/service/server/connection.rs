//! One client connection: read whatever arrived, run every complete request in it, write all
//! the replies with one write, strictly in request order.
//!
//! Batching matters for throughput (a pipelining client gets one syscall per read, not one per
//! command) and costs nothing in latency (a lone request is a batch of one). Pub/sub messages
//! from the tap are written between batches, never inside one, so replies and messages cannot
//! interleave mid-frame.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use sentinel_protocol::codec::RequestCodec;
use sentinel_protocol::reply::Reply;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::dispatch::{Session, execute};
use crate::service::registry::{LocalLatency, Stats, TapMessage, TapScope};

/// The read buffer every connection holds. A batch of 16 pipelined `GET-MASTER-ADDR-BY-NAME`
/// is about 1 KiB and should arrive in one read: measured with bench/run.sh on 2 cores, 512
/// bytes cost 15 % of the P16 throughput and 2 KiB 10 %, against 2.8 and 4.3 KiB per idle
/// client (4 KiB: 6.3 KiB per client, level with a sentinel at P16).
const INPUT_CAPACITY: usize = 4096;

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
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    shared: &Shared,
    shutdown: CancellationToken,
) {
    let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let config = &shared.config;
    let mut codec = RequestCodec::new(config.limits, config.users.auth_required());
    let mut session = Session::new(id, peer, config.users.initial_identity());
    let mut input = BytesMut::with_capacity(INPUT_CAPACITY);
    // Grown by the first reply and kept (cleared, not freed) after each write, so an idle
    // client costs only its read buffer.
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
                        for frame in frames {
                            let _ = frame.encode(session.protocol, &mut output);
                        }
                        if !flush(&mut stream, &mut output, shared).await {
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
            read = stream.read_buf(&mut input) => {
                match read {
                    Ok(0) => break Close::PeerClosed,
                    Ok(_) => {}
                    Err(_) => break Close::ReadError,
                }
                let (ran, protocol_error) = run_batch(
                    &mut input,
                    &mut output,
                    &mut session,
                    shared,
                    &mut codec,
                    &mut batch_counts,
                );
                // Join (or move to) the tap before the confirmations go out, so every message
                // published after the client saw "subscribed" reaches it.
                let wanted = session.subscriptions.tap_scope();
                if wanted != tap.as_ref().map(|tap| tap.scope) {
                    match Tap::join(wanted, tap.take(), &session, shared, &mut output) {
                        Ok(joined) => tap = joined,
                        Err(missed) => {
                            tracing::warn!(
                                client = id, %peer, missed,
                                "subscriber fell behind the event tap; disconnecting it"
                            );
                            break Close::SubscriberLagged;
                        }
                    }
                }
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
    let protocol_error = loop {
        if session.closing {
            break false;
        }
        match codec.decode(input) {
            Ok(Some(args)) => {
                let started = Instant::now();
                let name = execute(&args, session, shared, codec, output);
                counts.count(name);
                counts.latency.observe(started.elapsed());
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
async fn flush(
    writer: &mut (impl AsyncWrite + Unpin),
    output: &mut BytesMut,
    shared: &Shared,
) -> bool {
    if output.is_empty() {
        return true;
    }
    let written = tokio::time::timeout(shared.config.write_timeout, writer.write_all(output)).await;
    output.clear();
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
