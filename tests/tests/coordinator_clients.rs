//! The client matrix: unmodified sentinel-aware clients, each in its own language, with the
//! coordinator as their only sentinel, against a real 3 data + 3 sentinel lab: each writes (and
//! reads back) through the master it discovers, the master is killed with kill -9 and the client
//! must follow to the new master and write again; then a planned switchover, which it must follow
//! the same way. The same client pointed at a real sentinel runs beside it, and both times are
//! printed (`client matrix:` lines; the README's table is made of them).
//!
//! The coordinator runs in the test's process through `service::start`, the same path the binary
//! takes. The drivers in `tests/clients/` (Python, Node, Java, Go) come from
//! `tests/install-clients.sh` (run by `tests/run.sh`), take one sentinel address and print one
//! JSON object per line; redis-rs runs in the test itself. The five first clients run on every
//! Valkey version; the rows added with the Java and Go clients and node-redis on one version each,
//! rotating, to keep the suite short.
//!
//! TLS only, on every TLS-capable build: redis-py, ioredis and redis-rs share one TLS lab, whose
//! pods listen with TLS only and require client certificates, and one coordinator with a
//! certificate of the lab's CA for 127.0.0.1, which requires client certificates too and speaks
//! TLS to the sentinels and the data pods. Each client is given the coordinator, the lab's CA and
//! the lab's client certificate, reaches the data pods with the same, reads its writes back and
//! follows the kill -9 and the switchover; a plaintext `PING` on the coordinator's port gets no
//! reply.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::time::Instant;
use valkey_coordinator::addr::Addr;
use valkey_coordinator::lifecycle::{Budget, Target, switchover};
use valkey_coordinator::sentinel::conn::Access;
use valkey_coordinator::service::registry::NameState;
use valkey_coordinator::service::{self, RunningService, ServiceConfig};
use valkey_coordinator::tls::{
    ClientAuth, ClientFiles, ClientTls, KeyPair, ServerFiles, ServerTls,
};
use valkey_lab::{Lab, LabSpec, PodId, SentinelStart, TlsFiles, ValkeyVersion};

/// Budget for any single wait; scenarios finish far sooner.
const WAIT: Duration = Duration::from_secs(20);

fn deps() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.deps")
}

fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// A lab with a coordinator on top that already agrees with the sentinels.
struct Stack {
    lab: Lab,
    coordinator: RunningService,
    /// In a TLS stack: what its clients present, and how the test's own actions reach the pods.
    tls: Option<StackTls>,
}

/// The TLS side of a stack: a TLS-only lab, and a coordinator that serves TLS on its client port
/// (client certificates of the lab's CA required) and speaks TLS to the sentinels and data pods,
/// presenting its own certificate (issued for 127.0.0.1, where it listens) both ways.
struct StackTls {
    /// The lab's client volume: the CA and the certificate every client of the test presents.
    client: TlsFiles,
    /// The coordinator's way to the pods, for the switchover action too.
    access: Access,
}

impl StackTls {
    /// Issues the coordinator's certificate and puts TLS on every link of `config`.
    fn configure(lab: &mut Lab, config: &mut ServiceConfig) -> Self {
        let own = lab
            .tls_mut()
            .expect("a TLS lab")
            .issue("coordinator", &[IpAddr::V4(Ipv4Addr::LOCALHOST)])
            .expect("a coordinator certificate");
        let identity = KeyPair {
            cert: own.cert.clone(),
            key: own.key.clone(),
        };
        config.listen_tls = Some(
            ServerTls::load(ServerFiles {
                identity: identity.clone(),
                ca: Some(own.ca.clone()),
                auth: ClientAuth::Required,
            })
            .expect("the coordinator's server TLS loads"),
        );
        let client_tls = ClientTls::load(ClientFiles {
            ca: own.ca.clone(),
            identity: Some(identity),
            server_name: None,
        })
        .expect("the coordinator's client TLS loads");
        let access = Access {
            credentials: None,
            tls: Some(client_tls),
        };
        config.upstream.access = access.clone();
        config.server.master_access = access.clone();
        Self {
            client: lab.tls_client().expect("a TLS lab").clone(),
            access,
        }
    }
}

impl Stack {
    async fn start() -> Self {
        Self::on(ValkeyVersion::V9_1_2).await
    }

    async fn on(version: ValkeyVersion) -> Self {
        Self::start_on(LabSpec::new(version)).await
    }

    /// A TLS-only stack (see [`StackTls`]) on one of [`ValkeyVersion::TLS`].
    async fn tls_on(version: ValkeyVersion) -> Self {
        Self::start_on(LabSpec::new(version).tls(true)).await
    }

    async fn start_on(spec: LabSpec) -> Self {
        let mut lab = spec.start().await.expect("lab starts");
        lab.wait_formed(WAIT).await.expect("lab forms");
        let sentinels: Vec<Addr> = lab
            .sentinel_addrs()
            .into_iter()
            .map(|socket| socket.to_string().parse().expect("a lab address"))
            .collect();
        let mut config = ServiceConfig::new(
            "127.0.0.1:0".parse().expect("literal"),
            sentinels,
            vec![lab.master_name().to_owned()],
        );
        let tls = lab
            .is_tls()
            .then(|| StackTls::configure(&mut lab, &mut config));
        let coordinator = service::start(config).await.expect("coordinator starts");
        let stack = Self {
            lab,
            coordinator,
            tls,
        };
        stack
            .wait_verdict("any agreement", |s| s.verdict.agreement().is_some())
            .await;
        stack
    }

    fn endpoint(&self) -> String {
        self.coordinator.listen_addr.to_string()
    }

    /// How the test's own actions reach the sentinels and data pods.
    fn access(&self) -> Access {
        self.tls
            .as_ref()
            .map_or_else(Access::default, |tls| tls.access.clone())
    }

    /// `row`'s driver with `sentinel` as its only sentinel; in a TLS stack given the lab's CA and
    /// client certificate, and told to read each write that opens a master back (flags the
    /// Python and Node `sentinel_client` drivers take).
    fn driver(&self, row: &Row, sentinel: &str) -> Command {
        let mut command = (row.command)(sentinel);
        if let Some(tls) = &self.tls {
            let files = &tls.client;
            command
                .arg("--tls-ca")
                .arg(&files.ca)
                .arg("--tls-cert")
                .arg(&files.cert)
                .arg("--tls-key")
                .arg(&files.key)
                .arg("--read-back");
        }
        command
    }

    /// A client's name in the `client matrix:` lines: the row's, marked when over TLS.
    fn label(&self, name: &str) -> String {
        match self.tls {
            Some(_) => format!("{name} over TLS"),
            None => name.to_owned(),
        }
    }

    /// Waits until the coordinator publishes a state `accept` takes.
    async fn wait_verdict(&self, what: &str, accept: impl Fn(&NameState) -> bool) -> String {
        let registry = &self.coordinator.registry;
        let mut watcher = registry
            .watch(self.lab.master_name())
            .expect("configured name");
        let deadline = Instant::now() + WAIT;
        loop {
            let state = std::sync::Arc::clone(&watcher.borrow_and_update());
            if accept(&state) {
                return state.verdict.to_string();
            }
            if tokio::time::timeout_at(deadline, watcher.changed())
                .await
                .is_err()
            {
                panic!(
                    "timed out waiting for {what}; last verdict: {}",
                    state.verdict
                );
            }
        }
    }

    fn agreed_master(&self) -> Option<String> {
        self.coordinator
            .registry
            .get(self.lab.master_name())
            .and_then(|s| s.verdict.agreement().map(|a| a.master.to_string()))
    }

    /// How many times the coordinator served `command` (lower case, `sentinel|sub` form).
    fn served(&self, command: &str) -> u64 {
        self.coordinator
            .registry
            .stats()
            .commands
            .get(command)
            .map_or(0, |count| count.load(std::sync::atomic::Ordering::Relaxed))
    }

    async fn stop(mut self) {
        let commands: Vec<(&str, u64)> = self
            .coordinator
            .registry
            .stats()
            .commands
            .iter()
            .map(|e| {
                (
                    *e.key(),
                    e.value().load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect();
        eprintln!("commands served: {commands:?}");
        self.coordinator.stop().await.expect("coordinator stops");
        self.lab.stop_all().await.expect("lab stops");
    }
}

/// A client driver process and its JSON-lines output, each line stamped when it arrived (a
/// background task reads them, so a line's time is right even when the test reads it later).
struct Driver {
    name: String,
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<(Instant, String)>,
    seen: Vec<String>,
    /// When the line `wait_event` last returned arrived.
    last_at: Instant,
}

impl Driver {
    fn spawn(name: &str, mut command: Command) -> Self {
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn().unwrap_or_else(|error| {
            panic!("{name}: cannot start the driver ({error}); run tests/install-clients.sh")
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if sender.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Self {
            name: name.to_owned(),
            child,
            lines,
            seen: Vec::new(),
            last_at: Instant::now(),
        }
    }

    fn python(lib: &str, endpoint: &str, mode: &str) -> Self {
        let python = deps().join("py/bin/python");
        let mut command = Command::new(python);
        command
            .arg(clients_dir().join("sentinel_client.py"))
            .args(["--lib", lib, "--sentinel", endpoint, "--name", "mymaster"])
            .args(["--mode", mode, "--seconds", "60"]);
        Self::spawn(lib, command)
    }

    /// The next line whose `event` is `event` and that `accept` takes; every line is kept for
    /// failure messages.
    async fn wait_event(&mut self, event: &str, accept: impl Fn(&str) -> bool) -> String {
        match self.try_wait_event(event, accept, WAIT).await {
            Ok(line) => line,
            Err(why) => panic!("{}: {why}; output: {:#?}", self.name, self.seen),
        }
    }

    /// As `wait_event`, but a driver that exits or stays silent for `within` is an `Err`
    /// saying so rather than a panic.
    async fn try_wait_event(
        &mut self,
        event: &str,
        accept: impl Fn(&str) -> bool,
        within: Duration,
    ) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let (at, line) = match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(stamped)) => stamped,
                Ok(None) => return Err(format!("driver exited before `{event}`")),
                Err(_) => return Err(format!("no `{event}` within {within:?}")),
            };
            self.seen.push(line.clone());
            if field(&line, "event").as_deref() == Some(event) && accept(&line) {
                self.last_at = at;
                return Ok(line);
            }
        }
    }

    async fn kill(mut self) {
        eprintln!("{} driver output: {:#?}", self.name, self.seen);
        let _ = self.child.kill().await;
    }
}

/// A string or number field of a flat JSON object, as the drivers print them (with or without a
/// space after the colon).
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = line[start..].trim_start();
    if let Some(quoted) = rest.strip_prefix('"') {
        quoted.find('"').map(|end| quoted[..end].to_owned())
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(rest[..end].trim().to_owned())
    }
}

/// How long a client may take from the kill -9 of its master to its first write on the new one
/// (down-after-milliseconds 2000, the election and the client's own reaction; measured runs take
/// 3 to 7.5 s).
const FAILOVER_BOUND: Duration = Duration::from_secs(15);
/// How long a client may take from the switchover action's start to its first write on the new
/// master. The action demotes the old master before its pause ends, so even clients that learn
/// of a change only from the master itself (redis-py, valkey-py, ioredis, iovalkey: a
/// `READONLY` error) move at once; the bound leaves room for the 10 s the sentinels may take to
/// see the replicas eligible again right after the kill -9 failover.
const SWITCHOVER_BOUND: Duration = Duration::from_secs(18);
/// The switchover action's budget.
const SWITCHOVER_BUDGET: Duration = Duration::from_secs(25);

/// One client of the matrix: a library, in its own language, speaking one protocol to its
/// sentinel, started as a driver program given one sentinel address.
struct Row {
    /// `library protocol`, as the README's matrix names it.
    name: &'static str,
    /// Whether the client greets the sentinel with `HELLO` (`HELLO 3` for RESP3; go-redis and
    /// node-redis send `HELLO 2` on RESP2 too), which the coordinator must then have served,
    /// and never otherwise.
    hello: bool,
    /// The driver's command line, given the address of its only sentinel.
    command: fn(&str) -> Command,
}

fn python_driver(lib: &str, sentinel: &str) -> Command {
    let mut command = Command::new(deps().join("py/bin/python"));
    command
        .arg(clients_dir().join("sentinel_client.py"))
        .args(["--lib", lib, "--sentinel", sentinel, "--name", "mymaster"])
        .args(["--mode", "writer", "--seconds", "60"]);
    command
}

fn node_driver(script: &str, args: &[&str]) -> Command {
    let mut command = Command::new("node");
    command
        .env("NODE_PATH", deps().join("node/node_modules"))
        .arg(clients_dir().join(script))
        .args(args);
    command
}

/// A Java driver compiled by `tests/install-clients.sh` into `.deps/java/<client>`; a client
/// JVM kept small (one core's worth of compiler and collector) for a shared machine.
fn java_driver(client: &str, class: &str, sentinel: &str, extra: &[&str]) -> Command {
    let home = deps().join("java").join(client);
    let classpath = format!(
        "{}:{}/*",
        home.join("classes").display(),
        home.join("lib").display()
    );
    let mut command = Command::new("java");
    command
        .args(["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx128m"])
        .args(["-cp", &classpath, class, sentinel, "mymaster", "60"])
        .args(extra);
    command
}

/// The Go driver (`tests/clients/go`), built into `.deps/go-bin`.
fn go_driver(lib: &str, sentinel: &str, protocol: &str) -> Command {
    let mut command = Command::new(deps().join("go-bin/sentinel-client"));
    command.args([lib, sentinel, "mymaster", "60", protocol]);
    command
}

/// Moves the master with the coordinator's `switchover` action, as a Switchover OpsRequest
/// does, once the coordinator sees no failover running; returns when it was asked (the action
/// itself returns once the new master is the only one).
async fn switch_over(stack: &Stack) -> Instant {
    stack
        .wait_verdict("no failover running", |s| {
            s.verdict
                .agreement()
                .is_some_and(|a| !a.failover_in_progress)
        })
        .await;
    let lab = &stack.lab;
    // Right after a failover the sentinels see the remaining replica as eligible again only
    // after their next INFO of it; until then a failover has nobody to promote.
    let master = stack.agreed_master().unwrap_or_default();
    valkey_lab::wait::poll_until(
        "every sentinel to see an eligible replica",
        WAIT,
        valkey_lab::wait::POLL_EVERY,
        || async {
            for j in 0..lab.sentinel_count() {
                let replicas = lab.sentinel_replicas(j).await.unwrap_or_default();
                let eligible = replicas.iter().any(|replica| {
                    replica.master_link_status == "ok"
                        && format!("{}:{}", replica.master_host, replica.master_port) == master
                        && !valkey_lab::replies::flags_down(&replica.instance.flags)
                });
                if !eligible {
                    return valkey_lab::wait::Probe::Pending(format!("sentinel {j}: {replicas:?}"));
                }
            }
            valkey_lab::wait::Probe::Ready(())
        },
    )
    .await
    .expect("an eligible replica");
    let mut target = Target::new(
        lab.master_name(),
        lab.sentinel_addrs().into_iter().map(Addr::from).collect(),
        lab.data_addrs().into_iter().map(Addr::from).collect(),
    );
    target.pod = stack
        .agreed_master()
        .map(|master| master.parse().expect("an address"));
    target.sentinel_access = stack.access();
    target.data_access = stack.access();
    let asked_at = Instant::now();
    let moved = switchover::run(&target, &Budget::new(SWITCHOVER_BUDGET), None, None).await;
    if let Err(error) = moved {
        panic!("the switchover action failed: {error}");
    }
    asked_at
}

/// Error kinds a client may meet in a planned switchover and retry: the old master refusing
/// writes once demoted, or its connection closing. Anything else would reach the application.
fn retryable(kind: &str) -> bool {
    let kind = kind.to_ascii_lowercase();
    [
        "readonly",
        "read only",
        "connection",
        "closed",
        "reset",
        "broken pipe",
        "eof",
        "timeout",
        "timed out",
        "deadline exceeded",
        "refused",
        "unblocked",
        "loading",
        "socket",
        "disconnect",
        "unavailable",
        "reconnect",
    ]
    .iter()
    .any(|retryable| kind.contains(retryable))
}

/// The distinct error kinds a driver printed in `lines`, in order of first sight.
fn error_kinds(lines: &[String]) -> Vec<String> {
    let mut kinds = Vec::new();
    for line in lines {
        if field(line, "event").as_deref() == Some("error") {
            let kind = field(line, "error").unwrap_or_default();
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
    }
    kinds
}

/// How one driver fared through one change of master: the time from the cause (the kill, the
/// accepted `SENTINEL FAILOVER`) to its first write on the new master, or why it never wrote.
fn outcome(result: &Result<Duration, String>) -> String {
    match result {
        Ok(time) => format!("{:.1} s", time.as_secs_f64()),
        Err(why) => format!("failed ({why})"),
    }
}

/// Waits for `driver`'s first write on a master other than `old` and returns how long after
/// `since` it came.
async fn moved_from(
    driver: &mut Driver,
    old: &str,
    since: Instant,
    within: Duration,
) -> Result<(Duration, String), String> {
    let line = driver
        .try_wait_event(
            "write",
            |line| field(line, "master").is_some_and(|m| m != old),
            within,
        )
        .await?;
    let master = field(&line, "master").expect("write names its master");
    Ok((driver.last_at.duration_since(since), master))
}

/// One row of the matrix through a scenario: its driver through the coordinator, and the same
/// client beside it on a real sentinel, whose failures are reported, never failed (not ours to
/// fix).
struct Pair<'a> {
    row: &'a Row,
    /// The client's name in messages and `client matrix:` lines.
    label: String,
    through: Driver,
    beside: Driver,
    /// `Err` once the beside client missed a step: it is not waited for again.
    beside_ok: Result<(), String>,
    /// Whether every write line must carry the value read back (a TLS stack asks for it).
    read_back: bool,
}

impl<'a> Pair<'a> {
    fn spawn(stack: &Stack, row: &'a Row) -> Self {
        let label = stack.label(row.name);
        let through = Driver::spawn(&label, stack.driver(row, &stack.endpoint()));
        let sentinel = stack.lab.sentinel_addr(0).to_string();
        let beside = Driver::spawn(&format!("{label} (sentinel)"), stack.driver(row, &sentinel));
        Self {
            row,
            label,
            through,
            beside,
            beside_ok: Ok(()),
            read_back: stack.tls.is_some(),
        }
    }

    fn check_read_back(&self, line: &str) {
        if self.read_back {
            assert_eq!(
                field(line, "read"),
                field(line, "seq"),
                "{}: a write reads back what it wrote: {line}",
                self.label
            );
        }
    }

    /// Waits for the first write of both clients; the one through the coordinator must write
    /// where the coordinator points. Returns that master.
    async fn ready(&mut self, stack: &Stack) -> String {
        let ready = self.through.wait_event("ready", |_| true).await;
        self.check_read_back(&ready);
        let master = field(&ready, "master").expect("ready names its master");
        assert_eq!(
            Some(master.clone()),
            stack.agreed_master(),
            "{}: the client writes where the coordinator points",
            self.label
        );
        self.beside_ok = self
            .beside
            .try_wait_event("ready", |_| true, WAIT)
            .await
            .map(drop);
        master
    }

    /// The first write through the coordinator on a master other than `old`, which must come
    /// within `WAIT`: how long after `since`, and the master. A failure names the coordinator's
    /// verdict and what the client beside saw, to tell a stuck client from a stuck group.
    async fn moved(
        &mut self,
        stack: &Stack,
        what: &str,
        old: &str,
        since: Instant,
    ) -> (Duration, String) {
        match moved_from(&mut self.through, old, since, WAIT).await {
            Ok(moved) => {
                self.check_read_back(self.through.seen.last().expect("the write line"));
                moved
            }
            Err(why) => {
                while let Ok((_, line)) = self.beside.lines.try_recv() {
                    self.beside.seen.push(line);
                }
                panic!(
                    "{}: {what}: {why}; verdict: {:?}; output: {:#?}; beside, on a sentinel: {:#?}",
                    self.label,
                    stack
                        .coordinator
                        .registry
                        .get(stack.lab.master_name())
                        .map(|state| state.verdict.to_string()),
                    self.through.seen,
                    self.beside.seen,
                )
            }
        }
    }

    /// The same for the client beside, within what is left of `WAIT` since `since`, or why it
    /// never wrote there.
    async fn beside_moved(&mut self, old: &str, since: Instant) -> Result<Duration, String> {
        let moved = match &self.beside_ok {
            Ok(()) => moved_from(
                &mut self.beside,
                old,
                since,
                WAIT.saturating_sub(since.elapsed()),
            )
            .await
            .map(|(time, _)| time),
            Err(why) => Err(why.clone()),
        };
        self.beside_ok = moved.as_ref().map(drop).map_err(Clone::clone);
        moved
    }

    async fn kill(self) {
        self.through.kill().await;
        self.beside.kill().await;
    }
}

/// Write, kill -9 the master the client writes to, and see it write on the new master, which
/// must be the coordinator's new verdict, within `FAILOVER_BOUND`; then a planned switchover
/// to the last replica, which it must follow the same way. The same client pointed at a real
/// sentinel runs beside it through both changes; the times and the error kinds each surfaced
/// are printed (a client that does not follow the real sentinel is reported, not failed: that
/// is not ours to fix).
async fn row_follows_a_kill_9_failover_and_a_switchover(row: &Row, version: ValkeyVersion) {
    let mut stack = Stack::on(version).await;
    let mut pairs = [Pair::spawn(&stack, row)];
    rows_follow_a_kill_9_failover_and_a_switchover(&mut stack, &mut pairs, None).await;
    for pair in pairs {
        pair.kill().await;
    }
    stack.stop().await;
}

/// The scenario of [`row_follows_a_kill_9_failover_and_a_switchover`] for several clients on
/// one stack at once, and redis-rs beside them when given (it re-resolves through the coordinator
/// while the others are watched, so its times are its own).
async fn rows_follow_a_kill_9_failover_and_a_switchover(
    stack: &mut Stack,
    pairs: &mut [Pair<'_>],
    mut rs: Option<&mut RedisRs>,
) {
    let version = stack.lab.version();
    let mut old = String::new();
    for pair in pairs.iter_mut() {
        old = pair.ready(stack).await;
    }
    if let Some(rs) = rs.as_deref_mut() {
        assert_eq!(rs.write_each(stack, "before").await, old, "redis-rs");
    }
    let old_socket: SocketAddr = old.parse().expect("an ip:port");
    let index = stack.lab.data_index(old_socket).expect("a lab data pod");

    stack.lab.kill(PodId::Data(index));
    let killed_at = Instant::now();
    let stack = &*stack;
    let (rs_killed, killed) = tokio::join!(
        follow_with(rs.as_deref_mut(), stack, &old, "after", killed_at),
        async {
            let mut killed = Vec::new();
            for pair in pairs.iter_mut() {
                let (time, new) = pair.moved(stack, "kill -9", &old, killed_at).await;
                let new = follows_the_verdict(stack, &pair.label, &old, new).await;
                killed.push((time, new));
            }
            killed
        }
    );
    let new = killed.last().map(|(_, new)| new.clone()).expect("a client");
    let hello = pairs.iter().any(|pair| pair.row.hello) || rs.is_some();
    let names: Vec<&str> = pairs.iter().map(|pair| pair.label.as_str()).collect();
    assert_eq!(
        stack.served("hello") > 0,
        hello,
        "{names:?}: HELLO is used exactly when the client is known to send it",
    );
    let mut beside_killed = Vec::new();
    for pair in pairs.iter_mut() {
        beside_killed.push(pair.beside_moved(&old, killed_at).await);
    }

    let seen_before: Vec<(usize, usize)> = pairs
        .iter()
        .map(|pair| (pair.through.seen.len(), pair.beside.seen.len()))
        .collect();
    let asked_at = switch_over(stack).await;
    let (rs_switched, switched) = tokio::join!(
        follow_with(rs.as_deref_mut(), stack, &new, "switched", asked_at),
        async {
            let mut switched = Vec::new();
            for pair in pairs.iter_mut() {
                let (time, _) = pair.moved(stack, "switchover", &new, asked_at).await;
                let last = stack.agreed_master().unwrap_or_default();
                follows_the_verdict(stack, &pair.label, &new, last).await;
                switched.push(time);
            }
            switched
        }
    );
    let mut beside_switched = Vec::new();
    for pair in pairs.iter_mut() {
        beside_switched.push(pair.beside_moved(&new, asked_at).await);
    }

    for (i, pair) in pairs.iter().enumerate() {
        let (through_from, beside_from) = seen_before[i];
        eprintln!(
            "client matrix: {} on {version:?}: kill -9: coordinator {}, sentinel {}; \
             switchover: coordinator {} (errors {:?}), sentinel {} (errors {:?})",
            pair.label,
            outcome(&Ok(killed[i].0)),
            outcome(&beside_killed[i]),
            outcome(&Ok(switched[i])),
            error_kinds(&pair.through.seen[through_from..]),
            outcome(&beside_switched[i]),
            error_kinds(&pair.beside.seen[beside_from..]),
        );
    }
    if let (Some(rs), Some(rs_killed), Some(rs_switched)) = (&rs, &rs_killed, &rs_switched) {
        eprintln!(
            "client matrix: {} on {version:?}: kill -9: coordinator {}; switchover: \
             coordinator {}",
            rs.label,
            rs_killed.show(),
            rs_switched.show(),
        );
    }
    for (i, pair) in pairs.iter().enumerate() {
        let switchover_errors: Vec<String> = pair.through.seen[seen_before[i].0..]
            .iter()
            .filter(|line| field(line, "event").as_deref() == Some("error"))
            .map(|line| {
                format!(
                    "{}: {}",
                    field(line, "error").unwrap_or_default(),
                    field(line, "detail").unwrap_or_default()
                )
            })
            .collect();
        assert!(
            switchover_errors.iter().all(|kind| retryable(kind)),
            "{}: the switchover surfaced an error a client cannot retry: {switchover_errors:?}",
            pair.label
        );
        for (what, time, bound) in [
            ("kill -9", killed[i].0, FAILOVER_BOUND),
            ("switchover", switched[i], SWITCHOVER_BOUND),
        ] {
            assert!(
                time <= bound,
                "{}: {what}: the first write on the new master came {time:?} after it",
                pair.label
            );
        }
    }
    for (what, times, bound) in [
        ("kill -9", &rs_killed, FAILOVER_BOUND),
        ("switchover", &rs_switched, SWITCHOVER_BOUND),
    ] {
        if let Some(times) = times {
            assert!(
                times.slowest() <= bound,
                "redis-rs: {what}: the first write on the new master came {} after it",
                times.show()
            );
        }
    }
}

/// [`RedisRs::follow`] when there is a redis-rs client.
async fn follow_with(
    rs: Option<&mut RedisRs>,
    stack: &Stack,
    old: &str,
    step: &str,
    since: Instant,
) -> Option<Followed> {
    match rs {
        Some(rs) => Some(rs.follow(stack, old, step, since).await),
        None => None,
    }
}

/// Checks that the master a client moved to, `new`, is the coordinator's verdict once it has
/// left `old`, and a lab pod; returns it.
async fn follows_the_verdict(stack: &Stack, name: &str, old: &str, new: String) -> String {
    let verdict = stack
        .wait_verdict("the verdict to leave the old master", |s| {
            s.verdict
                .agreement()
                .is_some_and(|a| a.master.to_string() != old)
        })
        .await;
    assert_eq!(
        Some(new.clone()),
        stack.agreed_master(),
        "{name}: the client follows the coordinator's verdict ({verdict})"
    );
    assert!(
        stack
            .lab
            .data_index(new.parse().expect("an ip:port"))
            .is_some(),
        "{name}: the new master {new} is a lab pod"
    );
    new
}

const REDIS_PY: Row = Row {
    name: "redis-py resp3",
    hello: true,
    command: |sentinel| python_driver("redis", sentinel),
};
const VALKEY_PY: Row = Row {
    name: "valkey-py resp2",
    hello: false,
    command: |sentinel| python_driver("valkey", sentinel),
};
const IOREDIS: Row = Row {
    name: "ioredis resp3",
    hello: true,
    command: |sentinel| {
        node_driver(
            "sentinel_client.js",
            &["ioredis", sentinel, "mymaster", "60"],
        )
    },
};
const IOVALKEY: Row = Row {
    name: "iovalkey resp2",
    hello: false,
    command: |sentinel| {
        node_driver(
            "sentinel_client.js",
            &["iovalkey", sentinel, "mymaster", "60"],
        )
    },
};
const JEDIS_8: Row = Row {
    name: "jedis 8 RedisSentinelClient resp3",
    hello: true,
    command: |sentinel| java_driver("jedis8", "Jedis8Client", sentinel, &[]),
};
const JEDIS_7: Row = Row {
    name: "jedis 7 JedisSentinelPool resp2",
    hello: false,
    command: |sentinel| java_driver("jedis7", "Jedis7Client", sentinel, &[]),
};
const LETTUCE_RESP3: Row = Row {
    name: "lettuce MasterReplica resp3",
    hello: true,
    command: |sentinel| java_driver("lettuce", "LettuceClient", sentinel, &["resp3"]),
};
const LETTUCE_RESP2: Row = Row {
    name: "lettuce MasterReplica resp2",
    hello: false,
    command: |sentinel| java_driver("lettuce", "LettuceClient", sentinel, &["resp2"]),
};
const GO_REDIS_3: Row = Row {
    name: "go-redis NewFailoverClient resp3",
    hello: true,
    command: |sentinel| go_driver("go-redis", sentinel, "resp3"),
};
const GO_REDIS_2: Row = Row {
    name: "go-redis NewFailoverClient resp2",
    hello: true,
    command: |sentinel| go_driver("go-redis", sentinel, "resp2"),
};
const RUEIDIS: Row = Row {
    name: "rueidis resp3",
    hello: true,
    command: |sentinel| go_driver("rueidis", sentinel, "resp3"),
};
const VALKEY_GO: Row = Row {
    name: "valkey-go resp3",
    hello: true,
    command: |sentinel| go_driver("valkey-go", sentinel, "resp3"),
};
const NODE_REDIS_2: Row = Row {
    name: "node-redis createSentinel resp2",
    hello: true,
    command: |sentinel| node_driver("node_redis_sentinel.js", &[sentinel, "mymaster", "60", "2"]),
};
const NODE_REDIS_3: Row = Row {
    name: "node-redis createSentinel resp3",
    hello: true,
    command: |sentinel| node_driver("node_redis_sentinel.js", &[sentinel, "mymaster", "60", "3"]),
};

async fn redis_py_resp3_follows_a_kill_9_failover_and_a_switchover(version: ValkeyVersion) {
    row_follows_a_kill_9_failover_and_a_switchover(&REDIS_PY, version).await;
}

async fn valkey_py_resp2_follows_a_kill_9_failover_and_a_switchover(version: ValkeyVersion) {
    row_follows_a_kill_9_failover_and_a_switchover(&VALKEY_PY, version).await;
}

async fn ioredis_resp3_follows_a_kill_9_failover_and_a_switchover(version: ValkeyVersion) {
    row_follows_a_kill_9_failover_and_a_switchover(&IOREDIS, version).await;
}

async fn iovalkey_resp2_follows_a_kill_9_failover_and_a_switchover(version: ValkeyVersion) {
    row_follows_a_kill_9_failover_and_a_switchover(&IOVALKEY, version).await;
}

/// The clients added by the matrix run on one Valkey version each, rotating through 8.0.1,
/// 8.1.8 and 9.1.2, to keep the suite short: each row is a lab, a coordinator and two JVMs or
/// Go or Node processes.
macro_rules! matrix_rows {
    ($($test:ident: $row:ident on $version:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                row_follows_a_kill_9_failover_and_a_switchover(&$row, ValkeyVersion::$version).await;
            }
        )*
    };
}

matrix_rows!(
    jedis_8_resp3_follows_a_kill_9_failover_and_a_switchover: JEDIS_8 on V9_1_2,
    jedis_7_resp2_follows_a_kill_9_failover_and_a_switchover: JEDIS_7 on V8_0_1,
    lettuce_resp3_follows_a_kill_9_failover_and_a_switchover: LETTUCE_RESP3 on V8_1_8,
    lettuce_resp2_follows_a_kill_9_failover_and_a_switchover: LETTUCE_RESP2 on V9_1_2,
    go_redis_resp3_follows_a_kill_9_failover_and_a_switchover: GO_REDIS_3 on V8_0_1,
    go_redis_resp2_follows_a_kill_9_failover_and_a_switchover: GO_REDIS_2 on V8_1_8,
    rueidis_resp3_follows_a_kill_9_failover_and_a_switchover: RUEIDIS on V9_1_2,
    valkey_go_resp3_follows_a_kill_9_failover_and_a_switchover: VALKEY_GO on V8_0_1,
    node_redis_resp2_follows_a_kill_9_failover_and_a_switchover: NODE_REDIS_2 on V8_1_8,
    node_redis_resp3_follows_a_kill_9_failover_and_a_switchover: NODE_REDIS_3 on V9_1_2,
);

/// The master a redis-rs connection writes to, by the address the pod announces (every lab pod
/// announces its own) and the port it listens on (`tls-port` in a TLS lab, where `port` is 0).
async fn written_to(
    connection: &mut impl redis::aio::ConnectionLike,
) -> redis::RedisResult<String> {
    async fn config_get(
        connection: &mut impl redis::aio::ConnectionLike,
        parameter: &str,
    ) -> redis::RedisResult<String> {
        let reply: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(parameter)
            .query_async(connection)
            .await?;
        Ok(reply.get(1).cloned().unwrap_or_default())
    }
    let announced = config_get(connection, "replica-announce-ip").await?;
    let mut port = config_get(connection, "port").await?;
    if port == "0" {
        port = config_get(connection, "tls-port").await?;
    }
    Ok(format!("{announced}:{port}"))
}

/// redis-rs `SentinelClient`s with the coordinator as their only sentinel, one per protocol they
/// speak to it (RESP2, RESP3); in a TLS stack over TLS to it and to the data pods, with the lab's
/// CA as the only root and the lab's client certificate presented to both.
struct RedisRs {
    label: String,
    clients: Vec<(redis::ProtocolVersion, redis::sentinel::SentinelClient)>,
}

/// When each redis-rs client first wrote on the new master, counted from the cause.
struct Followed(Vec<(redis::ProtocolVersion, Duration)>);

impl Followed {
    fn slowest(&self) -> Duration {
        self.0
            .iter()
            .map(|(_, time)| *time)
            .max()
            .unwrap_or_default()
    }

    fn show(&self) -> String {
        let times: Vec<String> = self
            .0
            .iter()
            .map(|(protocol, time)| format!("{protocol:?} {}", outcome(&Ok(*time))))
            .collect();
        times.join(", ")
    }
}

impl RedisRs {
    fn new(stack: &Stack) -> Self {
        use redis::sentinel::{SentinelClientBuilder, SentinelServerType};

        let endpoint = stack.coordinator.listen_addr;
        let (host, port) = (endpoint.ip().to_string(), endpoint.port());
        let mut clients = Vec::new();
        for protocol in [redis::ProtocolVersion::RESP2, redis::ProtocolVersion::RESP3] {
            let sentinel = match &stack.tls {
                None => redis::ConnectionAddr::Tcp(host.clone(), port),
                Some(_) => redis::ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port,
                    insecure: false,
                    tls_params: None,
                },
            };
            let mut builder = SentinelClientBuilder::new(
                [sentinel],
                stack.lab.master_name(),
                SentinelServerType::Master,
            )
            .expect("builder")
            .set_client_to_sentinel_protocol(protocol);
            if let Some(tls) = &stack.tls {
                let certificates = redis_rs_certificates(&tls.client);
                builder = builder
                    .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure)
                    .set_client_to_sentinel_certificates(certificates.clone())
                    .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
                    .set_client_to_redis_certificates(certificates);
            }
            clients.push((protocol, builder.build().expect("sentinel client")));
        }
        Self {
            label: stack.label("redis-rs SentinelClient resp2+resp3"),
            clients,
        }
    }

    /// Resolves the master through the coordinator, writes `key` there and reads it back;
    /// returns the master written to.
    async fn write(
        client: &mut redis::sentinel::SentinelClient,
        key: &str,
    ) -> redis::RedisResult<String> {
        use redis::AsyncCommands as _;

        let mut connection = client.get_async_connection().await?;
        let _: () = connection.set(key, key).await?;
        let read: Option<String> = connection.get(key).await?;
        if read.as_deref() != Some(key) {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "the write did not read back",
                format!("{read:?}"),
            )));
        }
        written_to(&mut connection).await
    }

    /// Every client writes `<step>-<protocol>` where the coordinator points; returns the master.
    async fn write_each(&mut self, stack: &Stack, step: &str) -> String {
        let mut master = String::new();
        for (protocol, client) in &mut self.clients {
            master = Self::write(client, &format!("{step}-{protocol:?}"))
                .await
                .unwrap_or_else(|error| {
                    panic!("{protocol:?}: redis-rs writes through the coordinator: {error}")
                });
            assert_eq!(Some(master.clone()), stack.agreed_master(), "{protocol:?}");
        }
        master
    }

    /// Each client resolves afresh, every 100 ms, until it writes on a master other than `old`,
    /// which must be the coordinator's verdict; returns when each got there after `since`.
    async fn follow(&mut self, stack: &Stack, old: &str, step: &str, since: Instant) -> Followed {
        let mut times = Vec::new();
        for (protocol, client) in &mut self.clients {
            let deadline = Instant::now() + WAIT;
            let new = loop {
                match Self::write(client, &format!("{step}-{protocol:?}")).await {
                    Ok(master) if master != old => break master,
                    Ok(_) | Err(_) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    other => {
                        panic!("{protocol:?}: redis-rs never reached a new master: {other:?}")
                    }
                }
            };
            times.push((*protocol, since.elapsed()));
            assert_eq!(
                Some(new.clone()),
                stack.agreed_master(),
                "{protocol:?}: redis-rs follows the coordinator's verdict"
            );
        }
        Followed(times)
    }
}

/// The lab's CA as redis-rs's only root, and its client certificate.
fn redis_rs_certificates(files: &TlsFiles) -> redis::TlsCertificates {
    let read = |path: &std::path::Path| {
        std::fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    };
    redis::TlsCertificates {
        client_tls: Some(redis::ClientTlsConfig {
            client_cert: read(&files.cert),
            client_key: read(&files.key),
        }),
        root_cert: Some(read(&files.ca)),
    }
}

/// redis-rs (`SentinelClient`, RESP2 then RESP3 to the sentinel) writes through the master it
/// resolves, the master is killed, and a fresh resolution through the coordinator leads it to
/// the new master, where it writes again.
async fn redis_rs_follows_a_kill_9_failover(version: ValkeyVersion) {
    let mut stack = Stack::on(version).await;
    let mut rs = RedisRs::new(&stack);
    let old = rs.write_each(&stack, "before").await;
    let index = stack
        .lab
        .data_index(old.parse().expect("ip:port"))
        .expect("a lab pod");
    stack.lab.kill(PodId::Data(index));
    rs.follow(&stack, &old, "after", Instant::now()).await;
    stack.stop().await;
}

/// TLS only, end to end: redis-py (`Sentinel`, RESP3), ioredis (`sentinels`, RESP3) and redis-rs
/// (`SentinelClient`, RESP2 and RESP3) are each given the coordinator as their only sentinel,
/// with the lab's CA and client certificate, and reach the data pods with the same; each writes
/// and reads back where the coordinator points, follows a kill -9 of the master and a planned
/// switchover to the coordinator's new verdict within the plaintext bounds. A plaintext `PING` on
/// the coordinator's port gets no reply at all.
async fn tls_only_clients_follow_a_kill_9_failover_and_a_switchover(version: ValkeyVersion) {
    let mut stack = Stack::tls_on(version).await;
    the_coordinator_answers_no_plaintext(&stack).await;
    let mut pairs = [
        Pair::spawn(&stack, &REDIS_PY),
        Pair::spawn(&stack, &IOREDIS),
    ];
    let mut rs = RedisRs::new(&stack);
    rows_follow_a_kill_9_failover_and_a_switchover(&mut stack, &mut pairs, Some(&mut rs)).await;
    for pair in pairs {
        pair.kill().await;
    }
    stack.stop().await;
}

/// A plaintext client on the coordinator's TLS port: its `PING` gets no RESP reply (nothing, a
/// close, or a TLS alert), not even an error.
async fn the_coordinator_answers_no_plaintext(stack: &Stack) {
    let addr = stack.coordinator.listen_addr;
    let mut stream = TcpStream::connect(addr).await.expect("the port is open");
    let mut reply = Vec::new();
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut reply)).await;
    }
    assert!(
        !reply
            .first()
            .is_some_and(|byte| b"+-:$*_%>|~#,(=!".contains(byte)),
        "the coordinator answered a plaintext PING: {:?}",
        String::from_utf8_lossy(&reply)
    );
}

valkey_lab::on_every_tls_version!(tls_only_clients_follow_a_kill_9_failover_and_a_switchover);

valkey_lab::on_every_version!(
    redis_py_resp3_follows_a_kill_9_failover_and_a_switchover,
    valkey_py_resp2_follows_a_kill_9_failover_and_a_switchover,
    ioredis_resp3_follows_a_kill_9_failover_and_a_switchover,
    iovalkey_resp2_follows_a_kill_9_failover_and_a_switchover,
    redis_rs_follows_a_kill_9_failover,
);

/// With 2 of 3 sentinels stopped there is no majority: redis-py must see "no master"
/// (`MasterNotFoundError`, its ordinary path), never a response error; with the sentinels back it
/// finds the master again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_sees_no_master_without_a_majority_and_recovers() {
    let mut stack = Stack::start().await;
    let mut driver = Driver::python("redis", &stack.endpoint(), "discover");
    let found = driver.wait_event("master", |_| true).await;
    assert_eq!(field(&found, "addr"), stack.agreed_master());

    stack.lab.kill(PodId::Sentinel(1));
    stack.lab.kill(PodId::Sentinel(2));
    stack
        .wait_verdict("no quorum", |s| s.verdict.agreement().is_none())
        .await;
    let lost = driver.wait_event("no-master", |_| true).await;
    assert_eq!(
        field(&lost, "error").as_deref(),
        Some("MasterNotFoundError"),
        "no quorum must look like an unknown name: {lost}"
    );

    for j in [1, 2] {
        stack
            .lab
            .start_sentinel(j, SentinelStart::KeepConfig)
            .await
            .expect("sentinel restarts");
    }
    stack
        .wait_verdict("agreement again", |s| s.verdict.agreement().is_some())
        .await;
    let back = driver.wait_event("master", |_| true).await;
    assert_eq!(field(&back, "addr"), stack.agreed_master());
    assert!(
        driver
            .seen
            .iter()
            .filter(|line| field(line, "event").as_deref() == Some("no-master"))
            .all(|line| field(line, "error").as_deref() == Some("MasterNotFoundError")),
        "only MasterNotFoundError while there was no quorum: {:#?}",
        driver.seen
    );
    driver.kill().await;
    stack.stop().await;
}

/// `valkey-cli` asking the coordinator as it would ask a sentinel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valkey_cli_gets_the_master_address_by_name() {
    let stack = Stack::start().await;
    let cli = ValkeyVersion::V8_1_8
        .binary("valkey-cli")
        .expect("valkey-cli installed by tests/install-valkey.sh");
    let addr = stack.coordinator.listen_addr;
    let output = Command::new(cli)
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["SENTINEL", "get-master-addr-by-name", "mymaster"])
        .output()
        .await
        .expect("valkey-cli runs");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let expected = stack.agreed_master().expect("agreed");
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(format!("{}:{}", lines[0], lines[1]), expected);

    let unknown = Command::new(
        ValkeyVersion::V8_1_8
            .binary("valkey-cli")
            .expect("installed"),
    )
    .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
    .args(["SENTINEL", "get-master-addr-by-name", "nosuchmaster"])
    .output()
    .await
    .expect("valkey-cli runs");
    assert_eq!(String::from_utf8_lossy(&unknown.stdout).trim(), "");
    stack.stop().await;
}
