//! The owner of a master name, driven through its mailbox exactly as the sentinel links drive
//! it, on a paused clock: what it publishes, what it sends to the tap, and when a silent
//! sentinel stops counting.
//!
//! With the clock paused, `settle()` (a 1 ms sleep) returns only once every other task is idle,
//! so after it the owner has handled everything sent before.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sentinel_protocol::event::SentinelEvent;
use sentinel_protocol::sentinel::MasterRecord;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use valkey_coordinator::addr::{Addr, PodAliases};
use valkey_coordinator::service::owner::{self, OwnerConfig, OwnerMessage};
use valkey_coordinator::service::registry::{Registry, TapMessage};
use valkey_coordinator::verdict::{
    DEFAULT_FRESHNESS, MonotonicTime, NoQuorumReason, SentinelId, SentinelReport, SentinelView,
    Verdict,
};

const NAME: &str = "mymaster";
const OLD: &str = "10.0.0.10:6379";
const NEW: &str = "10.0.0.11:6379";
const THIRD: &str = "10.0.0.12:6379";

fn addr(raw: &str) -> Addr {
    raw.parse().expect("valid test address")
}

fn sentinel(index: usize) -> SentinelId {
    SentinelId::new(addr(&format!("10.9.0.{index}:26379")))
}

/// An owner of `mymaster` watched by three sentinels, running on the test's paused runtime.
struct Harness {
    registry: Arc<Registry>,
    mailbox: mpsc::Sender<OwnerMessage>,
    tap: broadcast::Receiver<TapMessage>,
    origin: Instant,
    shutdown: CancellationToken,
}

impl Harness {
    fn start() -> Self {
        let registry = Arc::new(Registry::new(&[NAME.to_owned()], 3));
        let tap = registry.subscribe_tap();
        let (mailbox, receiver) = mpsc::channel(owner::MAILBOX_CAPACITY);
        let origin = Instant::now();
        let shutdown = CancellationToken::new();
        let config = OwnerConfig {
            name: NAME.to_owned(),
            sentinels: (0..3).map(sentinel).collect(),
            freshness: DEFAULT_FRESHNESS,
            dedup_window: owner::DEFAULT_DEDUP_WINDOW,
            tick: Duration::from_millis(250),
            aliases: PodAliases::new(),
            origin,
        };
        tokio::spawn(owner::run(
            config,
            Arc::clone(&registry),
            receiver,
            shutdown.clone(),
        ));
        Self {
            registry,
            mailbox,
            tap,
            origin,
            shutdown,
        }
    }

    fn now(&self) -> MonotonicTime {
        MonotonicTime::between(self.origin.into_std(), Instant::now().into_std())
    }

    /// Sentinel `index` answers a poll naming `master` at `epoch`, stamped now.
    async fn reports(&self, index: usize, master: &str, epoch: u64) {
        let report = SentinelReport::new(addr(master), epoch, self.now());
        let (ip, port) = master.split_once(':').expect("host:port");
        let mut record = MasterRecord::default();
        record.instance.name = NAME.to_owned();
        record.instance.ip = ip.to_owned();
        record.instance.port = port.parse().expect("port");
        record.config_epoch = epoch;
        self.send(OwnerMessage::Poll {
            sentinel: sentinel(index),
            view: SentinelView::Reports(report),
            record: Some(Box::new(record)),
            replicas: Vec::new(),
        })
        .await;
    }

    async fn all_report(&self, master: &str, epoch: u64) {
        for index in 0..3 {
            self.reports(index, master, epoch).await;
        }
    }

    async fn unreachable(&self, index: usize) {
        self.send(OwnerMessage::Unreachable {
            sentinel: sentinel(index),
        })
        .await;
    }

    async fn event(&self, index: usize, channel: &str, payload: &str) {
        self.send(OwnerMessage::Event {
            sentinel: sentinel(index),
            event: SentinelEvent::parse(channel.as_bytes(), payload.as_bytes()),
        })
        .await;
    }

    async fn send(&self, message: OwnerMessage) {
        self.mailbox.send(message).await.expect("owner running");
        settle().await;
    }

    fn verdict(&self) -> Verdict {
        self.registry.get(NAME).expect("configured").verdict.clone()
    }

    fn agreed(&self) -> (Addr, u64, usize) {
        match self.verdict() {
            Verdict::Agreed(agreement) => {
                (agreement.master, agreement.config_epoch, agreement.votes)
            }
            other => panic!("expected an agreement, got {other}"),
        }
    }

    /// Every tap message sent so far.
    fn tapped(&mut self) -> Vec<(String, String)> {
        let mut seen = Vec::new();
        while let Ok(message) = self.tap.try_recv() {
            seen.push((
                message.channel.to_string(),
                String::from_utf8_lossy(&message.payload).into_owned(),
            ));
        }
        seen
    }

    fn switch_masters(&mut self) -> Vec<String> {
        self.tapped()
            .into_iter()
            .filter(|(channel, _)| channel == "+switch-master")
            .map(|(_, payload)| payload)
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn three_sentinels_naming_one_master_are_published_as_agreed_with_three_votes() {
    let mut harness = Harness::start();
    harness.all_report(OLD, 0).await;

    assert_eq!(harness.agreed(), (addr(OLD), 0, 3));
    let state = harness.registry.get(NAME).expect("configured");
    assert_eq!(state.views.len(), 3);
    let record = state.master_record.as_ref().expect("a voter's record");
    assert_eq!(record.instance.ip, "10.0.0.10");
    assert!(state.changes >= 1);
    assert!(
        harness.switch_masters().is_empty(),
        "the first agreement switches from nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failover_sends_one_switch_master_however_many_sentinels_confirm_it() {
    let mut harness = Harness::start();
    harness.all_report(OLD, 0).await;
    assert!(harness.switch_masters().is_empty());

    // The leader moves first: one sentinel at the new epoch already wins (rule 2).
    harness.reports(0, NEW, 1).await;
    assert_eq!(harness.agreed(), (addr(NEW), 1, 1));
    harness.reports(1, NEW, 1).await;
    harness.reports(2, NEW, 1).await;
    assert_eq!(harness.agreed(), (addr(NEW), 1, 3));
    // Every sentinel's own +switch-master arrives too, and is not forwarded.
    for index in 0..3 {
        harness
            .event(
                index,
                "+switch-master",
                "mymaster 10.0.0.10 6379 10.0.0.11 6379",
            )
            .await;
    }
    harness.all_report(NEW, 1).await;

    assert_eq!(
        harness.switch_masters(),
        vec!["mymaster 10.0.0.10 6379 10.0.0.11 6379".to_owned()]
    );
    assert_eq!(
        harness
            .registry
            .stats()
            .tap_messages
            .load(Ordering::Relaxed),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn losing_quorum_and_regaining_it_on_the_same_master_sends_nothing() {
    let mut harness = Harness::start();
    harness.all_report(OLD, 0).await;
    harness.unreachable(1).await;
    harness.unreachable(2).await;
    assert!(matches!(
        harness.verdict(),
        Verdict::NoQuorum(ref nq) if matches!(nq.reason, NoQuorumReason::NotEnoughSentinels { counting: 1, .. })
    ));
    harness.all_report(OLD, 0).await;
    assert_eq!(harness.agreed(), (addr(OLD), 0, 3));
    assert!(harness.switch_masters().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_master_change_across_a_spell_without_quorum_is_one_switch_from_the_last_agreed() {
    let mut harness = Harness::start();
    harness.all_report(OLD, 0).await;
    harness.unreachable(0).await;
    harness.unreachable(1).await;
    harness.unreachable(2).await;
    assert!(harness.verdict().agreement().is_none());

    harness.all_report(NEW, 1).await;
    assert_eq!(harness.agreed(), (addr(NEW), 1, 3));
    assert_eq!(
        harness.switch_masters(),
        vec!["mymaster 10.0.0.10 6379 10.0.0.11 6379".to_owned()]
    );

    // And a second failover names the master of the first as its old one.
    harness.all_report(THIRD, 2).await;
    assert_eq!(
        harness.switch_masters(),
        vec!["mymaster 10.0.0.11 6379 10.0.0.12 6379".to_owned()]
    );
}

#[tokio::test(start_paused = true)]
async fn a_sentinel_reporting_a_stale_master_at_a_lower_epoch_changes_nothing() {
    let mut harness = Harness::start();
    harness.all_report(NEW, 3).await;
    let before = harness.registry.get(NAME).expect("configured").changes;

    // Re-registered by hand on the old master: epoch 0.
    harness.reports(2, OLD, 0).await;
    assert_eq!(
        harness.agreed(),
        (addr(NEW), 3, 2),
        "not a vote, not a veto"
    );
    harness.reports(2, OLD, 0).await;
    assert_eq!(harness.agreed().0, addr(NEW));
    assert!(harness.switch_masters().is_empty());
    assert_eq!(
        harness.registry.get(NAME).expect("configured").changes,
        before + 1,
        "only the vote count changed, once"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_sentinel_stops_counting_once_its_answer_is_older_than_the_freshness_window() {
    let harness = Harness::start();
    harness.all_report(OLD, 0).await;
    assert_eq!(harness.agreed().2, 3);

    // Two sentinels fall silent (a SIGSTOP: no error, no answer); one keeps answering.
    let mut watcher = harness.registry.watch(NAME).expect("configured");
    let silent_since = Instant::now();
    let keep_answering = async {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            harness.reports(0, OLD, 0).await;
        }
    };
    let lost = async {
        loop {
            watcher.changed().await.expect("owner alive");
            if watcher.borrow_and_update().verdict.agreement().is_none() {
                return Instant::now();
            }
        }
    };
    let lost_at = tokio::select! {
        at = lost => at,
        () = keep_answering => unreachable!(),
    };
    let silent_for = lost_at - silent_since;
    assert!(
        silent_for > DEFAULT_FRESHNESS
            && silent_for <= DEFAULT_FRESHNESS + Duration::from_millis(300),
        "quorum lost after {silent_for:?}"
    );
    match harness.verdict() {
        Verdict::NoQuorum(nq) => assert!(
            matches!(
                nq.reason,
                NoQuorumReason::NotEnoughSentinels {
                    counting: 1,
                    stale: 2,
                    ..
                }
            ),
            "{:?}",
            nq.reason
        ),
        other => panic!("{other}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_same_raw_event_from_every_sentinel_reaches_the_tap_once_per_window() {
    let mut harness = Harness::start();
    let sdown = "master mymaster 10.0.0.10 6379";
    for index in 0..3 {
        harness.event(index, "+sdown", sdown).await;
    }
    harness
        .event(1, "+odown", "master mymaster 10.0.0.10 6379 #quorum 2/2")
        .await;
    assert_eq!(
        harness.tapped(),
        vec![
            ("+sdown".to_owned(), sdown.to_owned()),
            (
                "+odown".to_owned(),
                "master mymaster 10.0.0.10 6379 #quorum 2/2".to_owned()
            ),
        ]
    );

    // After the window the same news is news again.
    tokio::time::sleep(owner::DEFAULT_DEDUP_WINDOW).await;
    harness.event(2, "+sdown", sdown).await;
    assert_eq!(
        harness.tapped(),
        vec![("+sdown".to_owned(), sdown.to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn polls_that_change_nothing_but_timestamps_are_not_republished_more_than_once_a_second() {
    let harness = Harness::start();
    harness.all_report(OLD, 0).await;
    let first = harness.registry.get(NAME).expect("configured").generation;
    for _ in 0..3 {
        harness.all_report(OLD, 0).await;
    }
    assert_eq!(
        harness.registry.get(NAME).expect("configured").generation,
        first
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    harness.all_report(OLD, 0).await;
    assert_eq!(
        harness.registry.get(NAME).expect("configured").generation,
        first + 1,
        "fresh ages are republished after a second"
    );
}
