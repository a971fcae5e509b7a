//! The long-running service, assembled: one registry, one owner task per master name, one link
//! task per sentinel, a healer per name, the client server and the metrics endpoint, all
//! stopped by one cancellation token.
//!
//! Who talks to whom: links ([`links`]) send what each sentinel says to the owner of the name
//! ([`owner`]), the only writer of that name's slot in the [`registry`]; the healers ([`heal`]),
//! the client server ([`server`]) and [`metrics`] only read the registry.
//!
//! The binary and the scenario tests go through the same [`start`], so what the tests prove is
//! what runs in production; tests listen on port 0 and read the bound addresses back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub mod heal;
pub mod links;
pub mod metrics;
pub mod owner;
pub mod registry;
pub mod roles;
pub mod server;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::addr::{Addr, RunId};
use crate::tls::{ClientTls, ServerTls};
use crate::verdict::SentinelId;

use heal::{HealConfig, HealContext};
use links::{Owners, UpstreamConfig};
use owner::OwnerConfig;
use registry::Registry;
use server::ServerConfig;

/// How long a graceful shutdown may take before the remaining tasks are abandoned.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often the TLS files are compared with what was loaded: a rotated certificate is in use
/// for new connections within this.
pub const DEFAULT_TLS_RELOAD: Duration = Duration::from_secs(2);

/// Everything the service needs, as the command line or a test builds it.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Where sentinel-aware clients connect (port 0: any free port).
    pub listen: SocketAddr,
    /// Where `GET /metrics` is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// TLS on `listen`; plaintext when `None`.
    pub listen_tls: Option<ServerTls>,
    /// A second, plaintext client port, only when asked for (with `listen_tls`).
    pub plaintext_listen: Option<SocketAddr>,
    /// How often the TLS files (server side and the shared client side in
    /// `upstream.access.tls`) are checked for a rotation.
    pub tls_reload: Duration,
    pub upstream: UpstreamConfig,
    pub server: ServerConfig,
    /// Sentinel healing; `None` turns it off. Off in [`ServiceConfig::new`] so that a library
    /// user (or a test) never has its sentinels re-registered without asking for it; the
    /// binary turns it on unless told `--no-heal`.
    pub heal: Option<HealConfig>,
    /// How long [`RunningService::stop`] waits for tasks before giving up on them.
    pub shutdown_grace: Duration,
}

impl ServiceConfig {
    /// A configuration with every default, following `names` on `sentinels`, listening on
    /// `listen` without metrics.
    pub fn new(listen: SocketAddr, sentinels: Vec<Addr>, names: Vec<String>) -> Self {
        Self {
            listen,
            metrics_listen: None,
            listen_tls: None,
            plaintext_listen: None,
            tls_reload: DEFAULT_TLS_RELOAD,
            upstream: UpstreamConfig::new(sentinels, names),
            server: ServerConfig::new(RunId::random().as_str()),
            heal: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}

/// Why the service could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot listen for clients on {addr}: {source}")]
    BindClients {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen for metrics on {addr}: {source}")]
    BindMetrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("no master name is configured")]
    NoNames,
    #[error("no sentinel is configured")]
    NoSentinels,
    #[error("{0} task(s) did not stop within the shutdown grace period")]
    ShutdownTimedOut(usize),
}

/// A started service: its bound addresses, its registry, and the means to stop it.
pub struct RunningService {
    /// Where clients connect.
    pub listen_addr: SocketAddr,
    /// Where metrics are scraped, when enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The plaintext client port, when one was asked for beside a TLS one.
    pub plaintext_addr: Option<SocketAddr>,
    /// The published state, for tests that want to wait on a verdict.
    pub registry: Arc<Registry>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
}

impl std::fmt::Debug for RunningService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningService")
            .field("listen_addr", &self.listen_addr)
            .field("metrics_addr", &self.metrics_addr)
            .field("names", &self.registry.names())
            .finish_non_exhaustive()
    }
}

impl RunningService {
    /// The token that stops the service when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the service's shutdown token is cancelled (by a signal, say), then stops.
    pub async fn run_until_cancelled(self) -> Result<(), ServiceError> {
        self.shutdown.cancelled().await;
        self.stop().await
    }

    /// Stops accepting clients, closes every connection and sentinel link, and waits for the
    /// tasks up to the grace period.
    pub async fn stop(self) -> Result<(), ServiceError> {
        self.shutdown.cancel();
        self.tracker.close();
        match tokio::time::timeout(self.grace, self.tracker.wait()).await {
            Ok(()) => {
                tracing::info!("coordinator stopped");
                Ok(())
            }
            Err(_) => Err(ServiceError::ShutdownTimedOut(self.tracker.len())),
        }
    }
}

/// Binds the listeners and spawns every task. Returns once the service is accepting clients;
/// verdicts follow as the sentinels answer.
pub async fn start(config: ServiceConfig) -> Result<RunningService, ServiceError> {
    start_with(config, CancellationToken::new()).await
}

/// Runs the service until `shutdown` is cancelled, then stops it gracefully.
pub async fn run(config: ServiceConfig, shutdown: CancellationToken) -> Result<(), ServiceError> {
    start_with(config, shutdown)
        .await?
        .run_until_cancelled()
        .await
}

async fn start_with(
    config: ServiceConfig,
    shutdown: CancellationToken,
) -> Result<RunningService, ServiceError> {
    let sentinels = links::dedup(config.upstream.sentinels.clone());
    let names = links::dedup(config.upstream.names.clone());
    if sentinels.is_empty() {
        return Err(ServiceError::NoSentinels);
    }
    if names.is_empty() {
        return Err(ServiceError::NoNames);
    }

    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServiceError::BindClients {
                addr: config.listen,
                source,
            })?;
    let listen_addr = listener
        .local_addr()
        .map_err(|source| ServiceError::BindClients {
            addr: config.listen,
            source,
        })?;
    let mut listeners = vec![server::Listener {
        tcp: listener,
        tls: config.listen_tls.clone(),
    }];
    let plaintext_addr = match config.plaintext_listen {
        Some(addr) => {
            let tcp = TcpListener::bind(addr)
                .await
                .map_err(|source| ServiceError::BindClients { addr, source })?;
            let bound = tcp
                .local_addr()
                .map_err(|source| ServiceError::BindClients { addr, source })?;
            listeners.push(server::Listener::plain(tcp));
            Some(bound)
        }
        None => None,
    };
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServiceError::BindMetrics { addr, source })?,
        ),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(listener) => {
            Some(
                listener
                    .local_addr()
                    .map_err(|source| ServiceError::BindMetrics {
                        addr: config.metrics_listen.unwrap_or(listen_addr),
                        source,
                    })?,
            )
        }
        None => None,
    };

    let registry = Arc::new(Registry::new(&names, sentinels.len()));
    let tracker = TaskTracker::new();
    tracing::info!(
        listen = %listen_addr,
        metrics = %metrics_addr.map_or_else(|| "off".to_owned(), |addr| addr.to_string()),
        names = %joined(&names),
        sentinels = %joined(&sentinels),
        peers = %joined(&config.server.peers),
        auth = config.server.users.auth_required(),
        healing = config.heal.is_some(),
        data_pods = %config.heal.as_ref().map(|heal| joined(&heal.data_pods)).unwrap_or_default(),
        "coordinator starting"
    );

    let origin = follow(&config.upstream, &registry, &tracker, shutdown.clone());
    let upstream = &config.upstream;
    if let Some(heal_config) = config.heal {
        let data_access = upstream
            .access
            .with_credentials(heal_config.data_credentials());
        tracker.spawn(roles::run(
            heal_config.data_pods.clone(),
            data_access.clone(),
            Arc::clone(&registry),
            shutdown.clone(),
        ));
        let heal_config = Arc::new(heal_config);
        let context = HealContext {
            sentinel_access: upstream.access.clone(),
            data_access,
            freshness: upstream.freshness,
            aliases: upstream.aliases.clone(),
            origin,
        };
        for name in &names {
            tracker.spawn(heal::run(
                name.clone(),
                Arc::clone(&heal_config),
                context.clone(),
                Arc::clone(&registry),
                shutdown.clone(),
            ));
        }
    }
    {
        let registry = Arc::clone(&registry);
        let shutdown = shutdown.clone();
        let server_config = Arc::new(config.server);
        tracker.spawn(async move {
            if let Err(error) =
                server::run(listeners, server_config, registry, shutdown.clone()).await
            {
                tracing::error!(%error, "client server failed; stopping the service");
                shutdown.cancel();
            }
        });
    }
    let client_tls = config.upstream.access.tls.clone();
    if config.listen_tls.is_some() || client_tls.is_some() {
        tracker.spawn(reload_tls(
            config.listen_tls.clone(),
            client_tls,
            config.tls_reload,
            Arc::clone(&registry),
            shutdown.clone(),
        ));
    }
    if let Some(listener) = metrics_listener {
        tracker.spawn(metrics::serve(
            listener,
            Arc::clone(&registry),
            shutdown.clone(),
        ));
    }

    Ok(RunningService {
        listen_addr,
        metrics_addr,
        plaintext_addr,
        registry,
        shutdown,
        tracker,
        grace: config.shutdown_grace,
    })
}

/// Checks the TLS files every `every` (and at once on SIGHUP) and swaps in what changed; a
/// failed load keeps the old certificates, says why once per distinct cause and counts it.
async fn reload_tls(
    server: Option<ServerTls>,
    client: Option<ClientTls>,
    every: Duration,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;
    loop {
        #[cfg(unix)]
        let hangup_signal = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup_signal = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            _ = hangup_signal => {}
        }
        let outcomes = [
            ("server", server.as_ref().map(ServerTls::reload)),
            ("client", client.as_ref().map(ClientTls::reload)),
        ];
        for (side, outcome) in outcomes {
            match outcome {
                None | Some(Ok(false)) => {}
                Some(Ok(true)) => {
                    tracing::info!(side, "TLS certificates reloaded");
                    registry.stats().count_tls_reload("ok");
                    last_error = None;
                }
                Some(Err(error)) => {
                    let error = error.to_string();
                    if last_error.as_deref() != Some(error.as_str()) {
                        tracing::warn!(side, %error, "TLS reload failed; keeping the loaded certificates");
                    }
                    registry.stats().count_tls_reload("failed");
                    last_error = Some(error);
                }
            }
        }
    }
}

/// A list as one log field: comma-separated display forms, so a JSON log line carries a plain
/// string rather than a Rust debug rendering.
pub(crate) fn joined<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|item| item.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Spawns the upstream half on `tracker`: one owner task per name `registry` knows (of
/// `upstream.names`) and one link task per configured sentinel, all stopped by `shutdown`.
/// Returns the origin of the monotonic clock every view is stamped against, for readers that
/// judge freshness (the healers).
pub fn follow(
    upstream: &UpstreamConfig,
    registry: &Arc<Registry>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Instant {
    let sentinels = links::dedup(upstream.sentinels.clone());
    let names: Vec<String> = links::dedup(upstream.names.clone())
        .into_iter()
        .filter(|name| registry.get(name).is_some())
        .collect();
    // Every view is stamped against one clock origin, shared by the owners that judge
    // freshness and the healers that read the views.
    let origin = Instant::now();
    let ids: Vec<SentinelId> = sentinels.iter().cloned().map(SentinelId::new).collect();
    let mut mailboxes = Vec::with_capacity(names.len());
    for name in &names {
        let (sender, receiver) = mpsc::channel(owner::MAILBOX_CAPACITY);
        let owner_config = OwnerConfig {
            name: name.clone(),
            sentinels: ids.clone(),
            freshness: upstream.freshness,
            dedup_window: upstream.dedup_window,
            tick: upstream.poll_interval.min(upstream.freshness / 4),
            aliases: upstream.aliases.clone(),
            origin,
        };
        tracker.spawn(owner::run(
            owner_config,
            Arc::clone(registry),
            receiver,
            shutdown.clone(),
        ));
        mailboxes.push((name.clone(), sender));
    }
    let owners = Arc::new(Owners::new(mailboxes));
    for (index, id) in ids.into_iter().enumerate() {
        let (owners, registry, upstream) =
            (Arc::clone(&owners), Arc::clone(registry), upstream.clone());
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            links::run(index, id, owners, registry, &upstream, origin, shutdown).await;
        });
    }
    origin
}
