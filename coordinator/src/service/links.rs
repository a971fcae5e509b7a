//! The sentinel links: one task per configured sentinel, feeding the owner task of each master
//! name (see [`super::owner`]).
//!
//! A link holds two RESP2 connections to its sentinel:
//!
//! - the *subscription*, `SUBSCRIBE`d to every channel a sentinel publishes on. Every message is
//!   typed as a [`SentinelEvent`], handed to the owner of the name it concerns, and wakes the
//!   poller: an event is news, and the poll right after it is what turns news into a view.
//! - the *poller*, which asks per name `SENTINEL MASTER`, `SENTINEL GET-MASTER-ADDR-BY-NAME` and
//!   `SENTINEL REPLICAS` (pipelined in one write) on every poll period and at once after an
//!   event, and hands the resulting [`SentinelView`] to the owner.
//!
//! An event does not refresh a view's freshness by itself: an event is usually the news that the
//! view just changed, so stamping the old view fresh would attest what the event contradicts.
//! The poll it triggers, a round trip later, is what refreshes the view.
//!
//! Every poll round has its own deadline, so a sentinel that hangs (SIGSTOP, a full socket
//! buffer) costs only its own vote: on a timeout, an I/O error, or a reply that breaks the codec's
//! limits, the link reports the sentinel `Unreachable` for every name, drops both connections, and
//! reconnects after a jittered exponential backoff. Links never wait on each other.
//!
//! Both connections are opened by [`conn::connect`], the one place a TLS handshake will go, and
//! polled through [`query::poll`], the same poll a lifecycle action's survey runs.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sentinel_protocol::event::{PubSubFrame, SentinelEvent};
use sentinel_protocol::sentinel::Value;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::addr::{Addr, PodAliases};
use crate::sentinel::conn::{self, Access, ConnError, Connection};
use crate::sentinel::query;
use crate::verdict::{self, SentinelId};

use super::owner::{self, OwnerMessage};
use super::registry::Registry;

/// How often each sentinel is polled when nothing happens.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// The deadline of one poll round (three pipelined queries) for one name.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_millis(500);
/// The deadline of a TCP connect plus `AUTH` and `SUBSCRIBE`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The first reconnect delay (before jitter).
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// The largest reconnect delay (before jitter).
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Everything the upstream half needs to know.
#[derive(Clone)]
pub struct UpstreamConfig {
    /// The configured sentinels; N is their count (duplicates are dropped).
    pub sentinels: Vec<Addr>,
    /// The master names to follow (duplicates are dropped).
    pub names: Vec<String>,
    /// Who to authenticate as to the sentinels, and whether over TLS.
    pub access: Access,
    /// Poll period per sentinel.
    pub poll_interval: Duration,
    /// Deadline of one poll round.
    pub query_timeout: Duration,
    /// Deadline of establishing one link (both connections).
    pub connect_timeout: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Seed of the reconnect jitter, so tests can reproduce a schedule.
    pub jitter_seed: u64,
    /// How long a sentinel's answer counts (verdict rule 1).
    pub freshness: Duration,
    /// How long the same raw event from several sentinels is forwarded to the tap only once.
    pub dedup_window: Duration,
    /// Address forms that stand for the same pod (verdict rule 7).
    pub aliases: PodAliases,
}

impl UpstreamConfig {
    /// A configuration with every default, for these sentinels and names.
    pub fn new(sentinels: Vec<Addr>, names: Vec<String>) -> Self {
        Self {
            sentinels,
            names,
            access: Access::default(),
            poll_interval: DEFAULT_POLL_INTERVAL,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
            jitter_seed: 0x5eed_u64,
            freshness: verdict::DEFAULT_FRESHNESS,
            dedup_window: owner::DEFAULT_DEDUP_WINDOW,
            aliases: PodAliases::new(),
        }
    }
}

/// Written by hand so the password never reaches a log line through `{:?}`.
impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("sentinels", &self.sentinels)
            .field("names", &self.names)
            .field("access", &self.access)
            .field("poll_interval", &self.poll_interval)
            .field("query_timeout", &self.query_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("backoff_min", &self.backoff_min)
            .field("backoff_max", &self.backoff_max)
            .field("freshness", &self.freshness)
            .field("dedup_window", &self.dedup_window)
            .finish_non_exhaustive()
    }
}

/// Runs the link of the `index`th configured sentinel, reporting to `owners`, until
/// `shutdown` is cancelled. `origin` is the clock every view is stamped against.
pub async fn run(
    index: usize,
    id: SentinelId,
    owners: Arc<Owners>,
    registry: Arc<Registry>,
    config: &UpstreamConfig,
    origin: Instant,
    shutdown: CancellationToken,
) {
    let link = Link {
        addr: id.addr().clone(),
        id,
        names: owners.names(),
        owners,
        registry,
        config: config.clone(),
        origin,
        backoff: Backoff::new(
            config.backoff_min,
            config.backoff_max,
            config.jitter_seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        ),
    };
    link.run(shutdown).await;
}

/// Drops repeated entries, keeping the first of each.
pub fn dedup<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        if !kept.contains(&item) {
            kept.push(item);
        }
    }
    kept
}

/// The owners' mailboxes, by name: what every link sends to.
pub struct Owners(Vec<(String, mpsc::Sender<OwnerMessage>)>);

impl Owners {
    /// The mailboxes of every followed name.
    pub fn new(mailboxes: Vec<(String, mpsc::Sender<OwnerMessage>)>) -> Self {
        Self(mailboxes)
    }

    fn names(&self) -> Vec<String> {
        self.0.iter().map(|(name, _)| name.clone()).collect()
    }

    fn of(&self, name: &str) -> Option<&mpsc::Sender<OwnerMessage>> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }

    /// The owner an event goes to: its name's owner, or for events that name no configured
    /// master (`+new-epoch`, `+tilt`, `+vote-for-leader`, another name's events) the first
    /// owner, so each raw event is de-duplicated in exactly one place.
    fn for_event(&self, event: &SentinelEvent) -> Option<&mpsc::Sender<OwnerMessage>> {
        event
            .master_name()
            .and_then(|name| self.of(name))
            .or_else(|| self.0.first().map(|(_, s)| s))
    }
}

/// One configured sentinel's link task.
struct Link {
    addr: Addr,
    id: SentinelId,
    names: Vec<String>,
    owners: Arc<Owners>,
    registry: Arc<Registry>,
    config: UpstreamConfig,
    origin: Instant,
    backoff: Backoff,
}

impl Link {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut established_before = false;
        loop {
            let error = tokio::select! {
                () = shutdown.cancelled() => return,
                error = self.session(&mut established_before) => error,
            };
            tracing::warn!(sentinel = %self.id, %error, "sentinel link down");
            self.registry.update_link(&self.id, |status| {
                status.connected = false;
                status.last_error = Some(error.to_string());
            });
            self.report_unreachable().await;
            let delay = self.backoff.next_delay();
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Runs one connected session until it fails; it never ends otherwise.
    async fn session(&mut self, established_before: &mut bool) -> ConnError {
        let connected = tokio::time::timeout(self.config.connect_timeout, async {
            let access = &self.config.access;
            let poller = conn::connect(&self.addr, access).await?;
            let mut subscriber = conn::connect(&self.addr, access).await?;
            query::subscribe(&mut subscriber).await?;
            Ok::<_, ConnError>((poller, subscriber))
        })
        .await;
        let (mut poller, mut subscriber) = match connected {
            Ok(Ok(connections)) => connections,
            Ok(Err(error)) => return error,
            Err(_) => return ConnError::Timeout(self.config.connect_timeout, "connecting"),
        };
        let reconnected = *established_before;
        *established_before = true;
        self.backoff.reset();
        self.registry.update_link(&self.id, |status| {
            status.connected = true;
            if reconnected {
                status.reconnects += 1;
            }
        });
        tracing::info!(sentinel = %self.id, reconnected, "sentinel link up");

        let wake = Notify::new();
        tokio::select! {
            error = self.read_events(&mut subscriber, &wake) => error,
            error = self.poll_forever(&mut poller, &wake) => error,
        }
    }

    async fn read_events(&self, subscriber: &mut Connection, wake: &Notify) -> ConnError {
        loop {
            let frame = match subscriber.next_frame().await {
                Ok(frame) => frame,
                Err(error) => return error,
            };
            let Ok(PubSubFrame::Message {
                channel, payload, ..
            }) = PubSubFrame::from_value(&Value::from(&frame))
            else {
                continue;
            };
            let event = SentinelEvent::parse(&channel, &payload);
            wake.notify_one();
            if let Some(owner) = self.owners.for_event(&event) {
                let message = OwnerMessage::Event {
                    sentinel: self.id.clone(),
                    event,
                };
                if owner.send(message).await.is_err() {
                    // The owner stopped: the service is shutting down.
                    return ConnError::Closed;
                }
            }
        }
    }

    async fn poll_forever(&self, poller: &mut Connection, wake: &Notify) -> ConnError {
        loop {
            for name in &self.names {
                let polled =
                    tokio::time::timeout(self.config.query_timeout, self.poll(poller, name)).await;
                let message = match polled {
                    Ok(Ok(Some(message))) => message,
                    // The two answers contradicted each other (a monitor came or went between
                    // them): no new view; the old one ages out if this persists.
                    Ok(Ok(None)) => continue,
                    Ok(Err(error)) => return error,
                    Err(_) => return ConnError::Timeout(self.config.query_timeout, "polling"),
                };
                if let Some(owner) = self.owners.of(name)
                    && owner.send(message).await.is_err()
                {
                    return ConnError::Closed;
                }
            }
            self.registry.update_link(&self.id, |status| {
                status.last_poll_ok = Some(SystemTime::now());
            });
            tokio::select! {
                () = tokio::time::sleep(self.config.poll_interval) => {}
                () = wake.notified() => {}
            }
        }
    }

    /// One poll round for one name, as the owner takes it.
    async fn poll(
        &self,
        poller: &mut Connection,
        name: &str,
    ) -> Result<Option<OwnerMessage>, ConnError> {
        Ok(query::poll(poller, name, self.origin)
            .await?
            .map(|polled| OwnerMessage::Poll {
                sentinel: self.id.clone(),
                view: polled.view,
                record: polled.record.map(Box::new),
                replicas: polled.replicas,
            }))
    }

    async fn report_unreachable(&self) {
        for name in &self.names {
            if let Some(owner) = self.owners.of(name) {
                let _ = owner
                    .send(OwnerMessage::Unreachable {
                        sentinel: self.id.clone(),
                    })
                    .await;
            }
        }
    }
}

/// Jittered exponential backoff: the `n`th delay is uniform in `[d/2, d]` with
/// `d = min(max, min * 2^n)`, so links that failed together do not reconnect together.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: XorShift,
}

impl Backoff {
    /// A backoff between `min` and `max`, with jitter from `seed`.
    pub fn new(min: Duration, max: Duration, seed: u64) -> Self {
        Self {
            min,
            max: max.max(min),
            attempt: 0,
            rng: XorShift::new(seed),
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let span = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = if span == 0 {
            0
        } else {
            self.rng.next() % (span + 1)
        };
        half + Duration::from_nanos(jitter)
    }

    /// Starts over after a successful connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A xorshift64 generator: enough to spread reconnects, and reproducible from a seed.
#[derive(Debug, Clone)]
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Zero is xorshift's one fixed point.
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_ceiling_with_jitter_in_the_upper_half() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let mut backoff = Backoff::new(min, max, 42);
        let mut ceiling = min;
        for _ in 0..10 {
            let delay = backoff.next_delay();
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} vs {ceiling:?}"
            );
            ceiling = (ceiling * 2).min(max);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= min);
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_different_seeds_spread() {
        let schedule = |seed| {
            let mut backoff =
                Backoff::new(Duration::from_millis(100), Duration::from_secs(5), seed);
            (0..8).map(|_| backoff.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(schedule(7), schedule(7));
        assert_ne!(schedule(7), schedule(8));
    }

    #[test]
    fn the_debug_form_of_the_config_never_shows_the_password() {
        let mut config = UpstreamConfig::new(Vec::new(), vec!["mymaster".into()]);
        config.access = Access::plain(Some(crate::sentinel::conn::Credentials::user(
            "coordinator",
            crate::secret::Secret::new("s3cret-pw"),
        )));
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert!(shown.contains("coordinator"), "{shown}");
    }

    #[test]
    fn events_go_to_their_names_owner_and_the_rest_to_the_first_owner_only() {
        let (first, mut first_rx) = mpsc::channel(8);
        let (second, mut second_rx) = mpsc::channel(8);
        let owners = Owners(vec![("alpha".into(), first), ("beta".into(), second)]);
        let route = |channel: &str, payload: &str| {
            let event = SentinelEvent::parse(channel.as_bytes(), payload.as_bytes());
            let owner = owners.for_event(&event).expect("an owner");
            owner
                .try_send(OwnerMessage::Event {
                    sentinel: SentinelId::new("10.9.0.1:26379".parse().expect("addr")),
                    event,
                })
                .expect("room");
        };
        route("+sdown", "master beta 10.0.0.2 6379");
        route("+new-epoch", "7");
        route("+sdown", "master gamma 10.0.0.3 6379");
        assert_eq!(second_rx.try_recv().map(|_| ()), Ok(()));
        assert!(second_rx.try_recv().is_err());
        assert_eq!(first_rx.try_recv().map(|_| ()), Ok(()));
        assert_eq!(first_rx.try_recv().map(|_| ()), Ok(()));
        assert!(first_rx.try_recv().is_err());
    }
}
