//! Least-privilege ACL users on every link, against real servers on every version. The rules, and
//! why each permission is there, are `valkey_lab::acl` (the README's "ACL users" cites it).
//!
//! `least_privilege_users_run_the_group`: with only those permissions a kill -9 failover
//! completes (the sentinels log in to the data pods as the sentinel user and to each other as
//! the peer user) and closes the clients of the pods it reconfigured; the coordinator, logged in
//! to the sentinels as the coordinator user, agrees on the master and heals a wiped sentinel;
//! `role-probe` (with the sentinel user on the data pods), `switchover` (COORDINATED on 9.x),
//! `member-leave` and `status` succeed; a wrong coordinator password fails `switchover` naming
//! every sentinel and `WRONGPASS` before anything was sent; and the only commands any of these
//! users was refused all along are the ones the lists leave out on purpose
//! (`acl::sentinel_user::REFUSED`, `acl::peer_user::REFUSED`).
//!
//! The `without_each_*` scenarios take one permission away at a time (`ACL SETUSER <user> reset
//! on >pw <every other rule>` on every server that defines the user), show that the operation
//! needing it breaks in the way the check names, and that a server's `ACL LOG` recorded the
//! refusal; then they give the permission back and wait until the group has settled before the
//! next one. One lab per scenario and version; every wait is bounded. Each removal prints one
//! line, `acl <version> <user> without <rule>: <what broke> [<the refusal>] (<seconds>)`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use valkey_coordinator::addr::Addr;
use valkey_coordinator::lifecycle::{
    Budget, Target, knowledge, member_leave, role_probe, status, switchover,
};
use valkey_coordinator::secret::Secret;
use valkey_coordinator::sentinel::conn::{Access, Credentials};
use valkey_coordinator::sentinel::query::Answer;
use valkey_coordinator::service::heal::HealConfig;
use valkey_coordinator::service::heal::plan::ExplicitSettings;
use valkey_coordinator::service::registry::{ObservedRole, Registry};
use valkey_coordinator::service::{self, RunningService, ServiceConfig};
use valkey_lab::acl::{self, coordinator_user, peer_user, sentinel_user};
use valkey_lab::sentinel_protocol::event::Channel;
use valkey_lab::sentinel_protocol::sentinel::Flag;
use valkey_lab::wait::{POLL_EVERY, Probe, poll_until};
use valkey_lab::{
    AclUser, AuthSpec, Client, EventLog, Lab, LabError, LabSpec, PodId, SentinelStart, StartRole,
    ValkeyVersion,
};

/// Budget for any single wait that should succeed; scenarios finish far sooner.
const WAIT: Duration = Duration::from_secs(20);
/// How long a check watches before it concludes that something does not happen: more than
/// `down-after-milliseconds` (2 s) plus two hello periods (2 s each).
const NEVER: Duration = Duration::from_secs(6);
/// An action's budget, as kbagent would give it.
const ACTION: Duration = Duration::from_secs(25);
/// The healer's grace before it corrects a wrong master.
const GRACE: Duration = Duration::from_secs(2);

valkey_lab::on_every_version!(
    least_privilege_users_run_the_group,
    without_each_sentinel_user_permission_monitoring_breaks,
    without_each_sentinel_user_permission_failover_breaks,
    without_each_coordinator_user_permission_the_coordinator_breaks,
    without_each_peer_user_permission_the_sentinels_break,
);

// === the lab, its users and the coordinator ===

fn addr(socket: SocketAddr) -> Addr {
    Addr::from(socket)
}

fn auth(lab: &Lab) -> &AuthSpec {
    lab.spec().auth.as_ref().expect("an ACL lab")
}

fn acl_user<'a>(lab: &'a Lab, name: &str) -> &'a AclUser {
    auth(lab)
        .sentinel_acl_user(name)
        .unwrap_or_else(|| panic!("the sentinels define {name}"))
}

fn coordinator_credentials(lab: &Lab) -> Credentials {
    let user = acl_user(lab, acl::COORDINATOR_USER);
    Credentials::user(user.name.clone(), Secret::new(user.password.clone()))
}

fn sentinel_user_credentials(lab: &Lab) -> Credentials {
    let auth = auth(lab);
    Credentials::user(
        auth.sentinel_user.clone(),
        Secret::new(auth.sentinel_user_password.clone()),
    )
}

/// The group as the lifecycle actions see it: the coordinator user on the sentinels, the
/// `default` user on the data pods (switchover and member-leave pause, demote and reprioritise
/// data pods, which no sentinel user may).
fn target(lab: &Lab, pod: Option<SocketAddr>) -> Target {
    let mut target = Target::new(
        lab.master_name(),
        lab.sentinel_addrs().into_iter().map(addr).collect(),
        lab.data_addrs().into_iter().map(addr).collect(),
    );
    target.pod = pod.map(addr);
    target.sentinel_access = Access::plain(Some(coordinator_credentials(lab)));
    let data = Secret::new(auth(lab).default_password.clone());
    target.data_access = Access::plain(Some(Credentials::password(data)));
    target
}

fn budget() -> Budget {
    Budget::new(ACTION)
}

/// A formed 3 + 3 group with [`AuthSpec::least_privilege`].
async fn acl_lab(version: ValkeyVersion) -> Lab {
    let lab = LabSpec::new(version)
        .auth(AuthSpec::least_privilege(version))
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT)
        .await
        .expect("the group forms with the least-privilege users");
    lab
}

/// A coordinator in this process, logged in to the sentinels as the coordinator user; with
/// `heal`, healing as `serve` does, data pods by the sentinel user, `resolve-hostnames` set
/// before each registration (what a Kubernetes deployment, data pods by hostname, needs).
async fn start_coordinator(lab: &Lab, heal: bool) -> RunningService {
    let spec = lab.spec();
    let mut config = ServiceConfig::new(
        "127.0.0.1:0".parse().expect("literal"),
        lab.sentinel_addrs().into_iter().map(addr).collect(),
        vec![lab.master_name().to_owned()],
    );
    config.upstream.access.credentials = Some(coordinator_credentials(lab));
    if heal {
        let auth = auth(lab);
        config.heal = Some(HealConfig {
            explicit: ExplicitSettings {
                quorum: Some(spec.quorum as u64),
                down_after_ms: Some(spec.timings.down_after.as_millis() as u64),
                failover_timeout_ms: Some(spec.timings.failover_timeout.as_millis() as u64),
                parallel_syncs: Some(u64::from(spec.timings.parallel_syncs)),
            },
            data_user: Some(auth.sentinel_user.clone()),
            data_password: Some(Secret::new(auth.sentinel_user_password.clone())),
            resolve_hostnames: true,
            data_pods: lab.data_addrs().into_iter().map(addr).collect(),
            grace: GRACE,
            ..HealConfig::default()
        });
    }
    service::start(config).await.expect("coordinator starts")
}

/// Waits until the coordinator's verdict agrees on `master` with at least `votes` votes.
async fn wait_agreed(registry: &Arc<Registry>, lab: &Lab, master: SocketAddr, votes: usize) {
    let name = lab.master_name().to_owned();
    let master = addr(master);
    poll_until(
        format!("the coordinator to agree on {master}"),
        WAIT,
        POLL_EVERY,
        || {
            let state = registry.get(&name).expect("followed");
            let master = master.clone();
            async move {
                match state.verdict.agreement() {
                    Some(agreed) if agreed.master == master && agreed.votes >= votes => {
                        Probe::Ready(())
                    }
                    _ => Probe::Pending(state.verdict.to_string()),
                }
            }
        },
    )
    .await
    .expect("the coordinator agrees");
}

/// Heals counted with `reason` (`*`: any) and `outcome`.
fn heals(registry: &Registry, reason: &str, outcome: &str) -> u64 {
    registry
        .stats()
        .heals
        .iter()
        .filter(|entry| {
            let (counted_reason, counted_outcome) = *entry.key();
            counted_outcome == outcome && (reason == "*" || counted_reason == reason)
        })
        .map(|entry| entry.value().load(std::sync::atomic::Ordering::Relaxed))
        .sum()
}

async fn wait_heals(registry: &Registry, reason: &str, outcome: &str) {
    poll_until(
        format!("a heal counted as {reason}/{outcome}"),
        WAIT,
        POLL_EVERY,
        || {
            let counted = heals(registry, reason, outcome);
            let all: Vec<String> = registry
                .stats()
                .heals
                .iter()
                .map(|entry| format!("{:?}: {:?}", entry.key(), entry.value()))
                .collect();
            async move {
                if counted > 0 {
                    Probe::Ready(())
                } else {
                    Probe::Pending(format!("counted so far: {all:?}"))
                }
            }
        },
    )
    .await
    .expect("the heal is counted");
}

/// Waits until every link of the coordinator failed with `NOPERM` and returns one such error;
/// the verdict must not be agreed then.
async fn wait_links_refused(coordinator: &RunningService, lab: &Lab) -> String {
    let registry = &coordinator.registry;
    let error = poll_until(
        "every coordinator link to fail with NOPERM",
        WAIT,
        POLL_EVERY,
        || {
            let links = registry.links();
            async move {
                let refused: Vec<String> = links
                    .iter()
                    .filter_map(|(_, link)| link.last_error.clone())
                    .filter(|error| error.contains("NOPERM"))
                    .collect();
                if refused.len() == links.len() && !links.is_empty() {
                    Probe::Ready(refused[0].clone())
                } else {
                    Probe::Pending(format!("{links:?}"))
                }
            }
        },
    )
    .await
    .expect("the links are refused");
    let state = registry.get(lab.master_name()).expect("followed");
    assert!(
        state.verdict.agreement().is_none(),
        "a verdict without a working link: {}",
        state.verdict
    );
    error
}

// === observing the group ===

/// Waits until the group is whole again: a majority of sentinels agree on a master that
/// answers as master, every other pod replicates from it, every sentinel sees two healthy
/// replicas and two healthy peers and runs no failover. Returns the master's index.
async fn settle(lab: &Lab) -> usize {
    let agreed = lab
        .wait_sentinels_agree(WAIT, |_, _| true)
        .await
        .expect("the sentinels agree on a master");
    let master = lab.data_index(agreed.addr).expect("a lab pod");
    lab.wait_master(master, WAIT)
        .await
        .expect("the agreed master answers master");
    lab.wait_replication_up(master, WAIT)
        .await
        .expect("every other pod replicates from it");
    lab.wait_sentinels_see(lab.data_count() - 1, lab.sentinel_count() - 1, WAIT)
        .await
        .expect("every sentinel sees the whole group");
    poll_until(
        "no sentinel to run a failover",
        WAIT,
        POLL_EVERY,
        || async {
            for j in 0..lab.sentinel_count() {
                match lab.sentinel_master(j).await {
                    Ok(Some(record))
                        if record.failover_state.is_none()
                            && !record.instance.flags.contains(Flag::FailoverInProgress)
                            && !record.instance.flags.contains(Flag::SDown) => {}
                    other => return Probe::Pending(format!("sentinel-{j}: {other:?}")),
                }
            }
            Probe::Ready(())
        },
    )
    .await
    .expect("the failovers are over");
    lab.wait_sentinels_agree(WAIT, |named, _| named == agreed.addr)
        .await
        .expect("the same master is still agreed");
    master
}

/// The master every running sentinel names, when they all name one.
async fn named_master(lab: &Lab) -> Option<SocketAddr> {
    let mut named = Vec::new();
    for j in 0..lab.sentinel_count() {
        named.push(lab.sentinel_master_addr(j).await.ok()??);
    }
    named.dedup();
    (named.len() == 1).then(|| named[0])
}

async fn admin(lab: &Lab, id: PodId, args: &[&str]) -> valkey_lab::Frame {
    let mut client = lab.client(id).await.expect("admin client");
    client
        .call(args)
        .await
        .unwrap_or_else(|e| panic!("{id}: {args:?}: {e}"))
}

async fn on_every_sentinel(lab: &Lab, args: &[&str]) {
    for j in 0..lab.sentinel_count() {
        admin(lab, PodId::Sentinel(j), args).await;
    }
}

async fn set_quorum(lab: &Lab, quorum: usize) {
    let quorum = quorum.to_string();
    on_every_sentinel(
        lab,
        &["SENTINEL", "SET", lab.master_name(), "quorum", &quorum],
    )
    .await;
}

/// How many times data pod `i` ran `command` (`INFO commandstats`).
async fn command_calls(lab: &Lab, i: usize, command: &str) -> u64 {
    let reply = admin(lab, PodId::Data(i), &["INFO", "commandstats"]).await;
    let text = valkey_lab::replies::text(&reply).unwrap_or_default();
    let prefix = format!("cmdstat_{command}:calls=");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(0)
}

/// A `default`-user connection to each data pod but `master`.
async fn replica_clients(lab: &Lab, master: usize) -> Vec<(usize, Client)> {
    let mut clients = Vec::new();
    for i in (0..lab.data_count()).filter(|&i| i != master) {
        clients.push((i, lab.client(PodId::Data(i)).await.expect("replica client")));
    }
    clients
}

/// Waits until every client was closed by its server (a sentinel's `CLIENT KILL`).
async fn wait_closed(clients: &mut [(usize, Client)]) {
    let deadline = Instant::now() + WAIT;
    for (i, client) in clients.iter_mut() {
        loop {
            match client.ping().await {
                Err(LabError::ConnectionLost { .. }) => break,
                other if Instant::now() >= deadline => {
                    panic!("valkey-{i}'s client was never closed: {other:?}")
                }
                _ => tokio::time::sleep(POLL_EVERY).await,
            }
        }
    }
}

/// `+try-failover` events so far.
fn failovers_tried(events: &EventLog) -> usize {
    events
        .snapshot()
        .iter()
        .filter(|event| event.event.channel == Channel::TryFailover)
        .count()
}

// === the scenario with every permission ===

async fn least_privilege_users_run_the_group(version: ValkeyVersion) {
    let started = Instant::now();
    let mut lab = acl_lab(version).await;
    let events = EventLog::start(&lab)
        .await
        .expect("subscribe to the sentinels");
    let coordinator = start_coordinator(&lab, true).await;
    let first = lab.data_addr(0);
    wait_agreed(&coordinator.registry, &lab, first, 3).await;

    // role-probe needs only INFO of the data pods: the sentinel user is enough.
    let mut probe = target(&lab, Some(first));
    probe.data_access = Access::plain(Some(sentinel_user_credentials(&lab)));
    let line = poll_until("role-probe to prove valkey-0", WAIT, POLL_EVERY, || {
        let probe = probe.clone();
        async move {
            match role_probe::run(&probe, &budget(), None).await {
                Ok(line) => Probe::Ready(line.to_string()),
                Err(error) => Probe::Pending(error.to_string()),
            }
        }
    })
    .await
    .expect("role-probe answers");
    assert_eq!(line, "primary 0");

    // kill -9: the sentinels fail over as the sentinel user and close the clients of the pods
    // they reconfigured.
    let mut clients = replica_clients(&lab, 0).await;
    lab.kill(PodId::Data(0));
    let failed_over = lab
        .wait_sentinels_agree(WAIT, |named, epoch| named != first && epoch > 0)
        .await
        .expect("the sentinels fail over");
    wait_agreed(&coordinator.registry, &lab, failed_over.addr, 2).await;
    wait_closed(&mut clients).await;
    lab.restart_data(0, StartRole::ReplicaOf(failed_over.addr))
        .await
        .expect("valkey-0 comes back as a replica");
    let master = settle(&lab).await;
    println!(
        "{version}: kill -9 failover done at {:?}",
        started.elapsed()
    );

    // A wiped sentinel is healed by the coordinator user.
    lab.restart_sentinel(2, SentinelStart::Wiped)
        .await
        .expect("sentinel-2 restarts wiped");
    lab.wait_monitors_as_spec(2, lab.data_addr(master), WAIT, POLL_EVERY)
        .await
        .expect("the coordinator heals sentinel-2");
    wait_heals(&coordinator.registry, "unmonitored", "ok").await;
    let master = settle(&lab).await;
    wait_agreed(&coordinator.registry, &lab, lab.data_addr(master), 3).await;

    // switchover; on 9.x the old master hands over itself (FAILOVER TO, as the sentinel user).
    let handovers = command_calls(&lab, master, "failover").await;
    let line = switchover::run(
        &target(&lab, Some(lab.data_addr(master))),
        &budget(),
        None,
        None,
    )
    .await
    .expect("switchover succeeds");
    println!("{version}: {line}");
    let moved = settle(&lab).await;
    assert_ne!(moved, master, "{line}");
    let handed_over = command_calls(&lab, master, "failover").await > handovers;
    assert_eq!(handed_over, version.is_9(), "COORDINATED exactly on 9.x");

    // member-leave of the master: a failover, then every sentinel reset.
    let line = member_leave::run(&target(&lab, Some(lab.data_addr(moved))), &budget())
        .await
        .expect("member-leave of the master succeeds");
    println!("{version}: {line}");
    let left = settle(&lab).await;
    assert_ne!(left, moved, "{line}");
    wait_agreed(&coordinator.registry, &lab, lab.data_addr(left), 3).await;

    // status reads the pods' ROLE: the sentinel user is enough for it too.
    let mut asking = target(&lab, None);
    asking.data_access = Access::plain(Some(sentinel_user_credentials(&lab)));
    let status = status::run(&asking, &budget()).await;
    assert!(
        status.pods.iter().all(|pod| pod.role.is_ok()),
        "{}",
        status.table()
    );
    status
        .outcome()
        .unwrap_or_else(|e| panic!("{e}\n{}", status.table()));

    // A wrong coordinator password: one clear error naming every sentinel and WRONGPASS, and
    // nothing sent.
    let mut wrong = target(&lab, Some(lab.data_addr(left)));
    wrong.sentinel_access = Access::plain(Some(Credentials::user(
        acl::COORDINATOR_USER,
        Secret::new("not-the-coordinator-password"),
    )));
    let epoch = lab
        .sentinel_master(0)
        .await
        .expect("SENTINEL MASTER")
        .expect("monitored")
        .config_epoch;
    let tried = failovers_tried(&events);
    let error = switchover::run(&wrong, &Budget::new(Duration::from_secs(5)), None, None)
        .await
        .expect_err("a wrong password fails the switchover")
        .to_string();
    println!("{version}: switchover with a wrong password: {error}");
    assert!(error.contains("WRONGPASS"), "{error}");
    for sentinel in lab.sentinel_addrs() {
        assert!(error.contains(&sentinel.to_string()), "{sentinel}: {error}");
    }
    assert!(
        !error.contains("not-the-coordinator-password"),
        "the password leaked: {error}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(failovers_tried(&events), tried, "no failover was sent");
    let after = lab
        .wait_sentinels_agree(WAIT, |named, _| named == lab.data_addr(left))
        .await
        .expect("the master did not move");
    assert_eq!(after.config_epoch, epoch, "no failover was sent");
    let mut writer = Client::connect_with_timeout(
        lab.data_addr(left),
        lab.data_credentials().as_ref(),
        Duration::from_millis(500),
    )
    .await
    .expect("master client");
    writer
        .call(&["SET", "acl-check", "1"])
        .await
        .expect("the master was not paused");

    // What each user was refused all along: only what its list leaves out on purpose.
    let sentinel = refused_only(&lab, acl::SENTINEL_USER, sentinel_user::REFUSED).await;
    let peer = refused_only(&lab, acl::PEER_USER, peer_user::REFUSED).await;
    println!("{version}: refused all along: sentinel user {sentinel:?}, peer user {peer:?}");
    let coordinator_denials = lab
        .acl_denials_of(acl::COORDINATOR_USER)
        .await
        .expect("ACL LOG");
    assert!(
        coordinator_denials.iter().all(|(_, d)| d.reason == "auth"),
        "the coordinator user was refused {coordinator_denials:?}"
    );
    coordinator.stop().await.expect("coordinator stops");
    events.stop().await;
    println!(
        "{version}: least privilege scenario took {:?}",
        started.elapsed()
    );
}

/// Asserts that every running pod's `ACL LOG` holds no refusal of `user` but of the commands
/// in `allowed`, and returns the commands it was refused.
async fn refused_only(lab: &Lab, user: &str, allowed: &[&str]) -> Vec<String> {
    let denials = lab.acl_denials_of(user).await.expect("ACL LOG");
    let unexpected: Vec<String> = denials
        .iter()
        .filter(|(_, d)| !(d.reason == "command" && allowed.contains(&d.object.as_str())))
        .map(|(pod, d)| format!("{pod}: {d}"))
        .collect();
    assert!(unexpected.is_empty(), "{user} was refused {unexpected:?}");
    let mut seen: Vec<String> = denials.into_iter().map(|(_, d)| d.object).collect();
    seen.sort();
    seen.dedup();
    seen
}

// === taking permissions away ===

/// Which servers define a user.
#[derive(Debug, Clone, Copy)]
enum Holder {
    DataPods,
    Sentinels,
}

/// One user and its full rules, for taking one away and giving it back.
struct Removal {
    user: &'static str,
    password: String,
    rules: Vec<&'static str>,
    holder: Holder,
    version: ValkeyVersion,
    /// The refusal a check read itself, before its way back wiped the server that logged it.
    noted: std::sync::Mutex<Option<String>>,
}

impl Removal {
    fn sentinel_user(lab: &Lab) -> Self {
        Removal {
            user: acl::SENTINEL_USER,
            password: auth(lab).sentinel_user_password.clone(),
            rules: sentinel_user::rules(lab.version()),
            holder: Holder::DataPods,
            version: lab.version(),
            noted: Default::default(),
        }
    }

    fn on_sentinels(lab: &Lab, user: &'static str, rules: &[&'static str]) -> Self {
        Removal {
            user,
            password: acl_user(lab, user).password.clone(),
            rules: rules.to_vec(),
            holder: Holder::Sentinels,
            version: lab.version(),
            noted: Default::default(),
        }
    }

    async fn set(&self, lab: &Lab, rules: &[&str]) {
        let set = match self.holder {
            Holder::DataPods => {
                lab.set_data_acl_user(self.user, &self.password, rules)
                    .await
            }
            Holder::Sentinels => {
                lab.set_sentinel_acl_user(self.user, &self.password, rules)
                    .await
            }
        };
        set.unwrap_or_else(|e| panic!("ACL SETUSER {}: {e}", self.user));
    }

    /// The user with every rule but `rule`, on every server that defines it, with the `ACL
    /// LOG`s emptied first.
    async fn without(&self, lab: &Lab, rule: &str) {
        assert!(
            self.rules.contains(&rule),
            "{rule} is not a rule of {}",
            self.user
        );
        let rest: Vec<&str> = self.rules.iter().copied().filter(|r| *r != rule).collect();
        lab.reset_acl_logs().await.expect("ACL LOG RESET");
        self.set(lab, &rest).await;
    }

    /// Every rule back (idempotent).
    async fn restore(&self, lab: &Lab) {
        self.set(lab, &self.rules).await;
    }

    /// Waits until some server's `ACL LOG` records the user refused what `rule` grants, and
    /// returns that entry.
    async fn refusal(&self, lab: &Lab, rule: &str) -> String {
        let wanted = |reason: &str, object: &str| match rule.split_at(1) {
            ("+", command) => reason == "command" && object == command,
            ("&", pattern) => {
                reason == "channel"
                    && match pattern.strip_suffix('*') {
                        Some(prefix) => object.starts_with(prefix),
                        None => object == pattern,
                    }
            }
            _ => panic!("a rule this test cannot read: {rule}"),
        };
        poll_until(
            format!("ACL LOG to show {} refused {rule}", self.user),
            WAIT,
            POLL_EVERY,
            || async {
                match lab.acl_denials_of(self.user).await {
                    Ok(denials) => match denials.iter().find(|(_, d)| wanted(&d.reason, &d.object))
                    {
                        Some((pod, denial)) => Probe::Ready(format!("{pod}: {denial}")),
                        None => Probe::Pending(format!("{denials:?}")),
                    },
                    Err(e) => Probe::Pending(e.to_string()),
                }
            },
        )
        .await
        .expect("the refusal is logged")
    }

    /// Reads the refusal of `rule` now, for a check whose way back wipes the server that
    /// logged it.
    async fn note_refusal(&self, lab: &Lab, rule: &str) {
        let refusal = self.refusal(lab, rule).await;
        *self.noted.lock().expect("not poisoned") = Some(refusal);
    }

    /// Takes `rule` away, runs `check` (which says what broke, and may give the rule back
    /// itself when the order of the way back matters), checks the refusal was logged, gives
    /// the rule back and waits for the group to settle.
    async fn step<F>(&self, lab: &mut Lab, rule: &'static str, check: F)
    where
        F: AsyncFnOnce(&mut Lab, &Removal) -> String,
    {
        let started = Instant::now();
        self.without(lab, rule).await;
        let broke = check(lab, self).await;
        let noted = self.noted.lock().expect("not poisoned").take();
        let refusal = match noted {
            Some(refusal) => refusal,
            None => self.refusal(lab, rule).await,
        };
        self.restore(lab).await;
        settle(lab).await;
        println!(
            "acl {} {} without {rule}: {broke} [{refusal}] ({:.1} s)",
            self.version,
            self.user,
            started.elapsed().as_secs_f64()
        );
    }
}

/// `SENTINEL RESET` on every sentinel at once (so none hears of a peer from one not yet
/// reset), then up to [`NEVER`] for each to list two replicas and two peers again. Returns what
/// the sentinels listed at the end, and how long they took when they were complete.
async fn reset_and_rediscover(lab: &Lab) -> (Vec<(usize, usize)>, Option<Duration>) {
    let mut resets = tokio::task::JoinSet::new();
    for j in 0..lab.sentinel_count() {
        let mut client = lab
            .client(PodId::Sentinel(j))
            .await
            .expect("sentinel client");
        let name = lab.master_name().to_owned();
        resets.spawn(async move { client.call(&["SENTINEL", "RESET", &name]).await });
    }
    for reset in resets.join_all().await {
        reset.expect("SENTINEL RESET");
    }
    let started = Instant::now();
    let whole = (lab.data_count() - 1, lab.sentinel_count() - 1);
    loop {
        let mut seen = Vec::new();
        for j in 0..lab.sentinel_count() {
            let replicas = lab.sentinel_replicas(j).await.map(|r| r.len()).unwrap_or(0);
            let peers = lab
                .sentinel_sentinels(j)
                .await
                .map(|s| s.len())
                .unwrap_or(0);
            seen.push((replicas, peers));
        }
        if seen.iter().all(|s| *s == whole) {
            return (seen, Some(started.elapsed()));
        }
        if started.elapsed() >= NEVER {
            return (seen, None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every sentinel flags the master `s_down` within [`NEVER`]; returns how long that took.
async fn wait_master_flagged_down(lab: &Lab) -> Option<Duration> {
    let started = Instant::now();
    poll_until(
        "every sentinel to flag the master s_down",
        NEVER,
        POLL_EVERY,
        || async {
            for j in 0..lab.sentinel_count() {
                match lab.sentinel_master(j).await {
                    Ok(Some(record)) if record.instance.flags.contains(Flag::SDown) => {}
                    other => return Probe::Pending(format!("sentinel-{j}: {other:?}")),
                }
            }
            Probe::Ready(())
        },
    )
    .await
    .ok()
    .map(|()| started.elapsed())
}

/// Waits until no sentinel flags the master `s_down`.
async fn wait_master_up(lab: &Lab) {
    poll_until(
        "no sentinel to flag the master s_down",
        WAIT,
        POLL_EVERY,
        || async {
            for j in 0..lab.sentinel_count() {
                match lab.sentinel_master(j).await {
                    Ok(Some(record)) if !record.instance.flags.contains(Flag::SDown) => {}
                    other => return Probe::Pending(format!("sentinel-{j}: {other:?}")),
                }
            }
            Probe::Ready(())
        },
    )
    .await
    .expect("the master is up again");
}

/// Runs a script that never ends on data pod `i` (`EVAL` on a connection of its own).
fn busy_script(lab: &Lab, i: usize) -> JoinHandle<Result<valkey_lab::Frame, LabError>> {
    let pod = lab.data_addr(i);
    let credentials = lab.data_credentials();
    tokio::spawn(async move {
        let mut client =
            Client::connect_with_timeout(pod, credentials.as_ref(), Duration::from_secs(60))
                .await?;
        client
            .call(&["EVAL", "local n = 0 while true do n = n + 1 end", "0"])
            .await
    })
}

// === the sentinel user on the data pods ===

/// The permissions the monitoring scenario takes away; the rest are the failover scenario's.
const MONITORING: &[&str] = &[
    sentinel_user::HELLO_CHANNEL,
    sentinel_user::SUBSCRIBE,
    sentinel_user::PUBLISH,
    sentinel_user::INFO,
    sentinel_user::PING,
    sentinel_user::SCRIPT_KILL,
    sentinel_user::ROLE,
];

fn failover_permissions(version: ValkeyVersion) -> Vec<&'static str> {
    sentinel_user::rules(version)
        .into_iter()
        .filter(|rule| !MONITORING.contains(rule))
        .collect()
}

async fn without_each_sentinel_user_permission_monitoring_breaks(version: ValkeyVersion) {
    let mut lab = acl_lab(version).await;
    let removal = Removal::sentinel_user(&lab);
    for &rule in MONITORING {
        let check = async |lab: &mut Lab, removal: &Removal| match rule {
            sentinel_user::HELLO_CHANNEL | sentinel_user::SUBSCRIBE | sentinel_user::PUBLISH => {
                peers_are_not_rediscovered(lab).await
            }
            sentinel_user::INFO => replicas_are_not_rediscovered(lab).await,
            sentinel_user::PING => the_live_master_is_flagged_down(lab, removal).await,
            sentinel_user::SCRIPT_KILL => a_runaway_script_runs_on(lab, removal).await,
            sentinel_user::ROLE => the_role_watch_is_blind(lab, removal).await,
            other => panic!("no check for {other}"),
        };
        removal.step(&mut lab, rule, check).await;
    }
}

/// Without the hello channel, `SUBSCRIBE` or `PUBLISH`: reset sentinels never find each other.
async fn peers_are_not_rediscovered(lab: &mut Lab) -> String {
    let (seen, whole) = reset_and_rediscover(lab).await;
    assert_eq!(whole, None, "rediscovered anyway: {seen:?}");
    let peers: Vec<usize> = seen.iter().map(|(_, peers)| *peers).collect();
    assert!(
        peers.iter().any(|&p| p < lab.sentinel_count() - 1),
        "{seen:?}"
    );
    format!("after SENTINEL RESET the sentinels list {peers:?} peers {NEVER:?} later")
}

/// Without `INFO`: reset sentinels list no replica.
async fn replicas_are_not_rediscovered(lab: &mut Lab) -> String {
    let (seen, whole) = reset_and_rediscover(lab).await;
    assert_eq!(whole, None, "rediscovered anyway: {seen:?}");
    let replicas: Vec<usize> = seen.iter().map(|(replicas, _)| *replicas).collect();
    assert!(replicas.iter().all(|&r| r == 0), "{seen:?}");
    format!("after SENTINEL RESET the sentinels list {replicas:?} replicas {NEVER:?} later")
}

/// Without `PING`: every sentinel flags the healthy master `s_down` (with a quorum no one
/// reaches meanwhile, so nothing fails over while every pod looks down).
async fn the_live_master_is_flagged_down(lab: &mut Lab, removal: &Removal) -> String {
    set_quorum(lab, lab.sentinel_count() + 1).await;
    let took = wait_master_flagged_down(lab).await;
    removal.restore(lab).await;
    wait_master_up(lab).await;
    set_quorum(lab, lab.spec().quorum).await;
    let took = took.expect("the live master is flagged s_down");
    format!("every sentinel flags the live master s_down after {took:.1?}")
}

/// Without `SCRIPT KILL`: a script that never ends keeps the master busy; with it the sentinels
/// kill it once the master is `s_down` (quorum out of reach meanwhile, as above).
async fn a_runaway_script_runs_on(lab: &mut Lab, removal: &Removal) -> String {
    let master = named_master(lab).await.expect("a master is named");
    let i = lab.data_index(master).expect("a lab pod");
    let id = PodId::Data(i);
    set_quorum(lab, lab.sentinel_count() + 1).await;
    admin(lab, id, &["CONFIG", "SET", "busy-reply-threshold", "100"]).await;
    let script = busy_script(lab, i);
    tokio::time::sleep(NEVER).await;
    assert!(
        !script.is_finished(),
        "the script ended: {:?}",
        script.await
    );
    admin(lab, id, &["SCRIPT", "KILL"]).await;
    let _ = script.await;
    // With the permission the sentinels kill it themselves. A sentinel sends SCRIPT KILL once
    // per s_down: wait until that one is over.
    removal.restore(lab).await;
    wait_master_up(lab).await;
    let started = Instant::now();
    let ended = tokio::time::timeout(WAIT, busy_script(lab, i))
        .await
        .expect("the sentinels kill the script")
        .expect("joined");
    let killed_after = started.elapsed();
    assert!(
        matches!(&ended, Err(LabError::Server { message, .. }) if message.contains("SCRIPT KILL")),
        "{ended:?}"
    );
    admin(lab, id, &["CONFIG", "SET", "busy-reply-threshold", "5000"]).await;
    wait_master_up(lab).await;
    set_quorum(lab, lab.spec().quorum).await;
    format!(
        "a runaway script keeps the master busy for {NEVER:?} and more \
         (with it, the sentinels kill it after {killed_after:.1?})"
    )
}

/// Without `ROLE`: the coordinator's role watch reads every data pod as unreachable.
async fn the_role_watch_is_blind(lab: &mut Lab, removal: &Removal) -> String {
    let coordinator = start_coordinator(lab, true).await;
    let registry = &coordinator.registry;
    wait_roles(registry, |roles| {
        roles.iter().all(|role| *role == ObservedRole::Unreachable)
    })
    .await;
    removal.restore(lab).await;
    wait_roles(registry, |roles| {
        let count = |wanted| roles.iter().filter(|role| **role == wanted).count();
        count(ObservedRole::Master) == 1 && count(ObservedRole::Replica) == 2
    })
    .await;
    coordinator.stop().await.expect("coordinator stops");
    "the coordinator's role watch (valkey_coordinator_data_pod_role) reads every pod as \
     unreachable"
        .to_owned()
}

/// Waits until the coordinator has a role for every data pod and `accept` takes them.
async fn wait_roles(registry: &Registry, accept: impl Fn(&[ObservedRole]) -> bool) {
    let accept = &accept;
    poll_until("the coordinator's role watch", WAIT, POLL_EVERY, || {
        let roles: Vec<ObservedRole> = registry.pod_roles().into_iter().map(|(_, r)| r).collect();
        async move {
            if roles.len() == 3 && accept(&roles) {
                Probe::Ready(())
            } else {
                Probe::Pending(format!("{roles:?}"))
            }
        }
    })
    .await
    .expect("the role watch reads the pods");
}

async fn without_each_sentinel_user_permission_failover_breaks(version: ValkeyVersion) {
    let mut lab = acl_lab(version).await;
    let events = EventLog::start(&lab)
        .await
        .expect("subscribe to the sentinels");
    let removal = Removal::sentinel_user(&lab);
    for rule in failover_permissions(version) {
        let events = &events;
        let check = async |lab: &mut Lab, _: &Removal| match rule {
            sentinel_user::SLAVEOF => no_replica_is_promoted(lab, events).await,
            sentinel_user::CLIENT_KILL => clients_stay_on_reconfigured_pods(lab).await,
            sentinel_user::FAILOVER => a_coordinated_switchover_fails(lab).await,
            sentinel_user::CLIENT_PAUSE => writes_are_refused_readonly(lab).await,
            sentinel_user::CLIENT_UNPAUSE => the_old_master_stays_paused(lab).await,
            other => panic!("no check for {other}"),
        };
        removal.step(&mut lab, rule, check).await;
    }
    if version.is_9() {
        // With every permission, a coordinated switchover refuses no write and leaves no pause.
        let master = settle(&lab).await;
        let (readonly, line) = switchover_with_writer(&lab, lab.data_addr(master)).await;
        assert_eq!(readonly, 0, "a write was refused READONLY ({line})");
        let pause = paused(&lab, master).await;
        assert!(pause == "none", "the old master is still paused: {pause}");
        println!("acl {version}: with every permission, no write refused and no pause left");
    }
    events.stop().await;
}

/// Without `SLAVEOF`: a failover is aborted, the master stays.
async fn no_replica_is_promoted(lab: &mut Lab, events: &EventLog) -> String {
    let master = named_master(lab).await.expect("a master is named");
    let started = Instant::now();
    admin(
        lab,
        PodId::Sentinel(0),
        &["SENTINEL", "FAILOVER", lab.master_name()],
    )
    .await;
    events
        .wait_any(Channel::FailoverAbortSlaveTimeout, |_| true, WAIT)
        .await
        .expect("the failover is aborted");
    let aborted = started.elapsed();
    assert_eq!(named_master(lab).await, Some(master), "the master moved");
    format!("a failover is aborted after {aborted:.1?} (-failover-abort-slave-timeout)")
}

/// Without `CLIENT KILL`: a failover completes, but the clients of the pods it reconfigured
/// stay connected to them.
async fn clients_stay_on_reconfigured_pods(lab: &mut Lab) -> String {
    let master = named_master(lab).await.expect("a master is named");
    let i = lab.data_index(master).expect("a lab pod");
    let mut clients = replica_clients(lab, i).await;
    admin(
        lab,
        PodId::Sentinel(0),
        &["SENTINEL", "FAILOVER", lab.master_name()],
    )
    .await;
    let moved = lab
        .wait_sentinels_agree(WAIT, |named, _| named != master)
        .await
        .expect("the failover completes");
    let promoted = lab.data_index(moved.addr).expect("a lab pod");
    lab.wait_replication_up(promoted, WAIT)
        .await
        .expect("every pod follows the new master");
    for (j, client) in &mut clients {
        if let Err(error) = client.ping().await {
            panic!("valkey-{j}'s client was closed: {error}");
        }
    }
    "a failover completes, but the clients of both replicas stay connected through their \
     change of role"
        .to_owned()
}

/// Valkey 9, without `FAILOVER`: the old master never hands over, the switchover fails.
async fn a_coordinated_switchover_fails(lab: &mut Lab) -> String {
    let master = named_master(lab).await.expect("a master is named");
    let error = switchover::run(&target(lab, Some(master)), &budget(), None, None)
        .await
        .expect_err("the switchover fails")
        .to_string();
    assert_eq!(named_master(lab).await, Some(master), "the master moved");
    format!("switchover fails: {error}")
}

/// Valkey 9, without `CLIENT PAUSE`: between the old master's hand-over and the sentinels'
/// `CLIENT KILL` its writers are refused `READONLY` instead of being held.
async fn writes_are_refused_readonly(lab: &mut Lab) -> String {
    let master = named_master(lab).await.expect("a master is named");
    let (readonly, line) = switchover_with_writer(lab, master).await;
    assert!(readonly > 0, "no write was refused READONLY ({line})");
    format!("switchover succeeds, but {readonly} writes to the old master are refused READONLY")
}

/// Valkey 9, without `CLIENT UNPAUSE`: the old master still blocks writes after the switchover,
/// until its pause times out.
async fn the_old_master_stays_paused(lab: &mut Lab) -> String {
    let master = named_master(lab).await.expect("a master is named");
    let i = lab.data_index(master).expect("a lab pod");
    let line = switchover::run(&target(lab, Some(master)), &budget(), None, None)
        .await
        .expect("the switchover succeeds");
    let pause = paused(lab, i).await;
    assert!(pause.starts_with("write"), "{pause} ({line})");
    admin(lab, PodId::Data(i), &["CLIENT", "UNPAUSE"]).await;
    format!("switchover succeeds, but the old master stays paused ({pause})")
}

/// Data pod `i`'s pause as `INFO clients` says it: `none`, or `write, <ms> ms left`.
async fn paused(lab: &Lab, i: usize) -> String {
    let reply = admin(lab, PodId::Data(i), &["INFO", "clients"]).await;
    let text = valkey_lab::replies::text(&reply).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|value| value.trim().to_owned())
            .unwrap_or_default()
    };
    match field("paused_actions:").as_str() {
        "none" => "none".to_owned(),
        actions => format!(
            "{actions}, {} ms left",
            field("paused_timeout_milliseconds:")
        ),
    }
}

/// A `switchover` while a writer on one connection to the old master writes, until that
/// connection is closed; returns how many writes were refused `READONLY`, and the
/// switchover's line.
async fn switchover_with_writer(lab: &Lab, master: SocketAddr) -> (usize, String) {
    let mut client = Client::connect_with_timeout(master, lab.data_credentials().as_ref(), WAIT)
        .await
        .expect("client of the master");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut readonly = 0;
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                match client.call(&["SET", "acl-writer", &n.to_string()]).await {
                    Ok(_) => {}
                    Err(LabError::Server { message, .. }) if message.starts_with("READONLY") => {
                        readonly += 1
                    }
                    // Closed (a CLIENT KILL) or timed out: the old master is no place to write.
                    Err(_) => break,
                }
                // About a thousand writes a second: enough to see a window of a few hundred
                // milliseconds, not enough to starve a sentinel on a loaded machine.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            readonly
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let line = switchover::run(&target(lab, Some(master)), &budget(), None, None)
        .await
        .expect("the switchover succeeds");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let readonly = writing.await.expect("the writer joins");
    (readonly, line)
}

// === the coordinator user on the sentinels ===

/// The order the coordinator's permissions are taken away in: `REMOVE` first, while every
/// sentinel is at epoch 0 (a wrong master at a lower epoch is corrected by gossip, not by the
/// healer), `RESET` last (member-leave moves the master before it resets).
const COORDINATOR_ORDER: &[&str] = &[
    coordinator_user::REMOVE,
    coordinator_user::MASTER,
    coordinator_user::GET_MASTER_ADDR,
    coordinator_user::REPLICAS,
    coordinator_user::SUBSCRIBE,
    coordinator_user::PLUS_CHANNELS,
    coordinator_user::MINUS_CHANNELS,
    coordinator_user::CONFIG,
    coordinator_user::MONITOR,
    coordinator_user::SET,
    coordinator_user::FAILOVER,
    coordinator_user::INFO,
    coordinator_user::RESET,
];

async fn without_each_coordinator_user_permission_the_coordinator_breaks(version: ValkeyVersion) {
    let mut lab = acl_lab(version).await;
    let removal = Removal::on_sentinels(&lab, acl::COORDINATOR_USER, coordinator_user::RULES);
    for &rule in COORDINATOR_ORDER {
        let check = async |lab: &mut Lab, removal: &Removal| match rule {
            coordinator_user::MASTER
            | coordinator_user::GET_MASTER_ADDR
            | coordinator_user::REPLICAS => nothing_polls(lab).await,
            coordinator_user::SUBSCRIBE
            | coordinator_user::PLUS_CHANNELS
            | coordinator_user::MINUS_CHANNELS => no_link_subscribes(lab).await,
            coordinator_user::REMOVE => a_wrong_master_stays(lab, removal).await,
            coordinator_user::CONFIG | coordinator_user::MONITOR | coordinator_user::SET => {
                a_wiped_sentinel_stays_unhealed(lab, removal, rule).await
            }
            coordinator_user::FAILOVER | coordinator_user::INFO => {
                a_switchover_fails_before_any_change(lab).await
            }
            coordinator_user::RESET => member_leave_fails_at_the_reset(lab).await,
            other => panic!("no check for {other}"),
        };
        removal.step(&mut lab, rule, check).await;
    }
}

/// Without `SENTINEL MASTER`, `GET-MASTER-ADDR-BY-NAME` or `REPLICAS`: every action's survey and
/// every coordinator link fail their poll, so nothing reaches a verdict.
async fn nothing_polls(lab: &mut Lab) -> String {
    let survey = knowledge::survey(&target(lab, None), &budget()).await;
    let refused: Vec<String> = survey
        .answers
        .iter()
        .filter_map(|(_, answer)| match answer {
            Answer::Failed(error) if error.to_string().contains("NOPERM") => {
                Some(error.to_string())
            }
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), lab.sentinel_count(), "{survey:?}");
    let coordinator = start_coordinator(lab, false).await;
    let link = wait_links_refused(&coordinator, lab).await;
    coordinator.stop().await.expect("coordinator stops");
    assert!(link.contains("NOPERM"), "{link}");
    format!(
        "no verdict: the actions' surveys and the links fail the poll ({})",
        refused[0]
    )
}

/// Without `SUBSCRIBE` or an event channel: the coordinator's links fail at `SUBSCRIBE`, so the
/// service has no verdict; the actions, which only poll, still agree.
async fn no_link_subscribes(lab: &mut Lab) -> String {
    let coordinator = start_coordinator(lab, false).await;
    let link = wait_links_refused(&coordinator, lab).await;
    coordinator.stop().await.expect("coordinator stops");
    let target = target(lab, None);
    let survey = knowledge::survey(&target, &budget()).await;
    assert!(
        survey.verdict(&target.aliases).agreement().is_some(),
        "the actions' survey should still agree: {survey:?}"
    );
    format!("the service has no verdict, every link fails ({link}); the actions still agree")
}

/// Without `SENTINEL REMOVE`: the healer cannot correct a sentinel that monitors a replica as
/// the master at the same epoch; with it, it does.
async fn a_wrong_master_stays(lab: &mut Lab, removal: &Removal) -> String {
    let master = named_master(lab).await.expect("a master is named");
    let wrong = lab
        .data_addrs()
        .into_iter()
        .find(|&pod| pod != master)
        .expect("a replica");
    let name = lab.master_name().to_owned();
    admin(lab, PodId::Sentinel(2), &["SENTINEL", "REMOVE", &name]).await;
    lab.monitor(2, wrong).await.expect("a wrong monitor");
    let coordinator = start_coordinator(lab, true).await;
    wait_heals(&coordinator.registry, "wrong_master", "failed").await;
    let named = lab.sentinel_master_addr(2).await.expect("GET-MASTER-ADDR");
    assert_eq!(named, Some(wrong), "corrected without SENTINEL REMOVE");
    removal.restore(lab).await;
    wait_heals(&coordinator.registry, "wrong_master", "ok").await;
    lab.wait_monitors_as_spec(2, master, WAIT, POLL_EVERY)
        .await
        .expect("corrected with it");
    coordinator.stop().await.expect("coordinator stops");
    format!("the healer cannot correct sentinel-2, which names {wrong}; with it, it does")
}

/// Without `SENTINEL CONFIG`, `MONITOR` or `SET`: the healer fails to register a wiped sentinel.
async fn a_wiped_sentinel_stays_unhealed(lab: &mut Lab, removal: &Removal, rule: &str) -> String {
    let master = named_master(lab).await.expect("a master is named");
    lab.restart_sentinel(2, SentinelStart::Wiped)
        .await
        .expect("sentinel-2 restarts wiped");
    // A fresh sentinel has the user as its config defines it: take the rule away there too.
    removal.without(lab, rule).await;
    let coordinator = start_coordinator(lab, true).await;
    // Counted as `unmonitored` (H2), or as `data_plane` (H6) when the healer's first look finds
    // sentinel-2 unmonitored before it has heard from a second monitoring sentinel.
    wait_heals(&coordinator.registry, "*", "failed").await;
    // Nothing half-done: a registration whose `SET` is refused removes the monitor it added
    // (a monitor without `auth-pass` would never be completed), so sentinel-2 monitors nothing
    // and the next heal registers it afresh.
    let record = lab.sentinel_master(2).await.expect("SENTINEL MASTER");
    assert!(
        record.is_none(),
        "sentinel-2 is left half-registered: {record:?}"
    );
    coordinator.stop().await.expect("coordinator stops");
    removal.note_refusal(lab, rule).await;
    removal.restore(lab).await;
    let coordinator = start_coordinator(lab, true).await;
    lab.wait_monitors_as_spec(2, master, WAIT, POLL_EVERY)
        .await
        .expect("healed with it");
    coordinator.stop().await.expect("coordinator stops");
    "the healer fails to register a wiped sentinel, which is left monitoring nothing".to_owned()
}

/// Without `SENTINEL FAILOVER`, or `INFO` (is the chosen sentinel in TILT?): `switchover` fails
/// naming `NOPERM` before it changed anything (the old master was never paused).
async fn a_switchover_fails_before_any_change(lab: &mut Lab) -> String {
    let master = named_master(lab).await.expect("a master is named");
    let i = lab.data_index(master).expect("a lab pod");
    let pauses = command_calls(lab, i, "client|pause").await;
    let error = switchover::run(&target(lab, Some(master)), &budget(), None, None)
        .await
        .expect_err("the switchover fails")
        .to_string();
    assert!(error.contains("NOPERM"), "{error}");
    assert_eq!(named_master(lab).await, Some(master), "the master moved");
    let paused = command_calls(lab, i, "client|pause").await;
    assert_eq!(paused, pauses, "the master was paused");
    format!("switchover fails before any change: {error}")
}

/// Without `SENTINEL RESET`: `member-leave` of the master fails naming `NOPERM` before its
/// failover, since the reset that must follow it would be refused: the master stays.
async fn member_leave_fails_at_the_reset(lab: &mut Lab) -> String {
    let master = named_master(lab).await.expect("a master is named");
    let error = member_leave::run(&target(lab, Some(master)), &budget())
        .await
        .expect_err("member-leave fails")
        .to_string();
    assert!(error.contains("NOPERM"), "{error}");
    assert_eq!(
        named_master(lab).await,
        Some(master),
        "no failover was started"
    );
    format!("member-leave of the master fails before any failover: {error}")
}

// === the peer user on the sentinels ===

const PEER_ORDER: &[&str] = &[
    peer_user::PING,
    peer_user::IS_MASTER_DOWN,
    peer_user::PUBLISH,
    peer_user::HELLO_CHANNEL,
];

async fn without_each_peer_user_permission_the_sentinels_break(version: ValkeyVersion) {
    let mut lab = acl_lab(version).await;
    let removal = Removal::on_sentinels(&lab, acl::PEER_USER, peer_user::RULES);
    for &rule in PEER_ORDER {
        let check = async |lab: &mut Lab, removal: &Removal| match rule {
            peer_user::PING => peers_are_flagged_down(lab).await,
            peer_user::IS_MASTER_DOWN => a_stopped_master_is_never_o_down(lab).await,
            peer_user::PUBLISH | peer_user::HELLO_CHANNEL => {
                a_deaf_sentinel_misses_the_failover(lab, removal).await
            }
            other => panic!("no check for {other}"),
        };
        removal.step(&mut lab, rule, check).await;
    }
}

/// Without `PING`: the sentinels flag each other `s_down`.
async fn peers_are_flagged_down(lab: &mut Lab) -> String {
    let started = Instant::now();
    poll_until(
        "every sentinel to flag its peers s_down",
        NEVER,
        POLL_EVERY,
        || async {
            for j in 0..lab.sentinel_count() {
                match lab.sentinel_sentinels(j).await {
                    Ok(peers)
                        if peers.len() == lab.sentinel_count() - 1
                            && peers.iter().all(|p| p.instance.flags.contains(Flag::SDown)) => {}
                    other => return Probe::Pending(format!("sentinel-{j}: {other:?}")),
                }
            }
            Probe::Ready(())
        },
    )
    .await
    .expect("the sentinels flag each other down");
    format!(
        "every sentinel flags its peers s_down after {:.1?}",
        started.elapsed()
    )
}

/// Without `SENTINEL IS-MASTER-DOWN-BY-ADDR`: a stopped master is `s_down` everywhere but never
/// `o_down`, so it is never failed over.
async fn a_stopped_master_is_never_o_down(lab: &mut Lab) -> String {
    let master = named_master(lab).await.expect("a master is named");
    let i = lab.data_index(master).expect("a lab pod");
    lab.pause(PodId::Data(i)).expect("SIGSTOP the master");
    let flagged = wait_master_flagged_down(lab).await;
    tokio::time::sleep(NEVER).await;
    let mut odown = Vec::new();
    for j in 0..lab.sentinel_count() {
        let record = lab.sentinel_master(j).await.expect("SENTINEL MASTER");
        odown.push(record.is_some_and(|r| r.instance.flags.contains(Flag::ODown)));
    }
    let named = named_master(lab).await;
    lab.resume(PodId::Data(i)).expect("SIGCONT the master");
    wait_master_up(lab).await;
    assert!(flagged.is_some(), "the stopped master is never s_down");
    assert!(odown.iter().all(|o| !o), "o_down anyway: {odown:?}");
    assert_eq!(named, Some(master), "failed over anyway");
    format!("a stopped master is s_down but not o_down {NEVER:?} later: no failover")
}

/// Without `PUBLISH` or the hello channel: a sentinel that cannot log in to the data pods (a
/// wrong `auth-pass` here) hears of a failover only from its peers' hello messages, so it keeps
/// naming the old master; with them it learns at once.
async fn a_deaf_sentinel_misses_the_failover(lab: &mut Lab, removal: &Removal) -> String {
    let master = named_master(lab).await.expect("a master is named");
    let name = lab.master_name().to_owned();
    let real = auth(lab).sentinel_user_password.clone();
    let lab = &*lab;
    let set_auth_pass = async |password: &str| {
        let args = ["SENTINEL", "SET", &name, "auth-pass", password];
        admin(lab, PodId::Sentinel(2), &args).await;
    };
    set_auth_pass("not-the-password").await;
    admin(lab, PodId::Sentinel(0), &["SENTINEL", "FAILOVER", &name]).await;
    let moved = poll_until(
        "sentinels 0 and 1 to fail over",
        WAIT,
        POLL_EVERY,
        || async {
            let a = lab.sentinel_master_addr(0).await.ok().flatten();
            let b = lab.sentinel_master_addr(1).await.ok().flatten();
            match (a, b) {
                (Some(a), Some(b)) if a == b && a != master => Probe::Ready(a),
                other => Probe::Pending(format!("{other:?}")),
            }
        },
    )
    .await
    .expect("the failover completes");
    tokio::time::sleep(NEVER).await;
    let deaf = lab.sentinel_master_addr(2).await.expect("GET-MASTER-ADDR");
    removal.restore(lab).await;
    let started = Instant::now();
    poll_until(
        "sentinel-2 to learn the new master from its peers",
        WAIT,
        POLL_EVERY,
        || async {
            match lab.sentinel_master_addr(2).await {
                Ok(Some(named)) if named == moved => Probe::Ready(()),
                other => Probe::Pending(format!("{other:?}")),
            }
        },
    )
    .await
    .expect("learned with the permission");
    let learned = started.elapsed();
    set_auth_pass(&real).await;
    assert_eq!(
        deaf,
        Some(master),
        "sentinel-2 learned of the failover anyway"
    );
    format!(
        "a sentinel that cannot reach the data pods still names the old master {NEVER:?} after \
         a failover (with it, it learns from its peers in {learned:.1?})"
    )
}

#[test]
fn every_permission_has_a_removal_check() {
    let sorted = |mut rules: Vec<&'static str>| {
        rules.sort_unstable();
        rules
    };
    for version in ValkeyVersion::ALL {
        let mut checked = MONITORING.to_vec();
        checked.extend(failover_permissions(version));
        assert_eq!(
            sorted(checked),
            sorted(sentinel_user::rules(version)),
            "{version}"
        );
    }
    assert_eq!(
        sorted(COORDINATOR_ORDER.to_vec()),
        sorted(coordinator_user::RULES.to_vec())
    );
    assert_eq!(
        sorted(PEER_ORDER.to_vec()),
        sorted(peer_user::RULES.to_vec())
    );
}
