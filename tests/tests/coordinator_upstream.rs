//! The coordinator's upstream half (sentinel links and the verdict owner) against real sentinels:
//! it runs in the test's runtime, on top of a 3 data + 3 sentinel lab, and the test reads what it
//! publishes through the registry, as the downstream server does.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sentinel_protocol::event::{Channel, Payload};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use valkey_coordinator::addr::Addr;
use valkey_coordinator::secret::Secret;
use valkey_coordinator::sentinel::conn::Credentials;
use valkey_coordinator::service;
use valkey_coordinator::service::links::UpstreamConfig;
use valkey_coordinator::service::registry::{NameState, Registry, TapMessage};
use valkey_coordinator::verdict::{NoQuorumReason, SentinelId, SentinelView, Verdict};
use valkey_lab::{
    AuthSpec, EventLog, Lab, LabSpec, PodId, ReceivedEvent, SentinelStart, StartRole, ValkeyVersion,
};

/// Budget for any single wait; scenarios finish far sooner.
const WAIT: Duration = Duration::from_secs(20);

fn addr(socket: SocketAddr) -> Addr {
    socket.to_string().parse().expect("a lab address")
}

/// Every state the owner published, with when the recorder saw it.
type PublishedLog = Arc<Mutex<Vec<(Instant, Arc<NameState>)>>>;

/// The upstream half of a coordinator watching a lab's sentinels, plus a recorder of every
/// state it publishes (with the time the recorder saw it).
struct Coordinator {
    registry: Arc<Registry>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    published: PublishedLog,
    name: String,
}

impl Coordinator {
    fn start(lab: &Lab) -> Self {
        let name = lab.master_name().to_owned();
        let sentinels: Vec<Addr> = lab.sentinel_addrs().into_iter().map(addr).collect();
        let registry = Arc::new(Registry::new(std::slice::from_ref(&name), sentinels.len()));
        let mut config = UpstreamConfig::new(sentinels, vec![name.clone()]);
        config.access.credentials = lab.sentinel_credentials().map(|credentials| Credentials {
            user: credentials.user,
            password: Secret::new(credentials.password),
        });
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        service::follow(&config, &registry, &tracker, shutdown.clone());

        let published = Arc::new(Mutex::new(Vec::new()));
        let mut watcher = registry.watch(&name).expect("configured name");
        let record = Arc::clone(&published);
        let stop = shutdown.clone();
        tracker.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    changed = watcher.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let state = Arc::clone(&watcher.borrow_and_update());
                        record.lock().expect("recorder").push((Instant::now(), state));
                    }
                }
            }
        });
        Self {
            registry,
            tracker,
            shutdown,
            published,
            name,
        }
    }

    /// Waits until the published state satisfies `accept`; returns it and when it was seen.
    async fn wait_for(
        &self,
        what: &str,
        accept: impl Fn(&NameState) -> bool,
    ) -> (Instant, Arc<NameState>) {
        let mut watcher = self.registry.watch(&self.name).expect("configured name");
        let deadline = Instant::now() + WAIT;
        loop {
            let state = Arc::clone(&watcher.borrow_and_update());
            if accept(&state) {
                return (Instant::now(), state);
            }
            if tokio::time::timeout_at(deadline, watcher.changed())
                .await
                .is_err()
            {
                panic!(
                    "timed out waiting for {what}; last verdict: {}; views: {:?}; links: {:?}",
                    state.verdict,
                    state.views,
                    self.registry.links()
                );
            }
        }
    }

    async fn wait_agreed(&self, master: SocketAddr, votes: usize) -> Arc<NameState> {
        let master = addr(master);
        self.wait_for(&format!("agreement on {master} with {votes} votes"), |s| {
            s.verdict
                .agreement()
                .is_some_and(|a| a.master == master && a.votes == votes)
        })
        .await
        .1
    }

    /// The agreed masters in publication order, consecutive repeats and no-quorum spells removed.
    fn agreed_masters(&self) -> Vec<Addr> {
        let mut masters: Vec<Addr> = Vec::new();
        for (_, state) in self.published.lock().expect("recorder").iter() {
            if let Some(agreement) = state.verdict.agreement()
                && masters.last() != Some(&agreement.master)
            {
                masters.push(agreement.master.clone());
            }
        }
        masters
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(5), self.tracker.wait())
            .await
            .expect("every upstream task stops on cancellation");
    }
}

fn drain(tap: &mut tokio::sync::broadcast::Receiver<TapMessage>) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    while let Ok(message) = tap.try_recv() {
        seen.push((
            message.channel.to_string(),
            String::from_utf8_lossy(&message.payload).into_owned(),
        ));
    }
    seen
}

/// Scenario (a): every sentinel names pod 0; the coordinator agrees with three votes and serves
/// pod 0's record and its two replicas.
async fn agrees_with_the_sentinels(version: ValkeyVersion) {
    let lab = LabSpec::new(version).start().await.expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    let coordinator = Coordinator::start(&lab);

    let state = coordinator.wait_agreed(lab.data_addr(0), 3).await;
    let agreement = state.verdict.agreement().expect("agreed");
    assert_eq!(agreement.voters.len(), 3);
    let record = state.master_record.as_ref().expect("a voter's record");
    assert_eq!(
        format!("{}:{}", record.instance.ip, record.instance.port),
        lab.data_addr(0).to_string()
    );
    let state = coordinator
        .wait_for("both replicas listed", |s| s.replicas.len() == 2)
        .await
        .1;
    assert_eq!(state.views.len(), 3);
    let links = coordinator.registry.links();
    assert_eq!(links.len(), 3, "{links:?}");
    assert!(
        links
            .iter()
            .all(|(_, l)| l.connected && l.last_poll_ok.is_some()),
        "{links:?}"
    );
    assert!(
        coordinator
            .registry
            .stats()
            .verdict_changes
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    coordinator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_agrees_with_the_sentinels_on_valkey_8_0_1() {
    agrees_with_the_sentinels(ValkeyVersion::V8_0_1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_agrees_with_the_sentinels_on_valkey_8_1_8() {
    agrees_with_the_sentinels(ValkeyVersion::V8_1_8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_agrees_with_the_sentinels_on_valkey_9_1_2() {
    agrees_with_the_sentinels(ValkeyVersion::V9_1_2).await;
}

/// Scenario (b): two of three sentinels hang (SIGSTOP: sockets open, no answers). Their polls
/// time out, the majority is gone, and the verdict fails closed; once they answer again the
/// agreement comes back, while the third sentinel's link never went down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hung_sentinels_lose_the_quorum_and_their_return_restores_it() {
    let mut lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    let coordinator = Coordinator::start(&lab);
    coordinator.wait_agreed(lab.data_addr(0), 3).await;

    let paused_at = Instant::now();
    lab.pause(PodId::Sentinel(1)).expect("SIGSTOP sentinel-1");
    lab.pause(PodId::Sentinel(2)).expect("SIGSTOP sentinel-2");
    let (lost_at, state) = coordinator
        .wait_for("no quorum", |s| s.verdict.agreement().is_none())
        .await;
    let lost_after = lost_at - paused_at;
    // A hung sentinel is dropped at its poll deadline (500 ms) or at the latest when its last
    // answer ages out (2 s).
    assert!(
        lost_after < Duration::from_secs(3),
        "quorum lost after {lost_after:?}"
    );
    match &state.verdict {
        Verdict::NoQuorum(no_quorum) => assert!(
            matches!(
                no_quorum.reason,
                NoQuorumReason::NotEnoughSentinels {
                    counting: 1,
                    needed: 2,
                    configured: 3,
                    ..
                }
            ),
            "{}",
            no_quorum.reason
        ),
        Verdict::Agreed(_) => unreachable!(),
    }
    let healthy = SentinelId::new(addr(lab.sentinel_addr(0)));
    assert!(matches!(
        state.views.get(&healthy),
        Some(SentinelView::Reports(_))
    ));

    lab.resume(PodId::Sentinel(1)).expect("SIGCONT sentinel-1");
    lab.resume(PodId::Sentinel(2)).expect("SIGCONT sentinel-2");
    coordinator.wait_agreed(lab.data_addr(0), 3).await;

    let links = coordinator.registry.links();
    for (id, link) in &links {
        if *id == healthy {
            assert_eq!(
                link.reconnects, 0,
                "the healthy link was never dropped: {links:?}"
            );
        } else {
            assert!(
                link.reconnects >= 1 && link.last_error.is_some(),
                "{links:?}"
            );
        }
    }
    assert_eq!(coordinator.agreed_masters(), vec![addr(lab.data_addr(0))]);
    coordinator.stop().await;
}

/// The outcome of one failover as the coordinator saw it.
struct ObservedFailover {
    old: SocketAddr,
    new: SocketAddr,
    /// When the coordinator's registry first named the new master, minus when the last
    /// sentinel of the majority published `+switch-master`, in milliseconds (negative: the
    /// coordinator was first, as rule 2 lets it be once the leader's answer names the new
    /// master at the new epoch).
    lag_ms: f64,
    /// The same from the first sentinel's `+switch-master` (the failover leader's, which is
    /// when its `GET-MASTER-ADDR-BY-NAME` changes): the coordinator's own reaction time.
    lag_from_first_ms: f64,
}

/// Kills the current master (`old`) with SIGKILL and waits until a majority of sentinels
/// published `+switch-master` and the coordinator names the new master with three votes.
async fn kill_master(
    lab: &mut Lab,
    events: &EventLog,
    coordinator: &Coordinator,
    old_index: usize,
) -> ObservedFailover {
    let old = lab.data_addr(old_index);
    coordinator.wait_agreed(old, 3).await;
    // Only what happens after the kill counts: earlier failovers may have had the same pair.
    let mut stream = events.subscribe();
    let killed_at = Instant::now();
    lab.kill(PodId::Data(old_index));

    let name = lab.master_name().to_owned();
    let majority = lab.majority();
    let switched = tokio::time::timeout(WAIT, async {
        let mut per_sentinel: Vec<ReceivedEvent> = Vec::new();
        while per_sentinel.len() < majority {
            let event = stream.recv().await.expect("event log running");
            let from_old = matches!(&event.event.payload, Payload::SwitchMaster { name: n, old_ip, old_port, .. }
                if *n == name && old_ip.parse() == Ok(old.ip()) && *old_port == old.port());
            if from_old && !per_sentinel.iter().any(|e| e.sentinel == event.sentinel) {
                per_sentinel.push(event);
            }
        }
        per_sentinel
    })
    .await
    .expect("a majority of sentinels switch master");
    let Payload::SwitchMaster {
        new_ip, new_port, ..
    } = &switched[0].event.payload
    else {
        unreachable!("matched above")
    };
    assert!(
        switched.iter().all(|e| e.event == switched[0].event),
        "sentinels switched to different masters: {switched:?}"
    );
    let new: SocketAddr = format!("{new_ip}:{new_port}").parse().expect("new master");
    let mut arrivals: Vec<Instant> = switched.iter().map(|e| e.at).collect();
    arrivals.sort();
    let majority_at = arrivals[majority - 1];

    let new_addr = addr(new);
    let (seen_at, _) = coordinator
        .wait_for("the new master", |s| {
            s.verdict.agreement().is_some_and(|a| a.master == new_addr)
        })
        .await;
    // The recorder timestamps every publication; the first naming the new master is the moment.
    let first_named = coordinator
        .published
        .lock()
        .expect("recorder")
        .iter()
        .find(|(at, s)| {
            *at >= killed_at && s.verdict.agreement().is_some_and(|a| a.master == new_addr)
        })
        .map(|(at, _)| *at)
        .unwrap_or(seen_at);
    let lag_ms = signed_ms(first_named, majority_at);
    let lag_from_first_ms = signed_ms(first_named, arrivals[0]);
    coordinator.wait_agreed(new, 3).await;
    ObservedFailover {
        old,
        new,
        lag_ms,
        lag_from_first_ms,
    }
}

/// `later - earlier` in milliseconds, negative when `later` came first.
fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    if later >= earlier {
        (later - earlier).as_secs_f64() * 1e3
    } else {
        -((earlier - later).as_secs_f64() * 1e3)
    }
}

/// Scenario (c): the master is killed; the verdict goes from the old master to the new one with
/// nothing in between but spells without quorum, never back, and tap subscribers get exactly one
/// `+switch-master` with the two addresses, plus the sentinels' raw events.
async fn killed_master_moves_the_verdict_once(version: ValkeyVersion) {
    let mut lab = LabSpec::new(version).start().await.expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    let events = EventLog::start(&lab).await.expect("subscribe to sentinels");
    let coordinator = Coordinator::start(&lab);
    let mut tap = coordinator.registry.subscribe_tap();

    let failover = kill_master(&mut lab, &events, &coordinator, 0).await;
    println!(
        "coordinator named the new master {:+.1} ms after the majority's +switch-master \
         ({:+.1} ms after the first)",
        failover.lag_ms, failover.lag_from_first_ms
    );
    // Let every sentinel finish (+failover-end, replicas reconfigured) before counting.
    coordinator
        .wait_for("the failover to end", |s| {
            s.verdict
                .agreement()
                .is_some_and(|a| a.votes == 3 && !a.failover_in_progress)
        })
        .await;

    assert_eq!(
        coordinator.agreed_masters(),
        vec![addr(failover.old), addr(failover.new)],
        "old master, then the new one, nothing else"
    );
    let tapped = drain(&mut tap);
    let switches: Vec<&String> = tapped
        .iter()
        .filter(|(channel, _)| channel == "+switch-master")
        .map(|(_, payload)| payload)
        .collect();
    let expected = format!(
        "{} {} {} {} {}",
        lab.master_name(),
        failover.old.ip(),
        failover.old.port(),
        failover.new.ip(),
        failover.new.port()
    );
    assert_eq!(switches, vec![&expected], "tap: {tapped:?}");
    assert!(
        tapped.iter().any(|(channel, payload)| channel == "+sdown"
            && payload
                == &format!(
                    "master {} {} {}",
                    lab.master_name(),
                    failover.old.ip(),
                    failover.old.port()
                )),
        "raw sentinel events reach the tap: {tapped:?}"
    );
    coordinator.stop().await;
    let resets = events.resets();
    events.stop().await;
    assert!(resets.is_empty(), "a sentinel was reset: {resets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_moves_the_verdict_once_and_the_tap_announces_it_once_on_valkey_8_0_1() {
    killed_master_moves_the_verdict_once(ValkeyVersion::V8_0_1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_moves_the_verdict_once_and_the_tap_announces_it_once_on_valkey_8_1_8() {
    killed_master_moves_the_verdict_once(ValkeyVersion::V8_1_8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_moves_the_verdict_once_and_the_tap_announces_it_once_on_valkey_9_1_2() {
    killed_master_moves_the_verdict_once(ValkeyVersion::V9_1_2).await;
}

/// Scenario (d): after a failover, one sentinel is re-registered by hand on the old master, so
/// it reports the old address at epoch 0. It neither votes nor vetoes: the verdict stays on the
/// new master at the new epoch, and nothing is announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_re_registered_on_the_old_master_at_a_lower_epoch_changes_nothing() {
    let mut lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    let events = EventLog::start(&lab).await.expect("subscribe to sentinels");
    let coordinator = Coordinator::start(&lab);
    let failover = kill_master(&mut lab, &events, &coordinator, 0).await;
    let (_, settled) = coordinator
        .wait_for("the failover to end", |s| {
            s.verdict
                .agreement()
                .is_some_and(|a| a.votes == 3 && !a.failover_in_progress)
        })
        .await;
    let epoch = settled.verdict.agreement().expect("agreed").config_epoch;
    assert!(epoch >= 1);
    let mut tap = coordinator.registry.subscribe_tap();

    let mut sentinel = lab.client(PodId::Sentinel(2)).await.expect("connect");
    sentinel
        .call(&["SENTINEL", "REMOVE", lab.master_name()])
        .await
        .expect("SENTINEL REMOVE");
    lab.monitor(2, failover.old)
        .await
        .expect("re-register on the old master");

    let stale = SentinelId::new(addr(lab.sentinel_addr(2)));
    let old = addr(failover.old);
    let (_, state) = coordinator
        .wait_for("sentinel-2 to report the old master at epoch 0", |s| {
            matches!(s.views.get(&stale), Some(SentinelView::Reports(r)) if r.master == old && r.config_epoch == 0)
        })
        .await;
    let agreement = state.verdict.agreement().expect("still agreed");
    assert_eq!(agreement.master, addr(failover.new));
    assert_eq!(agreement.config_epoch, epoch);
    assert_eq!(agreement.votes, 2, "the stale sentinel is not a vote");
    assert_eq!(
        coordinator.agreed_masters(),
        vec![addr(failover.old), addr(failover.new)]
    );
    let switches: Vec<_> = drain(&mut tap)
        .into_iter()
        .filter(|(channel, _)| channel == "+switch-master")
        .collect();
    assert!(switches.is_empty(), "{switches:?}");
    coordinator.stop().await;
    let resets = events.resets();
    events.stop().await;
    assert!(resets.is_empty(), "a sentinel was reset: {resets:?}");
}

/// Measurement, not run by default (each failover takes several seconds): the time from the
/// majority's `+switch-master` to the coordinator naming the new master, over `FAILOVERS`
/// failovers, printed as p50/p99. Every failover is also checked as in scenario (c).
///
/// `cargo nextest run -p valkey-lab --run-ignored only --no-capture measure_switch_lag`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: 10+ failovers, about two minutes"]
async fn measure_switch_lag_over_many_failovers() {
    const FAILOVERS: usize = 12;
    let mut lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    let events = EventLog::start(&lab).await.expect("subscribe to sentinels");
    let coordinator = Coordinator::start(&lab);
    let mut tap = coordinator.registry.subscribe_tap();

    let mut master_index = 0;
    let mut lags = Vec::new();
    let mut lags_from_first = Vec::new();
    for round in 0..FAILOVERS {
        let failover = kill_master(&mut lab, &events, &coordinator, master_index).await;
        println!(
            "failover {round}: {} -> {} lag {:+.1} ms from the majority, {:+.1} ms from the first",
            failover.old, failover.new, failover.lag_ms, failover.lag_from_first_ms
        );
        lags.push(failover.lag_ms);
        lags_from_first.push(failover.lag_from_first_ms);
        let new_index = lab.data_index(failover.new).expect("a lab pod");
        // The killed master comes back as a replica of the new one, and the group re-forms.
        lab.start_data(master_index, StartRole::ReplicaOf(failover.new))
            .await
            .expect("old master restarts");
        lab.wait_sentinels_see(2, 2, WAIT)
            .await
            .expect("group re-forms");
        coordinator
            .wait_for("the failover to end", |s| {
                s.verdict
                    .agreement()
                    .is_some_and(|a| a.votes == 3 && !a.failover_in_progress)
            })
            .await;
        let switches = drain(&mut tap)
            .into_iter()
            .filter(|(channel, _)| channel == "+switch-master")
            .count();
        assert_eq!(switches, 1, "failover {round}");
        master_index = new_index;
    }
    let masters = coordinator.agreed_masters();
    assert_eq!(masters.len(), FAILOVERS + 1, "{masters:?}");

    for (what, lags) in [
        ("the majority's +switch-master", &mut lags),
        ("the first +switch-master", &mut lags_from_first),
    ] {
        lags.sort_by(f64::total_cmp);
        let percentile = |p: f64| lags[((lags.len() - 1) as f64 * p).round() as usize];
        println!(
            "from {what} to the coordinator naming the new master, over {FAILOVERS} failovers: \
             p50 {:+.1} ms, p99 {:+.1} ms, min {:+.1} ms, max {:+.1} ms",
            percentile(0.5),
            percentile(0.99),
            lags[0],
            lags[lags.len() - 1]
        );
    }
    coordinator.stop().await;
    let resets = events.resets();
    events.stop().await;
    assert!(resets.is_empty(), "a sentinel was reset: {resets:?}");
}

/// A "sentinel" that confirms subscriptions like a real one and answers every poll with `lie`.
async fn lying_sentinel(lie: &'static [u8]) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind on loopback");
    let local = listener.local_addr().expect("bound");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 64 * 1024];
                while let Ok(n) = socket.read(&mut buffer).await {
                    if n == 0 {
                        return;
                    }
                    let request = &buffer[..n];
                    let reply = if request.windows(9).any(|w| w == b"SUBSCRIBE") {
                        let mut confirmations = Vec::new();
                        for (i, channel) in Channel::published().enumerate() {
                            confirmations.extend_from_slice(
                                format!(
                                    "*3\r\n$9\r\nsubscribe\r\n${}\r\n{channel}\r\n:{}\r\n",
                                    channel.len(),
                                    i + 1
                                )
                                .as_bytes(),
                            );
                        }
                        confirmations
                    } else {
                        lie.to_vec()
                    };
                    if socket.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    local
}

/// A sentinel that answers with a malformed frame, an oversized bulk or nesting past the limit
/// only loses its own vote: its link is dropped with the reason, and the two honest sentinels
/// still make the agreement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_sentinel_loses_its_vote_and_nothing_else() {
    let lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    let deep: &'static [u8] = "*1\r\n".repeat(64).leak().as_bytes();
    let lies: [(&str, &'static [u8], &str); 3] = [
        ("malformed", b"?not resp\r\n", "invalid reply type byte"),
        ("oversized", b"$2000000000\r\n", "bulk"),
        ("deep", deep, "nested deeper"),
    ];
    for (kind, lie, expected_error) in lies {
        let liar = lying_sentinel(lie).await;
        let name = lab.master_name().to_owned();
        let sentinels = vec![
            addr(lab.sentinel_addr(0)),
            addr(lab.sentinel_addr(1)),
            addr(liar),
        ];
        let registry = Arc::new(Registry::new(std::slice::from_ref(&name), 3));
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        service::follow(
            &UpstreamConfig::new(sentinels, vec![name.clone()]),
            &registry,
            &tracker,
            shutdown.clone(),
        );
        let master = addr(lab.data_addr(0));
        let mut watcher = registry.watch(&name).expect("configured");
        let agreed = tokio::time::timeout(
            WAIT,
            watcher.wait_for(|s| s.verdict.agreement().is_some_and(|a| a.master == master)),
        )
        .await
        .unwrap_or_else(|_| panic!("{kind}: no agreement without the liar"))
        .expect("owner alive")
        .clone();
        assert_eq!(
            agreed.verdict.agreement().expect("agreed").votes,
            2,
            "{kind}"
        );
        let liar_id = SentinelId::new(addr(liar));
        assert!(
            matches!(agreed.views.get(&liar_id), Some(SentinelView::Unreachable)),
            "{kind}: {:?}",
            agreed.views
        );
        // The liar keeps being retried; its last failure names the lie.
        let liar_error = async {
            loop {
                let error = registry
                    .links()
                    .into_iter()
                    .find(|(id, _)| *id == liar_id)
                    .and_then(|(_, status)| status.last_error);
                if let Some(error) = error {
                    return error;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let error = tokio::time::timeout(WAIT, liar_error)
            .await
            .unwrap_or_else(|_| panic!("{kind}: the liar's link never failed"));
        println!("{kind}: {error}");
        assert!(error.contains(expected_error), "{kind}: {error}");
        shutdown.cancel();
        tracker.close();
        tracker.wait().await;
    }
}

/// Sentinels that require a password: with it the links authenticate and agree; with a wrong
/// one every link is refused, the verdict fails closed, and the error shown to operators is the
/// sentinel's words without the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_protected_sentinels_need_the_password_and_it_never_shows() {
    let auth = AuthSpec {
        sentinel_password: Some("lab-sentinel-pw".into()),
        ..AuthSpec::simple()
    };
    let lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .auth(auth)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    let coordinator = Coordinator::start(&lab);
    coordinator.wait_agreed(lab.data_addr(0), 3).await;
    coordinator.stop().await;

    let name = lab.master_name().to_owned();
    let sentinels: Vec<Addr> = lab.sentinel_addrs().into_iter().map(addr).collect();
    let registry = Arc::new(Registry::new(std::slice::from_ref(&name), 3));
    let mut config = UpstreamConfig::new(sentinels, vec![name.clone()]);
    config.access.credentials = Some(Credentials::password(Secret::new("not-the-password")));
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    service::follow(&config, &registry, &tracker, shutdown.clone());
    let refused = async {
        loop {
            let links = registry.links();
            if links.len() == 3 && links.iter().all(|(_, l)| l.last_error.is_some()) {
                return links;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let links = tokio::time::timeout(WAIT, refused)
        .await
        .expect("every link refused");
    for (id, link) in &links {
        let error = link.last_error.as_deref().unwrap_or_default();
        assert!(!link.connected, "{id}: {link:?}");
        assert!(error.contains("authentication refused"), "{id}: {error}");
        assert!(!error.contains("not-the-password"), "{id}: {error}");
    }
    assert!(
        registry
            .get(&name)
            .expect("configured")
            .verdict
            .agreement()
            .is_none()
    );
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

/// A sentinel restarted on an empty directory monitors nothing: the coordinator sees it as
/// reachable but not monitoring, which neither votes nor blocks the other two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_sentinel_is_unmonitored_and_the_other_two_still_agree() {
    let mut lab = LabSpec::new(ValkeyVersion::V9_1_2)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    let coordinator = Coordinator::start(&lab);
    coordinator.wait_agreed(lab.data_addr(0), 3).await;

    lab.restart_sentinel(2, SentinelStart::Wiped)
        .await
        .expect("sentinel-2 restarts wiped");
    let wiped = SentinelId::new(addr(lab.sentinel_addr(2)));
    let (_, state) = coordinator
        .wait_for("sentinel-2 to be seen as not monitoring", |s| {
            matches!(s.views.get(&wiped), Some(SentinelView::Unmonitored { .. }))
        })
        .await;
    let agreement = state.verdict.agreement().expect("still agreed");
    assert_eq!(agreement.master, addr(lab.data_addr(0)));
    assert_eq!(agreement.votes, 2);
    let links = coordinator.registry.links();
    let (_, link) = links
        .iter()
        .find(|(id, _)| *id == wiped)
        .expect("the wiped sentinel's link");
    assert!(link.reconnects >= 1, "{link:?}");
    coordinator.stop().await;
}
