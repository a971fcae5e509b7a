//! `COORDINATOR VERDICT` and `COORDINATOR STATUS`: where the reason for "no master" is visible,
//! since the sentinel-compatible commands must hide it.

mod server_support;

use serde_json::Value as Json;
use server_support::*;
use valkey_coordinator::service::registry::LinkStatus;

/// The body of a bulk-string reply.
fn bulk_body(reply: &[u8]) -> String {
    let reply = text(reply);
    assert!(reply.starts_with('$'), "a bulk string: {reply}");
    let body_start = reply.find("\r\n").expect("header") + 2;
    reply[body_start..reply.len() - 2].to_owned()
}

#[tokio::test]
async fn the_verdict_shows_votes_epochs_and_every_sentinels_view() {
    let server = TestServer::start(|_| {}).await;
    server.publish_fixture_agreement();
    server.registry.update_link(&sentinel_id(26379), |link| {
        *link = LinkStatus {
            connected: true,
            reconnects: 2,
            last_error: Some("connection reset".to_owned()),
            last_poll_ok: None,
        }
    });
    let mut client = server.client().await;

    let human = bulk_body(&client.call(&["COORDINATOR", "VERDICT", "mymaster"]).await);
    for expected in [
        "verdict: agreed",
        "master: 127.0.252.1:6379",
        "config_epoch: 0",
        "votes: 3 of 3 configured (2 needed for a majority)",
        "sentinel 127.0.0.1:26379: reports 127.0.252.1:6379 at config epoch 0",
        "link up, 2 reconnects, last error: connection reset",
    ] {
        assert!(
            human.contains(expected),
            "{expected:?} missing from:\n{human}"
        );
    }

    let json: Json = serde_json::from_str(&bulk_body(
        &client
            .call(&["COORDINATOR", "VERDICT", "mymaster", "JSON"])
            .await,
    ))
    .expect("valid JSON");
    assert_eq!(json["name"], "mymaster");
    assert_eq!(json["verdict"], "agreed");
    assert_eq!(json["master"], "127.0.252.1:6379");
    assert_eq!(json["votes"], 3);
    assert_eq!(json["needed"], 2);
    assert_eq!(json["reason"], Json::Null);
    assert_eq!(json["voters"].as_array().map(Vec::len), Some(3));
    let sentinels = json["sentinels"].as_array().expect("sentinels");
    assert_eq!(sentinels.len(), 3);
    assert_eq!(sentinels[0]["view"], "reports");
    assert_eq!(sentinels[0]["config_epoch"], 0);
    assert!(sentinels[0]["age_ms"].is_u64());
    assert_eq!(sentinels[0]["link"]["reconnects"], 2);
    assert_eq!(sentinels[1]["link"], Json::Null);

    assert_eq!(
        client
            .call_text(&["COORDINATOR", "VERDICT", "nosuch"])
            .await,
        "-ERR No such master with that name\r\n"
    );
    server.stop().await;
}

#[tokio::test]
async fn without_quorum_the_verdict_says_why() {
    let server = TestServer::start(|_| {}).await;
    server.registry.publish(no_quorum_state("mymaster"));
    let mut client = server.client().await;
    let human = bulk_body(&client.call(&["COORDINATOR", "VERDICT", "mymaster"]).await);
    assert!(human.contains("verdict: no_quorum"), "{human}");
    assert!(
        human.contains("reason: only 1 of 3 sentinels report this master freshly, 2 needed"),
        "{human}"
    );
    assert!(
        human.contains("sentinel 127.0.0.1:26380: unreachable"),
        "{human}"
    );
    assert!(
        human.contains("candidate: 127.0.252.1:6379 at config epoch 0, 1 vote(s)"),
        "{human}"
    );

    let json: Json = serde_json::from_str(&bulk_body(
        &client
            .call(&["coordinator", "verdict", "mymaster", "json"])
            .await,
    ))
    .expect("valid JSON");
    assert_eq!(json["verdict"], "no_quorum");
    assert_eq!(json["master"], Json::Null);
    assert!(
        json["reason"]
            .as_str()
            .is_some_and(|r| r.contains("2 unreachable")),
        "{json}"
    );
    assert_eq!(json["candidates"][0]["votes"], 1);
    assert_eq!(json["sentinels"][1]["view"], "unreachable");
    server.stop().await;
}

#[tokio::test]
async fn status_covers_every_name_and_link() {
    let server = TestServer::start_with_names(&["mymaster", "cache"], |_| {}).await;
    server.publish_fixture_agreement();
    server.registry.publish(no_quorum_state("cache"));
    server
        .registry
        .update_link(&sentinel_id(26380), |link| link.connected = false);
    let mut client = server.client().await;
    let human = bulk_body(&client.call(&["COORDINATOR", "STATUS"]).await);
    assert!(
        human.contains("mymaster: master 127.0.252.1:6379 at config epoch 0, 3 vote(s)"),
        "{human}"
    );
    assert!(human.contains("cache: no quorum: only 1 of 3"), "{human}");
    assert!(human.contains("link 127.0.0.1:26380: down"), "{human}");

    let json: Json = serde_json::from_str(&bulk_body(
        &client.call(&["COORDINATOR", "STATUS", "JSON"]).await,
    ))
    .expect("valid JSON");
    assert_eq!(json["configured_sentinels"], 3);
    assert_eq!(json["masters"][0]["name"], "mymaster");
    assert_eq!(json["masters"][1]["verdict"], "no_quorum");
    assert_eq!(json["links"][0]["sentinel"], "127.0.0.1:26380");
    assert_eq!(json["links"][0]["connected"], false);
    // Only the names with an agreed master look monitored to sentinel clients.
    assert_eq!(
        client.call_text(&["ROLE"]).await,
        "*2\r\n$8\r\nsentinel\r\n*1\r\n$8\r\nmymaster\r\n"
    );
    server.stop().await;
}
