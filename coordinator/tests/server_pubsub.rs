//! The event tap as clients see it: sentinel's confirmations and message frames, in RESP2
//! arrays and RESP3 pushes, `PSUBSCRIBE *` included, checked against a real sentinel's capture of
//! a whole failover.

mod server_support;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sentinel_protocol::codec::{ReplyCodec, Resp3ReplyCodec};
use sentinel_protocol::event::{Channel, PubSubFrame};
use sentinel_protocol::sentinel::Value;
use server_support::*;
use tokio_util::codec::Decoder;
use valkey_coordinator::service::registry::{TAP_CAPACITY, TapMessage};

/// Every frame of a captured `PSUBSCRIBE *` stream, as values, with its bytes.
fn captured_stream(name: &str) -> Vec<(Value, Vec<u8>)> {
    let raw = fixture(name);
    let mut buffer = BytesMut::from(&raw[..]);
    let mut frames = Vec::new();
    loop {
        let before = buffer.len();
        let value = if name.starts_with("resp3-") {
            Resp3ReplyCodec::new()
                .decode(&mut buffer)
                .expect("decodes")
                .map(|frame| Value::from(&frame))
        } else {
            ReplyCodec::new()
                .decode(&mut buffer)
                .expect("decodes")
                .map(|frame| Value::from(&frame))
        };
        let Some(value) = value else { break };
        let start = raw.len() - before;
        let end = raw.len() - buffer.len();
        frames.push((value, raw[start..end].to_vec()));
    }
    frames
}

#[tokio::test]
async fn a_whole_failover_reaches_psubscribe_star_exactly_as_a_sentinel_sends_it() {
    let server = TestServer::start(|_| {}).await;
    for protocol in [2u8, 3] {
        let frames = captured_stream(&format!("resp{protocol}-failover-events-s1"));
        let mut client = server.client().await;
        if protocol == 3 {
            client.hello3().await;
        }
        let (_, confirmation) = &frames[0];
        assert_eq!(
            text(&client.call(&["PSUBSCRIBE", "*"]).await),
            text(confirmation),
            "RESP{protocol} psubscribe confirmation"
        );
        let mut sent = 0;
        for (value, bytes) in &frames[1..] {
            let PubSubFrame::Message {
                channel, payload, ..
            } = PubSubFrame::from_value(value).expect("a pub/sub frame")
            else {
                panic!("only messages follow the confirmation");
            };
            server
                .registry
                .send_tap(TapMessage::new(Channel::parse(&channel), payload));
            assert_eq!(
                text(&client.read_reply().await),
                text(bytes),
                "RESP{protocol} message {sent}"
            );
            sent += 1;
        }
        assert!(
            sent >= 10,
            "the capture holds a whole failover ({sent} events)"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn channel_subscribers_get_only_their_channels_and_patterns_match_globs() {
    let server = TestServer::start(|_| {}).await;
    let mut client = server.client().await;
    assert_eq!(
        client.call(&["SUBSCRIBE", "+switch-master"]).await,
        b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n"
    );
    assert_eq!(
        client.call(&["PSUBSCRIBE", "+*down"]).await,
        b"*3\r\n$10\r\npsubscribe\r\n$6\r\n+*down\r\n:2\r\n"
    );
    let send = |channel: &str, payload: &str| {
        server.registry.send_tap(TapMessage::new(
            Channel::parse(channel.as_bytes()),
            b(payload),
        ))
    };
    send("+failover-end", "master mymaster 127.0.0.1 6379");
    send("+odown", "master mymaster 127.0.0.1 6379 #quorum 2/2");
    send("+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1 6380");
    assert_eq!(
        text(&client.read_reply().await),
        "*4\r\n$8\r\npmessage\r\n$6\r\n+*down\r\n$6\r\n+odown\r\n$42\r\nmaster mymaster 127.0.0.1 6379 #quorum 2/2\r\n"
    );
    assert_eq!(
        text(&client.read_reply().await),
        "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$38\r\nmymaster 127.0.0.1 6379 127.0.0.1 6380\r\n"
    );
    server.stop().await;
}

#[tokio::test]
async fn resp2_subscribed_mode_refuses_other_commands_with_valkeys_words() {
    let server = TestServer::start(|_| {}).await;
    server.publish_fixture_agreement();
    let mut client = server.client().await;
    client.call(&["SUBSCRIBE", "+switch-master"]).await;
    assert_eq!(
        client.call_text(&["SENTINEL", "MASTERS"]).await,
        "-ERR Can't execute 'sentinel|masters': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
    );
    assert_eq!(
        client
            .call_text(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
            .await,
        "-ERR Can't execute 'sentinel|get-master-addr-by-name': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
        "the hot path keeps the subscribed-context rule"
    );
    assert_eq!(
        client.call(&["PING"]).await,
        b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    );
    assert_eq!(
        client.call(&["PING", "hi"]).await,
        b"*2\r\n$4\r\npong\r\n$2\r\nhi\r\n"
    );
    // Leaving every subscription ends subscribed mode.
    assert_eq!(
        client.call(&["UNSUBSCRIBE"]).await,
        b"*3\r\n$11\r\nunsubscribe\r\n$14\r\n+switch-master\r\n:0\r\n"
    );
    assert_eq!(
        client.call(&["PUNSUBSCRIBE"]).await,
        b"*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n"
    );
    assert_eq!(client.call(&["PING"]).await, b"+PONG\r\n");
    assert_eq!(
        client
            .call(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
            .await,
        fixture("resp2-get-master-addr")
    );
    server.stop().await;
}

#[tokio::test]
async fn resp3_subscribers_get_pushes_and_may_still_run_commands() {
    let server = TestServer::start(|_| {}).await;
    server.publish_fixture_agreement();
    let mut client = server.client().await;
    client.hello3().await;
    assert_eq!(
        client
            .call(&["SUBSCRIBE", "+switch-master", "+sdown"])
            .await,
        b">3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n"
    );
    assert_eq!(
        client.read_reply().await,
        b">3\r\n$9\r\nsubscribe\r\n$6\r\n+sdown\r\n:2\r\n"
    );
    assert_eq!(
        client
            .call(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
            .await,
        fixture("resp3-get-master-addr")
    );
    assert_eq!(client.call(&["PING"]).await, b"+PONG\r\n");
    let info = client.call_text(&["CLIENT", "INFO"]).await;
    assert!(info.contains(" sub=2 psub=0 resp=3 "), "{info}");
    server.registry.send_tap(TapMessage::new(
        Channel::SDown,
        b("slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6379"),
    ));
    assert_eq!(
        text(&client.read_reply().await),
        ">3\r\n$7\r\nmessage\r\n$6\r\n+sdown\r\n$61\r\nslave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6379\r\n"
    );
    assert_eq!(
        client.call(&["UNSUBSCRIBE", "+sdown", "+nothing"]).await,
        b">3\r\n$11\r\nunsubscribe\r\n$6\r\n+sdown\r\n:1\r\n"
    );
    assert_eq!(
        client.read_reply().await,
        b">3\r\n$11\r\nunsubscribe\r\n$8\r\n+nothing\r\n:1\r\n"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_disconnected_not_silently_skipped() {
    let server = TestServer::start(|_| {}).await;
    let mut laggard = server.client().await;
    laggard.call(&["PSUBSCRIBE", "*"]).await;
    let mut bystander = server.client().await;
    // On this single-threaded test runtime nothing else runs while the burst is sent, so the
    // laggard's receiver overflows before its connection task can drain it.
    for i in 0..(TAP_CAPACITY + 10) {
        server.registry.send_tap(TapMessage::new(
            Channel::SDown,
            Bytes::from(format!("event {i}")),
        ));
    }
    let received = laggard.read_until_closed(Duration::from_secs(5)).await;
    assert!(
        !text(&received).contains("event 0\r\n"),
        "no message of the lost stretch may be delivered"
    );
    assert_eq!(bystander.call(&["PING"]).await, b"+PONG\r\n");
    server.stop().await;
}

/// A client subscribed to `+switch-master` alone listens on the tap of that channel only (so
/// raw events do not wake it); adding and dropping a pattern moves it between taps without
/// losing or repeating a message.
#[tokio::test]
async fn a_switch_master_subscriber_changing_scope_neither_loses_nor_repeats() {
    let server = TestServer::start(|_| {}).await;
    let mut client = server.client().await;
    let switch = |n: u8| {
        TapMessage::new(
            Channel::SwitchMaster,
            Bytes::from(format!("mymaster 127.0.0.{n} 6379 127.0.0.{} 6379", n + 1)),
        )
    };
    let sdown = || {
        TapMessage::new(
            Channel::SDown,
            Bytes::from_static(b"master mymaster 127.0.0.1 6379"),
        )
    };
    assert_eq!(
        client.call(&["SUBSCRIBE", "+switch-master"]).await,
        b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n"
    );
    server.registry.send_tap(sdown());
    server.registry.send_tap(switch(1));
    assert_eq!(
        text(&client.read_reply().await),
        "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$38\r\nmymaster 127.0.0.1 6379 127.0.0.2 6379\r\n"
    );

    assert_eq!(
        client.call(&["PSUBSCRIBE", "*"]).await,
        b"*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:2\r\n"
    );
    server.registry.send_tap(switch(2));
    server.registry.send_tap(sdown());
    let expected = [
        "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$38\r\nmymaster 127.0.0.2 6379 127.0.0.3 6379\r\n",
        "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$14\r\n+switch-master\r\n$38\r\nmymaster 127.0.0.2 6379 127.0.0.3 6379\r\n",
        "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$6\r\n+sdown\r\n$30\r\nmaster mymaster 127.0.0.1 6379\r\n",
    ];
    for frame in expected {
        assert_eq!(text(&client.read_reply().await), frame);
    }

    assert_eq!(
        client.call(&["PUNSUBSCRIBE"]).await,
        b"*3\r\n$12\r\npunsubscribe\r\n$1\r\n*\r\n:1\r\n"
    );
    server.registry.send_tap(sdown());
    server.registry.send_tap(switch(3));
    assert_eq!(
        text(&client.read_reply().await),
        "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$38\r\nmymaster 127.0.0.3 6379 127.0.0.4 6379\r\n"
    );
    // Nothing else is pending: the next frame is the answer to PING.
    assert_eq!(
        client.call(&["PING"]).await,
        b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    );
    server.stop().await;
}

/// With the connections spread over two client threads, every client is served, the ones that
/// pipeline get their replies in order, and one tap message reaches the subscribers of both
/// threads; shutdown then ends every thread.
#[tokio::test]
async fn clients_on_several_client_threads_are_served_and_all_get_the_tap() {
    let server = TestServer::start(|config| config.client_threads = 2).await;
    server.publish_fixture_agreement();
    let mut subscribers = Vec::new();
    for _ in 0..6 {
        let mut client = server.client().await;
        assert_eq!(
            client.call(&["SUBSCRIBE", "+switch-master"]).await,
            b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n"
        );
        subscribers.push(client);
    }
    for _ in 0..4 {
        let mut client = server.client().await;
        client.send_raw(b"PING a\r\nPING b\r\nPING c\r\n").await;
        for message in ["a", "b", "c"] {
            let reply = client.read_reply().await;
            assert_eq!(text(&reply), format!("$1\r\n{message}\r\n"));
        }
    }
    server.registry.send_tap(TapMessage::new(
        Channel::parse(b"+switch-master"),
        b("mymaster 127.0.0.1 6379 127.0.0.1 6380"),
    ));
    for client in &mut subscribers {
        assert_eq!(
            text(&client.read_reply().await),
            "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$38\r\nmymaster 127.0.0.1 6379 127.0.0.1 6380\r\n"
        );
    }
    server.stop().await;
}
