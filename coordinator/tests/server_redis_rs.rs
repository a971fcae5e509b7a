//! The unmodified `redis` crate (redis-rs 1.x, feature `sentinel`) with the coordinator as its
//! only sentinel: it sends `ROLE` to the sentinel, resolves the master through `SENTINEL
//! MASTERS`, then connects to that master and checks its `ROLE`, so the published master is a
//! real valkey-server started here.

mod server_support;

use std::process::Stdio;
use std::time::Duration;

use redis::sentinel::{Sentinel, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncCommands, ConnectionAddr, ProtocolVersion};
use server_support::*;
use tokio::process::{Child, Command};
use valkey_coordinator::service::server::{Permissions, Users};
use valkey_coordinator::verdict::Verdict;

/// A throwaway valkey-server on loopback, killed when dropped.
struct DataNode {
    _child: Child,
    port: u16,
}

impl DataNode {
    async fn start() -> Self {
        let binary = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../.deps/valkey/9.1.2/bin/valkey-server");
        assert!(
            binary.exists(),
            "run `bash tests/install-valkey.sh` first: {} is missing",
            binary.display()
        );
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            probe.local_addr().expect("addr").port()
        };
        let child = Command::new(binary)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start valkey-server");
        let node = Self {
            _child: child,
            port,
        };
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> =
                    redis::cmd("PING").query_async(&mut connection).await;
                if pong.is_ok() {
                    return node;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "valkey-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Publishes the data node as the master `votes` sentinels agree on.
fn publish_master(server: &TestServer, port: u16, votes: usize) {
    let mut state = fixture_agreed_state("mymaster", votes);
    if let Verdict::Agreed(agreement) = &mut state.verdict {
        agreement.master = addr(&format!("127.0.0.1:{port}"));
    }
    server.registry.publish(state);
}

#[tokio::test]
async fn redis_rs_sentinel_client_finds_and_uses_the_agreed_master_in_resp2_and_resp3() {
    let node = DataNode::start().await;
    let server = TestServer::start(|_| {}).await;
    publish_master(&server, node.port, 2);

    for protocol in [ProtocolVersion::RESP2, ProtocolVersion::RESP3] {
        let mut client = SentinelClientBuilder::new(
            [ConnectionAddr::Tcp(
                "127.0.0.1".to_owned(),
                server.addr.port(),
            )],
            "mymaster",
            SentinelServerType::Master,
        )
        .expect("builder")
        .set_client_to_sentinel_protocol(protocol)
        .build()
        .expect("sentinel client");
        let mut connection = client
            .get_async_connection()
            .await
            .expect("redis-rs resolves the master through the coordinator");
        let key = format!("written-through-{protocol:?}");
        let _: () = connection.set(&key, "yes").await.expect("write");
        let value: String = connection.get(&key).await.expect("read back");
        assert_eq!(value, "yes");
    }
    server.stop().await;
}

#[tokio::test]
async fn redis_rs_sees_no_master_while_there_is_no_quorum() {
    let node = DataNode::start().await;
    let server = TestServer::start(|_| {}).await;
    server.registry.publish(no_quorum_state("mymaster"));
    let mut sentinel =
        Sentinel::build(vec![format!("redis://127.0.0.1:{}", server.addr.port())]).expect("build");
    let error = sentinel
        .async_master_for("mymaster", None)
        .await
        .expect_err("no quorum means no master");
    assert!(
        error.to_string().to_lowercase().contains("master"),
        "an error about the master, not a protocol error: {error}"
    );
    // Quorum back: the same client finds the master.
    publish_master(&server, node.port, 3);
    let client = sentinel
        .async_master_for("mymaster", None)
        .await
        .expect("the agreed master");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the master");
    let _: () = connection.set("after-quorum", 1).await.expect("write");
    server.stop().await;
}

#[tokio::test]
async fn redis_rs_authenticates_to_the_coordinator_as_a_sentinel_client_user() {
    let node = DataNode::start().await;
    let server = TestServer::start(|config| {
        config.users = Users::default().with_user("app", "app-pw", Permissions::SentinelClient);
    })
    .await;
    publish_master(&server, node.port, 2);
    let mut client = SentinelClientBuilder::new(
        [ConnectionAddr::Tcp(
            "127.0.0.1".to_owned(),
            server.addr.port(),
        )],
        "mymaster",
        SentinelServerType::Master,
    )
    .expect("builder")
    .set_client_to_sentinel_username("app")
    .set_client_to_sentinel_password("app-pw")
    .build()
    .expect("sentinel client");
    let mut connection = client
        .get_async_connection()
        .await
        .expect("resolve with auth");
    let _: () = connection.set("with-auth", 1).await.expect("write");

    let mut wrong = SentinelClientBuilder::new(
        [ConnectionAddr::Tcp(
            "127.0.0.1".to_owned(),
            server.addr.port(),
        )],
        "mymaster",
        SentinelServerType::Master,
    )
    .expect("builder")
    .set_client_to_sentinel_username("app")
    .set_client_to_sentinel_password("wrong")
    .build()
    .expect("sentinel client");
    assert!(
        wrong.get_async_connection().await.is_err(),
        "a wrong password finds nothing"
    );
    server.stop().await;
}
