//! Sentinel events: one `PSUBSCRIBE *` connection per sentinel, every message kept in one log.
//!
//! The log is kept from the moment of subscription, so a test can trigger a failover and then
//! wait for `+switch-master` without racing the event: waits look at everything received so far
//! before waiting for more. A subscriber whose sentinel restarts reconnects by itself.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use sentinel_protocol::{
    event::{Channel, Payload, PubSubFrame, SentinelEvent},
    sentinel::Value,
};
use tokio::{sync::broadcast, sync::watch, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    client::{Client, Credentials, DEFAULT_TIMEOUT, Transport},
    error::{LabError, Result},
    lab::Lab,
};

/// One message a sentinel published, typed by the protocol crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEvent {
    /// Index of the sentinel that published it.
    pub sentinel: usize,
    /// When the lab received it.
    pub at: Instant,
    /// The event: `channel` and typed `payload` (formatting it back gives the exact bytes).
    pub event: SentinelEvent,
}

impl ReceivedEvent {
    /// The channel as text, e.g. `+switch-master`.
    pub fn channel(&self) -> String {
        String::from_utf8_lossy(self.event.channel.as_bytes()).into_owned()
    }

    /// The payload as text, e.g. `mymaster 127.0.12.10 6379 127.0.12.11 6379`.
    pub fn payload(&self) -> String {
        String::from_utf8_lossy(&self.event.format().1).into_owned()
    }
}

struct Shared {
    events: Mutex<Vec<ReceivedEvent>>,
    /// Bumped on every event, so waiters sleep until something arrives instead of polling.
    count: watch::Sender<usize>,
    stream: broadcast::Sender<ReceivedEvent>,
}

/// Everything every sentinel published since [`EventLog::start`].
pub struct EventLog {
    shared: Arc<Shared>,
    sentinels: usize,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("sentinels", &self.sentinels)
            .field(
                "events",
                &self.shared.events.lock().map(|e| e.len()).unwrap_or(0),
            )
            .finish()
    }
}

impl EventLog {
    /// Subscribes to every sentinel of `lab` and returns once all subscriptions are confirmed.
    pub async fn start(lab: &Lab) -> Result<Self> {
        Self::start_on(
            lab.sentinel_addrs(),
            lab.transport().clone(),
            lab.sentinel_credentials(),
        )
        .await
    }

    /// Subscribes to the given sentinels over `transport`.
    pub async fn start_on(
        sentinels: Vec<SocketAddr>,
        transport: Transport,
        credentials: Option<Credentials>,
    ) -> Result<Self> {
        let (count, _) = watch::channel(0);
        let (stream, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            events: Mutex::new(Vec::new()),
            count,
            stream,
        });
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for (j, addr) in sentinels.iter().copied().enumerate() {
            // The first subscription must succeed (or the caller would miss events it thinks it
            // watches); reconnects after that are best effort.
            let mut client =
                Client::connect_over(addr, &transport, credentials.as_ref(), DEFAULT_TIMEOUT)
                    .await?;
            client.send(&["PSUBSCRIBE", "*"]).await?;
            let reply = client.next().await?;
            let confirmed = reply
                .as_ref()
                .map(|f| PubSubFrame::from_value(&Value::from(f)));
            if !matches!(confirmed, Some(Ok(PubSubFrame::Confirmation { .. }))) {
                return Err(LabError::UnexpectedReply {
                    addr,
                    command: "PSUBSCRIBE *".into(),
                    reply: reply
                        .as_ref()
                        .map_or_else(|| "(closed)".into(), crate::replies::render),
                });
            }
            tasks.push(tokio::spawn(subscriber(
                j,
                addr,
                transport.clone(),
                credentials.clone(),
                Some(client),
                shared.clone(),
                stop.clone(),
            )));
        }
        Ok(EventLog {
            shared,
            sentinels: sentinels.len(),
            stop,
            tasks,
        })
    }

    /// Every event so far, in arrival order.
    pub fn snapshot(&self) -> Vec<ReceivedEvent> {
        self.shared
            .events
            .lock()
            .expect("event log poisoned")
            .clone()
    }

    /// Every `+reset-master` so far, as `sentinel-<j> <payload>`. DESIGN 4 allows a reset only
    /// right after a failover the system itself triggered for a departing master, so every
    /// other scenario expects none: a premature reset zeroes the replica count and lets a
    /// restarting pod elect a second master.
    pub fn resets(&self) -> Vec<String> {
        self.snapshot()
            .iter()
            .filter(|event| event.event.channel == Channel::ResetMaster)
            .map(|event| format!("sentinel-{} {}", event.sentinel, event.payload()))
            .collect()
    }

    /// A live stream of events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ReceivedEvent> {
        self.shared.stream.subscribe()
    }

    /// Waits until at least a majority of the sentinels have published on `channel` a payload
    /// that `accept` takes (events already received count). Returns one matching event per
    /// sentinel that published one.
    pub async fn wait_majority(
        &self,
        channel: Channel,
        accept: impl Fn(&Payload) -> bool,
        timeout: Duration,
    ) -> Result<Vec<ReceivedEvent>> {
        let need = self.sentinels / 2 + 1;
        self.wait_count(channel, &accept, need, timeout).await
    }

    /// Waits until at least one sentinel published on `channel` a payload that `accept` takes.
    pub async fn wait_any(
        &self,
        channel: Channel,
        accept: impl Fn(&Payload) -> bool,
        timeout: Duration,
    ) -> Result<ReceivedEvent> {
        let mut found = self.wait_count(channel, &accept, 1, timeout).await?;
        Ok(found.remove(0))
    }

    async fn wait_count(
        &self,
        channel: Channel,
        accept: &dyn Fn(&Payload) -> bool,
        need: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedEvent>> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut changes = self.shared.count.subscribe();
        loop {
            let mut per_sentinel: Vec<ReceivedEvent> = Vec::new();
            for event in self.snapshot() {
                if event.event.channel == channel
                    && accept(&event.event.payload)
                    && !per_sentinel.iter().any(|e| e.sentinel == event.sentinel)
                {
                    per_sentinel.push(event);
                }
            }
            if per_sentinel.len() >= need {
                return Ok(per_sentinel);
            }
            let timed_out = tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err();
            if timed_out {
                let recent: Vec<String> = self
                    .snapshot()
                    .iter()
                    .rev()
                    .take(12)
                    .rev()
                    .map(|e| format!("sentinel-{} {} {}", e.sentinel, e.channel(), e.payload()))
                    .collect();
                return Err(LabError::Timeout {
                    what: format!(
                        "{} on {need} of {} sentinels",
                        String::from_utf8_lossy(channel.as_bytes()),
                        self.sentinels
                    ),
                    waited: start.elapsed(),
                    last_seen: format!(
                        "{} matching; recent events: [{}]",
                        per_sentinel.len(),
                        recent.join(" | ")
                    ),
                });
            }
        }
    }

    /// Stops the subscribers and returns every event received.
    pub async fn stop(mut self) -> Vec<ReceivedEvent> {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        self.snapshot()
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn subscriber(
    sentinel: usize,
    addr: SocketAddr,
    transport: Transport,
    credentials: Option<Credentials>,
    mut client: Option<Client>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let mut conn = match client.take() {
            Some(c) => c,
            None => {
                let attempt = async {
                    let mut c = Client::connect_over(
                        addr,
                        &transport,
                        credentials.as_ref(),
                        DEFAULT_TIMEOUT,
                    )
                    .await?;
                    c.send(&["PSUBSCRIBE", "*"]).await?;
                    Ok::<_, LabError>(c)
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    r = attempt => match r {
                        Ok(c) => c,
                        Err(_) => {
                            tokio::select! {
                                _ = stop.cancelled() => return,
                                _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                            }
                        }
                    }
                }
            }
        };
        loop {
            let frame = tokio::select! {
                _ = stop.cancelled() => return,
                f = conn.next() => f,
            };
            let Ok(Some(frame)) = frame else { break };
            // Subscription confirmations carry no event.
            let Some(event) = PubSubFrame::from_value(&Value::from(&frame))
                .ok()
                .and_then(|f| f.event())
            else {
                continue;
            };
            let event = ReceivedEvent {
                sentinel,
                at: Instant::now(),
                event,
            };
            shared
                .events
                .lock()
                .expect("event log poisoned")
                .push(event.clone());
            let _ = shared.stream.send(event);
            shared.count.send_modify(|n| *n += 1);
        }
    }
}
