//! The fault runner: one seed's [`Schedule`] applied to a lab on namespaces, with the
//! coordinator (the binary, `serve`, in a member of its own), a writer through the coordinator
//! and one straight through the sentinels, and the 10 Hz samplers; then the invariants.
//!
//! Each step is applied, held, healed, and followed by a wait until the group has *settled*
//! (one master that every sentinel monitors and names, every replica linked to it, the
//! coordinator naming it) within [`SETTLE`]: steps never overlap, and nothing waits on a
//! wall-clock coincidence.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs,
    net::SocketAddr,
    process::Command,
    time::Duration,
};

use tokio::time::Instant;
use valkey_coordinator::{
    addr::Addr,
    lifecycle::{Budget, Target, member_leave, role_probe, switchover},
};
use valkey_lab::{
    Client, Lab, LabSpec, PodId, RoleSampler, SentinelStart, StartRole, Transport, ValkeyVersion,
    WriteLog, WriteTarget, Writer,
    client::DEFAULT_TIMEOUT,
    faults::{Action, Answer, NetFault, Role, Sampler, Schedule, Window, check},
    netns::{Fault, Member, Rate},
    sentinel_protocol::{
        role::{LinkState, Role as ValkeyRole},
        sentinel::Flag,
    },
    wait::{Probe, poll_until},
};

/// The bound, after the last heal of a step, within which the group must have settled (stated
/// in the README).
pub const SETTLE: Duration = Duration::from_secs(30);
/// The budget of a planned switchover.
const SWITCHOVER_BUDGET: Duration = Duration::from_secs(30);
/// How long the lab has to form, and the coordinator to name the first master.
const START: Duration = Duration::from_secs(20);
/// `role-probe`'s budget per sample: a paused sentinel costs a probe its whole budget.
const PROBE_BUDGET: Duration = Duration::from_millis(1500);
/// One write every this often, per writer.
const WRITE_EVERY: Duration = Duration::from_millis(10);
const COORDINATOR: &str = "coordinator";
const COORDINATOR_PORT: u16 = 26379;

fn addr(socket: SocketAddr) -> Addr {
    Addr::from(socket)
}

/// A lab on namespaces with a coordinator in spare member 0: what schedules run on. A soak
/// keeps one for many schedules.
pub struct Bench {
    pub lab: Lab,
    pub coordinator: SocketAddr,
    /// The run's clock: every sample and window is since this instant.
    started: Instant,
    /// Coordinator restarts the runner made, and delays of its own link: excused from the
    /// deadline check.
    restarts: Vec<Window>,
}

impl Bench {
    /// Starts the lab (3 data pods, 3 sentinels of `version`, the lab's short timings) and the
    /// coordinator, and waits until the coordinator names pod 0.
    pub async fn start(version: ValkeyVersion) -> Bench {
        let lab = LabSpec::new(version)
            .netns(true)
            .start()
            .await
            .expect("the lab starts");
        lab.wait_formed(START).await.expect("the group forms");
        let coordinator = lab.member_addr(lab.spare_member(0), COORDINATOR_PORT);
        let mut bench = Bench {
            lab,
            coordinator,
            started: Instant::now(),
            restarts: Vec::new(),
        };
        bench.start_coordinator().await;
        bench
    }

    fn since(&self) -> Duration {
        self.started.elapsed()
    }

    async fn start_coordinator(&mut self) {
        let lab = &self.lab;
        let timings = &lab.spec().timings;
        let mut command = Command::new(valkey_lab::coordinator_binary());
        command
            .args(["--log-format", "json", "serve", "--master-name"])
            .arg(lab.master_name())
            .arg("--listen")
            .arg(self.coordinator.to_string())
            .arg("--down-after-ms")
            .arg(timings.down_after.as_millis().to_string())
            .arg("--failover-timeout-ms")
            .arg(timings.failover_timeout.as_millis().to_string())
            .arg("--parallel-syncs")
            .arg(timings.parallel_syncs.to_string())
            .arg("--quorum")
            .arg(lab.spec().quorum.to_string());
        for sentinel in lab.sentinel_addrs() {
            command.arg("--sentinel").arg(sentinel.to_string());
        }
        for pod in lab.data_addrs() {
            command.arg("--data-pod").arg(pod.to_string());
        }
        let member = lab.spare_member(0);
        self.lab
            .spawn_aux_in(member, COORDINATOR, command)
            .await
            .expect("the coordinator starts");
        let coordinator = self.coordinator;
        let name = self.lab.master_name().to_string();
        poll_until(
            "the coordinator to name a master",
            START,
            Duration::from_millis(50),
            || {
                let name = name.clone();
                async move {
                    match coordinator_master(coordinator, &name).await {
                        Ok(Some(master)) => Probe::Ready(master),
                        Ok(None) => Probe::Pending("no master yet".into()),
                        Err(e) => Probe::Pending(e),
                    }
                }
            },
        )
        .await
        .expect("the coordinator names a master");
    }

    /// The coordinator's pid, fd count and RSS (kB), from `/proc`.
    pub fn coordinator_usage(&self) -> Option<(u32, usize, u64)> {
        let pid = self.lab.aux_pid(COORDINATOR)?;
        let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
        Some((pid, fds, rss))
    }

    fn target(&self) -> Target {
        Target::new(
            self.lab.master_name(),
            self.lab.sentinel_addrs().into_iter().map(addr).collect(),
            self.lab.data_addrs().into_iter().map(addr).collect(),
        )
    }
}

/// The coordinator's `GET-MASTER-ADDR-BY-NAME`, once.
async fn coordinator_master(at: SocketAddr, name: &str) -> Result<Option<SocketAddr>, String> {
    let mut client = Client::connect_over(at, &Transport::Plain, None, DEFAULT_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let frame = client
        .call(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name])
        .await
        .map_err(|e| e.to_string())?;
    use valkey_lab::sentinel_protocol::sentinel::{Value, master_addr};
    match master_addr(&Value::from(&frame)) {
        Ok(Some((ip, port))) => Ok(format!("{ip}:{port}").parse().ok()),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("{e:?}")),
    }
}

/// What one schedule did and found.
#[derive(Debug, Default)]
pub struct Outcome {
    pub seed: u64,
    pub schedule: String,
    pub violations: Vec<String>,
    /// Acknowledged, and missing from the final master: through the coordinator.
    pub coordinator_acked: usize,
    pub coordinator_lost: usize,
    /// The same for the client that asks the sentinels.
    pub sentinel_acked: usize,
    pub sentinel_lost: usize,
    /// Acknowledged writes lost across planned steps: coordinator writer, sentinel writer.
    pub planned_lost: (usize, usize),
    /// Moments two pods said `role:master` in ROLE (not a violation: see the README).
    pub raw_dual_masters: usize,
    /// Samples that came back long after their own timeout: the harness was starved.
    pub harness_stalls: usize,
    /// How long each step took to settle after its heal.
    pub settled_in: Vec<Duration>,
    pub kinds: Vec<&'static str>,
    pub elapsed: Duration,
    /// Timelines, for a failing seed.
    pub evidence: String,
}

impl Outcome {
    /// One line for the seeds' table.
    pub fn line(&self) -> String {
        let settle = self
            .settled_in
            .iter()
            .map(|d| format!("{:.1}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join("/");
        format!(
            "seed {:>4}: {} | lost acked writes: coordinator {}/{}, sentinels {}/{}, planned {}/{} \
             | raw ROLE dual masters {} | harness stalls {} | settled in {settle} s | {:.1} s | {}",
            self.seed,
            if self.violations.is_empty() {
                "ok  "
            } else {
                "FAIL"
            },
            self.coordinator_lost,
            self.coordinator_acked,
            self.sentinel_lost,
            self.sentinel_acked,
            self.planned_lost.0,
            self.planned_lost.1,
            self.raw_dual_masters,
            self.harness_stalls,
            self.elapsed.as_secs_f64(),
            self.kinds.join(",")
        )
    }
}

/// Runs `seed` on a fresh bench of `version` and checks it. On a violation the lab is marked
/// failed (its report printed and its directory kept when the bench is dropped) and the
/// outcome carries the evidence.
pub async fn run_seed(version: ValkeyVersion, seed: u64) -> (Outcome, Bench) {
    let mut bench = Bench::start(version).await;
    let schedule = Schedule::from_seed(seed).on(version);
    let outcome = run_schedule(&mut bench, &schedule).await;
    if !outcome.violations.is_empty() {
        bench.lab.mark_failed();
    }
    (outcome, bench)
}

/// The running observers of one schedule.
struct Observers {
    coordinator: Sampler,
    sentinels: Sampler,
    probes: Sampler,
    roles: RoleSampler,
    via_coordinator: Writer,
    via_sentinels: Writer,
}

impl Observers {
    fn start(bench: &Bench) -> Observers {
        let lab = &bench.lab;
        let name = lab.master_name().to_string();
        let target = bench.target();
        let probes = Sampler::rounds(bench.started, move || {
            let target = target.clone();
            async move {
                let asks = target.data_pods.iter().enumerate().map(|(i, pod)| {
                    let mut target = target.clone();
                    target.pod = Some(pod.clone());
                    tokio::spawn(async move {
                        let budget = Budget::new(PROBE_BUDGET);
                        let probe = role_probe::run(&target, &budget, None);
                        let answer = match tokio::time::timeout(PROBE_BUDGET * 2, probe).await {
                            Ok(Ok(role_probe::Probe::Primary(epoch))) => Answer::Primary(epoch),
                            Ok(Ok(role_probe::Probe::Secondary(_))) => Answer::Secondary,
                            Ok(Err(_)) => Answer::NoProof,
                            Err(_) => Answer::TimedOut,
                        };
                        (i, answer)
                    })
                });
                let tasks: Vec<_> = asks.collect();
                let mut answers = Vec::new();
                for task in tasks {
                    if let Ok(answer) = task.await {
                        answers.push(answer);
                    }
                }
                answers
            }
        });
        let writer = |sentinels: Vec<SocketAddr>, prefix: &str| {
            let target = WriteTarget::SentinelMaster {
                sentinels,
                credentials: None,
                name: name.clone(),
            };
            Writer::start_with(target, None, Some(WRITE_EVERY), prefix)
        };
        Observers {
            coordinator: Sampler::master_addr(vec![bench.coordinator], &name, bench.started),
            sentinels: Sampler::master_addr(lab.sentinel_addrs(), &name, bench.started),
            probes,
            roles: RoleSampler::start_on(
                lab.data_addrs(),
                Transport::Plain,
                None,
                Duration::from_millis(100),
            ),
            via_coordinator: writer(
                vec![bench.coordinator],
                &format!("c{}", bench.since().as_millis()),
            ),
            via_sentinels: writer(
                lab.sentinel_addrs(),
                &format!("s{}", bench.since().as_millis()),
            ),
        }
    }
}

/// Applies `schedule` to `bench` and checks every invariant.
pub async fn run_schedule(bench: &mut Bench, schedule: &Schedule) -> Outcome {
    let began = Instant::now();
    let from = bench.since();
    let mut outcome = Outcome {
        seed: schedule.seed,
        schedule: schedule.to_string(),
        kinds: schedule.steps.iter().map(|s| s.action.kind()).collect(),
        ..Outcome::default()
    };
    let mut timeline = String::new();
    let observers = Observers::start(bench);
    let mut master = match settle(bench).await {
        Ok((master, _)) => master,
        Err(e) => {
            outcome
                .violations
                .push(format!("not settled before the first step: {e}"));
            0
        }
    };
    for (k, step) in schedule.steps.iter().enumerate() {
        if !outcome.violations.is_empty() {
            break;
        }
        let _ = writeln!(
            timeline,
            "  {:>8.3}s step {}: {} (master valkey-{master})",
            bench.since().as_secs_f64(),
            k + 1,
            step.action
        );
        // What each writer had lost before a planned step: the step may add nothing to it.
        let lost_before = if step.action.is_planned() {
            let coordinator = lost(bench, &observers.via_coordinator.log(), master).await;
            let sentinels = lost(bench, &observers.via_sentinels.log(), master).await;
            match (coordinator, sentinels) {
                (Ok(coordinator), Ok(sentinels)) => Some((coordinator, sentinels)),
                (Err(e), _) | (_, Err(e)) => {
                    outcome.violations.push(format!("step {}: {e}", k + 1));
                    break;
                }
            }
        } else {
            None
        };
        if let Err(e) = apply(bench, master, step.action.clone(), step.hold_ms).await {
            outcome.violations.push(format!("step {}: {e}", k + 1));
            break;
        }
        let _ = writeln!(timeline, "  {:>8.3}s healed", bench.since().as_secs_f64());
        match settle(bench).await {
            Ok((now, took)) => {
                let _ = writeln!(
                    timeline,
                    "  {:>8.3}s settled on valkey-{now} in {:.1} s",
                    bench.since().as_secs_f64(),
                    took.as_secs_f64()
                );
                master = now;
                outcome.settled_in.push(took);
            }
            Err(e) => {
                outcome.violations.push(format!(
                    "step {}: not settled within {SETTLE:?}: {e}",
                    k + 1
                ));
                break;
            }
        }
        if let Some((coordinator_before, sentinels_before)) = lost_before {
            let after = (
                lost(bench, &observers.via_coordinator.log(), master).await,
                lost(bench, &observers.via_sentinels.log(), master).await,
            );
            let (coordinator_after, sentinels_after) = match after {
                (Ok(coordinator), Ok(sentinels)) => (coordinator, sentinels),
                (Err(e), _) | (_, Err(e)) => {
                    outcome.violations.push(format!("step {}: {e}", k + 1));
                    break;
                }
            };
            let planned: Vec<&String> = coordinator_after.difference(&coordinator_before).collect();
            outcome.planned_lost.0 += planned.len();
            outcome.planned_lost.1 += sentinels_after.difference(&sentinels_before).count();
            if !planned.is_empty() {
                outcome.violations.push(format!(
                    "step {} ({}) lost {} acknowledged writes of the coordinator's client, \
                     e.g. {:?}",
                    k + 1,
                    step.action,
                    planned.len(),
                    planned.iter().take(5).collect::<Vec<_>>()
                ));
            }
        }
    }

    // The writers stop once the group has settled after the last step; then the loss counts.
    let coordinator_log = observers.via_coordinator.stop().await;
    let sentinel_log = observers.via_sentinels.stop().await;
    let coordinator_samples = observers.coordinator.stop().await;
    let sentinel_samples = observers.sentinels.stop().await;
    let probe_samples = observers.probes.stop().await;
    let roles = observers.roles.stop().await;
    outcome.coordinator_acked = coordinator_log.acked.len();
    outcome.sentinel_acked = sentinel_log.acked.len();
    match (
        lost(bench, &coordinator_log, master).await,
        lost(bench, &sentinel_log, master).await,
    ) {
        (Ok(coordinator), Ok(sentinels)) => {
            outcome.coordinator_lost = coordinator.len();
            outcome.sentinel_lost = sentinels.len();
        }
        (Err(e), _) | (_, Err(e)) => outcome.violations.push(e),
    }
    outcome.raw_dual_masters = roles.dual_masters().len();

    let restarts: Vec<Window> = bench
        .restarts
        .iter()
        .filter(|w| w.to >= from)
        .cloned()
        .collect();
    let data = bench.lab.data_addrs();
    outcome.violations.extend(check::overlapping_primaries(
        &probe_samples,
        &coordinator_samples,
        &data,
    ));
    outcome
        .violations
        .extend(check::coordinator_without_majority(
            &coordinator_samples,
            &sentinel_samples,
            bench.lab.sentinel_count(),
        ));
    outcome
        .violations
        .extend(check::coordinator_deadline(&coordinator_samples, &restarts));
    outcome.violations.extend(crashes(bench));
    let stalls = check::harness_stalls(&coordinator_samples).len()
        + check::harness_stalls(&sentinel_samples).len();
    outcome.harness_stalls = stalls;
    outcome.elapsed = began.elapsed();

    let mut evidence = String::new();
    let _ = writeln!(evidence, "steps:\n{timeline}");
    let _ = writeln!(
        evidence,
        "coordinator answers (changes):\n{}",
        check::changes(&coordinator_samples)
    );
    let _ = writeln!(
        evidence,
        "sentinel answers (changes; source = sentinel):\n{}",
        check::changes(&sentinel_samples)
    );
    let _ = writeln!(
        evidence,
        "role-probe (changes; source = pod):\n{}",
        check::changes(&probe_samples)
    );
    let _ = writeln!(evidence, "ROLE (changes):\n{}", roles.changes());
    let _ = writeln!(evidence, "lab directory: {}", bench.lab.dir().display());
    outcome.evidence = evidence;
    outcome
}

/// The acknowledged keys of `log` that data pod `i` does not hold (or holds another value of).
async fn lost(bench: &Bench, log: &WriteLog, i: usize) -> Result<BTreeSet<String>, String> {
    let report = log
        .check_lost(bench.lab.data_addr(i), None)
        .await
        .map_err(|e| format!("reading the acknowledged writes back from valkey-{i}: {e}"))?;
    let wrong = report.wrong.into_iter().map(|(key, ..)| key);
    Ok(report.missing.into_iter().chain(wrong).collect())
}

/// Every process the runner did not stop is alive (not exited, not a zombie).
fn crashes(bench: &Bench) -> Vec<String> {
    let lab = &bench.lab;
    let pods = (0..lab.data_count())
        .map(PodId::Data)
        .chain((0..lab.sentinel_count()).map(PodId::Sentinel));
    let mut found = Vec::new();
    let mut check = |name: String, pid: Option<u32>| match pid {
        None => found.push(format!("{name} is not running")),
        Some(pid) => {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            if matches!(state, None | Some("Z") | Some("X")) {
                found.push(format!("{name} (pid {pid}) has exited: {stat:?}"));
            }
        }
    };
    for id in pods {
        check(id.to_string(), lab.pid(id));
    }
    check(COORDINATOR.to_string(), lab.aux_pid(COORDINATOR));
    if let Some(log) = lab.aux_log(COORDINATOR)
        && let Ok(text) = fs::read_to_string(log)
        && text.contains("panicked")
    {
        found.push(format!("the coordinator panicked: see {}", log.display()));
    }
    found
}

/// The data pod a role names, with `master` the agreed master's index.
fn resolve(bench: &Bench, master: usize, role: Role) -> PodId {
    match role {
        Role::Master => PodId::Data(master),
        Role::Replica(k) => {
            let replicas: Vec<usize> = (0..bench.lab.data_count())
                .filter(|&i| i != master)
                .collect();
            PodId::Data(replicas[k % replicas.len()])
        }
        Role::Sentinel(j) => PodId::Sentinel(j),
        Role::Coordinator => unreachable!("the coordinator is no pod: see `member`"),
    }
}

/// The member a role lives in: a pod's, or the coordinator's own.
fn member(bench: &Bench, master: usize, role: Role) -> Member {
    match role {
        Role::Coordinator => bench.lab.spare_member(0),
        pod => bench.lab.member(resolve(bench, master, pod)),
    }
}

fn members(bench: &Bench, master: usize, roles: &[Role]) -> Vec<Member> {
    roles.iter().map(|&r| member(bench, master, r)).collect()
}

/// The network fault a [`NetFault`] is now. The coordinator's member joins side `b` of a
/// partition; a black-holed sentinel is cut from every other member, the coordinator included.
fn fault(bench: &Bench, master: usize, net: &NetFault) -> Fault {
    let lab = &bench.lab;
    match net {
        NetFault::Partition { a, b } => {
            let mut b = members(bench, master, b);
            b.push(lab.spare_member(0));
            Fault::partition(&members(bench, master, a), &b)
        }
        NetFault::OneWay { from, to } => {
            Fault::partition_one_way(&members(bench, master, from), &members(bench, master, to))
        }
        NetFault::SentinelBlackHole(j) => {
            let me = lab.member(PodId::Sentinel(*j));
            let net = lab.network().expect("a lab on namespaces");
            let rest: Vec<Member> = net.members().into_iter().filter(|m| *m != me).collect();
            Fault::partition(&[me], &rest)
        }
        NetFault::Lossy(role, percent) => Fault::lossy(member(bench, master, *role), *percent),
        NetFault::Slow(role, kbit) => Fault::slow(member(bench, master, *role), Rate::kbit(*kbit)),
        NetFault::Delay {
            role,
            ms,
            jitter_ms,
        } => Fault::delay(
            member(bench, master, *role),
            Duration::from_millis(*ms),
            Duration::from_millis(*jitter_ms),
        ),
    }
}

/// Applies one step, holds it and heals it.
async fn apply(
    bench: &mut Bench,
    master: usize,
    action: Action,
    hold_ms: u64,
) -> Result<(), String> {
    let hold = Duration::from_millis(hold_ms);
    let e = |e: valkey_lab::LabError| e.to_string();
    match action {
        Action::Kill(role) => {
            let PodId::Data(i) = resolve(bench, master, role) else {
                unreachable!("kills name data pods")
            };
            let old = bench.lab.data_addr(i);
            bench.lab.kill(PodId::Data(i));
            tokio::time::sleep(hold).await;
            let agreed = if i == master {
                bench
                    .lab
                    .wait_sentinels_agree(SETTLE, |addr, _| addr != old)
                    .await
                    .map_err(|e| format!("no failover after kill -9 of the master: {e}"))?
                    .addr
            } else {
                bench.lab.data_addr(master)
            };
            bench
                .lab
                .restart_data(i, StartRole::ReplicaOf(agreed))
                .await
                .map_err(e)
        }
        Action::KillSentinel(j) => {
            bench.lab.kill(PodId::Sentinel(j));
            tokio::time::sleep(hold).await;
            bench
                .lab
                .start_sentinel(j, SentinelStart::KeepConfig)
                .await
                .map_err(e)
        }
        Action::Pause(role) => {
            let id = resolve(bench, master, role);
            bench.lab.pause(id).map_err(e)?;
            tokio::time::sleep(hold).await;
            bench.lab.resume(id).map_err(e)
        }
        Action::WipeSentinel(j) => bench
            .lab
            .restart_sentinel(j, SentinelStart::Wiped)
            .await
            .map_err(e),
        Action::RestartCoordinator => {
            let from = bench.since();
            bench.lab.kill_aux(COORDINATOR);
            tokio::time::sleep(hold).await;
            bench.start_coordinator().await;
            let to = bench.since() + Duration::from_millis(500);
            bench.restarts.push(Window { from, to });
            Ok(())
        }
        Action::Net(net) => {
            let fault = fault(bench, master, &net);
            let from = bench.since();
            bench.lab.apply_fault(&fault).map_err(e)?;
            tokio::time::sleep(hold).await;
            bench.lab.undo_fault(&fault).map_err(e)?;
            // The coordinator's own replies held in the network are late by the delay, not by
            // anything it does: excused from the deadline, as its restarts are.
            if let NetFault::Delay {
                role: Role::Coordinator,
                ms,
                jitter_ms,
            } = net
            {
                let to = bench.since() + Duration::from_millis(2 * (ms + jitter_ms));
                bench.restarts.push(Window { from, to });
            }
            Ok(())
        }
        Action::Switchover => {
            let budget = Budget::new(SWITCHOVER_BUDGET);
            switchover::run(&bench.target(), &budget, None, None)
                .await
                .map(drop)
                .map_err(|e| format!("the planned switchover failed: {e}"))
        }
        Action::MemberLeave => {
            let old = bench.lab.data_addr(master);
            let mut target = bench.target();
            target.pod = Some(addr(old));
            member_leave::run(&target, &Budget::new(SWITCHOVER_BUDGET))
                .await
                .map_err(|e| format!("the planned member-leave failed: {e}"))?;
            let agreed = bench
                .lab
                .wait_sentinels_agree(SETTLE, |addr, _| addr != old)
                .await
                .map_err(|e| format!("no new master after member-leave: {e}"))?;
            // The pod is deleted (scale-in) and created again (scale-out) on its volume.
            bench
                .lab
                .restart_data(master, StartRole::ReplicaOf(agreed.addr))
                .await
                .map_err(e)
        }
    }
}

/// Waits until the group has settled: every sentinel monitors and names one master `M`, with
/// every option the group runs with, and knows every other data pod as its replica and every
/// other sentinel, `M` says `role:master`, every other data pod is a linked replica of `M`,
/// and the coordinator names `M`. Returns `M`'s index and how long it took.
async fn settle(bench: &Bench) -> Result<(usize, Duration), String> {
    let began = Instant::now();
    let lab = &bench.lab;
    let coordinator = bench.coordinator;
    poll_until(
        "the group to settle",
        SETTLE,
        Duration::from_millis(100),
        || async move {
            match settled(lab, coordinator).await {
                Ok(master) => Probe::Ready(master),
                Err(seen) => Probe::Pending(seen),
            }
        },
    )
    .await
    .map(|master| (master, began.elapsed()))
    .map_err(|e| e.to_string())
}

async fn settled(lab: &Lab, coordinator: SocketAddr) -> Result<usize, String> {
    let mut named = BTreeMap::new();
    for j in 0..lab.sentinel_count() {
        let addr = lab
            .sentinel_master_addr(j)
            .await
            .map_err(|e| format!("sentinel-{j}: {e}"))?;
        let Some(addr) = addr else {
            return Err(format!("sentinel-{j} monitors nothing"));
        };
        named.insert(j, addr);
    }
    let first = named[&0];
    if named.values().any(|a| *a != first) {
        return Err(format!("sentinels disagree: {named:?}"));
    }
    // Named is not enough: a sentinel whose link to the master is still reconnecting (a SYN
    // retried with backoff after a one-way cut) keeps its down timer running, and its own
    // failover would start during the next step. Settled means every sentinel has heard the
    // master's PONG within half of down-after and flags nothing down or failing over.
    let down_after = lab.spec().timings.down_after.as_millis() as i64;
    for j in 0..lab.sentinel_count() {
        let record = lab
            .sentinel_master(j)
            .await
            .map_err(|e| format!("sentinel-{j}: {e}"))?
            .ok_or_else(|| format!("sentinel-{j} monitors nothing"))?;
        let flags = &record.instance.flags;
        if [
            Flag::SDown,
            Flag::ODown,
            Flag::FailoverInProgress,
            Flag::Disconnected,
        ]
        .iter()
        .any(|f| flags.contains(*f))
        {
            return Err(format!("sentinel-{j} flags the master {flags:?}"));
        }
        let pong = record.instance.last_ok_ping_reply;
        if pong > down_after / 2 {
            return Err(format!(
                "sentinel-{j} last heard the master's PONG {pong} ms ago"
            ));
        }
        // Monitoring with every option the group runs with: what a wiped sentinel gets back
        // only from the healer.
        let spec = lab.spec();
        let options = (
            record.quorum,
            record.instance.down_after_milliseconds,
            record.failover_timeout,
            record.parallel_syncs,
        );
        let wanted = (
            spec.quorum as u64,
            down_after,
            spec.timings.failover_timeout.as_millis() as i64,
            i64::from(spec.timings.parallel_syncs),
        );
        if options != wanted {
            return Err(format!(
                "sentinel-{j} monitors with (quorum, down-after, failover-timeout, \
                 parallel-syncs) {options:?}, not {wanted:?}"
            ));
        }
    }
    let master = lab
        .data_index(first)
        .ok_or_else(|| format!("sentinels name {first}, not a data pod"))?;
    match lab.role(PodId::Data(master)).await {
        Ok(ValkeyRole::Master { .. }) => {}
        other => return Err(format!("valkey-{master} (agreed) is {other:?}")),
    }
    for i in (0..lab.data_count()).filter(|&i| i != master) {
        match lab.role(PodId::Data(i)).await {
            Ok(ValkeyRole::Slave {
                master_ip,
                master_port,
                state: LinkState::Connected,
                ..
            }) if master_ip.parse() == Ok(first.ip()) && master_port == first.port() => {}
            other => {
                return Err(format!(
                    "valkey-{i} is {other:?}, not a linked replica of {first}"
                ));
            }
        }
    }
    // A sentinel that does not know the replicas or its peers cannot fail over: monitoring
    // counts once it knows them all again (after a wipe, or the reset of a member-leave).
    for j in 0..lab.sentinel_count() {
        let record = lab
            .sentinel_master(j)
            .await
            .map_err(|e| format!("sentinel-{j}: {e}"))?;
        let peers = record.map_or(0, |r| r.num_other_sentinels);
        if peers + 1 < lab.sentinel_count() as u64 {
            return Err(format!("sentinel-{j} knows {peers} other sentinels"));
        }
        let replicas = lab
            .sentinel_replicas(j)
            .await
            .map_err(|e| format!("sentinel-{j}: {e}"))?;
        let known = |addr: SocketAddr| {
            replicas
                .iter()
                .any(|r| r.instance.ip.parse() == Ok(addr.ip()) && r.instance.port == addr.port())
        };
        if let Some(unknown) = lab
            .data_addrs()
            .into_iter()
            .find(|a| *a != first && !known(*a))
        {
            return Err(format!("sentinel-{j} does not know the replica {unknown}"));
        }
        // A replica a sentinel flags down or disconnected is one it would not promote: a
        // planned step right after would be refused `NOGOODSLAVE`.
        if let Some(down) = replicas.iter().find(|r| {
            r.instance.flags.contains(Flag::SDown) || r.instance.flags.contains(Flag::Disconnected)
        }) {
            return Err(format!(
                "sentinel-{j} flags the replica {}:{} {:?}",
                down.instance.ip, down.instance.port, down.instance.flags
            ));
        }
    }
    match coordinator_master(coordinator, lab.master_name()).await {
        Ok(Some(addr)) if addr == first => Ok(master),
        other => Err(format!("the coordinator answers {other:?}, not {first}")),
    }
}

/// Kept for a failing seed's message.
pub fn report(outcome: &Outcome) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", outcome.schedule);
    let _ = writeln!(out, "{}", outcome.line());
    let _ = writeln!(out, "violations:");
    for v in &outcome.violations {
        let _ = writeln!(out, "  - {v}");
    }
    out.push_str(&outcome.evidence);
    out
}
