//! The owner of one master name: the only task that writes its slot in the [`Registry`].
//!
//! Links ([`super::links`]) send it what each sentinel said ([`OwnerMessage`]); it keeps the
//! latest view per sentinel, re-runs [`decide`] on every message and on a timer (so a sentinel
//! that falls silent stops counting within the freshness window even if nothing else happens),
//! and publishes a new [`NameState`] when the verdict or what the sentinels say changes. Being
//! the single writer is what makes "exactly once" possible for the tap's `+switch-master`.
//!
//! # The event tap
//!
//! - `+switch-master <name> <old-ip> <old-port> <new-ip> <new-port>` is sent once per change of
//!   the agreed master, after the state naming the new master is published (a subscriber that
//!   reacts by asking `GET-MASTER-ADDR-BY-NAME` gets the new answer). `old` is the previously
//!   agreed master, remembered across spells without quorum: Agreed A → NoQuorum → Agreed B
//!   sends A → B once, Agreed A → NoQuorum → Agreed A sends nothing, and the first agreement
//!   after start-up sends nothing (there is no old master to switch from).
//! - Raw sentinel events are forwarded once per `(channel, payload)` within the de-duplication
//!   window, however many sentinels publish them; raw `+switch-master` is never forwarded, since
//!   subscribers get exactly one from the verdict instead of one per sentinel.
//!
//! # Publishing
//!
//! A state is published at once when the verdict changes or a sentinel's view, the served master
//! record or the replica list changes in substance; otherwise (only observation times and ping
//! counters moved) at most once per [`REPUBLISH_INTERVAL`], so operators see fresh ages without
//! waking every waiter on every poll.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use sentinel_protocol::event::{Channel, SentinelEvent};
use sentinel_protocol::sentinel::{InstanceFields, MasterRecord, ReplicaRecord};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::registry::{NameState, Registry, ReplyCache, TapMessage};
use crate::addr::{Addr, PodAliases, PodId};
use crate::verdict::{
    Agreement, MonotonicTime, SentinelId, SentinelView, Verdict, VerdictInput, decide,
};

/// How long the same raw event from several sentinels counts as one.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(2);
/// How often a state is re-published when only observation times changed.
pub const REPUBLISH_INTERVAL: Duration = Duration::from_secs(1);
/// Messages a link may queue to an owner before it waits.
pub const MAILBOX_CAPACITY: usize = 1024;

/// What one owner needs to know.
#[derive(Debug, Clone)]
pub struct OwnerConfig {
    /// The master name it owns.
    pub name: String,
    /// Every configured sentinel (N is their count).
    pub sentinels: Vec<SentinelId>,
    /// How long a sentinel's answer counts.
    pub freshness: Duration,
    /// How long the same raw event is forwarded only once.
    pub dedup_window: Duration,
    /// How often the verdict is re-run without news (freshness expiry).
    pub tick: Duration,
    /// Address forms that stand for the same pod.
    pub aliases: PodAliases,
    /// The origin of the monotonic clock every observation is stamped against.
    pub origin: Instant,
}

/// What a link tells an owner.
#[derive(Debug, Clone)]
pub enum OwnerMessage {
    /// A poll answered: the sentinel's view, and for a monitored name its records.
    Poll {
        sentinel: SentinelId,
        view: SentinelView,
        record: Option<Box<MasterRecord>>,
        replicas: Vec<ReplicaRecord>,
    },
    /// The link to this sentinel failed: it answers nothing until it reconnects.
    Unreachable { sentinel: SentinelId },
    /// The sentinel published an event.
    Event {
        sentinel: SentinelId,
        event: SentinelEvent,
    },
}

/// Runs the owner until `shutdown` is cancelled or every link has dropped its sender.
pub async fn run(
    config: OwnerConfig,
    registry: Arc<Registry>,
    mut mailbox: mpsc::Receiver<OwnerMessage>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(config.tick.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut owner = Owner::new(config, registry);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return,
            message = mailbox.recv() => match message {
                Some(message) => owner.handle(message, Instant::now()),
                None => return,
            },
            _ = tick.tick() => owner.refresh(Instant::now()),
        }
    }
}

/// The identity of an agreed master, for "did the master change".
#[derive(Debug, Clone)]
struct AgreedMaster {
    addr: Addr,
    pod: Option<PodId>,
}

impl AgreedMaster {
    fn of(agreement: &Agreement) -> Self {
        Self {
            addr: agreement.master.clone(),
            pod: agreement.pod.clone(),
        }
    }

    fn is_same(&self, other: &AgreedMaster) -> bool {
        match (&self.pod, &other.pod) {
            (Some(a), Some(b)) => a == b,
            _ => self.addr == other.addr,
        }
    }
}

/// The owner's state; [`run`] drives it.
struct Owner {
    config: OwnerConfig,
    registry: Arc<Registry>,
    views: BTreeMap<SentinelId, SentinelView>,
    records: BTreeMap<SentinelId, (Box<MasterRecord>, Vec<ReplicaRecord>)>,
    published: Arc<NameState>,
    published_at: Instant,
    last_agreed: Option<AgreedMaster>,
    recent_events: HashMap<(Channel, Bytes), Instant>,
}

impl Owner {
    fn new(config: OwnerConfig, registry: Arc<Registry>) -> Self {
        let views = config
            .sentinels
            .iter()
            .map(|id| (id.clone(), SentinelView::Unreachable))
            .collect();
        let published = registry
            .get(&config.name)
            .unwrap_or_else(|| Arc::new(NameState::initial(&config.name, config.sentinels.len())));
        Self {
            config,
            registry,
            views,
            records: BTreeMap::new(),
            published,
            published_at: Instant::now(),
            last_agreed: None,
            recent_events: HashMap::new(),
        }
    }

    fn handle(&mut self, message: OwnerMessage, now: Instant) {
        match message {
            OwnerMessage::Poll {
                sentinel,
                view,
                record,
                replicas,
            } => {
                let Some(slot) = self.views.get_mut(&sentinel) else {
                    return;
                };
                *slot = view;
                match record {
                    Some(record) => {
                        self.records.insert(sentinel, (record, replicas));
                    }
                    None => {
                        self.records.remove(&sentinel);
                    }
                }
                self.refresh(now);
            }
            OwnerMessage::Unreachable { sentinel } => {
                if let Some(slot) = self.views.get_mut(&sentinel) {
                    *slot = SentinelView::Unreachable;
                    self.records.remove(&sentinel);
                    self.refresh(now);
                }
            }
            OwnerMessage::Event { sentinel, event } => self.forward_event(&sentinel, &event, now),
        }
    }

    /// Forwards a raw event to the tap unless another sentinel's copy was forwarded within the
    /// window; raw `+switch-master` never goes out (see the module notes).
    fn forward_event(&mut self, sentinel: &SentinelId, event: &SentinelEvent, now: Instant) {
        if event.channel == Channel::SwitchMaster {
            tracing::debug!(name = %self.config.name, %sentinel, "raw +switch-master left to the verdict");
            return;
        }
        let (_, payload) = event.format();
        let key = (event.channel.clone(), payload);
        if let Some(seen) = self.recent_events.get(&key)
            && now.saturating_duration_since(*seen) < self.config.dedup_window
        {
            return;
        }
        self.recent_events.insert(key.clone(), now);
        self.registry.send_tap(TapMessage::new(key.0, key.1));
    }

    /// Re-runs the verdict and publishes if anything changed.
    fn refresh(&mut self, now: Instant) {
        let window = self.config.dedup_window;
        self.recent_events
            .retain(|_, seen| now.saturating_duration_since(*seen) < window);

        let input = VerdictInput {
            configured_sentinels: self.config.sentinels.len(),
            freshness: self.config.freshness,
            now: MonotonicTime::between(self.config.origin.into_std(), now.into_std()),
            views: self.views.clone(),
        };
        let verdict = decide(&input, &self.config.aliases);
        let (master_record, replicas) = self.served_records(&verdict);
        // Each monitoring sentinel's settings, for the healer's parity checks.
        let monitors = self
            .records
            .iter()
            .map(|(sentinel, (record, _))| (sentinel.clone(), record.monitor_settings()))
            .collect();

        let previous = Arc::clone(&self.published);
        let verdict_changed = verdict != previous.verdict;
        let substance_changed = verdict_changed
            || !same_views(&previous.views, &input.views)
            || !same_record(previous.master_record.as_ref(), master_record.as_ref())
            || !same_replicas(&previous.replicas, &replicas)
            || previous.monitors != monitors;
        let timestamps_moved = previous.views != input.views;
        let due = now.saturating_duration_since(self.published_at) >= REPUBLISH_INTERVAL;
        let refresh_due = timestamps_moved && due;
        if !(substance_changed || refresh_due) {
            return;
        }

        let changes = previous.changes + u64::from(verdict_changed);
        let state = NameState {
            name: self.config.name.clone(),
            verdict: verdict.clone(),
            views: input.views,
            master_record,
            replicas,
            monitors,
            generation: previous.generation + 1,
            changes,
            published_at: SystemTime::now(),
            master_addr_reply: ReplyCache::default(),
        };
        let state = Arc::new(state);
        self.registry.publish((*state).clone());
        self.published = state;
        self.published_at = now;

        if verdict_changed {
            self.registry
                .stats()
                .verdict_changes
                .fetch_add(1, Ordering::Relaxed);
            log_change(&self.config.name, &previous.verdict, &verdict);
            if let Verdict::Agreed(agreement) = &verdict {
                self.note_agreement(agreement);
            }
        }
    }

    /// Sends `+switch-master` when the agreed master differs from the last one agreed.
    fn note_agreement(&mut self, agreement: &Agreement) {
        let current = AgreedMaster::of(agreement);
        if let Some(old) = &self.last_agreed
            && !old.is_same(&current)
        {
            let old_host = old.addr.host().to_string();
            let new_host = current.addr.host().to_string();
            let event = SentinelEvent::switch_master(
                &self.config.name,
                (&old_host, old.addr.port()),
                (&new_host, current.addr.port()),
            );
            let (_, payload) = event.format();
            tracing::info!(
                name = %self.config.name,
                payload = %String::from_utf8_lossy(&payload),
                "+switch-master sent to the tap"
            );
            self.registry
                .send_tap(TapMessage::new(Channel::SwitchMaster, payload));
        }
        self.last_agreed = Some(current);
    }

    /// The record and replicas of one voter, preferring a voter whose record already describes
    /// the agreed master (a failover leader's record still shows the old one, DESIGN 2.8).
    fn served_records(&self, verdict: &Verdict) -> (Option<MasterRecord>, Vec<ReplicaRecord>) {
        let Some(agreement) = verdict.agreement() else {
            return (None, Vec::new());
        };
        let describes_master = |record: &MasterRecord| {
            Addr::from_parts(&record.instance.ip, &record.instance.port.to_string())
                .is_ok_and(|addr| addr == agreement.master)
        };
        let voters = || {
            agreement
                .voters
                .iter()
                .filter_map(|voter| self.records.get(voter))
        };
        voters()
            .find(|(record, _)| describes_master(record))
            .or_else(|| voters().next())
            .map(|(record, replicas)| (Some((**record).clone()), replicas.clone()))
            .unwrap_or_default()
    }
}

fn log_change(name: &str, previous: &Verdict, verdict: &Verdict) {
    match verdict {
        Verdict::Agreed(agreement) => tracing::info!(
            name,
            master = %agreement.master,
            epoch = agreement.config_epoch,
            votes = agreement.votes,
            voters = %crate::service::joined(&agreement.voters),
            failover_in_progress = agreement.failover_in_progress,
            previous = %previous,
            "verdict changed: agreed"
        ),
        Verdict::NoQuorum(no_quorum) => tracing::info!(
            name,
            reason = %no_quorum.reason,
            candidates = %crate::service::joined(
                no_quorum
                    .candidates
                    .iter()
                    .map(|c| format!("{}@{} votes={}", c.master, c.config_epoch, c.votes))
            ),
            previous = %previous,
            "verdict changed: no quorum"
        ),
    }
}

/// Views equal but for their observation times.
fn same_views(
    a: &BTreeMap<SentinelId, SentinelView>,
    b: &BTreeMap<SentinelId, SentinelView>,
) -> bool {
    fn untimed(view: &SentinelView) -> SentinelView {
        match view {
            SentinelView::Unreachable => SentinelView::Unreachable,
            SentinelView::Unmonitored { .. } => SentinelView::Unmonitored {
                observed_at: MonotonicTime::default(),
            },
            SentinelView::Reports(report) => {
                let mut report = report.clone();
                report.observed_at = MonotonicTime::default();
                SentinelView::Reports(report)
            }
        }
    }
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((ka, va), (kb, vb))| ka == kb && untimed(va) == untimed(vb))
}

/// The instance fields without the ones that move on every poll (ping times, link counters).
fn steady(instance: &InstanceFields) -> InstanceFields {
    InstanceFields {
        link_pending_commands: 0,
        link_refcount: 0,
        last_ping_sent: 0,
        last_ok_ping_reply: 0,
        last_ping_reply: 0,
        s_down_time: instance.s_down_time.map(|_| 0),
        o_down_time: instance.o_down_time.map(|_| 0),
        ..instance.clone()
    }
}

fn same_record(a: Option<&MasterRecord>, b: Option<&MasterRecord>) -> bool {
    fn steady_record(record: &MasterRecord) -> MasterRecord {
        let mut record = record.clone();
        record.instance = steady(&record.instance);
        record.info.info_refresh = 0;
        record.info.role_reported_time = 0;
        record
    }
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => steady_record(a) == steady_record(b),
        _ => false,
    }
}

fn same_replicas(a: &[ReplicaRecord], b: &[ReplicaRecord]) -> bool {
    fn steady_replica(replica: &ReplicaRecord) -> ReplicaRecord {
        let mut replica = replica.clone();
        replica.instance = steady(&replica.instance);
        replica.info.info_refresh = 0;
        replica.info.role_reported_time = 0;
        replica.master_link_down_time = 0;
        replica.slave_repl_offset = 0;
        replica
    }
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(a, b)| steady_replica(a) == steady_replica(b))
}
