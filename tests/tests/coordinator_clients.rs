//! Unmodified sentinel-aware clients with the coordinator as their only sentinel, against a real
//! 3 data + 3 sentinel lab: each writes through the master it discovers, the master is killed
//! with kill -9, and the client must follow to the new master and write again.
//!
//! The coordinator runs in the test's process through `service::start`, the same path the binary
//! takes. The Python and Node clients come from `tests/install-clients.sh` (run by `tests/run.sh`)
//! and are driven by the scripts in `tests/clients/`, which print one JSON object per line;
//! redis-rs runs in the test itself. Every failover scenario runs on every Valkey version.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::time::Instant;
use valkey_coordinator::addr::Addr;
use valkey_coordinator::service::registry::NameState;
use valkey_coordinator::service::{self, RunningService, ServiceConfig};
use valkey_lab::{Lab, LabSpec, PodId, SentinelStart, ValkeyVersion};

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
}

impl Stack {
    async fn start() -> Self {
        Self::on(ValkeyVersion::V9_1_2).await
    }

    async fn on(version: ValkeyVersion) -> Self {
        let lab = LabSpec::new(version).start().await.expect("lab starts");
        lab.wait_formed(WAIT).await.expect("lab forms");
        let sentinels: Vec<Addr> = lab
            .sentinel_addrs()
            .into_iter()
            .map(|socket| socket.to_string().parse().expect("a lab address"))
            .collect();
        let config = ServiceConfig::new(
            "127.0.0.1:0".parse().expect("literal"),
            sentinels,
            vec![lab.master_name().to_owned()],
        );
        let coordinator = service::start(config).await.expect("coordinator starts");
        let stack = Self { lab, coordinator };
        stack
            .wait_verdict("any agreement", |s| s.verdict.agreement().is_some())
            .await;
        stack
    }

    fn endpoint(&self) -> String {
        self.coordinator.listen_addr.to_string()
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

/// A client driver process and its JSON-lines output.
struct Driver {
    name: String,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
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
        Self {
            name: name.to_owned(),
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
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

    fn node(lib: &str, endpoint: &str) -> Self {
        let mut command = Command::new("node");
        command
            .env("NODE_PATH", deps().join("node/node_modules"))
            .arg(clients_dir().join("sentinel_client.js"))
            .args([lib, endpoint, "mymaster", "60"]);
        Self::spawn(lib, command)
    }

    /// The next line whose `event` is `event` and that `accept` takes; every line is kept for
    /// failure messages.
    async fn wait_event(&mut self, event: &str, accept: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) | Ok(Err(_)) => panic!(
                    "{}: driver exited before `{event}`; output: {:#?}",
                    self.name, self.seen
                ),
                Err(_) => panic!(
                    "{}: no `{event}` within {WAIT:?}; output: {:#?}",
                    self.name, self.seen
                ),
            };
            self.seen.push(line.clone());
            if field(&line, "event").as_deref() == Some(event) && accept(&line) {
                return line;
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

/// Write, kill -9 the master the client writes to, and see it write on the new master, which
/// must be the coordinator's new verdict.
/// `resp3`: whether the library's default handshake is `HELLO 3`, which the coordinator must then
/// have served.
async fn client_follows_a_failover(mut driver: Driver, stack: &mut Stack, resp3: bool) {
    let ready = driver.wait_event("ready", |_| true).await;
    let old = field(&ready, "master").expect("ready names its master");
    assert_eq!(
        Some(old.clone()),
        stack.agreed_master(),
        "{}: the client writes where the coordinator points",
        driver.name
    );
    let old_socket: SocketAddr = old.parse().expect("an ip:port");
    let index = stack.lab.data_index(old_socket).expect("a lab data pod");

    stack.lab.kill(PodId::Data(index));

    let moved = driver
        .wait_event("write", |line| {
            field(line, "master").is_some_and(|m| m != old)
        })
        .await;
    let new = field(&moved, "master").expect("write names its master");
    let verdict = stack
        .wait_verdict("the verdict to leave the killed master", |s| {
            s.verdict
                .agreement()
                .is_some_and(|a| a.master.to_string() != old)
        })
        .await;
    assert_eq!(
        Some(new.clone()),
        stack.agreed_master(),
        "{}: the client follows the coordinator's verdict ({verdict})",
        driver.name
    );
    assert!(
        stack
            .lab
            .data_index(new.parse().expect("an ip:port"))
            .is_some(),
        "{}: the new master {new} is a lab pod",
        driver.name
    );
    assert_eq!(
        stack.served("hello") > 0,
        resp3,
        "{}: HELLO 3 is used exactly when the library defaults to RESP3",
        driver.name
    );
    driver.kill().await;
}

async fn redis_py_resp3_follows_a_kill_9_failover(version: ValkeyVersion) {
    let mut stack = Stack::on(version).await;
    let driver = Driver::python("redis", &stack.endpoint(), "writer");
    client_follows_a_failover(driver, &mut stack, true).await;
    stack.stop().await;
}

async fn valkey_py_resp2_follows_a_kill_9_failover(version: ValkeyVersion) {
    let mut stack = Stack::on(version).await;
    let driver = Driver::python("valkey", &stack.endpoint(), "writer");
    client_follows_a_failover(driver, &mut stack, false).await;
    stack.stop().await;
}

async fn ioredis_resp3_follows_a_kill_9_failover(version: ValkeyVersion) {
    let mut stack = Stack::on(version).await;
    let driver = Driver::node("ioredis", &stack.endpoint());
    client_follows_a_failover(driver, &mut stack, true).await;
    stack.stop().await;
}

async fn iovalkey_resp2_follows_a_kill_9_failover(version: ValkeyVersion) {
    let mut stack = Stack::on(version).await;
    let driver = Driver::node("iovalkey", &stack.endpoint());
    client_follows_a_failover(driver, &mut stack, false).await;
    stack.stop().await;
}

/// The master a redis-rs connection writes to, by the address the pod announces (every lab pod
/// announces its own).
async fn written_to(
    connection: &mut impl redis::aio::ConnectionLike,
) -> redis::RedisResult<String> {
    let announced: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("replica-announce-ip")
        .query_async(connection)
        .await?;
    let port: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("port")
        .query_async(connection)
        .await?;
    Ok(format!("{}:{}", announced[1], port[1]))
}

/// redis-rs (`SentinelClient`, RESP2 then RESP3 to the sentinel) writes through the master it
/// resolves, the master is killed, and a fresh resolution through the coordinator leads it to
/// the new master, where it writes again.
async fn redis_rs_follows_a_kill_9_failover(version: ValkeyVersion) {
    use redis::AsyncCommands as _;
    use redis::sentinel::{SentinelClientBuilder, SentinelServerType};

    let mut stack = Stack::on(version).await;
    let endpoint = stack.coordinator.listen_addr;
    let mut clients = Vec::new();
    for protocol in [redis::ProtocolVersion::RESP2, redis::ProtocolVersion::RESP3] {
        let client = SentinelClientBuilder::new(
            [redis::ConnectionAddr::Tcp(
                endpoint.ip().to_string(),
                endpoint.port(),
            )],
            stack.lab.master_name(),
            SentinelServerType::Master,
        )
        .expect("builder")
        .set_client_to_sentinel_protocol(protocol)
        .build()
        .expect("sentinel client");
        clients.push((protocol, client));
    }
    let mut old = None;
    for (protocol, client) in &mut clients {
        let mut connection = client
            .get_async_connection()
            .await
            .expect("redis-rs resolves the master through the coordinator");
        let _: () = connection
            .set(format!("before-{protocol:?}"), 1)
            .await
            .expect("write");
        let master = written_to(&mut connection).await.expect("which master");
        assert_eq!(Some(master.clone()), stack.agreed_master(), "{protocol:?}");
        old = Some(master);
    }
    let old = old.expect("written");
    let index = stack
        .lab
        .data_index(old.parse().expect("ip:port"))
        .expect("a lab pod");
    stack.lab.kill(PodId::Data(index));

    for (protocol, client) in &mut clients {
        let deadline = Instant::now() + WAIT;
        let new = loop {
            let attempt = async {
                let mut connection = client.get_async_connection().await?;
                let _: () = connection.set(format!("after-{protocol:?}"), 1).await?;
                written_to(&mut connection).await
            }
            .await;
            match attempt {
                Ok(master) if master != old => break master,
                Ok(_) | Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!("{protocol:?}: redis-rs never reached a new master: {other:?}"),
            }
        };
        assert_eq!(
            Some(new.clone()),
            stack.agreed_master(),
            "{protocol:?}: redis-rs follows the coordinator's verdict"
        );
    }
    stack.stop().await;
}

valkey_lab::on_every_version!(
    redis_py_resp3_follows_a_kill_9_failover,
    valkey_py_resp2_follows_a_kill_9_failover,
    ioredis_resp3_follows_a_kill_9_failover,
    iovalkey_resp2_follows_a_kill_9_failover,
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
