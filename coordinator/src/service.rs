//! The service assembled: one registry, the upstream half (sentinel links and verdict owners),
//! the client server and the metrics endpoint, all stopped by one cancellation token.
//!
//! The binary and the scenario tests go through the same [`start`], so what the tests prove is
//! what runs in production; tests listen on port 0 and read the bound addresses back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::heal::{self, HealConfig, HealContext};
use crate::metrics;
use crate::registry::Registry;
use crate::server::{self, ServerConfig};
use crate::upstream::{self, UpstreamConfig};

/// Everything the service needs, as the command line or a test builds it.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Where sentinel-aware clients connect (port 0: any free port).
    pub listen: SocketAddr,
    /// Where `GET /metrics` is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
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
    pub fn new(listen: SocketAddr, sentinels: Vec<crate::addr::Addr>, names: Vec<String>) -> Self {
        Self {
            listen,
            metrics_listen: None,
            upstream: UpstreamConfig::new(sentinels, names),
            server: ServerConfig::new(crate::cli::random_run_id()),
            heal: None,
            shutdown_grace: Duration::from_millis(crate::cli::DEFAULT_SHUTDOWN_GRACE_MS),
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
    let mut sentinels = config.upstream.sentinels.clone();
    sentinels.sort();
    sentinels.dedup();
    if sentinels.is_empty() {
        return Err(ServiceError::NoSentinels);
    }
    if config.upstream.names.is_empty() {
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

    let registry = Arc::new(Registry::new(&config.upstream.names, sentinels.len()));
    let tracker = TaskTracker::new();
    tracing::info!(
        listen = %listen_addr,
        metrics = ?metrics_addr,
        names = ?config.upstream.names,
        sentinels = ?sentinels.iter().map(ToString::to_string).collect::<Vec<_>>(),
        peers = ?config.server.peers.iter().map(ToString::to_string).collect::<Vec<_>>(),
        auth = config.server.users.auth_required(),
        healing = config.heal.is_some(),
        data_pods = ?config
            .heal
            .as_ref()
            .map(|heal| heal.data_pods.iter().map(ToString::to_string).collect::<Vec<_>>()),
        "coordinator starting"
    );

    // The healers read the links' views, so they share the links' clock origin, which only
    // exists once the links are spawned; what else they need is taken before the links own
    // the upstream configuration.
    let healing = config.heal.map(|heal| {
        let mut names = config.upstream.names.clone();
        names.sort();
        names.dedup();
        let upstream = &config.upstream;
        let context = (
            upstream.credentials.clone(),
            upstream.freshness,
            upstream.aliases.clone(),
        );
        (Arc::new(heal), names, context)
    });
    let origin = upstream::spawn(
        config.upstream,
        Arc::clone(&registry),
        &tracker,
        shutdown.clone(),
    );
    if let Some((heal_config, names, (sentinel_credentials, freshness, aliases))) = healing {
        let context = HealContext {
            sentinel_credentials,
            freshness,
            aliases,
            origin,
        };
        for name in names {
            tracker.spawn(heal::run(
                name,
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
                server::run(listener, server_config, registry, shutdown.clone()).await
            {
                tracing::error!(%error, "client server failed; stopping the service");
                shutdown.cancel();
            }
        });
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
        registry,
        shutdown,
        tracker,
        grace: config.shutdown_grace,
    })
}
