//! Connection handling: pipelining, hostile input, authentication, timeouts and the client
//! limit. In every misbehaviour test a second client keeps being served, because one bad client
//! must never cost the others anything.

mod server_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use server_support::*;
use valkey_coordinator::service::server::{Permissions, Users};

const ASK: [&str; 3] = ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"];

/// A bystander that must keep getting the right master while another client misbehaves.
async fn assert_bystander_served(bystander: &mut RawClient) {
    assert_eq!(bystander.call(&ASK).await, fixture("resp2-get-master-addr"));
}

#[tokio::test]
async fn fifty_pipelined_commands_in_one_write_are_answered_in_order() {
    let server = TestServer::start(|_| {}).await;
    server.publish_fixture_agreement();
    let mut client = server.client().await;
    let mut batch = bytes::BytesMut::new();
    let mut expected = Vec::new();
    for i in 0..50 {
        let command: Vec<String> = match i % 4 {
            0 => ASK.iter().map(|s| s.to_string()).collect(),
            1 => vec!["PING".into(), format!("m{i}")],
            2 => vec!["NOPE".into(), format!("{i}")],
            _ => vec![
                "SENTINEL".into(),
                "GET-MASTER-ADDR-BY-NAME".into(),
                "other".into(),
            ],
        };
        sentinel_protocol::codec::encode_command(&command, &mut batch);
        expected.push(match i % 4 {
            0 => fixture("resp2-get-master-addr"),
            1 => format!("${}\r\nm{i}\r\n", format!("m{i}").len()).into_bytes(),
            2 => format!("-ERR unknown command 'NOPE', with args beginning with: '{i}' \r\n")
                .into_bytes(),
            _ => b"*-1\r\n".to_vec(),
        });
    }
    client.send_raw(&batch).await;
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(text(&client.read_reply().await), text(want), "reply {i}");
    }
    server.stop().await;
}

/// A client that writes its request a byte at a time (each byte its own read on the server:
/// the request is cut mid-frame on every read) gets one reply, once the request is whole, and
/// the next whole request after it is answered too.
#[tokio::test]
async fn a_request_cut_across_many_reads_is_answered_once_whole() {
    let server = TestServer::start(|_| {}).await;
    server.publish_fixture_agreement();
    let mut client = server.client().await;
    let mut request = bytes::BytesMut::new();
    sentinel_protocol::codec::encode_command(&ASK, &mut request);
    for byte in request.iter() {
        client.send_raw(&[*byte]).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(client.read_reply().await, fixture("resp2-get-master-addr"));
    let mut bystander = server.client().await;
    assert_bystander_served(&mut bystander).await;
    assert_bystander_served(&mut client).await;
    server.stop().await;
}

/// A client that sends thousands of requests before reading any reply gets more reply bytes
/// than its socket takes at once: the rest waits for the client and arrives whole and in
/// order, while another client is served meanwhile.
#[tokio::test]
async fn replies_larger_than_the_socket_takes_arrive_whole_and_in_order() {
    let server = TestServer::start(|_| {}).await;
    server.publish_fixture_agreement();
    let mut client = server.client().await;
    let mut batch = bytes::BytesMut::new();
    const COUNT: usize = 20_000;
    for i in 0..COUNT {
        let message = format!("{i:0>200}");
        sentinel_protocol::codec::encode_command(&["PING", message.as_str()], &mut batch);
    }
    client.send_raw(&batch).await;
    let mut bystander = server.client().await;
    assert_bystander_served(&mut bystander).await;
    for i in 0..COUNT {
        let want = format!("$200\r\n{i:0>200}\r\n");
        assert_eq!(text(&client.read_reply().await), want, "reply {i}");
    }
    server.stop().await;
}

#[tokio::test]
async fn inline_commands_work_as_valkey_cli_sends_them() {
    let server = TestServer::start(|_| {}).await;
    server.publish_fixture_agreement();
    let mut client = server.client().await;
    client
        .send_raw(b"PING\r\nSENTINEL get-master-addr-by-name mymaster\r\n")
        .await;
    assert_eq!(client.read_reply().await, b"+PONG\r\n");
    assert_eq!(client.read_reply().await, fixture("resp2-get-master-addr"));
    server.stop().await;
}

#[tokio::test]
async fn protocol_errors_get_valkeys_error_and_a_close_while_others_are_served() {
    let server = TestServer::start(|config| {
        config.limits.max_request_bytes = 64 * 1024;
    })
    .await;
    server.publish_fixture_agreement();
    let mut bystander = server.client().await;

    let deep_nesting = "*1\r\n".repeat(100_000);
    let oversized = format!("*2\r\n$4\r\nPING\r\n${}\r\n", 10 * 1024 * 1024);
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "malformed element",
            b"*1\r\n+PING\r\n".to_vec(),
            "-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        (
            "deep nesting",
            deep_nesting.into_bytes(),
            "-ERR Protocol error: expected '$', got '*'\r\n",
        ),
        (
            "bad multibulk length",
            b"*abc\r\n".to_vec(),
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            "oversized bulk",
            oversized.into_bytes(),
            "-ERR Protocol error: bulk argument too long (limit 65536 bytes)\r\n",
        ),
        (
            "unbalanced quotes",
            b"PING \"oops\r\n".to_vec(),
            "-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ];
    for (what, bytes, error) in cases {
        let mut offender = server.client().await;
        // A valid command first: its reply must still come out, before the error.
        offender.send(&["PING"]).await;
        offender.send_raw(&bytes).await;
        let got = offender.read_until_closed(REPLY_TIMEOUT).await;
        assert_eq!(text(&got), format!("+PONG\r\n{error}"), "{what}");
        assert_bystander_served(&mut bystander).await;
    }

    // An incomplete request that keeps growing past the request size cap is cut off too.
    let mut offender = server.client().await;
    let mut big = b"*3\r\n".to_vec();
    for _ in 0..2 {
        big.extend_from_slice(b"$60000\r\n");
        big.extend(std::iter::repeat_n(b'x', 60_000));
        big.extend_from_slice(b"\r\n");
    }
    offender.send_raw(&big).await;
    let got = text(&offender.read_until_closed(REPLY_TIMEOUT).await);
    assert!(
        got.starts_with("-ERR Protocol error: request too big"),
        "{got}"
    );
    assert_bystander_served(&mut bystander).await;
    server.stop().await;
}

#[tokio::test]
async fn unknown_commands_and_subcommands_are_errors_never_a_close() {
    let server = TestServer::start(|_| {}).await;
    server.publish_fixture_agreement();
    let mut client = server.client().await;
    for command in [
        &["FLUSHALL"][..],
        &["CLIENT", "KILL", "TYPE", "normal"],
        &["CLIENT", "CAPA", "redirect"],
        &["SENTINEL", "DEBUG"],
        &["COORDINATOR", "EXPLODE"],
        &["SELECT", "0"],
    ] {
        let reply = client.call_text(command).await;
        assert!(reply.starts_with("-ERR "), "{command:?}: {reply}");
        assert_bystander_served(&mut client).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_closed_at_the_handshake_timeout_and_others_stay() {
    let server = TestServer::start(|config| {
        config.handshake_timeout = Duration::from_millis(300);
        config.idle_timeout = Duration::from_secs(2);
    })
    .await;
    server.publish_fixture_agreement();
    let mut silent = server.client().await;
    let mut active = server.client().await;
    assert_bystander_served(&mut active).await;
    let started = tokio::time::Instant::now();
    let sent = silent.read_until_closed(Duration::from_secs(3)).await;
    assert!(sent.is_empty(), "closed without a word: {}", text(&sent));
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(1500),
        "closed after {waited:?}"
    );
    // The client that spoke is established: the idle timeout, not the handshake one, applies.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_bystander_served(&mut active).await;
    // And after the idle timeout, it too is closed.
    active.read_until_closed(Duration::from_secs(4)).await;
    server.stop().await;
}

#[tokio::test]
async fn an_unauthenticated_client_cannot_hold_its_slot_by_chattering() {
    let server = TestServer::start(|config| {
        config.users = Users::with_requirepass("hunter2");
        config.handshake_timeout = Duration::from_millis(500);
    })
    .await;
    let mut chatty = server.client().await;
    let started = tokio::time::Instant::now();
    let closed = loop {
        chatty.send(&["PING"]).await;
        let mut buf = [0u8; 256];
        use tokio::io::AsyncReadExt as _;
        match tokio::time::timeout(Duration::from_secs(3), chatty.stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => assert_eq!(&buf[..n], b"-NOAUTH Authentication required.\r\n"),
            Err(_) => break false,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        closed,
        "the server must close a client that never authenticates"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    server.stop().await;
}

#[tokio::test]
async fn authentication_follows_valkeys_words_and_order() {
    let server = TestServer::start(|config| {
        config.users = Users::with_requirepass("hunter2")
            .with_user("app", "app-pw", Permissions::SentinelClient)
            .with_user("ops", "ops-pw", Permissions::Admin);
    })
    .await;
    server.publish_fixture_agreement();
    let mut client = server.client().await;
    // Unknown commands are reported before authentication is checked, as Valkey does.
    assert!(
        client
            .call_text(&["NOPE"])
            .await
            .starts_with("-ERR unknown command 'NOPE'")
    );
    for command in [
        &["PING"][..],
        &ASK,
        &["SENTINEL", "MASTERS"],
        &["SUBSCRIBE", "x"],
    ] {
        assert_eq!(
            client.call_text(command).await,
            "-NOAUTH Authentication required.\r\n",
            "{command:?}"
        );
    }
    assert_eq!(
        client.call_text(&["HELLO", "3"]).await,
        "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n"
    );
    let wrongpass = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    assert_eq!(client.call_text(&["AUTH", "wrong"]).await, wrongpass);
    assert_eq!(
        client.call_text(&["AUTH", "app", "hunter2"]).await,
        wrongpass
    );
    assert_eq!(client.call_text(&["AUTH", "nobody", "x"]).await, wrongpass);
    assert_eq!(
        client
            .call_text(&["HELLO", "3", "AUTH", "app", "nope"])
            .await,
        wrongpass,
        "a failed HELLO AUTH switches nothing"
    );
    assert_eq!(
        client.call_text(&["PING"]).await,
        "-NOAUTH Authentication required.\r\n"
    );

    // A sentinel-client user: everything clients send, but not the coordinator's own commands.
    client.expect_resp3();
    let hello = client
        .call_text(&["HELLO", "3", "AUTH", "app", "app-pw", "SETNAME", "x"])
        .await;
    assert!(hello.starts_with("%6\r\n"), "{hello}");
    assert_eq!(client.call(&ASK).await, fixture("resp3-get-master-addr"));
    assert_eq!(
        client.call_text(&["COORDINATOR", "STATUS"]).await,
        "-NOPERM User app has no permissions to run the 'coordinator|status' command\r\n"
    );

    // Admin users (named or the default user) may.
    let mut ops = server.client().await;
    assert_eq!(ops.call_text(&["AUTH", "ops", "ops-pw"]).await, "+OK\r\n");
    assert!(
        ops.call_text(&["COORDINATOR", "STATUS"])
            .await
            .starts_with('$')
    );
    let mut default = server.client().await;
    assert_eq!(default.call_text(&["AUTH", "hunter2"]).await, "+OK\r\n");
    assert_eq!(
        default.call_text(&["AUTH", "default", "hunter2"]).await,
        "+OK\r\n"
    );
    assert!(
        default
            .call_text(&["COORDINATOR", "VERDICT", "mymaster"])
            .await
            .starts_with('$')
    );
    server.stop().await;
}

#[tokio::test]
async fn before_auth_the_tighter_valkey_limits_apply() {
    let server = TestServer::start(|config| {
        config.users = Users::with_requirepass("hunter2");
    })
    .await;
    let mut early = server.client().await;
    let args: Vec<String> = (0..11).map(|i| format!("a{i}")).collect();
    let mut request = bytes::BytesMut::new();
    sentinel_protocol::codec::encode_command(&args, &mut request);
    early.send_raw(&request).await;
    assert_eq!(
        text(&early.read_until_closed(REPLY_TIMEOUT).await),
        "-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    // After AUTH the same request is only an unknown command.
    let mut late = server.client().await;
    assert_eq!(late.call_text(&["AUTH", "hunter2"]).await, "+OK\r\n");
    late.send_raw(&request).await;
    assert!(text(&late.read_reply().await).starts_with("-ERR unknown command 'a0'"));
    server.stop().await;
}

#[tokio::test]
async fn the_client_limit_refuses_with_valkeys_error_and_frees_slots() {
    let server = TestServer::start(|config| config.max_clients = 2).await;
    server.publish_fixture_agreement();
    let mut first = server.client().await;
    let mut second = server.client().await;
    assert_bystander_served(&mut first).await;
    assert_bystander_served(&mut second).await;
    let mut third = server.client().await;
    assert_eq!(
        text(&third.read_until_closed(REPLY_TIMEOUT).await),
        "-ERR max number of clients reached\r\n"
    );
    let stats = server.registry.stats();
    assert_eq!(stats.clients_refused.load(Ordering::Relaxed), 1);
    assert_eq!(stats.clients_connected.load(Ordering::Relaxed), 2);

    drop(first);
    let deadline = tokio::time::Instant::now() + REPLY_TIMEOUT;
    while stats.clients_connected.load(Ordering::Relaxed) > 1 {
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut fourth = server.client().await;
    assert_bystander_served(&mut fourth).await;
    assert_bystander_served(&mut second).await;
    server.stop().await;
}

#[tokio::test]
async fn every_command_is_counted_with_its_latency() {
    let server = TestServer::start(|_| {}).await;
    server.publish_fixture_agreement();
    let mut client = server.client().await;
    for _ in 0..3 {
        client.call(&ASK).await;
    }
    client.call(&["PING"]).await;
    client.call(&["NOPE"]).await;
    let stats = server.registry.stats();
    let count = |name: &str| {
        stats
            .commands
            .get(name)
            .map(|c| c.load(Ordering::Relaxed))
            .unwrap_or(0)
    };
    assert_eq!(count("sentinel|get-master-addr-by-name"), 3);
    assert_eq!(count("ping"), 1);
    assert_eq!(count("unknown"), 1);
    let (buckets, _) = stats.command_latency.snapshot();
    assert_eq!(buckets.iter().sum::<u64>(), 5);
    assert_eq!(stats.clients_accepted.load(Ordering::Relaxed), 1);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_every_client_and_returns() {
    let server = TestServer::start(|_| {}).await;
    let mut idle = server.client().await;
    let mut subscriber = server.client().await;
    subscriber.call(&["PSUBSCRIBE", "*"]).await;
    assert_eq!(idle.call(&["PING"]).await, b"+PONG\r\n");
    let addr = server.addr;
    server.stop().await;
    idle.read_until_closed(REPLY_TIMEOUT).await;
    subscriber.read_until_closed(REPLY_TIMEOUT).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

/// The default timeouts, on tokio's paused clock: a silent client is closed at 10 s, an
/// established one is left alone until 300 s of silence.
#[tokio::test(start_paused = true)]
async fn default_timeouts_hold_on_the_paused_clock() {
    use valkey_coordinator::service::server::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT};
    let server = TestServer::start(|_| {}).await;
    server.publish_fixture_agreement();
    let started = tokio::time::Instant::now();
    let mut silent = server.client().await;
    let mut established = server.client().await;
    assert_bystander_served(&mut established).await;
    silent.read_until_closed(Duration::from_secs(60)).await;
    let waited = started.elapsed();
    assert!(
        waited >= DEFAULT_HANDSHAKE_TIMEOUT
            && waited < DEFAULT_HANDSHAKE_TIMEOUT + Duration::from_secs(1),
        "silent client closed after {waited:?}"
    );
    // Just short of the idle timeout the established client is still served...
    tokio::time::sleep(DEFAULT_IDLE_TIMEOUT - Duration::from_secs(15)).await;
    assert_bystander_served(&mut established).await;
    // ...and a full idle timeout after its last command it is closed.
    let last_command = tokio::time::Instant::now();
    established
        .read_until_closed(DEFAULT_IDLE_TIMEOUT + Duration::from_secs(60))
        .await;
    let idle = last_command.elapsed();
    assert!(
        idle >= DEFAULT_IDLE_TIMEOUT && idle < DEFAULT_IDLE_TIMEOUT + Duration::from_secs(1),
        "closed after {idle:?} of silence"
    );
    server.stop().await;
}
