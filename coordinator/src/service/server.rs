//! The downstream RESP server: what sentinel-aware clients talk to.
//!
//! It behaves like a sentinel that monitors exactly the masters the coordinator's verdict
//! certifies (DESIGN section 3): a name without an agreed master is answered as a sentinel
//! answers a name it does not know, so every client library falls through to "no master" on its
//! ordinary path instead of raising to the application.
//!
//! Layout, one concern per module:
//! - this file: configuration and the accept loops (client limit, TLS handshake, shutdown);
//! - [`shards`]: the threads client connections run on, each a single-threaded runtime;
//! - [`connection`]: one task per client: read, decode every pipelined request, reply in order
//!   with one write per read batch, timeouts, pub/sub delivery;
//! - [`dispatch`]: command to reply, against a snapshot of the registry;
//! - [`records`]: the sentinel-shaped records and `INFO` text built from published state;
//! - [`master_link`]: the server's own link to each agreed master, for the `disconnected` flag;
//! - [`status`]: `COORDINATOR VERDICT|STATUS`, as text or JSON;
//! - [`pubsub`]: subscriptions and glob matching;
//! - [`auth`]: users, passwords (compared in constant time) and permission presets.

pub mod auth;
mod connection;
mod dispatch;
mod master_link;
pub mod pubsub;
mod records;
mod shards;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use sentinel_protocol::limits::RequestLimits;
use sentinel_protocol::reply::{Protocol, Reply};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use auth::{Password, Permissions, User, Users};

use crate::addr::Addr;
use crate::sentinel::conn::Access;
use crate::service::registry::Registry;
use crate::tls::ServerTls;

/// Clients served at once unless configured otherwise.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;
/// How long an established client may stay silent (Valkey's `timeout`; subscribers are exempt,
/// as in Valkey, because a subscriber is silent by design).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a new client has to send its first command (and to authenticate, when a password
/// is set). Much shorter than the idle timeout: a connection that never speaks costs a slot of
/// the client limit, and holding slots open is the cheapest way to lock real clients out.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one reply write may take before the client is considered stuck and dropped.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The server version `HELLO` and `INFO` report. Clients only read it for feature gates; the
/// coordinator speaks the command set of the sentinel of this version.
pub const DEFAULT_SERVER_VERSION: &str = "9.1.2";

/// The error a client over the limit gets before the connection is closed, as Valkey words it.
pub const MAX_CLIENTS_ERROR: &str = "ERR max number of clients reached";

/// Everything the server needs besides the registry. Built once at start-up, shared read-only.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Who may connect, with which password and which permission preset.
    pub users: Users,
    /// Frame size, argument count and pre-auth limits, enforced before any decoding.
    pub limits: RequestLimits,
    /// Clients served at once; one more is told so and closed.
    pub max_clients: usize,
    /// Silence allowed to an established, unsubscribed client.
    pub idle_timeout: Duration,
    /// Silence allowed to a new client before its first command and its authentication.
    pub handshake_timeout: Duration,
    /// Time allowed to write one batch of replies to a client.
    pub write_timeout: Duration,
    /// The other coordinator instances: what `SENTINEL SENTINELS` lists, so clients that refresh
    /// their sentinel list from it keep talking to coordinators, never to raw sentinels.
    pub peers: Vec<Addr>,
    /// This instance's 40-hex run id (`SENTINEL MYID`, `INFO`).
    pub my_id: String,
    /// The address this instance is reachable at, for `INFO` (`None`: the listener's address).
    pub announce: Option<Addr>,
    /// What `HELLO` and `INFO` report as the server version.
    pub version: String,
    /// Whether the server keeps its own link to each agreed master and serves the record
    /// `disconnected` while that link is down, as a sentinel does (see `server::master_link`). On by
    /// default; off for tests that serve made-up masters nobody listens at.
    pub watch_masters: bool,
    /// How those links reach the masters: TLS when the group speaks it. No credentials: an
    /// answer of any kind (`-NOAUTH` too) is proof of life.
    pub master_access: Access,
    /// Threads the client connections run on, each with a single-threaded runtime of its own,
    /// a connection staying on the one it was given (round robin) for its life; 0: on the
    /// runtime that calls [`run`]. A request then never wakes another thread, which is where a
    /// work-stealing runtime spends CPU per request, and a tap message still reaches the
    /// subscribers on every thread at once.
    pub client_threads: usize,
}

impl ServerConfig {
    /// A configuration with the defaults and no authentication, identified by `my_id`.
    pub fn new(my_id: impl Into<String>) -> Self {
        Self {
            users: Users::default(),
            limits: RequestLimits::default(),
            max_clients: DEFAULT_MAX_CLIENTS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            peers: Vec::new(),
            my_id: my_id.into(),
            announce: None,
            version: DEFAULT_SERVER_VERSION.to_owned(),
            watch_masters: true,
            master_access: Access::default(),
            client_threads: 0,
        }
    }
}

/// Shared by every connection task: configuration, registry and the source of client ids.
pub(crate) struct Shared {
    pub config: Arc<ServerConfig>,
    pub registry: Arc<Registry>,
    pub master_links: Arc<master_link::MasterLinks>,
    pub next_client_id: AtomicU64,
    pub local_addr: Option<SocketAddr>,
    pub started: tokio::time::Instant,
}

/// A socket clients connect to, and whether they speak TLS on it.
pub struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<ServerTls>,
}

impl Listener {
    /// A plaintext listener.
    pub fn plain(tcp: TcpListener) -> Self {
        Self { tcp, tls: None }
    }
}

/// Accepts clients on every listener until `shutdown` is cancelled, one task per connection;
/// then stops accepting, tells every connection to close and waits for them. The client limit
/// is shared by all listeners; `INFO` reports the first one's address.
///
/// Returns only on shutdown; an accept error (out of file descriptors, say) is logged and
/// retried after a short pause rather than ending the service.
pub async fn run(
    listeners: Vec<Listener>,
    config: Arc<ServerConfig>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let local_addr = listeners
        .first()
        .and_then(|listener| listener.tcp.local_addr().ok());
    let slots = Arc::new(Semaphore::new(config.max_clients));
    let master_links = Arc::new(master_link::MasterLinks::default());
    let tasks = TaskTracker::new();
    if config.watch_masters {
        for name in registry.names() {
            tasks.spawn(master_link::run(
                name.clone(),
                Arc::clone(&registry),
                Arc::clone(&master_links),
                config.master_access.clone(),
                shutdown.child_token(),
            ));
        }
    }
    let shared = Arc::new(Shared {
        config,
        registry,
        master_links,
        next_client_id: AtomicU64::new(1),
        local_addr,
        started: tokio::time::Instant::now(),
    });
    let shards = Arc::new(shards::Shards::start(shared.config.client_threads)?);
    for listener in listeners {
        tasks.spawn(accept(
            listener,
            Arc::clone(&shared),
            Arc::clone(&slots),
            Arc::clone(&shards),
            tasks.clone(),
            shutdown.clone(),
        ));
    }
    tasks.close();
    tasks.wait().await;
    if let Ok(shards) = Arc::try_unwrap(shards) {
        shards.stop().await;
    }
    tracing::info!("client server stopped");
    Ok(())
}

/// One listener's accept loop.
async fn accept(
    listener: Listener,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    shards: Arc<shards::Shards>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
) {
    if let Ok(listen) = listener.tcp.local_addr() {
        let tls = listener.tls.is_some();
        tracing::info!(%listen, tls, "serving sentinel-compatible clients");
    }
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.tcp.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "accept failed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let stats = shared.registry.stats();
        let slot = Arc::clone(&slots).try_acquire_owned().ok();
        if slot.is_some() {
            stats.clients_accepted.fetch_add(1, Ordering::Relaxed);
            stats.clients_connected.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.clients_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, "client refused: max number of clients reached");
        }
        let shared = Arc::clone(&shared);
        let shutdown = shutdown.child_token();
        // One task type per transport: a task is as large as its largest state, and a plaintext
        // client should not carry the room a TLS session's would need.
        let placed = match listener.tls.clone() {
            None => shards.place(stream, &tasks, move |stream| {
                serve_plain(stream, peer, shared, slot, shutdown)
            }),
            Some(tls) => shards.place(stream, &tasks, move |stream| {
                serve_tls(stream, peer, tls, shared, slot, shutdown)
            }),
        };
        if let Err(error) = placed {
            tracing::warn!(%peer, %error, "cannot hand the client to its thread; closed");
        }
    }
}

/// A plaintext client, or its refusal at the client limit.
async fn serve_plain(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    shutdown: CancellationToken,
) {
    match slot {
        Some(slot) => {
            connection::serve(stream, peer, &shared, shutdown).await;
            release(&shared, slot);
        }
        None => refuse(stream, shared.config.write_timeout).await,
    }
}

/// A TLS client: the handshake, under the deadline of a first command so a silent peer cannot
/// hold a slot longer, then the client or, at the client limit, its refusal inside TLS.
async fn serve_tls(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: ServerTls,
    shared: Arc<Shared>,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    shutdown: CancellationToken,
) {
    let handshake = tokio::time::timeout(shared.config.handshake_timeout, tls.accept(stream)).await;
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            let cause = crate::tls::cause_of(&error);
            tracing::info!(%peer, %cause, "TLS handshake refused");
            if let Some(slot) = slot {
                release(&shared, slot);
            }
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out");
            if let Some(slot) = slot {
                release(&shared, slot);
            }
            return;
        }
    };
    match slot {
        Some(slot) => {
            connection::serve(stream, peer, &shared, shutdown).await;
            release(&shared, slot);
        }
        None => refuse(stream, shared.config.write_timeout).await,
    }
}

/// Gives a client's slot back.
fn release(shared: &Shared, slot: tokio::sync::OwnedSemaphorePermit) {
    shared
        .registry
        .stats()
        .clients_connected
        .fetch_sub(1, Ordering::Relaxed);
    drop(slot);
}

/// Tells a client over the limit why, then closes (the way Valkey does: an error, not a reset).
async fn refuse(mut stream: impl AsyncWrite + Unpin, write_timeout: Duration) {
    let mut out = BytesMut::new();
    // Encoding an error into a growable buffer cannot fail.
    let _ = Reply::error(MAX_CLIENTS_ERROR).encode(Protocol::Resp2, &mut out);
    let _ = tokio::time::timeout(write_timeout, async {
        stream.write_all(&out).await?;
        stream.shutdown().await
    })
    .await;
}
