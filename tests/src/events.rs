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

use tokio::{sync::broadcast, sync::watch, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    client::{Client, Credentials, Frame},
    error::{LabError, Result},
    lab::Lab,
    replies::text,
};

/// One message a sentinel published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelEvent {
    /// Index of the sentinel that published it.
    pub sentinel: usize,
    /// The channel, e.g. `+switch-master`.
    pub channel: String,
    /// The payload, e.g. `mymaster 127.0.12.10 6379 127.0.12.11 6379`.
    pub payload: String,
    /// When the lab received it.
    pub at: Instant,
}

struct Shared {
    events: Mutex<Vec<SentinelEvent>>,
    /// Bumped on every event, so waiters sleep until something arrives instead of polling.
    count: watch::Sender<usize>,
    stream: broadcast::Sender<SentinelEvent>,
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
        Self::start_on(lab.sentinel_addrs(), lab.sentinel_credentials()).await
    }

    /// Subscribes to the given sentinels.
    pub async fn start_on(
        sentinels: Vec<SocketAddr>,
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
            let mut client = Client::connect(addr, credentials.as_ref()).await?;
            client.send(&["PSUBSCRIBE", "*"]).await?;
            match client.next().await? {
                Some(Frame::Array(items))
                    if items.first().and_then(text).as_deref() == Some("psubscribe") => {}
                other => {
                    return Err(LabError::UnexpectedReply {
                        addr,
                        command: "PSUBSCRIBE *".into(),
                        reply: format!("{other:?}"),
                    });
                }
            }
            tasks.push(tokio::spawn(subscriber(
                j,
                addr,
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
    pub fn snapshot(&self) -> Vec<SentinelEvent> {
        self.shared
            .events
            .lock()
            .expect("event log poisoned")
            .clone()
    }

    /// A live stream of events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SentinelEvent> {
        self.shared.stream.subscribe()
    }

    /// Waits until at least a majority of the sentinels have published on `channel` a payload
    /// that `accept` takes (events already received count). Returns one matching event per
    /// sentinel that published one.
    pub async fn wait_majority(
        &self,
        channel: &str,
        accept: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<Vec<SentinelEvent>> {
        let need = self.sentinels / 2 + 1;
        self.wait_count(channel, &accept, need, timeout).await
    }

    /// Waits until at least one sentinel published on `channel` a payload that `accept` takes.
    pub async fn wait_any(
        &self,
        channel: &str,
        accept: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<SentinelEvent> {
        let mut found = self.wait_count(channel, &accept, 1, timeout).await?;
        Ok(found.remove(0))
    }

    async fn wait_count(
        &self,
        channel: &str,
        accept: &dyn Fn(&str) -> bool,
        need: usize,
        timeout: Duration,
    ) -> Result<Vec<SentinelEvent>> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut changes = self.shared.count.subscribe();
        loop {
            let mut per_sentinel: Vec<SentinelEvent> = Vec::new();
            for event in self.snapshot() {
                if event.channel == channel
                    && accept(&event.payload)
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
                    .map(|e| format!("sentinel-{} {} {}", e.sentinel, e.channel, e.payload))
                    .collect();
                return Err(LabError::Timeout {
                    what: format!("{channel} on {need} of {} sentinels", self.sentinels),
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
    pub async fn stop(mut self) -> Vec<SentinelEvent> {
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
                    let mut c = Client::connect(addr, credentials.as_ref()).await?;
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
            let Frame::Array(items) = &frame else {
                continue;
            };
            // ["pmessage", pattern, channel, payload]; subscription confirmations are skipped.
            if items.len() != 4 || text(&items[0]).as_deref() != Some("pmessage") {
                continue;
            }
            let (Some(channel), Some(payload)) = (text(&items[2]), text(&items[3])) else {
                continue;
            };
            let event = SentinelEvent {
                sentinel,
                channel,
                payload,
                at: Instant::now(),
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
