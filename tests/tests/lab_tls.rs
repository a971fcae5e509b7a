//! The TLS-only lab on every TLS-capable build (`ValkeyVersion::TLS`): it forms and fails over with
//! every link on TLS, it has no plaintext port anywhere and refuses clients without a lab
//! certificate, ACL users work over it together with every lab helper, and Valkey's outgoing
//! links check the peer's chain but not its name (rust-stack.md 2.5).
//!
//! A build that is not installed fails its test with the lab's `NotInstalled` error: CI installs
//! every build, so a missing one is a broken setup, not a reason to skip.

use std::{collections::HashSet, fs, net::SocketAddr, time::Duration};

use sentinel_protocol::event::{Channel, InstanceKind, Payload};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use valkey_lab::{
    AuthSpec, Client, EventLog, Lab, LabError, LabSpec, PodId, RoleSampler, SentinelStart,
    StartRole, Transport, ValkeyVersion, Writer, client::DEFAULT_TIMEOUT, replies, tls,
};

const WAIT: Duration = Duration::from_secs(20);

/// A TLS-only group of 3 data pods and 3 sentinels comes up: every replica reports
/// `master_link_status:up` over TLS replication, and every sentinel monitors the master and sees
/// the 2 replicas and the 2 other sentinels, over links that can only be TLS (`port 0`). A kill -9
/// of the master then fails over, every sentinel names the same new master, and the remaining
/// replica links to it.
async fn tls_group_forms_and_fails_over(version: ValkeyVersion) {
    let mut lab = LabSpec::new(version)
        .tls(true)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms over TLS");
    for i in 0..lab.data_count() {
        let mut client = lab.client(PodId::Data(i)).await.expect("TLS connect");
        assert_eq!(config_get(&mut client, "port").await, "0", "valkey-{i}");
        assert_eq!(
            config_get(&mut client, "tls-port").await,
            "6379",
            "valkey-{i}"
        );
        assert_eq!(config_get(&mut client, "tls-replication").await, "yes");
        assert_eq!(config_get(&mut client, "tls-auth-clients").await, "yes");
    }
    for i in 1..lab.data_count() {
        let info = lab.replication_info(i).await.expect("INFO replication");
        assert_eq!(info.master_link_status.as_deref(), Some("up"), "valkey-{i}");
    }
    let master = lab.data_addr(0);
    for j in 0..lab.sentinel_count() {
        let record = lab
            .sentinel_master(j)
            .await
            .expect("SENTINEL MASTER")
            .expect("monitors the master");
        assert_eq!(
            (record.instance.ip.as_str(), record.instance.port),
            (master.ip().to_string().as_str(), master.port()),
            "sentinel-{j}"
        );
        assert_eq!(record.num_slaves, 2, "sentinel-{j}");
        assert_eq!(record.num_other_sentinels, 2, "sentinel-{j}");
    }

    lab.kill(PodId::Data(0));
    let agreed = lab
        .wait_sentinels_agree(WAIT, |addr, _| addr != master)
        .await
        .expect("sentinels fail over");
    assert_eq!(agreed.votes, 3, "every sentinel names the new master");
    let new_index = lab.data_index(agreed.addr).expect("a lab pod");
    lab.wait_replication_up(new_index, WAIT)
        .await
        .expect("the other replica links to the new master over TLS");
}

/// Nothing answers plaintext: every data pod and sentinel listens on exactly one TCP address, its
/// standard port, and a plaintext `PING` there gets no RESP reply. And TLS alone is not enough:
/// a client with no certificate, one from an unrelated CA or an expired one from the lab's own
/// CA is refused by every pod and sentinel with the TLS alert that names the reason
/// (`tls-auth-clients yes`), while the lab's client certificate is accepted.
async fn tls_lab_has_no_plaintext_port_and_refuses_unknown_clients(version: ValkeyVersion) {
    let lab = LabSpec::new(version)
        .tls(true)
        .start()
        .await
        .expect("lab starts");
    let pki = lab.tls().expect("a TLS lab");
    let ca = pki.ca_cert();
    let negative = pki.negative();
    // Who knocks, and the TLS alert the server answers with.
    let strangers = [
        ("no certificate", None, "CertificateRequired"),
        (
            "a certificate of another CA",
            Some(&negative.foreign),
            "UnknownCA",
        ),
        (
            "an expired certificate",
            Some(&negative.expired),
            "CertificateExpired",
        ),
    ]
    .map(|(who, identity, alert)| {
        let config = tls::client_config(ca, identity).expect("client config");
        (who, Transport::Tls(config), alert)
    });

    let pods = (0..lab.data_count())
        .map(PodId::Data)
        .chain((0..lab.sentinel_count()).map(PodId::Sentinel));
    for id in pods {
        let addr = lab.addr(id);
        let pid = lab.pid(id).expect("running");
        assert_eq!(
            listening(pid),
            vec![addr],
            "{id} listens only on its TLS port"
        );
        let answer = plaintext_ping(addr).await;
        assert!(
            !answer.is_resp(),
            "{id} answered plaintext PING: {answer:?}"
        );
        for (who, transport, alert) in &strangers {
            match tls_ping(addr, transport).await {
                Err(e @ (LabError::Connect { .. } | LabError::ConnectionLost { .. })) => {
                    let refusal = e.to_string();
                    assert!(
                        refusal.contains(&format!("received fatal alert: {alert}")),
                        "{id} refused a client with {who} without the {alert} alert: {refusal}"
                    );
                }
                other => panic!("{id} let in a client with {who}: {other:?}"),
            }
        }
        tls_ping(addr, lab.transport())
            .await
            .unwrap_or_else(|e| panic!("{id} refused the lab's client certificate: {e}"));
    }
}

/// ACL users and TLS together, with every lab helper over TLS: the group forms with
/// `requirepass`, a sentinel user, a replication user and a sentinel password; an
/// unauthenticated TLS client gets `NOAUTH`; a sentinel-following writer, the event log and the
/// ROLE sampler run through a kill -9 failover with no two masters at once; the old master comes
/// back as a replica; a paused replica goes `+sdown` and back; a wiped sentinel rejoins once
/// registered.
async fn tls_with_acl_users_and_every_lab_helper(version: ValkeyVersion) {
    let auth = AuthSpec {
        replication_user: Some(("replicator".into(), "lab-repl-pw".into())),
        sentinel_password: Some("lab-sentinel-pw".into()),
        ..AuthSpec::simple()
    };
    let mut lab = LabSpec::new(version)
        .tls(true)
        .auth(auth)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("group forms");
    for id in [PodId::Data(0), PodId::Sentinel(0)] {
        let mut anonymous =
            Client::connect_over(lab.addr(id), lab.transport(), None, DEFAULT_TIMEOUT)
                .await
                .expect("TLS connect");
        match anonymous.call(&["ROLE"]).await {
            Err(LabError::Server { message, .. }) => {
                assert!(message.starts_with("NOAUTH"), "{id}: {message}")
            }
            other => panic!("{id} answered an unauthenticated ROLE: {other:?}"),
        }
    }

    let events = EventLog::start(&lab).await.expect("subscribe over TLS");
    let sampler = RoleSampler::start(&lab);
    let writer = Writer::start(&lab, Some(Duration::from_millis(5)));
    let old = lab.data_addr(0);
    writer
        .wait_acked_by(old, 20, WAIT)
        .await
        .expect("writes over TLS");
    lab.kill(PodId::Data(0));
    events
        .wait_majority(Channel::SwitchMaster, |_| true, WAIT)
        .await
        .expect("+switch-master over TLS");
    let agreed = lab
        .wait_sentinels_agree(WAIT, |addr, _| addr != old)
        .await
        .expect("sentinels agree on a new master");
    writer
        .wait_acked_by(agreed.addr, 20, WAIT)
        .await
        .expect("writes follow the new master");
    let new_index = lab.data_index(agreed.addr).expect("a lab pod");
    lab.restart_data(0, StartRole::ReplicaOf(agreed.addr))
        .await
        .expect("old master restarts");
    lab.wait_replication_up(new_index, WAIT)
        .await
        .expect("replication with the replication user over TLS");
    lab.wait_sentinels_see(2, 2, WAIT)
        .await
        .expect("the failover is over: sentinels see the old master as a replica");
    let log = writer.stop().await;
    let timeline = sampler.stop().await;
    assert!(
        timeline.dual_masters().is_empty(),
        "two masters at once:\n{}",
        timeline.changes()
    );
    lab.check_lost_writes(&log, new_index)
        .await
        .expect("read back over TLS");

    // The pod that was a replica all along: the old master's `+sdown` is already in the log.
    let replica = (1..lab.data_count())
        .find(|&i| i != new_index)
        .expect("a third pod");
    let replica_ip = lab.data_addr(replica).ip();
    let is_replica = |p: &Payload| {
        matches!(p, Payload::Instance { instance, .. }
            if instance.kind == InstanceKind::Slave
                && instance.instance.ip.parse() == Ok(replica_ip))
    };
    lab.pause(PodId::Data(replica)).expect("SIGSTOP");
    match lab.role(PodId::Data(replica)).await {
        Err(LabError::Connect { .. } | LabError::CommandTimeout { .. }) => {}
        other => panic!("a paused pod should time out, got {other:?}"),
    }
    events
        .wait_majority(Channel::SDown, is_replica, WAIT)
        .await
        .expect("+sdown");
    lab.resume(PodId::Data(replica)).expect("SIGCONT");
    events
        .wait_majority(Channel::SDownCleared, is_replica, WAIT)
        .await
        .expect("-sdown");

    lab.restart_sentinel(1, SentinelStart::Wiped)
        .await
        .expect("restart wiped");
    assert_eq!(lab.sentinel_master(1).await.expect("SENTINEL MASTER"), None);
    lab.monitor(1, agreed.addr)
        .await
        .expect("register over TLS");
    lab.wait_sentinels_see(2, 2, WAIT)
        .await
        .expect("the wiped sentinel rejoins over TLS");
    assert_eq!(
        events.resets(),
        Vec::<String>::new(),
        "a sentinel was reset"
    );
}

/// Valkey checks the chain of the peer on its outgoing TLS links and never its name
/// (rust-stack.md 2.5): once the master presents a lab-CA certificate for `wrong-name.invalid`
/// (rustls, dialling the master's IP, now refuses it), its replica still reconnects and links
/// up; once it presents a certificate of an unrelated CA, the replica stays down.
async fn replication_checks_the_masters_chain_but_not_its_name(version: ValkeyVersion) {
    let mut lab = LabSpec::new(version)
        .tls(true)
        .data_pods(2)
        .sentinels(0)
        .start()
        .await
        .expect("lab starts");
    lab.wait_formed(WAIT).await.expect("replica links up");
    // Opened before the swap: after it, the lab's own client no longer accepts the master.
    let mut master = lab.client(PodId::Data(0)).await.expect("connect");
    let negative = lab.tls().expect("a TLS lab").negative().clone();

    present(&mut lab, &mut master, &negative.wrong_name).await;
    match lab.client(PodId::Data(0)).await {
        Err(LabError::Connect { source, .. }) => assert!(
            source.to_string().contains("not valid for name"),
            "rustls should refuse the name: {source}"
        ),
        other => panic!("rustls accepted a certificate without the master's IP: {other:?}"),
    }
    let before = replica_client_ids(&mut master).await;
    master
        .call(&["CLIENT", "KILL", "TYPE", "replica"])
        .await
        .expect("drop the replica's link");
    wait_new_replica_link(&mut master, &before).await;
    lab.wait_replication_up(0, WAIT)
        .await
        .expect("the replica links up to a master whose certificate names someone else");

    present(&mut lab, &mut master, &negative.foreign).await;
    master
        .call(&["CLIENT", "KILL", "TYPE", "replica"])
        .await
        .expect("drop the replica's link");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        replica_client_ids(&mut master).await,
        HashSet::new(),
        "a replica linked to a master of an unrelated CA"
    );
    let info = lab.replication_info(1).await.expect("INFO replication");
    assert_eq!(info.master_link_status.as_deref(), Some("down"));
}

valkey_lab::on_every_tls_version!(
    tls_group_forms_and_fails_over,
    tls_lab_has_no_plaintext_port_and_refuses_unknown_clients,
    tls_with_acl_users_and_every_lab_helper,
    replication_checks_the_masters_chain_but_not_its_name,
);

// === helpers ===

async fn config_get(client: &mut Client, name: &str) -> String {
    let frame = client
        .call(&["CONFIG", "GET", name])
        .await
        .expect("CONFIG GET");
    let valkey_lab::Frame::Array(pair) = &frame else {
        panic!("CONFIG GET {name}: {}", replies::render(&frame));
    };
    pair.get(1).and_then(replies::text).unwrap_or_default()
}

/// `PING` and its reply over `transport`, connecting as a stranger would (no `AUTH`).
async fn tls_ping(addr: SocketAddr, transport: &Transport) -> valkey_lab::Result<()> {
    let mut client = Client::connect_over(addr, transport, None, DEFAULT_TIMEOUT).await?;
    client.ping().await
}

/// What a plaintext client gets back from `PING\r\n`.
#[derive(Debug)]
#[expect(
    dead_code,
    reason = "the payloads are read through Debug, in failure messages"
)]
enum PlaintextAnswer {
    Refused(std::io::Error),
    Closed,
    Silent,
    Bytes(Vec<u8>),
}

impl PlaintextAnswer {
    /// Whether the bytes start like a RESP reply (`+PONG`, an error, ...).
    fn is_resp(&self) -> bool {
        matches!(self, PlaintextAnswer::Bytes(b) if b.first().is_some_and(|c| b"+-:$*".contains(c)))
    }
}

async fn plaintext_ping(addr: SocketAddr) -> PlaintextAnswer {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(e) => return PlaintextAnswer::Refused(e),
    };
    if let Err(e) = stream.write_all(b"PING\r\n").await {
        return PlaintextAnswer::Refused(e);
    }
    let mut buf = vec![0; 64];
    match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
        Err(_) => PlaintextAnswer::Silent,
        Ok(Ok(0) | Err(_)) => PlaintextAnswer::Closed,
        Ok(Ok(n)) => PlaintextAnswer::Bytes(buf[..n].to_vec()),
    }
}

/// Every TCP address process `pid` listens on: its socket inodes (`/proc/<pid>/fd`) matched
/// against the `LISTEN` rows of `/proc/net/tcp` and `tcp6` (an IPv6 listener shows as `[::]`).
fn listening(pid: u32) -> Vec<SocketAddr> {
    let inodes: HashSet<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the pod's fds")
        .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
            Some(inode.to_owned())
        })
        .collect();
    let mut found = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = fs::read_to_string(format!("/proc/{pid}/net/{table}")).expect("net table");
        for row in text.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            const LISTEN: &str = "0A";
            if cols.len() < 10 || cols[3] != LISTEN || !inodes.contains(cols[9]) {
                continue;
            }
            let (ip, port) = cols[1].split_once(':').expect("ip:port");
            let port = u16::from_str_radix(port, 16).expect("hex port");
            let addr = match u32::from_str_radix(ip, 16) {
                // IPv4 is printed as the in-memory (network order) word read little-endian.
                Ok(word) if ip.len() == 8 => SocketAddr::from((word.to_le_bytes(), port)),
                _ => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
            };
            found.push(addr);
        }
    }
    found
}

/// Swaps `pair` into the master's volume and has it reload (`CONFIG SET` of the same paths
/// reloads the TLS context).
async fn present(lab: &mut Lab, master: &mut Client, pair: &valkey_lab::CertFiles) {
    let files = lab
        .tls_mut()
        .expect("a TLS lab")
        .install("valkey-0", pair)
        .expect("install");
    let (cert, key) = (
        files.cert.display().to_string(),
        files.key.display().to_string(),
    );
    master
        .call(&[
            "CONFIG",
            "SET",
            "tls-cert-file",
            &cert,
            "tls-key-file",
            &key,
        ])
        .await
        .expect("reload the master's certificate");
}

/// Client ids of the master's replica connections.
async fn replica_client_ids(master: &mut Client) -> HashSet<String> {
    let frame = master
        .call(&["CLIENT", "LIST", "TYPE", "replica"])
        .await
        .expect("CLIENT LIST");
    let list = replies::text(&frame).unwrap_or_default();
    list.lines()
        .filter_map(|line| line.split_whitespace().next()?.strip_prefix("id="))
        .map(str::to_owned)
        .collect()
}

/// Waits until the master has a replica connection that is not one of `before`.
async fn wait_new_replica_link(master: &mut Client, before: &HashSet<String>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = replica_client_ids(master).await;
        if now.iter().any(|id| !before.contains(id)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new replica link within {WAIT:?} (still {now:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
