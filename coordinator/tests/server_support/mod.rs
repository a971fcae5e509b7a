//! What the server tests share: a server on 127.0.0.1:0 over a real [`Registry`] (the tests
//! publish `NameState`s into it exactly as the verdict owner does), a raw RESP client that
//! returns each reply's exact bytes, and the captured 9.1.2 sentinel fixtures.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use sentinel_protocol::codec::{ReplyCodec, Resp3ReplyCodec, encode_command};
use sentinel_protocol::limits::{ReplyLimits, ReplyProtocol, Scan, scan_reply};
use sentinel_protocol::sentinel::{FromReply, MasterRecord, ReplicaRecord};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use valkey_coordinator::addr::Addr;
use valkey_coordinator::service::registry::{NameState, Registry, ReplyCache};
use valkey_coordinator::service::server::{self, ServerConfig};
use valkey_coordinator::verdict::{
    Agreement, Candidate, MonotonicTime, NoQuorum, NoQuorumReason, SentinelId, SentinelReport,
    SentinelView, Verdict,
};

/// The run id of the 9.1.2 fixtures' sentinel 1, so `SENTINEL MYID` can match its capture.
pub const FIXTURE_MYID: &str = "64a4629598b6a6ab49ee6efb904304a7d3201c53";
/// How long a test waits for any one reply before failing.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A running server and the registry behind it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// Serves `mymaster` watched by 3 sentinels, with the fixture's run id and `config` changes.
    pub async fn start(configure: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::start_with_names(&["mymaster"], configure).await
    }

    pub async fn start_with_names(
        names: &[&str],
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let registry = Arc::new(Registry::new(&names, 3));
        let mut config = ServerConfig::new(FIXTURE_MYID);
        // The fixtures' masters are addresses nobody listens at: a test that wants the server's
        // own master link turns it back on.
        config.watch_masters = false;
        configure(&mut config);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server::run(
            vec![server::Listener::plain(listener)],
            Arc::new(config),
            Arc::clone(&registry),
            shutdown.clone(),
        ));
        Self {
            addr,
            registry,
            shutdown,
            task,
        }
    }

    pub async fn client(&self) -> RawClient {
        RawClient::connect(self.addr).await
    }

    /// Publishes the 9.1.2 fixture's master as agreed by all three sentinels.
    pub fn publish_fixture_agreement(&self) {
        self.registry.publish(fixture_agreed_state("mymaster", 3));
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(REPLY_TIMEOUT, self.task)
            .await
            .expect("server stops promptly after shutdown")
            .expect("server task did not panic")
            .expect("server returned Ok");
    }
}

/// A client that speaks raw RESP and hands back each reply's bytes exactly as received.
pub struct RawClient {
    pub stream: TcpStream,
    buffer: BytesMut,
    protocol: ReplyProtocol,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the server");
        Self {
            stream,
            buffer: BytesMut::new(),
            protocol: ReplyProtocol::Resp2,
        }
    }

    /// Tells the reply scanner to expect RESP3 frames (after `HELLO 3`).
    pub fn expect_resp3(&mut self) {
        self.protocol = ReplyProtocol::Resp3;
    }

    pub async fn send(&mut self, args: &[&str]) {
        let mut out = BytesMut::new();
        encode_command(args, &mut out);
        self.send_raw(&out).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write request");
    }

    /// The next complete reply's bytes.
    pub async fn read_reply(&mut self) -> Vec<u8> {
        tokio::time::timeout(REPLY_TIMEOUT, self.read_reply_untimed())
            .await
            .expect("a reply within the timeout")
    }

    async fn read_reply_untimed(&mut self) -> Vec<u8> {
        let limits = ReplyLimits::default();
        loop {
            if !self.buffer.is_empty() {
                match scan_reply(&self.buffer, &limits, self.protocol).expect("well-formed reply") {
                    Scan::Complete(len) => return self.buffer.split_to(len).to_vec(),
                    Scan::Incomplete => {}
                }
            }
            let read = self
                .stream
                .read_buf(&mut self.buffer)
                .await
                .expect("read reply");
            assert!(
                read > 0,
                "server closed the connection while a reply was expected"
            );
        }
    }

    /// Sends a command and returns its reply's bytes.
    pub async fn call(&mut self, args: &[&str]) -> Vec<u8> {
        self.send(args).await;
        self.read_reply().await
    }

    /// Sends a command and returns its reply as text (lossy), for readable assertions.
    pub async fn call_text(&mut self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.call(args).await).into_owned()
    }

    /// Switches to RESP3 with `HELLO 3`, returning the HELLO reply.
    pub async fn hello3(&mut self) -> Vec<u8> {
        self.expect_resp3();
        self.call(&["HELLO", "3"]).await
    }

    /// Waits until the server closes the connection, returning whatever it sent first.
    pub async fn read_until_closed(&mut self, within: Duration) -> Vec<u8> {
        let mut received = Vec::new();
        let result = tokio::time::timeout(within, async {
            let mut chunk = [0u8; 4096];
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => received.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        assert!(
            result.is_ok(),
            "the server did not close the connection within {within:?}; it sent {:?}",
            String::from_utf8_lossy(&received)
        );
        let mut all = self.buffer.split().to_vec();
        all.extend_from_slice(&received);
        all
    }
}

/// The bytes of one captured fixture.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol/tests/fixtures/9.1.2")
        .join(format!("{name}.resp"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read fixture {}: {e}", path.display()))
}

/// A fixture read into the typed model, RESP2 or RESP3 by its `resp2-`/`resp3-` prefix.
pub fn fixture_value<T: FromReply>(name: &str) -> T {
    let mut bytes = BytesMut::from(&fixture(name)[..]);
    if name.starts_with("resp3-") {
        let frame = Resp3ReplyCodec::new()
            .decode(&mut bytes)
            .expect("fixture decodes")
            .expect("fixture is complete");
        return T::from_resp3(&frame).expect("fixture reads into the model");
    }
    let frame = ReplyCodec::new()
        .decode(&mut bytes)
        .expect("fixture decodes")
        .expect("fixture is complete");
    T::from_resp2(&frame).expect("fixture reads into the model")
}

/// The fixture agreement with the record and replicas of one protocol's captures (RESP2 and
/// RESP3 were captured at different moments, so their timing fields differ).
pub fn fixture_agreed_state_from(protocol: u8) -> NameState {
    let mut state = fixture_agreed_state("mymaster", 3);
    state.master_record = Some(fixture_value(&format!("resp{protocol}-sentinel-master")));
    state.replicas = fixture_value(&format!("resp{protocol}-sentinel-replicas"));
    state
}

/// The master record sentinel 1 served (`resp2-sentinel-master`).
pub fn fixture_master_record() -> MasterRecord {
    fixture_value("resp2-sentinel-master")
}

/// The replicas sentinel 1 served (`resp2-sentinel-replicas`).
pub fn fixture_replicas() -> Vec<ReplicaRecord> {
    fixture_value("resp2-sentinel-replicas")
}

pub fn sentinel_id(port: u16) -> SentinelId {
    SentinelId::new(format!("127.0.0.1:{port}").parse().expect("valid addr"))
}

pub fn addr(text: &str) -> Addr {
    text.parse().expect("valid addr")
}

/// The state the owner publishes when `votes` sentinels agree on the fixture's master.
pub fn fixture_agreed_state(name: &str, votes: usize) -> NameState {
    let record = fixture_master_record();
    let master = Addr::from_parts(&record.instance.ip, &record.instance.port.to_string())
        .expect("fixture address");
    let voters: Vec<SentinelId> = (0..votes).map(|i| sentinel_id(26379 + i as u16)).collect();
    let mut views = BTreeMap::new();
    for voter in &voters {
        let mut report = SentinelReport::new(
            master.clone(),
            record.config_epoch,
            MonotonicTime::from_elapsed(Duration::from_secs(10)),
        );
        report.num_replicas = 2;
        report.num_other_sentinels = 2;
        views.insert(voter.clone(), SentinelView::Reports(report));
    }
    let mut master_record = record.clone();
    master_record.instance.name = name.to_owned();
    NameState {
        name: name.to_owned(),
        verdict: Verdict::Agreed(Agreement {
            master,
            pod: None,
            run_id: None,
            config_epoch: record.config_epoch,
            votes,
            voters,
            failover_in_progress: false,
            master_reported_down: false,
        }),
        views,
        master_record: Some(master_record),
        replicas: fixture_replicas(),
        monitors: BTreeMap::new(),
        generation: 1,
        changes: 1,
        published_at: SystemTime::now(),
        master_addr_reply: ReplyCache::default(),
    }
}

/// The state the owner publishes when two sentinels are unreachable out of three.
pub fn no_quorum_state(name: &str) -> NameState {
    let lone = sentinel_id(26379);
    let mut views = BTreeMap::new();
    views.insert(
        lone,
        SentinelView::Reports(SentinelReport::new(
            addr("127.0.252.1:6379"),
            0,
            MonotonicTime::from_elapsed(Duration::from_secs(10)),
        )),
    );
    views.insert(sentinel_id(26380), SentinelView::Unreachable);
    views.insert(sentinel_id(26381), SentinelView::Unreachable);
    NameState {
        name: name.to_owned(),
        verdict: Verdict::NoQuorum(NoQuorum {
            reason: NoQuorumReason::NotEnoughSentinels {
                counting: 1,
                needed: 2,
                configured: 3,
                unreachable: 2,
                stale: 0,
                unmonitored: 0,
            },
            candidates: vec![Candidate {
                master: addr("127.0.252.1:6379"),
                pod: None,
                config_epoch: 0,
                votes: 1,
            }],
        }),
        views,
        master_record: None,
        replicas: Vec::new(),
        monitors: BTreeMap::new(),
        generation: 2,
        changes: 2,
        published_at: SystemTime::now(),
        master_addr_reply: ReplyCache::default(),
    }
}

/// Bytes as text for assertion messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Any `Bytes`-like as a `Bytes`.
pub fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}
