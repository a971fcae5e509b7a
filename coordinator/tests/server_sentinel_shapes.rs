//! The server answers like the real 9.1.2 sentinel it stands in for: byte for byte against the
//! captured fixtures wherever the content is deterministic, in RESP2 and in RESP3.

mod server_support;

use server_support::*;
use valkey_coordinator::addr::Addr;

/// Opens a client in the given protocol (2 or 3).
async fn client_in(server: &TestServer, protocol: u8) -> RawClient {
    let mut client = server.client().await;
    if protocol == 3 {
        client.hello3().await;
    }
    client
}

#[tokio::test]
async fn an_agreed_master_is_served_exactly_as_a_sentinel_serves_it() {
    let server = TestServer::start(|_| {}).await;
    for protocol in [2u8, 3] {
        server.registry.publish(fixture_agreed_state_from(protocol));
        let mut client = client_in(&server, protocol).await;
        let cases: [(&[&str], &str); 7] = [
            (
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"],
                "get-master-addr",
            ),
            (&["SENTINEL", "MASTER", "mymaster"], "sentinel-master"),
            (&["SENTINEL", "REPLICAS", "mymaster"], "sentinel-replicas"),
            (&["SENTINEL", "CKQUORUM", "mymaster"], "ckquorum"),
            (&["ROLE"], "role-sentinel"),
            (&["INFO", "sentinel"], "info-sentinel"),
            (&["PING"], "ping"),
        ];
        for (command, capture) in cases {
            let expected = fixture(&format!("resp{protocol}-{capture}"));
            let got = client.call(command).await;
            assert_eq!(
                text(&got),
                text(&expected),
                "RESP{protocol} {command:?} differs from the real sentinel's capture"
            );
        }
        // The spellings real clients use for the same questions answer the same bytes.
        assert_eq!(
            client.call(&["sentinel", "slaves", "mymaster"]).await,
            fixture(&format!("resp{protocol}-sentinel-replicas"))
        );
        assert_eq!(
            client
                .call(&["SENTINEL", "get-primary-addr-by-name", "mymaster"])
                .await,
            fixture(&format!("resp{protocol}-get-master-addr"))
        );
        assert_eq!(
            client.call(&["SENTINEL", "PRIMARY", "mymaster"]).await,
            fixture(&format!("resp{protocol}-sentinel-master"))
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn sentinel_masters_lists_the_agreed_record_in_sentinel_field_order() {
    let server = TestServer::start(|_| {}).await;
    for protocol in [2u8, 3] {
        // Publish the record exactly as that protocol's masters capture shows it.
        let mut state = fixture_agreed_state("mymaster", 3);
        let records: Vec<sentinel_protocol::sentinel::MasterRecord> =
            fixture_value(&format!("resp{protocol}-sentinel-masters"));
        state.master_record = Some(records[0].clone());
        server.registry.publish(state);
        let mut client = client_in(&server, protocol).await;
        assert_eq!(
            text(&client.call(&["SENTINEL", "MASTERS"]).await),
            text(&fixture(&format!("resp{protocol}-sentinel-masters")))
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn the_served_record_speaks_for_the_verdict_not_for_one_sentinel() {
    let server = TestServer::start(|_| {}).await;
    let mut state = fixture_agreed_state("mymaster", 2);
    // The voter's own record still shows the old address and its down flags (the failover
    // leader trap); the served record must show the agreed master, and flags from the voters'
    // reports of it (none here), never the old instance's.
    let record = state.master_record.as_mut().expect("record");
    record.instance.ip = "10.9.9.9".to_owned();
    record.instance.port = 7000;
    record.instance.flags = sentinel_protocol::sentinel::Flags::parse("master,s_down,o_down");
    record.instance.s_down_time = Some(1200);
    record.instance.o_down_time = Some(900);
    record.config_epoch = 1;
    if let valkey_coordinator::verdict::Verdict::Agreed(agreement) = &mut state.verdict {
        agreement.config_epoch = 7;
        agreement.failover_in_progress = true;
    }
    server.registry.publish(state);

    let mut client = server.client().await;
    let reply = client.call_text(&["SENTINEL", "MASTER", "mymaster"]).await;
    let fields: Vec<&str> = reply
        .split("\r\n")
        .filter(|l| !l.starts_with('$'))
        .collect();
    let value = |key: &str| {
        let at = fields
            .iter()
            .position(|f| *f == key)
            .unwrap_or_else(|| panic!("{key} in {reply}"));
        fields[at + 1].to_owned()
    };
    assert_eq!(
        &fields[1..7],
        ["name", "mymaster", "ip", "127.0.252.1", "port", "6379"]
    );
    assert_eq!(value("flags"), "master,failover_in_progress");
    assert_eq!(value("config-epoch"), "7");
    assert_eq!(value("num-other-sentinels"), "1", "votes - 1");
    assert_eq!(value("num-slaves"), "2");
    assert!(
        !reply.contains("s-down-time") && !reply.contains("o-down-time"),
        "{reply}"
    );
    server.stop().await;
}

/// The `flags` value of a served `SENTINEL MASTER` record, in RESP2.
async fn served_flags(server: &TestServer) -> String {
    let mut client = server.client().await;
    let reply = client.call_text(&["SENTINEL", "MASTER", "mymaster"]).await;
    let fields: Vec<&str> = reply
        .split("\r\n")
        .filter(|l| !l.starts_with('$'))
        .collect();
    let at = fields
        .iter()
        .position(|f| *f == "flags")
        .unwrap_or_else(|| panic!("flags in {reply}"));
    fields[at + 1].to_owned()
}

/// Sets the flags (and failover phase) one voter reports of the agreed master.
fn voter_reports(
    state: &mut valkey_coordinator::service::registry::NameState,
    voter: usize,
    flags: &str,
    phase: Option<&str>,
) {
    use valkey_coordinator::verdict::{FailoverState, MasterFlags, SentinelView};
    let id = state.verdict.agreement().expect("agreed").voters[voter].clone();
    let Some(SentinelView::Reports(report)) = state.views.get_mut(&id) else {
        panic!("voter {id} reports");
    };
    report.flags = MasterFlags::from_flag_list(flags);
    report.failover_state = FailoverState::from_record_field(phase);
}

/// node-redis's sentinel client skips a master record flagged `s_down`, `o_down`,
/// `disconnected` or `failover_in_progress` and asks again; served as plainly `master` right
/// after a kill -9, the dead master is connected to and waited on for good. So the served record
/// carries the down flags any voter reports of the agreed master, in sentinel's print order, and
/// none that a failover leader's record carries for the old instance once its answer names the
/// promoted replica.
#[tokio::test]
async fn a_master_a_voter_sees_down_is_served_flagged_down() {
    let server = TestServer::start(|_| {}).await;

    let mut state = fixture_agreed_state("mymaster", 2);
    voter_reports(&mut state, 1, "master,disconnected", None);
    server.registry.publish(state);
    assert_eq!(served_flags(&server).await, "master,disconnected");

    let mut state = fixture_agreed_state("mymaster", 2);
    voter_reports(&mut state, 0, "s_down,master,disconnected", None);
    voter_reports(&mut state, 1, "s_down,o_down,master", None);
    server.registry.publish(state);
    assert_eq!(
        served_flags(&server).await,
        "s_down,o_down,master,disconnected"
    );

    let mut state = fixture_agreed_state("mymaster", 2);
    voter_reports(
        &mut state,
        0,
        "s_down,o_down,master,failover_in_progress",
        Some("wait_promotion"),
    );
    if let valkey_coordinator::verdict::Verdict::Agreed(agreement) = &mut state.verdict {
        agreement.failover_in_progress = true;
    }
    server.registry.publish(state);
    assert_eq!(
        served_flags(&server).await,
        "s_down,o_down,master,failover_in_progress",
        "before the promotion the leader's flags are the served master's"
    );

    let mut state = fixture_agreed_state("mymaster", 1);
    voter_reports(
        &mut state,
        0,
        "s_down,o_down,master,failover_in_progress",
        Some("reconf_slaves"),
    );
    if let valkey_coordinator::verdict::Verdict::Agreed(agreement) = &mut state.verdict {
        agreement.failover_in_progress = true;
    }
    server.registry.publish(state);
    assert_eq!(
        served_flags(&server).await,
        "master,failover_in_progress",
        "from reconf_slaves on, the leader's down flags are the old instance's"
    );

    server.registry.publish(fixture_agreed_state("mymaster", 3));
    assert_eq!(served_flags(&server).await, "master");
    server.stop().await;
}

/// Polls the served flags until they are `want`, for at most two seconds.
async fn flags_become(server: &TestServer, want: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let flags = served_flags(server).await;
        if flags == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "flags stayed {flags}, never {want}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A sentinel flags its record `disconnected` the moment its own link to the master drops,
/// long before any poll of it could tell the coordinator; node-redis re-reads the record within
/// milliseconds of a kill -9. So the server keeps its own link to the agreed master and serves
/// `disconnected` while that link is down, and plain `master` again once it reconnects.
#[tokio::test]
async fn a_master_whose_link_drops_is_served_disconnected_at_once() {
    let server = TestServer::start(|config| config.watch_masters = true).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let master = listener.local_addr().expect("addr");
    let mut state = fixture_agreed_state("mymaster", 3);
    if let valkey_coordinator::verdict::Verdict::Agreed(agreement) = &mut state.verdict {
        agreement.master =
            Addr::from_parts(&master.ip().to_string(), &master.port().to_string()).expect("addr");
    }
    server.registry.publish(state.clone());
    let (link, _) = tokio::time::timeout(REPLY_TIMEOUT, listener.accept())
        .await
        .expect("the server links to the agreed master")
        .expect("accept");
    assert_eq!(served_flags(&server).await, "master");

    // The master dies: its end of the link closes and nothing listens any more.
    drop(link);
    drop(listener);
    flags_become(&server, "master,disconnected").await;

    // A new publication of the same master keeps the verdict; the link stays down.
    server.registry.publish(state);
    assert_eq!(served_flags(&server).await, "master,disconnected");

    // It comes back on the same address: the link reconnects and the flag clears.
    let listener = tokio::net::TcpListener::bind(master).await.expect("rebind");
    let _link = tokio::time::timeout(REPLY_TIMEOUT, listener.accept())
        .await
        .expect("the server links again")
        .expect("accept");
    flags_become(&server, "master").await;
    server.stop().await;
}

#[tokio::test]
async fn without_quorum_the_name_looks_unknown_everywhere() {
    let server = TestServer::start(|_| {}).await;
    server.registry.publish(no_quorum_state("mymaster"));
    for protocol in [2u8, 3] {
        let mut client = client_in(&server, protocol).await;
        assert_eq!(
            client
                .call(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"])
                .await,
            fixture(&format!("resp{protocol}-get-master-addr-unknown"))
        );
        // Never an error for MASTERS: redis-py would raise instead of trying the next sentinel.
        assert_eq!(client.call(&["SENTINEL", "MASTERS"]).await, b"*0\r\n");
        for sub in ["MASTER", "REPLICAS", "SLAVES", "SENTINELS", "CKQUORUM"] {
            assert_eq!(
                client.call(&["SENTINEL", sub, "mymaster"]).await,
                fixture(&format!("resp{protocol}-sentinel-master-unknown")),
                "SENTINEL {sub}"
            );
        }
        assert_eq!(
            client.call(&["ROLE"]).await,
            b"*2\r\n$8\r\nsentinel\r\n*0\r\n",
            "ROLE lists no master it cannot certify"
        );
        let info = client.call_text(&["INFO", "sentinel"]).await;
        assert!(
            info.contains("sentinel_masters:0\r\n") && !info.contains("master0:"),
            "{info}"
        );
    }
    // A name that is not configured at all answers the same way.
    let mut client = server.client().await;
    assert_eq!(
        client
            .call(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "othermaster"])
            .await,
        b"*-1\r\n"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_address_follows_each_publication() {
    let server = TestServer::start(|_| {}).await;
    let mut client = server.client().await;
    let ask = ["SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"];
    assert_eq!(client.call(&ask).await, b"*-1\r\n", "nothing published yet");
    server.publish_fixture_agreement();
    assert_eq!(client.call(&ask).await, fixture("resp2-get-master-addr"));
    let mut moved = fixture_agreed_state("mymaster", 2);
    if let valkey_coordinator::verdict::Verdict::Agreed(agreement) = &mut moved.verdict {
        agreement.master = "[::1]:6380".parse::<Addr>().expect("addr");
    }
    server.registry.publish(moved);
    assert_eq!(
        client.call(&ask).await,
        b"*2\r\n$3\r\n::1\r\n$4\r\n6380\r\n"
    );
    // The state just served (its reply encoded once), copied and changed: the copy answers
    // for its own master, never with the reply encoded for the one it was copied from.
    let mut copied = server
        .registry
        .with(b"mymaster", |state| state.clone())
        .expect("a configured name");
    if let valkey_coordinator::verdict::Verdict::Agreed(agreement) = &mut copied.verdict {
        agreement.master = "10.1.2.3:6390".parse::<Addr>().expect("addr");
    }
    server.registry.publish(copied);
    assert_eq!(
        client.call(&ask).await,
        b"*2\r\n$8\r\n10.1.2.3\r\n$4\r\n6390\r\n"
    );
    server.registry.publish(no_quorum_state("mymaster"));
    assert_eq!(client.call(&ask).await, b"*-1\r\n");
    server.stop().await;
}

#[tokio::test]
async fn sentinel_sentinels_lists_the_configured_peers_never_raw_sentinels() {
    let server = TestServer::start(|config| {
        config.peers = vec![addr("10.0.0.7:26379"), addr("10.0.0.8:26380")];
    })
    .await;
    server.publish_fixture_agreement();
    let mut client = server.client().await;
    let reply = client
        .call_text(&["SENTINEL", "SENTINELS", "mymaster"])
        .await;
    assert!(reply.starts_with("*2\r\n*"), "{reply}");
    for expected in [
        "$4\r\nname\r\n$14\r\n10.0.0.7:26379\r\n$2\r\nip\r\n$8\r\n10.0.0.7\r\n$4\r\nport\r\n$5\r\n26379\r\n",
        "$2\r\nip\r\n$8\r\n10.0.0.8\r\n$4\r\nport\r\n$5\r\n26380\r\n",
        "$5\r\nflags\r\n$8\r\nsentinel\r\n",
    ] {
        assert!(reply.contains(expected), "missing {expected:?} in {reply}");
    }
    assert!(
        !reply.contains("127.0.0.1"),
        "raw sentinels must never be listed: {reply}"
    );

    let lonely = TestServer::start(|_| {}).await;
    lonely.publish_fixture_agreement();
    let mut client = lonely.client().await;
    assert_eq!(
        client.call(&["SENTINEL", "SENTINELS", "mymaster"]).await,
        b"*0\r\n"
    );
    server.stop().await;
    lonely.stop().await;
}

#[tokio::test]
async fn errors_are_worded_as_the_real_sentinel_words_them() {
    let server = TestServer::start(|_| {}).await;
    server.publish_fixture_agreement();
    for protocol in [2u8, 3] {
        let mut client = client_in(&server, protocol).await;
        let cases: [(&[&str], &str); 6] = [
            (&["FOO", "bar", "baz"], "unknown-command"),
            (
                &["CLIENT", "MAINT_NOTIFICATIONS", "ON"],
                "unknown-client-subcommand",
            ),
            (&["SENTINEL", "BOGUS"], "unknown-sentinel-subcommand"),
            (&["AUTH", "a", "b", "c"], "wrong-arity-auth"),
            (&["CLIENT", "SETNAME"], "wrong-arity-client-setname"),
            (&["SENTINEL", "MASTER"], "wrong-arity-sentinel-master"),
        ];
        for (command, capture) in cases {
            assert_eq!(
                text(&client.call(command).await),
                text(&fixture(&format!("resp{protocol}-{capture}"))),
                "RESP{protocol} {command:?}"
            );
        }
        assert_eq!(
            text(&client.call(&["AUTH", "secret"]).await),
            text(&fixture(&format!("resp{protocol}-auth-no-password")))
        );
        // Refused admin subcommands say why, as an ordinary error.
        let refused = client
            .call_text(&["SENTINEL", "FAILOVER", "mymaster"])
            .await;
        assert!(
            refused.starts_with("-ERR SENTINEL FAILOVER is not served"),
            "{refused}"
        );
        let refused = client
            .call_text(&[
                "SENTINEL",
                "IS-MASTER-DOWN-BY-ADDR",
                "127.0.0.1",
                "6379",
                "1",
                "*",
            ])
            .await;
        assert!(refused.contains("never votes"), "{refused}");
        // And the connection is still served after all of them.
        assert_eq!(client.call(&["PING"]).await, b"+PONG\r\n");
    }
    server.stop().await;
}

/// Replaces the value after the `id` key (the connection's own number) with a placeholder.
fn mask_client_id(reply: &[u8]) -> String {
    let text = text(reply);
    let mut lines: Vec<&str> = text.split("\r\n").collect();
    if let Some(at) = lines.iter().position(|line| *line == "id") {
        lines[at + 1] = ":<id>";
    }
    lines.join("\r\n")
}

#[tokio::test]
async fn hello_negotiates_like_a_sentinel() {
    let server = TestServer::start(|_| {}).await;
    let mut client = server.client().await;
    assert_eq!(
        mask_client_id(&client.call(&["HELLO", "2"]).await),
        mask_client_id(&fixture("resp2-hello-2"))
    );
    assert_eq!(client.call(&["HELLO", "4"]).await, fixture("resp2-hello-4"));
    assert_eq!(
        client.call_text(&["HELLO", "x"]).await,
        "-ERR Protocol version is not an integer or out of range\r\n"
    );
    let hello3 = client.hello3().await;
    assert_eq!(
        mask_client_id(&hello3),
        mask_client_id(&fixture("resp2-hello-3")),
        "HELLO 3 answers the sentinel's map, in RESP3"
    );
    // RESP3 from now on: nulls are `_`.
    assert_eq!(client.call(&["CLIENT", "GETNAME"]).await, b"_\r\n");
    assert_eq!(
        mask_client_id(&client.call(&["HELLO", "3", "SETNAME", "app-1"]).await),
        mask_client_id(&hello3)
    );
    assert_eq!(
        client.call(&["CLIENT", "GETNAME"]).await,
        b"$5\r\napp-1\r\n"
    );
    server.stop().await;
}

#[tokio::test]
async fn client_subcommands_answer_what_client_libraries_expect() {
    let server = TestServer::start(|_| {}).await;
    let mut client = server.client().await;
    assert_eq!(client.call(&["CLIENT", "GETNAME"]).await, b"$-1\r\n");
    assert_eq!(
        client.call(&["CLIENT", "SETNAME", "redis-py"]).await,
        b"+OK\r\n"
    );
    assert_eq!(
        client.call(&["CLIENT", "GETNAME"]).await,
        b"$8\r\nredis-py\r\n"
    );
    assert_eq!(
        client
            .call(&["CLIENT", "SETINFO", "LIB-NAME", "redis-py"])
            .await,
        b"+OK\r\n"
    );
    assert_eq!(
        client
            .call(&["CLIENT", "SETINFO", "LIB-VER", "8.0.0"])
            .await,
        b"+OK\r\n"
    );
    assert_eq!(
        client.call_text(&["CLIENT", "SETNAME", "has space"]).await,
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
    );
    let id = client.call_text(&["CLIENT", "ID"]).await;
    assert!(id.starts_with(':'), "{id}");
    let info = client.call_text(&["CLIENT", "INFO"]).await;
    assert!(
        info.contains("name=redis-py") && info.contains("lib-name=redis-py lib-ver=8.0.0"),
        "{info}"
    );
    assert!(
        info.contains(&format!("id={} ", id.trim_start_matches(':').trim())),
        "{info}"
    );
    // rueidis's handshake; valkey-sentinel 9.1.2 answers +OK in both protocols.
    assert_eq!(
        client.call(&["CLIENT", "TRACKING", "ON", "OPTIN"]).await,
        b"+OK\r\n"
    );
    assert_eq!(
        client.call(&["CLIENT", "TRACKING", "OFF"]).await,
        b"+OK\r\n"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_small_commands_give_valid_answers() {
    let server = TestServer::start(|_| {}).await;
    server.publish_fixture_agreement();
    let mut client = server.client().await;
    assert_eq!(
        client.call(&["SENTINEL", "MYID"]).await,
        fixture("resp2-myid")
    );
    assert_eq!(client.call(&["PING", "hello"]).await, b"$5\r\nhello\r\n");
    assert_eq!(client.call(&["COMMAND"]).await, b"*0\r\n");
    assert_eq!(client.call(&["COMMAND", "DOCS"]).await, b"*0\r\n");
    assert_eq!(client.call(&["COMMAND", "COUNT"]).await, b":14\r\n");
    let info = client.call_text(&["INFO"]).await;
    for section in [
        "# Server\r\n",
        "# Clients\r\n",
        "# Sentinel\r\n",
        "redis_mode:sentinel",
    ] {
        assert!(info.contains(section), "{section:?} missing from {info}");
    }
    assert_eq!(client.call(&["INFO", "keyspace"]).await, b"$0\r\n\r\n");
    let help = client.call_text(&["SENTINEL", "HELP"]).await;
    assert!(
        help.starts_with("*") && help.contains("GET-PRIMARY-ADDR-BY-NAME"),
        "{help}"
    );

    let mut resp3 = server.client().await;
    resp3.hello3().await;
    assert_eq!(resp3.call(&["COMMAND", "DOCS"]).await, b"%0\r\n");

    // QUIT answers +OK and closes.
    client.send(&["QUIT"]).await;
    assert_eq!(client.read_until_closed(REPLY_TIMEOUT).await, b"+OK\r\n");
    server.stop().await;
}

#[tokio::test]
async fn an_agreement_without_a_voter_record_still_serves_every_mandatory_field() {
    let server = TestServer::start(|_| {}).await;
    let mut state = fixture_agreed_state("mymaster", 2);
    state.master_record = None;
    state.replicas.clear();
    server.registry.publish(state);
    let mut client = server.client().await;
    let reply = client.call_text(&["SENTINEL", "MASTER", "mymaster"]).await;
    let fields: Vec<&str> = reply
        .split("\r\n")
        .filter(|l| !l.starts_with('$'))
        .collect();
    let value = |key: &str| {
        let at = fields
            .iter()
            .position(|f| *f == key)
            .unwrap_or_else(|| panic!("{key} in {reply}"));
        fields[at + 1].to_owned()
    };
    assert_eq!(
        &fields[1..7],
        ["name", "mymaster", "ip", "127.0.252.1", "port", "6379"]
    );
    assert_eq!(value("flags"), "master");
    assert_eq!(
        value("quorum"),
        "2",
        "a majority of the 3 configured sentinels"
    );
    assert_eq!(value("num-other-sentinels"), "1");
    assert_eq!(value("num-slaves"), "0");
    server.stop().await;
}
