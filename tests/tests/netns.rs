//! The namespace network under real Valkey servers: each scenario builds a [`Network`], runs
//! `valkey-server` 9.1.2 inside its members, applies faults and watches what the servers (and
//! the harness, from the root namespace) see. Replication runs with `repl-timeout 2` and a ping
//! every second, so a broken link shows within a few seconds.

use std::{
    fs,
    io::ErrorKind,
    net::SocketAddr,
    os::unix::{fs::MetadataExt, process::ExitStatusExt},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use tokio::{net::UdpSocket, time::Instant};
use valkey_lab::{
    Client, LabError, ValkeyVersion,
    netns::{Dial, Fault, Member, NetProcess, Network, Rate},
    wait::{POLL_EVERY, Probe, poll_until},
};

/// Budget for any single wait; scenarios finish far sooner.
const WAIT: Duration = Duration::from_secs(15);
const PORT: u16 = 6379;
/// The replication timeout every server runs with, in seconds.
const REPL_TIMEOUT: &str = "2";

/// A directory for the servers' files, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(net: &Network) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "valkey-netns-{}-{}",
            std::process::id(),
            net.block()
        ));
        fs::create_dir_all(&dir).expect("scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    /// Removes the directory unless `VALKEY_LAB_KEEP=1` (the lab's convention) asks to keep the
    /// servers' logs.
    fn drop(&mut self) {
        if std::env::var_os("VALKEY_LAB_KEEP").is_some_and(|v| v == "1") {
            println!("kept {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// Starts `valkey-server` in `member` (bound to its address only) and waits until it answers the
/// harness. `extra` is appended to the command line (`--replicaof ...`).
async fn valkey(net: &Network, member: Member, scratch: &Scratch, extra: &[&str]) -> NetProcess {
    let dir = scratch.0.join(member.to_string());
    fs::create_dir_all(&dir).expect("server directory");
    let binary = ValkeyVersion::V9_1_2
        .server_binary()
        .expect("valkey 9.1.2 installed");
    let mut command = Command::new(binary);
    command
        .args(["--port", &PORT.to_string()])
        .args(["--bind", &net.ip(member).to_string()])
        .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
        .arg("--dir")
        .arg(&dir)
        .arg("--logfile")
        .arg(dir.join("valkey.log"))
        .args([
            "--repl-timeout",
            REPL_TIMEOUT,
            "--repl-ping-replica-period",
            "1",
        ])
        // The master starts a full sync at once instead of waiting for more replicas.
        .args(["--repl-diskless-sync-delay", "0"])
        .args(extra);
    let server = net.spawn(member, command).await.expect("server spawns");
    let addr = net.addr(member, PORT);
    poll_until(
        format!("{member} ({addr}) to answer PING"),
        WAIT,
        POLL_EVERY,
        || ping_probe(addr),
    )
    .await
    .expect("server answers");
    server
}

/// A replica of `master`'s server, in `member`.
async fn replica(net: &Network, member: Member, master: Member, scratch: &Scratch) -> NetProcess {
    let ip = net.ip(master).to_string();
    valkey(
        net,
        member,
        scratch,
        &["--replicaof", &ip, &PORT.to_string()],
    )
    .await
}

/// A fresh connection and a `PING`, each under 500 ms.
async fn ping(addr: SocketAddr) -> valkey_lab::Result<()> {
    let mut client = Client::connect_with_timeout(addr, None, Duration::from_millis(500)).await?;
    client.ping().await
}

async fn ping_probe(addr: SocketAddr) -> Probe<()> {
    match ping(addr).await {
        Ok(()) => Probe::Ready(()),
        Err(e) => Probe::Pending(e.to_string()),
    }
}

/// The replica's `master_link_status` as the harness reads it.
async fn link_status(addr: SocketAddr) -> valkey_lab::Result<String> {
    let mut client = Client::connect_with_timeout(addr, None, Duration::from_millis(500)).await?;
    let info = client.info_replication().await?;
    Ok(info.master_link_status.unwrap_or_else(|| "none".into()))
}

/// Waits until the replica at `addr` reports `master_link_status:<want>`; returns how long it took.
async fn wait_link(addr: SocketAddr, want: &str) -> Duration {
    let start = Instant::now();
    poll_until(
        format!("{addr} to report master_link_status:{want}"),
        WAIT,
        POLL_EVERY,
        || async move {
            match link_status(addr).await {
                Ok(status) if status == want => Probe::Ready(()),
                Ok(status) => Probe::Pending(format!("master_link_status:{status}")),
                Err(e) => Probe::Pending(e.to_string()),
            }
        },
    )
    .await
    .expect("replication link state");
    start.elapsed()
}

/// How many replicas the master at `addr` lists (`connected_slaves`).
async fn connected_replicas(addr: SocketAddr) -> valkey_lab::Result<u64> {
    let mut client = Client::connect_with_timeout(addr, None, Duration::from_millis(500)).await?;
    Ok(client
        .info_replication()
        .await?
        .connected_slaves
        .unwrap_or(0))
}

/// Waits until the master at `addr` lists `want` replicas; returns how long it took.
async fn wait_connected_replicas(addr: SocketAddr, want: u64) -> Duration {
    let start = Instant::now();
    poll_until(
        format!("{addr} to list {want} connected replicas"),
        WAIT,
        POLL_EVERY,
        || async move {
            match connected_replicas(addr).await {
                Ok(n) if n == want => Probe::Ready(()),
                Ok(n) => Probe::Pending(format!("connected_slaves:{n}")),
                Err(e) => Probe::Pending(e.to_string()),
            }
        },
    )
    .await
    .expect("master's replica count");
    start.elapsed()
}

/// `ip netns list`, one name a line.
fn netns_list() -> String {
    let out = Command::new("/usr/sbin/ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The root namespace's interface index of `name`, if it exists.
fn root_ifindex(name: &str) -> Option<u32> {
    fs::read_to_string(Path::new("/sys/class/net").join(name).join("ifindex"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

fn ip(args: &[&str]) {
    let status = Command::new("/usr/sbin/ip")
        .args(args)
        .status()
        .expect("ip runs");
    assert!(status.success(), "ip {args:?}: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_in_another_namespace_replicates_from_its_master() {
    let net = Network::create(2).expect("network");
    let scratch = Scratch::new(&net);
    let (m0, m1) = (net.member(0), net.member(1));
    let _master = valkey(&net, m0, &scratch, &[]).await;
    let _replica = replica(&net, m1, m0, &scratch).await;

    wait_link(net.addr(m1, PORT), "up").await;
    let mut master = Client::connect(net.addr(m0, PORT), None)
        .await
        .expect("connect to master");
    let info = master.info_replication().await.expect("master's INFO");
    let replicas: Vec<&str> = info.slaves.iter().map(|r| r.ip.as_str()).collect();
    assert_eq!(
        replicas,
        [net.ip(m1).to_string()],
        "the master sees the replica at its own namespace's address"
    );

    master.call(&["SET", "k", "across"]).await.expect("SET");
    let replica_addr = net.addr(m1, PORT);
    poll_until(
        "the write to reach the replica",
        WAIT,
        POLL_EVERY,
        || async move {
            let read = async {
                let mut client = Client::connect(replica_addr, None).await?;
                client.call(&["GET", "k"]).await
            };
            match read.await.map(|f| valkey_lab::replies::text(&f)) {
                Ok(Some(v)) if v == "across" => Probe::Ready(()),
                other => Probe::Pending(format!("{other:?}")),
            }
        },
    )
    .await
    .expect("replicated write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symmetric_partition_takes_the_replica_link_down_and_healing_brings_it_back() {
    let net = Network::create(2).expect("network");
    let scratch = Scratch::new(&net);
    let (m0, m1) = (net.member(0), net.member(1));
    let _master = valkey(&net, m0, &scratch, &[]).await;
    let _replica = replica(&net, m1, m0, &scratch).await;
    let (master_addr, replica_addr) = (net.addr(m0, PORT), net.addr(m1, PORT));
    wait_link(replica_addr, "up").await;

    let cut = Fault::partition(&[m0], &[m1]);
    cut.apply(&net).expect("partition");
    assert_eq!(net.active_faults(), std::slice::from_ref(&cut));
    let down = wait_link(replica_addr, "down").await;
    let dropped = wait_connected_replicas(master_addr, 0).await;
    println!("{cut}: replica link down after {down:?}, master dropped it after {dropped:?} more");
    // Both servers stay reachable from the harness: the cut is between them only.
    ping(master_addr).await.expect("master answers the harness");
    ping(replica_addr)
        .await
        .expect("replica answers the harness");

    net.heal_all().expect("heal");
    assert!(net.active_faults().is_empty());
    let up = wait_link(replica_addr, "up").await;
    println!("healed: replica link up after {up:?}");
    wait_connected_replicas(master_addr, 1).await;
}

/// Only the replica's packets to the master are dropped; the master's still arrive. TCP needs
/// both directions: the master's stream arrives but is never acknowledged, so it stops after a
/// window and only retransmits what the replica already has, while the replica's
/// `REPLCONF ACK`s never reach the master. Observed: both sides give up on the link within about
/// `repl-timeout` (2 s; the master after about 3 s, "Disconnecting timedout replica", the replica
/// after 3 to 5 s, "PRIMARY timeout: no data nor PING received": its master's pings stop once
/// TCP is stuck retransmitting), and the replica's reconnects hang until the cut is undone, when
/// a partial resync brings the link back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_cut_from_replica_to_master_breaks_the_link_on_both_sides() {
    let net = Network::create(2).expect("network");
    let scratch = Scratch::new(&net);
    let (m0, m1) = (net.member(0), net.member(1));
    let _master = valkey(&net, m0, &scratch, &[]).await;
    let _replica = replica(&net, m1, m0, &scratch).await;
    let (master_addr, replica_addr) = (net.addr(m0, PORT), net.addr(m1, PORT));
    wait_link(replica_addr, "up").await;

    let cut = Fault::partition_one_way(&[m1], &[m0]);
    cut.apply(&net).expect("one-way cut");
    let start = Instant::now();
    let mut timeline = Vec::new();
    // Sample both sides until both have given up, to print what each saw when.
    let (mut replica_down, mut master_dropped) = (None, None);
    while (replica_down.is_none() || master_dropped.is_none()) && start.elapsed() < WAIT {
        let link = link_status(replica_addr).await;
        let listed = connected_replicas(master_addr).await;
        if replica_down.is_none() && matches!(&link, Ok(s) if s == "down") {
            replica_down = Some(start.elapsed());
        }
        if master_dropped.is_none() && matches!(listed, Ok(0)) {
            master_dropped = Some(start.elapsed());
        }
        timeline.push(format!("{:?}: {link:?} {listed:?}", start.elapsed()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{cut}: replica link down at {replica_down:?}, master dropped it at {master_dropped:?}"
    );
    let (Some(replica_down), Some(master_dropped)) = (replica_down, master_dropped) else {
        panic!(
            "the link did not break on both sides:\n{}",
            timeline.join("\n")
        );
    };
    assert!(
        replica_down >= Duration::from_secs(1) && master_dropped >= Duration::from_secs(1),
        "the cut is silent: neither side can notice before its timeout:\n{}",
        timeline.join("\n")
    );

    // No new connection either way: the replica's SYN is dropped; the master's arrives, but the
    // replica's SYN-ACK is dropped.
    let from_replica = net
        .dial(m1, master_addr, Duration::from_secs(1))
        .await
        .expect("dial");
    assert_eq!(from_replica, Dial::TimedOut);
    let from_master = net
        .dial(m0, replica_addr, Duration::from_secs(1))
        .await
        .expect("dial");
    assert_eq!(from_master, Dial::TimedOut);

    cut.undo(&net).expect("undo");
    wait_link(replica_addr, "up").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_cut_fails_connects_at_once_where_a_blackhole_lets_them_hang() {
    let net = Network::create(2).expect("network");
    let scratch = Scratch::new(&net);
    let (m0, m1) = (net.member(0), net.member(1));
    let _server = valkey(&net, m1, &scratch, &[]).await;
    let target = net.addr(m1, PORT);
    let limit = Duration::from_secs(2);
    assert_eq!(
        net.dial(m0, target, limit).await.expect("dial"),
        Dial::Connected
    );

    let refused = Fault::refuse(&[m0], &[m1]);
    refused.apply(&net).expect("refuse");
    let start = Instant::now();
    let seen = net.dial(m0, target, limit).await.expect("dial");
    assert_eq!(seen, Dial::Failed("connect: No route to host".into()));
    assert!(start.elapsed() < limit / 2, "refused at once");
    refused.undo(&net).expect("undo refuse");

    let blackholed = Fault::partition(&[m0], &[m1]);
    blackholed.apply(&net).expect("blackhole");
    let start = Instant::now();
    assert_eq!(
        net.dial(m0, target, limit).await.expect("dial"),
        Dial::TimedOut
    );
    assert!(start.elapsed() >= limit, "silence until the limit");
    blackholed.undo(&net).expect("undo blackhole");

    assert_eq!(
        net.dial(m0, target, limit).await.expect("dial"),
        Dial::Connected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_member_is_unreachable_from_the_harness_while_the_others_answer() {
    let net = Network::create(3).expect("network");
    let scratch = Scratch::new(&net);
    let mut servers = Vec::new();
    for member in net.members() {
        servers.push(valkey(&net, member, &scratch, &[]).await);
    }
    let (m0, m1, m2) = (net.member(0), net.member(1), net.member(2));
    let isolated = net.addr(m1, PORT);
    let mut held = Client::connect_with_timeout(isolated, None, Duration::from_millis(500))
        .await
        .expect("connect before the fault");

    let fault = Fault::isolate(m1);
    fault.apply(&net).expect("isolate");
    let start = Instant::now();
    poll_until(
        format!("{isolated} to stop answering"),
        WAIT,
        POLL_EVERY,
        || async move {
            match ping(isolated).await {
                Ok(()) => Probe::Pending("answers".into()),
                Err(e) => Probe::Ready(e),
            }
        },
    )
    .await
    .expect("isolated member unreachable");
    println!("{fault}: unreachable after {:?}", start.elapsed());
    // The link is down, not refused: a connection held across the fault just goes silent.
    assert!(matches!(
        held.ping().await,
        Err(LabError::CommandTimeout { .. })
    ));
    for other in [m0, m2] {
        ping(net.addr(other, PORT))
            .await
            .expect("the others answer");
    }
    let outward = net
        .dial(m1, net.addr(m0, PORT), Duration::from_secs(1))
        .await;
    assert_ne!(
        outward.expect("dial"),
        Dial::Connected,
        "{m1} reaches nobody"
    );

    fault.undo(&net).expect("undo");
    poll_until(
        format!("{isolated} to answer again"),
        WAIT,
        POLL_EVERY,
        || ping_probe(isolated),
    )
    .await
    .expect("member back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_sigcont_and_sigkill_reach_the_server_in_its_namespace() {
    let net = Network::create(1).expect("network");
    let scratch = Scratch::new(&net);
    let m0 = net.member(0);
    let mut server = valkey(&net, m0, &scratch, &[]).await;
    let addr = net.addr(m0, PORT);

    // The pid is the server's own (ip netns exec execs it), in the member's namespace.
    let pid = server.pid();
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
    assert_eq!(comm.trim(), "valkey-server");
    let its_netns = fs::metadata(format!("/proc/{pid}/ns/net")).expect("its netns");
    let members = fs::metadata(Path::new("/run/netns").join(net.namespace(m0))).expect("netns");
    assert_eq!(
        its_netns.ino(),
        members.ino(),
        "runs in {}",
        net.namespace(m0)
    );

    server.stop().expect("SIGSTOP");
    // A stopped server's kernel still accepts connections; it just never answers.
    match ping(addr).await {
        Err(LabError::CommandTimeout { .. }) => {}
        other => panic!("a stopped server answered: {other:?}"),
    }
    server.cont().expect("SIGCONT");
    poll_until("the thawed server to answer", WAIT, POLL_EVERY, || {
        ping_probe(addr)
    })
    .await
    .expect("answers after SIGCONT");

    let status = server.kill().expect("SIGKILL");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    match Client::connect(addr, None).await {
        Err(LabError::Connect { source, .. }) => {
            assert_eq!(source.kind(), ErrorKind::ConnectionRefused)
        }
        other => panic!("a killed server's port answered: {other:?}"),
    }
    assert!(server.stop().is_err(), "no signal to a reaped pid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowed_member_sends_a_large_value_at_about_its_rate() {
    const SIZE: usize = 64 * 1024;
    let net = Network::create(1).expect("network");
    let scratch = Scratch::new(&net);
    let m0 = net.member(0);
    let _server = valkey(&net, m0, &scratch, &[]).await;
    let mut client = Client::connect_with_timeout(net.addr(m0, PORT), None, WAIT)
        .await
        .expect("connect");
    client
        .call(&[b"SET".as_slice(), b"big", &vec![b'x'; SIZE]])
        .await
        .expect("SET");
    let mut timed_get = async || {
        let start = Instant::now();
        client.call(&["GET", "big"]).await.expect("GET");
        start.elapsed()
    };
    let fast = timed_get().await;

    let rate = Rate::kbit(256);
    let fault = Fault::slow(m0, rate);
    fault.apply(&net).expect("slow");
    let slowed = timed_get().await;
    fault.undo(&net).expect("undo");
    let again = timed_get().await;

    let expected = Duration::from_secs_f64(SIZE as f64 / rate.bytes_per_sec() as f64);
    println!("GET of {SIZE} bytes: {fast:?}; at {rate}: {slowed:?} (the rate alone: {expected:?})");
    println!("GET once undone: {again:?}");
    assert!(fast < expected / 2, "unslowed: {fast:?}");
    assert!(
        slowed >= expected.mul_f64(0.8) && slowed <= expected * 4,
        "at {rate}: {slowed:?}, expected about {expected:?}"
    );
    assert!(again < expected / 2, "undone: {again:?}");
}

/// Sends 100 one-byte UDP datagrams from `member` to the harness, then 30 one-byte end markers
/// (all 30 lost at 50% loss: 1 in 10^9), and counts the datagrams that arrived before the first
/// marker (UDP through one bridge keeps its order). 130 small datagrams fit the harness socket's
/// default receive buffer (208 KiB) even if the reader falls behind.
async fn datagrams_through(net: &Network, member: Member) -> usize {
    let socket = UdpSocket::bind((net.harness_ip(), 0)).await.expect("bind");
    let port = socket.local_addr().expect("local addr").port();
    let script = "for i in $(seq 100); do printf x >/dev/udp/$0/$1; done; \
                  for i in $(seq 30); do printf e >/dev/udp/$0/$1; done";
    let mut command = Command::new("/bin/bash");
    command
        .args(["-c", script])
        .arg(net.harness_ip().to_string())
        .arg(port.to_string());
    let _sender = net.spawn(member, command).await.expect("sender");
    let count = async {
        let mut buf = [0u8; 16];
        let mut count = 0;
        loop {
            let n = socket.recv(&mut buf).await.expect("recv");
            match &buf[..n] {
                b"x" => count += 1,
                _ => return count,
            }
        }
    };
    tokio::time::timeout(WAIT, count)
        .await
        .expect("an end marker arrives")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_member_loses_about_that_share_of_its_packets() {
    let net = Network::create(1).expect("network");
    let m0 = net.member(0);
    assert_eq!(
        datagrams_through(&net, m0).await,
        100,
        "no loss without the fault"
    );

    let fault = Fault::lossy(m0, 50);
    fault.apply(&net).expect("lossy");
    let through = datagrams_through(&net, m0).await;
    println!("{fault}: {through} of 100 datagrams arrived");
    // Binomial(100, 0.5): mean 50, sigma 5; outside 20..=80 (6 sigma) 1 run in 10^8.
    assert!((20..=80).contains(&through), "{through} of 100 arrived");

    fault.undo(&net).expect("undo");
    assert_eq!(
        datagrams_through(&net, m0).await,
        100,
        "no loss once undone"
    );
}

/// The mean round trip, in ms, that `valkey-cli --latency` measures over one second from inside
/// `from` to the server in `to`: a PING every 10 ms on one connection, each timed to the ms.
async fn round_trip_ms(net: &Network, from: Member, to: Member) -> f64 {
    let cli = ValkeyVersion::V8_1_8
        .binary("valkey-cli")
        .expect("valkey-cli 8.1.8 installed");
    let output = tokio::process::Command::new("/usr/sbin/ip")
        .args(["netns", "exec"])
        .arg(net.namespace(from))
        .arg(cli)
        .args(["-h", &net.ip(to).to_string(), "-p", &PORT.to_string()])
        .args(["--latency", "--raw"])
        .kill_on_drop(true)
        .output()
        .await
        .expect("valkey-cli runs");
    // One line: `min max avg samples`.
    let line = String::from_utf8_lossy(&output.stdout).into_owned();
    let avg = line.split_whitespace().nth(2);
    avg.and_then(|avg| avg.parse().ok())
        .unwrap_or_else(|| panic!("valkey-cli --latency printed {line:?} ({})", output.status))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_member_answers_a_round_trip_from_another_member_its_delay_late() {
    let net = Network::create(2).expect("network");
    let scratch = Scratch::new(&net);
    let (m0, m1) = (net.member(0), net.member(1));
    let _server = valkey(&net, m0, &scratch, &[]).await;
    let before = round_trip_ms(&net, m1, m0).await;

    let delay = Duration::from_millis(50);
    let fault = Fault::delay(m0, delay, Duration::ZERO);
    fault.apply(&net).expect("delay");
    let delayed = round_trip_ms(&net, m1, m0).await;
    fault.undo(&net).expect("undo");
    let after = round_trip_ms(&net, m1, m0).await;

    println!("PING {m1} -> {m0}: {before} ms; with `{fault}`: {delayed} ms; undone: {after} ms");
    let delay_ms = delay.as_secs_f64() * 1000.0;
    // Each sample is truncated to the ms, so a delayed one reads at least the delay.
    assert!(before < delay_ms / 10.0, "before the fault: {before} ms");
    assert!(
        delayed >= delay_ms && delayed < delay_ms * 1.5,
        "with the fault: {delayed} ms"
    );
    assert!(after < delay_ms / 10.0, "once undone: {after} ms");
}

/// Starts bash in `member` sending datagrams numbered `1..=count` to `to`, each from a socket of
/// its own (bash's `/dev/udp`); it exits once they are sent.
async fn send_numbered(net: &Network, member: Member, to: SocketAddr, count: u32) -> NetProcess {
    let script = "for i in $(seq $2); do printf $i >/dev/udp/$0/$1; done";
    let mut command = Command::new("/bin/bash");
    command.args(["-c", script]).args([
        to.ip().to_string(),
        to.port().to_string(),
        count.to_string(),
    ]);
    net.spawn(member, command).await.expect("sender")
}

/// The numbers of the datagrams `socket` receives, in arrival order, until it has `count` of
/// them or `limit` has passed.
async fn receive_numbered(socket: &UdpSocket, count: usize, limit: Duration) -> Vec<u32> {
    let mut numbers = Vec::new();
    let mut buf = [0u8; 16];
    let deadline = Instant::now() + limit;
    while numbers.len() < count {
        match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Ok(received) => {
                let n = received.expect("recv");
                let text = std::str::from_utf8(&buf[..n]).expect("a number");
                numbers.push(text.parse().expect("a number"));
            }
            Err(_) => break,
        }
    }
    numbers
}

/// Pairs that arrived in the opposite order to the one they were sent in.
fn inversions(order: &[u32]) -> usize {
    let later_smaller = |(i, a): (usize, &u32)| order[i + 1..].iter().filter(|b| *b < a).count();
    order.iter().enumerate().map(later_smaller).sum()
}

/// Sends `count` numbered datagrams from `member` to a fresh harness socket and returns them in
/// arrival order, waiting up to `limit`.
async fn numbered_through(net: &Network, member: Member, count: u32, limit: Duration) -> Vec<u32> {
    let socket = UdpSocket::bind((net.harness_ip(), 0)).await.expect("bind");
    let to = socket.local_addr().expect("local addr");
    let _sender = send_numbered(net, member, to, count).await;
    receive_numbered(&socket, count as usize, limit).await
}

/// Jitter reorders: each datagram's verdict is issued at its own release time. The sender's
/// datagrams are a few tens of µs apart, so 40 ms of jitter spreads each over many others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_with_jitter_reorders_what_the_member_sends_and_loses_nothing() {
    const COUNT: u32 = 200;
    let net = Network::create(1).expect("network");
    let m0 = net.member(0);
    let plain = numbered_through(&net, m0, COUNT, WAIT).await;
    assert_eq!(plain.len(), COUNT as usize, "all arrive without the fault");
    assert_eq!(inversions(&plain), 0, "in order without the fault");

    let fault = Fault::delay(m0, Duration::from_millis(20), Duration::from_millis(40));
    fault.apply(&net).expect("delay");
    let start = Instant::now();
    let jittered = numbered_through(&net, m0, COUNT, WAIT).await;
    let took = start.elapsed();
    fault.undo(&net).expect("undo");

    let mut sorted = jittered.clone();
    sorted.sort_unstable();
    let inverted = inversions(&jittered);
    println!(
        "{fault}: {} of {COUNT} datagrams in {took:?}, {inverted} inversions; first ten: {:?}",
        jittered.len(),
        &jittered[..10.min(jittered.len())]
    );
    assert_eq!(sorted, (1..=COUNT).collect::<Vec<_>>(), "each arrives once");
    assert!(inverted > 0, "jitter reorders");
    assert!(
        took >= Duration::from_millis(20),
        "none arrives before the delay"
    );
}

/// Undoing a delay releases what it holds at once, so nothing is lost and nothing waits out its
/// delay; two members' delays are independent (each its own queue and thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undoing_a_delay_releases_what_it_holds_and_leaves_another_members_delay_in_place() {
    const COUNT: u32 = 100;
    let net = Network::create(2).expect("network");
    let (m0, m1) = (net.member(0), net.member(1));
    for member in [m0, m1] {
        // Also resolves the harness's address in each member, so nothing released later
        // waits on ARP.
        let plain = numbered_through(&net, member, COUNT, WAIT).await;
        assert_eq!(
            plain.len(),
            COUNT as usize,
            "{member}: all arrive without the fault"
        );
    }

    let long = Duration::from_secs(5);
    let faults = [
        Fault::delay(m0, long, Duration::ZERO),
        Fault::delay(m1, long, Duration::from_millis(100)),
    ];
    faults.iter().for_each(|f| f.apply(&net).expect("delay"));
    assert_eq!(net.active_faults(), faults);
    let mut sockets = Vec::new();
    let mut senders = Vec::new();
    for member in [m0, m1] {
        let socket = UdpSocket::bind((net.harness_ip(), 0)).await.expect("bind");
        let to = socket.local_addr().expect("local addr");
        senders.push(send_numbered(&net, member, to, COUNT).await);
        sockets.push(socket);
    }
    for sender in &mut senders {
        poll_until("the sender to finish", WAIT, POLL_EVERY, || {
            let exited = sender.try_wait().expect("try_wait");
            async move {
                match exited {
                    Some(_) => Probe::Ready(()),
                    None => Probe::Pending("sending".into()),
                }
            }
        })
        .await
        .expect("sent");
    }
    let held_for = Duration::from_millis(300);
    tokio::time::sleep(held_for).await;
    let mut buf = [0u8; 16];
    for (socket, member) in sockets.iter().zip([m0, m1]) {
        assert!(
            socket.try_recv(&mut buf).is_err(),
            "{member}'s datagrams are held"
        );
    }

    let start = Instant::now();
    faults[0].undo(&net).expect("undo m0's delay");
    let released = receive_numbered(&sockets[0], COUNT as usize, long / 5).await;
    let took = start.elapsed();
    println!(
        "{}: {} of {COUNT} datagrams held {held_for:?}, all in within {took:?} of the undo",
        faults[0],
        released.len()
    );
    assert_eq!(released.len(), COUNT as usize, "nothing held is lost");
    assert!(
        sockets[1].try_recv(&mut buf).is_err(),
        "{m1}'s delay is still in place"
    );

    faults[1].undo(&net).expect("undo m1's delay");
    let released = receive_numbered(&sockets[1], COUNT as usize, long / 5).await;
    assert_eq!(released.len(), COUNT as usize, "{m1}: nothing held is lost");
    assert!(net.active_faults().is_empty());
    for member in [m0, m1] {
        let start = Instant::now();
        let plain = numbered_through(&net, member, COUNT, WAIT).await;
        assert_eq!(
            plain.len(),
            COUNT as usize,
            "{member}: all arrive once undone"
        );
        assert!(
            start.elapsed() < long / 5,
            "{member}: undelayed once undone"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_that_cannot_be_applied_are_refused_and_leave_nothing_behind() {
    let net = Network::create(2).expect("network");
    let (m0, m1) = (net.member(0), net.member(1));
    let slow = Fault::slow(m0, Rate::mbit(1));
    slow.apply(&net).expect("slow");
    assert!(slow.apply(&net).is_err(), "the same fault twice");
    assert!(
        Fault::slow(m0, Rate::kbit(64)).apply(&net).is_err(),
        "two rates on one member"
    );
    assert!(
        Fault::partition(&[m0], &[m0, m1]).apply(&net).is_err(),
        "a member on both sides"
    );
    assert!(
        Fault::lossy(m1, 0).apply(&net).is_err(),
        "no loss is not a fault"
    );
    assert!(
        Fault::isolate(m1).undo(&net).is_err(),
        "undo of a fault not in place"
    );

    // Two cuts of the same pair are two rules: undoing one leaves the other.
    let both = Fault::partition(&[m0], &[m1]);
    let one_way = Fault::partition_one_way(&[m0], &[m1]);
    both.apply(&net).expect("partition");
    one_way.apply(&net).expect("overlapping one-way cut");
    both.undo(&net).expect("undo partition");
    let limit = Duration::from_millis(500);
    let harness_port = SocketAddr::from((net.harness_ip(), 9));
    // m0's SYNs to m1 still vanish (nothing listens on m1, so an open path would be refused).
    let still = net.dial(m0, net.addr(m1, PORT), limit).await.expect("dial");
    assert_eq!(
        still,
        Dial::TimedOut,
        "the one-way cut outlives the partition"
    );
    // The harness is not part of any cut: m0 reaches its (closed) port at once.
    let harness = net.dial(m0, harness_port, limit).await.expect("dial");
    assert_eq!(harness, Dial::Failed("connect: Connection refused".into()));

    assert_eq!(net.active_faults(), [slow, one_way]);
    net.heal_all().expect("heal");
    assert!(net.active_faults().is_empty());
    let healed = net.dial(m0, net.addr(m1, PORT), limit).await.expect("dial");
    assert_eq!(healed, Dial::Failed("connect: Connection refused".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_network_removes_its_namespaces_and_its_root_interface() {
    let net = Network::create(2).expect("network");
    let scratch = Scratch::new(&net);
    let server = valkey(&net, net.member(1), &scratch, &[]).await;
    Fault::isolate(net.member(0))
        .apply(&net)
        .expect("a fault in place");
    let namespaces = net.namespaces();
    let root = net.root_interface();
    let listed = netns_list();
    for name in &namespaces {
        assert!(
            listed.contains(name.as_str()),
            "{name} exists while the network lives"
        );
    }
    assert!(
        root_ifindex(&root).is_some(),
        "{root} exists while the network lives"
    );

    // Dropped with a server still running in a member: its namespace loses its name and lives
    // on, nameless, until the server dies; nothing of it is left in the root namespace.
    drop(net);
    let listed = netns_list();
    for name in &namespaces {
        assert!(
            !listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} is gone:\n{listed}"
        );
    }
    assert_eq!(root_ifindex(&root), None, "{root} is gone");
    drop(server);
}

/// A run that dies by SIGKILL runs no destructor; its lock is released by the kernel, and the
/// next network created anywhere on the machine removes what it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_network_removes_what_a_crashed_run_left() {
    let earlier = Network::create(1).expect("network");
    let block = earlier.block();
    drop(earlier);
    // What a crashed 151-member run on that block would leave (m150: a name no 1-member network
    // makes), its root interface peered into it.
    let leftover = format!("vkn{block}-m150");
    let root = format!("vkn{block}");
    ip(&["netns", "add", &leftover]);
    ip(&[
        "link", "add", "name", &root, "type", "veth", "peer", "name", "harness", "netns", &leftover,
    ]);
    let leftover_ifindex = root_ifindex(&root).expect("leftover interface");

    let _next = Network::create(1).expect("network");
    let listed = netns_list();
    assert!(
        !listed
            .lines()
            .any(|l| l.split_whitespace().next() == Some(leftover.as_str())),
        "{leftover} removed:\n{listed}"
    );
    // If `_next` claimed the same block, `vkn<N>` exists again, but as a new interface.
    assert_ne!(
        root_ifindex(&root),
        Some(leftover_ifindex),
        "{root} removed"
    );
}
