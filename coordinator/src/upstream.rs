//! The upstream half: one link task per configured sentinel, feeding one owner task per master
//! name (see [`crate::owner`]).
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
//! Both connections are opened by [`connect`], the one place a TLS handshake will go.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use sentinel_protocol::codec::{ReplyCodec, ReplyCodecError, Resp2Frame, encode_command};
use sentinel_protocol::event::{Channel, PubSubFrame, SentinelEvent};
use sentinel_protocol::sentinel::{FromReply, MasterRecord, ReplicaRecord, ReplyError, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::addr::{Addr, AddrError, PodAliases, RunId};
use crate::owner::{self, OwnerConfig, OwnerMessage};
use crate::registry::Registry;
use crate::verdict::{
    self, FailoverState, MasterFlags, MonotonicTime, ReportError, SentinelId, SentinelView,
};

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
    /// `(user, password)` for `AUTH`: no user means the `default` user.
    pub credentials: Option<(Option<String>, String)>,
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
            credentials: None,
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
        let credentials = self.credentials.as_ref().map(|(user, _)| {
            format!(
                "user={}, password=<redacted>",
                user.as_deref().unwrap_or("default")
            )
        });
        f.debug_struct("UpstreamConfig")
            .field("sentinels", &self.sentinels)
            .field("names", &self.names)
            .field("credentials", &credentials)
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

/// Spawns one owner task per name and one link task per sentinel on `tracker`. They all stop
/// when `shutdown` is cancelled. `registry` must have been built for the same names and sentinel
/// count; names it does not know are not followed. Returns the origin of the monotonic clock
/// every view is stamped against, for readers that judge freshness (the healer).
pub fn spawn(
    config: UpstreamConfig,
    registry: Arc<Registry>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Instant {
    let origin = Instant::now();
    let sentinels = dedup(config.sentinels.clone());
    let names: Vec<String> = dedup(config.names.clone())
        .into_iter()
        .filter(|name| registry.get(name).is_some())
        .collect();
    let ids: Vec<SentinelId> = sentinels.iter().cloned().map(SentinelId::new).collect();

    let mut owners = Vec::with_capacity(names.len());
    for name in &names {
        let (sender, receiver) = mpsc::channel(owner::MAILBOX_CAPACITY);
        let owner_config = OwnerConfig {
            name: name.clone(),
            sentinels: ids.clone(),
            freshness: config.freshness,
            dedup_window: config.dedup_window,
            tick: config.poll_interval.min(config.freshness / 4),
            aliases: config.aliases.clone(),
            origin,
        };
        tracker.spawn(owner::run(
            owner_config,
            Arc::clone(&registry),
            receiver,
            shutdown.clone(),
        ));
        owners.push((name.clone(), sender));
    }
    let owners = Arc::new(Owners(owners));

    for (index, (addr, id)) in sentinels.into_iter().zip(ids).enumerate() {
        let link = Link {
            addr,
            id,
            names: names.clone(),
            owners: Arc::clone(&owners),
            registry: Arc::clone(&registry),
            config: config.clone(),
            origin,
            backoff: Backoff::new(
                config.backoff_min,
                config.backoff_max,
                config.jitter_seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ),
        };
        tracker.spawn(link.run(shutdown.clone()));
    }
    origin
}

fn dedup<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        if !kept.contains(&item) {
            kept.push(item);
        }
    }
    kept
}

/// The owners' mailboxes, by name.
struct Owners(Vec<(String, mpsc::Sender<OwnerMessage>)>);

impl Owners {
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

/// Why a link went down. Never carries a secret: `AUTH` errors hold the server's words only.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("timed out after {0:?} {1}")]
    Timeout(Duration, &'static str),
    #[error("connection closed by the sentinel")]
    Closed,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("reply refused: {0}")]
    Codec(#[from] ReplyCodecError),
    #[error("authentication refused: {0}")]
    Auth(String),
    #[error("the sentinel answered {command} with an error: {error}")]
    Server {
        command: &'static str,
        error: String,
    },
    #[error("unreadable reply to {command}: {error}")]
    Reply {
        command: &'static str,
        error: ReplyError,
    },
    #[error("unreadable address in the reply to {command}: {error}")]
    Address {
        command: &'static str,
        error: AddrError,
    },
    #[error("unexpected reply to SUBSCRIBE: {0}")]
    Subscribe(String),
}

/// One RESP2 connection to a sentinel, read through [`ReplyCodec`] (so its limits guard every
/// reply) without `Framed`, which would need a stream-combinator crate for one `next()`.
pub struct Connection {
    stream: TcpStream,
    codec: ReplyCodec,
    read: BytesMut,
    write: BytesMut,
}

impl Connection {
    /// Queues one command; [`Self::flush`] sends every queued command in one write.
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        encode_command(args, &mut self.write);
    }

    /// Writes the queued commands.
    pub async fn flush(&mut self) -> Result<(), LinkError> {
        self.stream.write_all(&self.write).await?;
        self.write.clear();
        Ok(())
    }

    /// Reads the next reply frame.
    pub async fn next_frame(&mut self) -> Result<Resp2Frame, LinkError> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.read)? {
                return Ok(frame);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return Err(LinkError::Closed);
            }
        }
    }
}

/// Opens a connection to a sentinel and authenticates if credentials are given. The one place
/// a transport is chosen: TLS goes here.
pub async fn connect(
    addr: &Addr,
    credentials: Option<&(Option<String>, String)>,
) -> Result<Connection, LinkError> {
    let stream = TcpStream::connect((addr.host().to_string(), addr.port()))
        .await
        .map_err(LinkError::Connect)?;
    stream.set_nodelay(true).map_err(LinkError::Connect)?;
    let mut connection = Connection {
        stream,
        codec: ReplyCodec::new(),
        read: BytesMut::with_capacity(16 * 1024),
        write: BytesMut::with_capacity(1024),
    };
    if let Some((user, password)) = credentials {
        match user {
            Some(user) => connection.queue(&["AUTH", user.as_str(), password.as_str()]),
            None => connection.queue(&["AUTH", password.as_str()]),
        }
        connection.flush().await?;
        if let Value::Error(error) = Value::from(&connection.next_frame().await?) {
            return Err(LinkError::Auth(error));
        }
    }
    Ok(connection)
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
    async fn session(&mut self, established_before: &mut bool) -> LinkError {
        let connected = tokio::time::timeout(self.config.connect_timeout, async {
            let poller = connect(&self.addr, self.config.credentials.as_ref()).await?;
            let subscriber = subscribe(&self.addr, self.config.credentials.as_ref()).await?;
            Ok::<_, LinkError>((poller, subscriber))
        })
        .await;
        let (mut poller, mut subscriber) = match connected {
            Ok(Ok(connections)) => connections,
            Ok(Err(error)) => return error,
            Err(_) => return LinkError::Timeout(self.config.connect_timeout, "connecting"),
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

    async fn read_events(&self, subscriber: &mut Connection, wake: &Notify) -> LinkError {
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
                    return LinkError::Closed;
                }
            }
        }
    }

    async fn poll_forever(&self, poller: &mut Connection, wake: &Notify) -> LinkError {
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
                    Err(_) => return LinkError::Timeout(self.config.query_timeout, "polling"),
                };
                if let Some(owner) = self.owners.of(name)
                    && owner.send(message).await.is_err()
                {
                    return LinkError::Closed;
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

    /// One poll round for one name: the three queries in one write, then the three replies.
    async fn poll(
        &self,
        poller: &mut Connection,
        name: &str,
    ) -> Result<Option<OwnerMessage>, LinkError> {
        poller.queue(&["SENTINEL", "MASTER", name]);
        poller.queue(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name]);
        poller.queue(&["SENTINEL", "REPLICAS", name]);
        poller.flush().await?;
        let master = Value::from(&poller.next_frame().await?);
        let address = Value::from(&poller.next_frame().await?);
        let replicas = Value::from(&poller.next_frame().await?);
        let observed_at = MonotonicTime::between(self.origin.into_std(), Instant::now().into_std());

        let record = read_master_record(&master)?;
        let addr = read_master_addr(&address)?;
        let verdict_record = record.as_ref().map(verdict_record).transpose()?;
        let view = match SentinelView::from_answers(
            verdict_record.as_ref(),
            addr.as_ref(),
            observed_at,
        ) {
            Ok(view) => view,
            Err(
                error @ (ReportError::RecordWithoutAddress | ReportError::AddressWithoutRecord),
            ) => {
                tracing::debug!(sentinel = %self.id, name, %error, "contradicting answers, asking again");
                return Ok(None);
            }
        };
        let replicas = if record.is_some() {
            Vec::<ReplicaRecord>::from_value(&replicas).map_err(|error| LinkError::Reply {
                command: "SENTINEL REPLICAS",
                error,
            })?
        } else {
            Vec::new()
        };
        Ok(Some(OwnerMessage::Poll {
            sentinel: self.id.clone(),
            view,
            record: record.map(Box::new),
            replicas,
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

/// Opens the subscription connection: `SUBSCRIBE` to every published channel, confirmed.
async fn subscribe(
    addr: &Addr,
    credentials: Option<&(Option<String>, String)>,
) -> Result<Connection, LinkError> {
    let mut connection = connect(addr, credentials).await?;
    let mut command = vec!["SUBSCRIBE"];
    command.extend(Channel::published());
    connection.queue(&command);
    connection.flush().await?;
    let channels = command.len() - 1;
    for _ in 0..channels {
        let frame = connection.next_frame().await?;
        match PubSubFrame::from_value(&Value::from(&frame)) {
            Ok(PubSubFrame::Confirmation { kind, .. }) if kind == "subscribe" => {}
            _ => {
                return Err(LinkError::Subscribe(match Value::from(&frame) {
                    Value::Error(error) => error,
                    other => format!("{other:?}"),
                }));
            }
        }
    }
    Ok(connection)
}

/// `SENTINEL MASTER`: the record, or `None` for "No such master with that name".
fn read_master_record(value: &Value) -> Result<Option<MasterRecord>, LinkError> {
    match value {
        Value::Error(error) if error.contains("No such master") => Ok(None),
        Value::Error(error) => Err(LinkError::Server {
            command: "SENTINEL MASTER",
            error: error.clone(),
        }),
        value => MasterRecord::from_value(value)
            .map(Some)
            .map_err(|error| LinkError::Reply {
                command: "SENTINEL MASTER",
                error,
            }),
    }
}

/// `SENTINEL GET-MASTER-ADDR-BY-NAME`: the address, or `None` for null.
fn read_master_addr(value: &Value) -> Result<Option<Addr>, LinkError> {
    const COMMAND: &str = "SENTINEL GET-MASTER-ADDR-BY-NAME";
    let pair =
        sentinel_protocol::sentinel::master_addr(value).map_err(|error| LinkError::Reply {
            command: COMMAND,
            error,
        })?;
    pair.map(|(host, port)| {
        Addr::from_parts(&host, &port.to_string()).map_err(|error| LinkError::Address {
            command: COMMAND,
            error,
        })
    })
    .transpose()
}

/// The fields of a protocol record the verdict reads.
fn verdict_record(record: &MasterRecord) -> Result<verdict::MasterRecord, LinkError> {
    const COMMAND: &str = "SENTINEL MASTER";
    let instance = &record.instance;
    let addr = Addr::from_parts(&instance.ip, &instance.port.to_string()).map_err(|error| {
        LinkError::Address {
            command: COMMAND,
            error,
        }
    })?;
    // A malformed run id is treated as unknown rather than dropping the link: the address and
    // epoch are what the verdict is built on, and an unknown run id is compatible with any.
    let run_id = RunId::parse(&instance.runid).unwrap_or(None);
    Ok(verdict::MasterRecord {
        addr,
        run_id,
        config_epoch: record.config_epoch,
        flags: MasterFlags::from_flag_list(&instance.flags.to_string()),
        failover_state: FailoverState::from_record_field(record.failover_state.as_deref()),
        num_replicas: u32::try_from(record.num_slaves).unwrap_or(u32::MAX),
        num_other_sentinels: u32::try_from(record.num_other_sentinels).unwrap_or(u32::MAX),
    })
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
    fn an_unknown_name_is_unmonitored_and_other_errors_drop_the_link() {
        let unknown = Value::Error("ERR No such master with that name".into());
        assert_eq!(read_master_record(&unknown).expect("not an error"), None);
        let noauth = Value::Error("NOAUTH Authentication required.".into());
        assert!(matches!(
            read_master_record(&noauth),
            Err(LinkError::Server { .. })
        ));
        assert_eq!(read_master_addr(&Value::Null).expect("null"), None);
        let lying = Value::Array(vec![Value::Str("10.0.0.1".into())]);
        assert!(matches!(
            read_master_addr(&lying),
            Err(LinkError::Reply { .. })
        ));
    }

    #[test]
    fn the_debug_form_of_the_config_never_shows_the_password() {
        let mut config = UpstreamConfig::new(Vec::new(), vec!["mymaster".into()]);
        config.credentials = Some((Some("coordinator".into()), "s3cret-pw".into()));
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
