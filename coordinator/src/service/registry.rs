//! The published state of the service: one slot per master name, the event tap, link health and
//! counters. This is the seam between the two halves of the service.
//!
//! - The *owner* of a name (one task, see `owner`) is the only writer of its slot: it decides the
//!   verdict from every sentinel's view and calls [`Registry::publish`]. Nobody else writes.
//! - Readers (client connections, the metrics endpoint, lifecycle commands) get immutable
//!   [`NameState`] snapshots. The hot path (`GET-MASTER-ADDR-BY-NAME`) is one `ArcSwap` load: no
//!   lock, no contention with the writer (measured in the stack notes: 28 ns with two readers
//!   and a 1 kHz writer, where lock-based maps slow down as cores are added).
//! - Waiters (a starting pod asking "who is master, once there is quorum") use
//!   [`Registry::watch`], which has latest-value semantics.
//! - The tap is a `broadcast` channel: a subscriber that falls behind gets `Lagged` and is
//!   disconnected by its connection, never silently skipped. `+switch-master` also goes out on
//!   a tap of its own ([`TapScope::SwitchMaster`]): sentinel-aware clients subscribe to that one
//!   channel only, and with thousands of them, waking every one for each raw event (a failover
//!   publishes a dozen) is what makes the one message they wait for late. Every message carries
//!   a sequence number, so a connection that moves from one tap to the other can tell which
//!   messages it already delivered.
//!
//! - Each data pod's own word on its role is written by the one roles task (see `roles`) and
//!   read by the metrics endpoint only: the verdict never looks at it.
//!
//! Names are fixed at start-up (they come from configuration), so the map of slots is built once
//! and never locked.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use bytes::Bytes;
use dashmap::DashMap;
use sentinel_protocol::event::Channel;
use sentinel_protocol::sentinel::{MasterRecord, MonitorSettings, ReplicaRecord};
use tokio::sync::{broadcast, watch};

use crate::verdict::{NoQuorum, NoQuorumReason, SentinelId, SentinelView, Verdict};

/// How many tap messages a slow subscriber may fall behind before it is disconnected.
pub const TAP_CAPACITY: usize = 4096;

/// Everything the service knows about one master name at one moment. Immutable once published.
#[derive(Debug, Clone)]
pub struct NameState {
    /// The master name (`mymaster`).
    pub name: String,
    /// The verdict over every configured sentinel's view.
    pub verdict: Verdict,
    /// Each configured sentinel's view, as the verdict saw it.
    pub views: BTreeMap<SentinelId, SentinelView>,
    /// The `SENTINEL MASTER` record of one voter for the agreed master (for the fields a served
    /// record repeats: quorum, down-after-milliseconds, failover-timeout, parallel-syncs, ...).
    /// `None` without an agreement.
    pub master_record: Option<MasterRecord>,
    /// The replicas of the agreed master, as a voter reports them (`SENTINEL REPLICAS`).
    pub replicas: Vec<ReplicaRecord>,
    /// The monitor settings each monitoring sentinel reports, for the healer's parity checks.
    pub monitors: BTreeMap<SentinelId, MonitorSettings>,
    /// Increases by one with every publication of this name; 0 is the initial state.
    pub generation: u64,
    /// Increases by one each time the verdict changes (a different master, epoch or quorum).
    pub changes: u64,
    /// Wall-clock time of this publication, for operators.
    pub published_at: SystemTime,
    /// The `GET-MASTER-ADDR-BY-NAME` reply for this state, encoded by the first request that
    /// asks and copied by every later one.
    pub master_addr_reply: ReplyCache,
}

/// A reply the server encodes once per published state and then copies: every client asks
/// `GET-MASTER-ADDR-BY-NAME` again and again, and formatting the address each time was the
/// largest part of the server's own cost per request. A clone starts empty, so a state copied
/// to be changed never carries the reply of the one it was copied from.
#[derive(Default)]
pub struct ReplyCache(OnceLock<Box<[u8]>>);

impl ReplyCache {
    /// The reply, encoded by `encode` if this is the first ask.
    pub fn get_or_init(&self, encode: impl FnOnce() -> Box<[u8]>) -> &[u8] {
        self.0.get_or_init(encode)
    }
}

impl Clone for ReplyCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for ReplyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "ReplyCache(encoded)"
        } else {
            "ReplyCache(empty)"
        })
    }
}

impl NameState {
    /// The state before any sentinel answered: no quorum, nothing seen.
    pub fn initial(name: &str, configured_sentinels: usize) -> Self {
        Self {
            name: name.to_owned(),
            verdict: Verdict::NoQuorum(NoQuorum {
                reason: NoQuorumReason::NotEnoughSentinels {
                    counting: 0,
                    needed: crate::verdict::majority_of(configured_sentinels),
                    configured: configured_sentinels,
                    unreachable: configured_sentinels,
                    stale: 0,
                    unmonitored: 0,
                },
                candidates: Vec::new(),
            }),
            views: BTreeMap::new(),
            master_record: None,
            replicas: Vec::new(),
            monitors: BTreeMap::new(),
            generation: 0,
            changes: 0,
            published_at: SystemTime::now(),
            master_addr_reply: ReplyCache::default(),
        }
    }
}

/// One message of the event tap, on the channel name sentinels use, with sentinel's payload
/// bytes (`+switch-master` payload: `<name> <old-ip> <old-port> <new-ip> <new-port>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapMessage {
    pub channel: Channel,
    pub payload: Bytes,
    /// Its place in the tap, assigned by [`Registry::send_tap`] (1, 2, ...); what a sender puts
    /// here is overwritten.
    pub seq: u64,
}

impl TapMessage {
    /// A message on `channel`; [`Registry::send_tap`] numbers it.
    pub fn new(channel: Channel, payload: impl Into<Bytes>) -> Self {
        Self {
            channel,
            payload: payload.into(),
            seq: 0,
        }
    }
}

/// Which messages a tap subscription receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapScope {
    /// Every message.
    Everything,
    /// Only `+switch-master`.
    SwitchMaster,
}

/// The health of one sentinel link, as `COORDINATOR STATUS` and the metrics show it.
#[derive(Debug, Clone, Default)]
pub struct LinkStatus {
    /// Both connections (commands and subscription) are up.
    pub connected: bool,
    /// Times the link was re-established after a failure.
    pub reconnects: u64,
    /// The last failure, for operators (never contains secrets).
    pub last_error: Option<String>,
    /// When the last successful poll finished.
    pub last_poll_ok: Option<SystemTime>,
}

/// What a data pod answered to `ROLE` the last time it was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservedRole {
    Master,
    Replica,
    /// No answer within the ask's cap, or an answer that is not a role.
    Unreachable,
}

impl ObservedRole {
    /// Every role, in the order the metrics list them.
    pub const ALL: [ObservedRole; 3] = [Self::Master, Self::Replica, Self::Unreachable];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Master => "master",
            Self::Replica => "replica",
            Self::Unreachable => "unreachable",
        }
    }
}

struct Slot {
    current: ArcSwap<NameState>,
    changes: watch::Sender<Arc<NameState>>,
}

/// The service's published state. Shared as `Arc<Registry>`.
pub struct Registry {
    slots: HashMap<String, Slot>,
    /// Names in configuration order, for `SENTINEL MASTERS` and `ROLE`.
    names: Vec<String>,
    configured_sentinels: usize,
    tap: broadcast::Sender<TapMessage>,
    switch_tap: broadcast::Sender<TapMessage>,
    /// The last sequence number sent; held while sending so both taps see one order.
    tap_seq: std::sync::Mutex<u64>,
    links: DashMap<SentinelId, LinkStatus>,
    pod_roles: DashMap<crate::addr::Addr, ObservedRole>,
    stats: Stats,
}

impl Registry {
    /// A registry for these master names, watched by `configured_sentinels` sentinels.
    pub fn new(names: &[String], configured_sentinels: usize) -> Self {
        let mut slots = HashMap::with_capacity(names.len());
        let mut ordered = Vec::with_capacity(names.len());
        for name in names {
            if slots.contains_key(name) {
                continue;
            }
            let initial = Arc::new(NameState::initial(name, configured_sentinels));
            let (changes, _) = watch::channel(Arc::clone(&initial));
            slots.insert(
                name.clone(),
                Slot {
                    current: ArcSwap::new(initial),
                    changes,
                },
            );
            ordered.push(name.clone());
        }
        let (tap, _) = broadcast::channel(TAP_CAPACITY);
        let (switch_tap, _) = broadcast::channel(TAP_CAPACITY);
        Self {
            slots,
            names: ordered,
            configured_sentinels,
            tap,
            switch_tap,
            tap_seq: std::sync::Mutex::new(0),
            links: DashMap::new(),
            pod_roles: DashMap::new(),
            stats: Stats::default(),
        }
    }

    /// The configured master names, in configuration order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The configured sentinel count N (majorities are of N).
    pub fn configured_sentinels(&self) -> usize {
        self.configured_sentinels
    }

    /// The current state of `name`; `None` for a name that is not configured. Lock-free.
    pub fn get(&self, name: &str) -> Option<Arc<NameState>> {
        self.slots.get(name).map(|slot| slot.current.load_full())
    }

    /// The current state of `name` matched case-sensitively as sentinels do, for the hot path:
    /// borrows the snapshot without bumping the reference count.
    pub fn with<R>(&self, name: &[u8], read: impl FnOnce(&NameState) -> R) -> Option<R> {
        let name = std::str::from_utf8(name).ok()?;
        self.slots.get(name).map(|slot| read(&slot.current.load()))
    }

    /// A receiver that sees every later publication of `name` (latest value only).
    pub fn watch(&self, name: &str) -> Option<watch::Receiver<Arc<NameState>>> {
        self.slots.get(name).map(|slot| slot.changes.subscribe())
    }

    /// Publishes a new state for its name. Only the name's owner calls this. A state for a name
    /// that is not configured is ignored.
    pub fn publish(&self, state: NameState) {
        let Some(slot) = self.slots.get(&state.name) else {
            return;
        };
        let state = Arc::new(state);
        slot.current.store(Arc::clone(&state));
        slot.changes.send_replace(state);
    }

    /// Numbers a message and sends it to every tap subscriber whose scope takes it (none is
    /// fine).
    pub fn send_tap(&self, mut message: TapMessage) {
        self.stats.tap_messages.fetch_add(1, Ordering::Relaxed);
        // A poisoned lock only means a sender panicked mid-send; the number is still valid.
        let mut seq = self
            .tap_seq
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *seq += 1;
        message.seq = *seq;
        // `+switch-master` has a tap of its own, so its many subscribers are not woken by
        // every raw event.
        if message.channel == Channel::SwitchMaster {
            let _ = self.switch_tap.send(message.clone());
        }
        let _ = self.tap.send(message);
    }

    /// A new tap subscription to every message, starting with the next one.
    pub fn subscribe_tap(&self) -> broadcast::Receiver<TapMessage> {
        self.tap.subscribe()
    }

    /// A new tap subscription for `scope`, starting with the next message.
    pub fn subscribe_tap_scoped(&self, scope: TapScope) -> broadcast::Receiver<TapMessage> {
        match scope {
            TapScope::Everything => self.tap.subscribe(),
            TapScope::SwitchMaster => self.switch_tap.subscribe(),
        }
    }

    /// Updates the health of one sentinel link. The closure must not block.
    pub fn update_link(&self, sentinel: &SentinelId, update: impl FnOnce(&mut LinkStatus)) {
        let mut entry = self.links.entry(sentinel.clone()).or_default();
        update(entry.value_mut());
    }

    /// Records what a data pod answered to `ROLE` (the roles task only).
    pub fn set_pod_role(&self, pod: &crate::addr::Addr, role: ObservedRole) {
        self.pod_roles.insert(pod.clone(), role);
    }

    /// Every data pod's last answer, sorted by pod, copied out.
    pub fn pod_roles(&self) -> Vec<(crate::addr::Addr, ObservedRole)> {
        let mut all: Vec<_> = self
            .pod_roles
            .iter()
            .map(|entry| (entry.key().clone(), *entry.value()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Every link's health, sorted by sentinel, copied out (no guard escapes).
    pub fn links(&self) -> Vec<(SentinelId, LinkStatus)> {
        let mut all: Vec<_> = self
            .links
            .iter()
            .map(|entry| (entry.key().clone(), entry.value().clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The service's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

/// Counters every part of the service bumps and the metrics endpoint reads. Atomics only: a
/// counter never takes a lock on a client's path.
#[derive(Debug, Default)]
pub struct Stats {
    /// Clients connected right now.
    pub clients_connected: AtomicU64,
    /// Clients accepted since start.
    pub clients_accepted: AtomicU64,
    /// Clients refused because the client limit was reached.
    pub clients_refused: AtomicU64,
    /// Commands served, by command name (lower case, `sentinel|get-master-addr-by-name` form).
    /// The names are the server's own short static strings, never a client's bytes, so FxHash
    /// is safe here; SipHash cost a measurable share of a pipelined request.
    pub commands: DashMap<&'static str, AtomicU64, rustc_hash::FxBuildHasher>,
    /// Command latency, from a request's decode to its reply's encode.
    pub command_latency: LatencyHistogram,
    /// Messages sent to the tap.
    pub tap_messages: AtomicU64,
    /// Verdict changes, over every name.
    pub verdict_changes: AtomicU64,
    /// Sentinel heals by (reason, outcome): see [`crate::service::heal`].
    pub heals: DashMap<(&'static str, &'static str), AtomicU64>,
    /// TLS reloads by outcome (`ok`: new certificates in use; `failed`: the old ones kept).
    pub tls_reloads: DashMap<&'static str, AtomicU64>,
}

impl Stats {
    /// Counts one TLS reload attempt that found a change.
    pub fn count_tls_reload(&self, outcome: &'static str) {
        self.tls_reloads
            .entry(outcome)
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `n` runs of one command.
    pub fn count_commands(&self, name: &'static str, n: u64) {
        if let Some(counter) = self.commands.get(name) {
            counter.fetch_add(n, Ordering::Relaxed);
            return;
        }
        self.commands
            .entry(name)
            .or_default()
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one heal attempt.
    pub fn count_heal(&self, reason: &'static str, outcome: &'static str) {
        self.heals
            .entry((reason, outcome))
            .or_default()
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one command served.
    pub fn count_command(&self, name: &'static str) {
        self.count_commands(name, 1);
    }
}

/// A fixed-bucket latency histogram of atomics (Prometheus-style cumulative on export).
#[derive(Debug)]
pub struct LatencyHistogram {
    counts: [AtomicU64; LATENCY_BUCKETS_SECONDS.len() + 1],
    sum_nanos: AtomicU64,
}

/// Observations gathered by one task without atomics, for [`LatencyHistogram::merge`]: a
/// connection merges once per batch of pipelined commands instead of touching the shared
/// cache lines once per command.
#[derive(Debug, Default, Clone)]
pub struct LocalLatency {
    counts: [u64; LATENCY_BUCKETS_SECONDS.len() + 1],
    sum_nanos: u64,
}

impl LocalLatency {
    /// Records one observation.
    pub fn observe(&mut self, elapsed: std::time::Duration) {
        self.counts[bucket_of(elapsed)] += 1;
        self.sum_nanos = self.sum_nanos.saturating_add(nanos(elapsed));
    }
}

fn bucket_of(elapsed: std::time::Duration) -> usize {
    let seconds = elapsed.as_secs_f64();
    LATENCY_BUCKETS_SECONDS
        .iter()
        .position(|bound| seconds <= *bound)
        .unwrap_or(LATENCY_BUCKETS_SECONDS.len())
}

fn nanos(elapsed: std::time::Duration) -> u64 {
    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
}

/// Upper bounds of the latency buckets, in seconds (the last, implicit bucket is +Inf).
pub const LATENCY_BUCKETS_SECONDS: [f64; 10] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.005, 0.025, 0.1,
];

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: std::time::Duration) {
        self.counts[bucket_of(elapsed)].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos(elapsed), Ordering::Relaxed);
    }

    /// Adds what a [`LocalLatency`] gathered, touching only the buckets it used.
    pub fn merge(&self, local: &LocalLatency) {
        for (shared, count) in self.counts.iter().zip(local.counts) {
            if count > 0 {
                shared.fetch_add(count, Ordering::Relaxed);
            }
        }
        if local.sum_nanos > 0 {
            self.sum_nanos.fetch_add(local.sum_nanos, Ordering::Relaxed);
        }
    }

    /// Per-bucket counts (not cumulative; the last is +Inf) and the sum in seconds.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let counts = self
            .counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (counts, sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_what_the_owner_published_and_waiters_wake() {
        let registry = Registry::new(&["mymaster".to_owned()], 3);
        let mut waiter = registry.watch("mymaster").expect("configured");
        assert_eq!(registry.get("mymaster").expect("configured").generation, 0);
        assert!(registry.get("other").is_none());

        let mut next = NameState::initial("mymaster", 3);
        next.generation = 1;
        registry.publish(next);

        assert_eq!(registry.get("mymaster").expect("configured").generation, 1);
        assert!(waiter.has_changed().expect("sender alive"));
        assert_eq!(waiter.borrow_and_update().generation, 1);
        assert_eq!(registry.with(b"mymaster", |s| s.generation), Some(1));
    }

    #[test]
    fn latency_lands_in_the_first_bucket_that_holds_it() {
        let histogram = LatencyHistogram::default();
        histogram.observe(std::time::Duration::from_micros(30));
        histogram.observe(std::time::Duration::from_secs(1));
        let (counts, sum) = histogram.snapshot();
        assert_eq!(counts[2], 1, "30 µs is in the ≤ 50 µs bucket");
        assert_eq!(counts[LATENCY_BUCKETS_SECONDS.len()], 1, "1 s is in +Inf");
        assert!((sum - 1.000_03).abs() < 1e-9);
    }
}
