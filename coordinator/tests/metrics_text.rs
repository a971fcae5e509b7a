//! The metrics endpoint: what a Prometheus scrape of a running coordinator's state looks like,
//! the health endpoints, and how the tiny HTTP responder treats anything else.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use valkey_coordinator::addr::Addr;
use valkey_coordinator::service::metrics;
use valkey_coordinator::service::registry::{NameState, Registry};
use valkey_coordinator::verdict::{Agreement, SentinelId, Verdict};

fn sentinel(port: u16) -> SentinelId {
    SentinelId::new(
        format!("10.0.0.{port}:26379")
            .parse::<Addr>()
            .expect("literal"),
    )
}

/// A registry where `mymaster` is agreed by 2 of 3 sentinels at epoch 7 and `other` has no
/// quorum, with some client traffic and one flapping link.
fn busy_registry() -> Registry {
    let names = ["mymaster".to_owned(), "other".to_owned()];
    let registry = Registry::new(&names, 3);
    let mut agreed = NameState::initial("mymaster", 3);
    agreed.verdict = Verdict::Agreed(Agreement {
        master: "10.1.0.2:6379".parse().expect("literal"),
        pod: None,
        run_id: None,
        config_epoch: 7,
        votes: 2,
        voters: vec![sentinel(1), sentinel(2)],
        failover_in_progress: false,
        master_reported_down: false,
    });
    agreed.changes = 3;
    agreed.generation = 9;
    registry.publish(agreed);

    registry.update_link(&sentinel(1), |link| link.connected = true);
    registry.update_link(&sentinel(2), |link| {
        link.connected = false;
        link.reconnects = 4;
    });
    let stats = registry.stats();
    stats.count_command("ping");
    stats.count_command("ping");
    stats.count_command("sentinel|get-master-addr-by-name");
    stats.command_latency.observe(Duration::from_micros(20));
    stats.command_latency.observe(Duration::from_millis(2));
    stats
        .clients_connected
        .store(5, std::sync::atomic::Ordering::Relaxed);
    registry
}

#[test]
fn a_scrape_shows_each_verdict_link_and_counter() {
    let text = metrics::render(&busy_registry());
    for expected in [
        r#"valkey_coordinator_verdict_agreed{name="mymaster"} 1"#,
        r#"valkey_coordinator_verdict_agreed{name="other"} 0"#,
        r#"valkey_coordinator_verdict_master{name="mymaster",master="10.1.0.2:6379"} 1"#,
        r#"valkey_coordinator_verdict_config_epoch{name="mymaster"} 7"#,
        r#"valkey_coordinator_verdict_votes{name="mymaster"} 2"#,
        r#"valkey_coordinator_verdict_votes{name="other"} 0"#,
        r#"valkey_coordinator_verdict_changes_total{name="mymaster"} 3"#,
        "valkey_coordinator_configured_sentinels 3",
        r#"valkey_coordinator_sentinel_up{sentinel="10.0.0.1:26379"} 1"#,
        r#"valkey_coordinator_sentinel_up{sentinel="10.0.0.2:26379"} 0"#,
        r#"valkey_coordinator_sentinel_reconnects_total{sentinel="10.0.0.2:26379"} 4"#,
        "valkey_coordinator_clients_connected 5",
        r#"valkey_coordinator_commands_total{command="ping"} 2"#,
        r#"valkey_coordinator_commands_total{command="sentinel|get-master-addr-by-name"} 1"#,
        r#"valkey_coordinator_command_duration_seconds_bucket{le="0.000025"} 1"#,
        r#"valkey_coordinator_command_duration_seconds_bucket{le="0.001"} 1"#,
        r#"valkey_coordinator_command_duration_seconds_bucket{le="0.005"} 2"#,
        r#"valkey_coordinator_command_duration_seconds_bucket{le="+Inf"} 2"#,
        "valkey_coordinator_command_duration_seconds_count 2",
        "# TYPE valkey_coordinator_command_duration_seconds histogram",
    ] {
        assert!(
            text.lines().any(|line| line == expected),
            "missing {expected:?} in:\n{text}"
        );
    }
    assert!(
        !text.contains(r#"verdict_master{name="other""#),
        "no master label without agreement:\n{text}"
    );
}

#[test]
fn every_sample_belongs_to_a_declared_family() {
    let text = metrics::render(&busy_registry());
    let declared: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let metric = line.split(['{', ' ']).next().unwrap_or_default();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| metric.strip_suffix(suffix))
            .filter(|base| declared.contains(base))
            .unwrap_or(metric);
        assert!(declared.contains(&family), "undeclared sample {line:?}");
        let value = line.rsplit(' ').next().unwrap_or_default();
        assert!(value.parse::<f64>().is_ok(), "not a number: {line:?}");
    }
}

#[test]
fn label_values_are_escaped() {
    let registry = Registry::new(&["we\"ird\\name\n".to_owned()], 1);
    let text = metrics::render(&registry);
    assert!(
        text.contains(r#"valkey_coordinator_verdict_agreed{name="we\"ird\\name\n"} 0"#),
        "{text}"
    );
}

async fn http(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .expect("answered in time")
        .expect("read response");
    response
}

#[tokio::test]
async fn the_endpoint_answers_get_metrics_and_refuses_the_rest() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(metrics::serve(
        listener,
        Arc::new(busy_registry()),
        shutdown.clone(),
    ));

    let ok = http(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(
        ok.contains("Content-Type: text/plain; version=0.0.4"),
        "{ok}"
    );
    let (head, body) = ok.split_once("\r\n\r\n").expect("head and body");
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    assert!(body.contains(r#"valkey_coordinator_verdict_agreed{name="mymaster"} 1"#));

    let missing = http(addr, "GET / HTTP/1.1\r\n\r\n").await;
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    let post = http(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let refused = http(addr, &huge).await;
    assert!(refused.starts_with("HTTP/1.1 431 "), "{refused}");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("stops on shutdown")
        .expect("no panic");
}

#[tokio::test]
async fn health_says_alive_and_ready_only_with_an_agreed_master_naming_every_reason() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound");
    let shutdown = CancellationToken::new();
    let lonely = Arc::new(Registry::new(&["mymaster".to_owned()], 3));
    let server = tokio::spawn(metrics::serve(
        listener,
        Arc::clone(&lonely),
        shutdown.clone(),
    ));

    let alive = http(addr, "GET /healthz HTTP/1.1\r\n\r\n").await;
    assert!(alive.starts_with("HTTP/1.1 200 OK\r\n"), "{alive}");
    let not_ready = http(addr, "GET /readyz HTTP/1.1\r\n\r\n").await;
    assert!(not_ready.starts_with("HTTP/1.1 503 "), "{not_ready}");
    assert!(not_ready.contains("mymaster: no quorum: "), "{not_ready}");
    shutdown.cancel();
    server.await.expect("no panic");

    let (ready, body) = metrics::readiness(&busy_registry());
    assert!(ready, "{body}");
    assert!(
        body.contains("mymaster: agreed on 10.1.0.2:6379 at epoch 7 by 2 sentinels"),
        "{body}"
    );
    assert!(body.contains("other: no quorum: "), "{body}");
}
