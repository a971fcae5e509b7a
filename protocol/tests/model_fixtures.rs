//! Every reply captured from real 8.0.1, 8.1.8 and 9.1.2 sentinels (see fixtures/README.md) read
//! into the typed model, checked field by field, and written back byte for byte where the
//! coordinator serves the same shape.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame as R2;
use redis_protocol::resp3::types::BytesFrame as R3;
use sentinel_protocol::command::{Command, CommandError};
use sentinel_protocol::event::{Channel, InstanceKind, Payload, PubSubFrame, SentinelEvent};
use sentinel_protocol::info::{InfoReplication, InfoSentinel, MasterStatus};
use sentinel_protocol::role::{LinkState, Role};
use sentinel_protocol::sentinel::{
    Ckquorum, Flag, Flags, FromReply, MasterRecord, ReplicaRecord, ReplyError, SentinelRecord,
    Value, master_addr, pairs_to_resp2, pairs_to_resp3,
};

/// (version, loopback block the lab ran on).
const VERSIONS: [(&str, &str); 3] = [
    ("8.0.1", "127.0.250"),
    ("8.1.8", "127.0.251"),
    ("9.1.2", "127.0.252"),
];

const FAILOVER_STATES: [&str; 5] = [
    "wait_start",
    "select_slave",
    "send_slaveof_noone",
    "wait_promotion",
    "reconf_slaves",
];

fn raw(version: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(version)
        .join(format!("{name}.resp"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn all_resp2(bytes: &[u8]) -> Vec<R2> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (frame, _, _) = redis_protocol::resp2::decode::decode_bytes_mut(&mut buf)
            .expect("valid RESP2")
            .expect("complete frame");
        out.push(frame);
    }
    out
}

/// Through the crate's own codec, not redis-protocol directly: redis-protocol 6.0.0 hands RESP3
/// map entries back in reverse wire order, and the codec restores it.
fn all_resp3(bytes: &[u8]) -> Vec<R3> {
    use tokio_util::codec::Decoder;
    let mut codec = sentinel_protocol::codec::Resp3ReplyCodec::new();
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while !buf.is_empty() {
        let frame = codec
            .decode(&mut buf)
            .expect("valid RESP3")
            .expect("complete frame");
        out.push(frame);
    }
    out
}

fn resp2(version: &str, name: &str) -> R2 {
    let mut frames = all_resp2(&raw(version, name));
    assert_eq!(frames.len(), 1, "{version}/{name}: one reply");
    frames.remove(0)
}

fn resp3(version: &str, name: &str) -> R3 {
    let mut frames = all_resp3(&raw(version, name));
    assert_eq!(frames.len(), 1, "{version}/{name}: one reply");
    frames.remove(0)
}

fn enc2(frame: &R2) -> Vec<u8> {
    let mut buf = BytesMut::new();
    redis_protocol::resp2::encode::extend_encode(&mut buf, frame, false).unwrap();
    buf.to_vec()
}

fn enc3(frame: &R3) -> Vec<u8> {
    let mut buf = BytesMut::new();
    redis_protocol::resp3::encode::complete::extend_encode(&mut buf, frame, false).unwrap();
    buf.to_vec()
}

/// Both protocols' captures of the same command, read through the same model.
fn both<T: FromReply>(version: &str, name: &str) -> [T; 2] {
    let a = T::from_resp2(&resp2(version, &format!("resp2-{name}")))
        .unwrap_or_else(|e| panic!("{version} resp2-{name}: {e}"));
    let b = T::from_resp3(&resp3(version, &format!("resp3-{name}")))
        .unwrap_or_else(|e| panic!("{version} resp3-{name}: {e}"));
    [a, b]
}

fn check_master(rec: &MasterRecord, block: &str, ctx: &str) {
    let i = &rec.instance;
    assert_eq!(i.name, "mymaster", "{ctx}");
    assert_eq!(i.ip, format!("{block}.1"), "{ctx}");
    assert_eq!(i.port, 6379, "{ctx}");
    assert_eq!(i.runid.len(), 40, "{ctx}");
    assert_eq!(i.flags, Flags::new(&[Flag::Master]), "{ctx}");
    assert_eq!(i.flags.to_string(), "master", "{ctx}");
    assert_eq!(i.link_refcount, 1, "{ctx}");
    assert_eq!(i.s_down_time, None, "{ctx}");
    assert_eq!(i.o_down_time, None, "{ctx}");
    assert_eq!(i.down_after_milliseconds, 1000, "{ctx}");
    assert_eq!(rec.info.role_reported, "master", "{ctx}");
    assert_eq!(rec.failover_state, None, "{ctx}");
    assert_eq!(rec.config_epoch, 0, "{ctx}");
    assert_eq!(rec.num_slaves, 2, "{ctx}");
    assert_eq!(rec.num_other_sentinels, 2, "{ctx}");
    assert_eq!(rec.quorum, 2, "{ctx}");
    assert_eq!(rec.failover_timeout, 10000, "{ctx}");
    assert_eq!(rec.parallel_syncs, 1, "{ctx}");
    assert_eq!(rec.notification_script, None, "{ctx}");
    assert!(rec.extra.is_empty(), "{ctx}: unexpected {:?}", rec.extra);
}

#[test]
fn master_record_is_typed_and_written_back_byte_for_byte() {
    for (v, block) in VERSIONS {
        let [r2, r3] = both::<MasterRecord>(v, "sentinel-master");
        check_master(&r2, block, v);
        check_master(&r3, block, v);
        assert_eq!(
            enc2(&pairs_to_resp2(&r2.to_pairs())),
            raw(v, "resp2-sentinel-master")
        );
        assert_eq!(
            enc3(&pairs_to_resp3(&r3.to_pairs())),
            raw(v, "resp3-sentinel-master")
        );
        // Operators index the RESP2 array positionally: name, ip, port first.
        let keys: Vec<String> = r2.to_pairs().into_iter().map(|(k, _)| k).collect();
        assert_eq!(&keys[..3], ["name", "ip", "port"]);
    }
}

#[test]
fn masters_list_reads_and_writes_back() {
    for (v, block) in VERSIONS {
        let [r2, r3] = both::<Vec<MasterRecord>>(v, "sentinel-masters");
        for list in [&r2, &r3] {
            assert_eq!(list.len(), 1, "{v}");
            check_master(&list[0], block, v);
        }
        let frame2 = R2::Array(r2.iter().map(|m| pairs_to_resp2(&m.to_pairs())).collect());
        assert_eq!(enc2(&frame2), raw(v, "resp2-sentinel-masters"));
        let frame3 = R3::Array {
            data: r3.iter().map(|m| pairs_to_resp3(&m.to_pairs())).collect(),
            attributes: None,
        };
        assert_eq!(enc3(&frame3), raw(v, "resp3-sentinel-masters"));
    }
}

#[test]
fn replica_records() {
    for (v, block) in VERSIONS {
        let [r2, r3] = both::<Vec<ReplicaRecord>>(v, "sentinel-replicas");
        assert_eq!(r2.len(), 2, "{v}");
        let ids = |l: &[ReplicaRecord]| {
            l.iter()
                .map(|r| (r.instance.name.clone(), r.instance.runid.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&r2), ids(&r3), "{v}: same replicas in both captures");
        let mut ips: Vec<&str> = r2.iter().map(|r| r.instance.ip.as_str()).collect();
        ips.sort();
        assert_eq!(ips, [format!("{block}.2"), format!("{block}.3")]);
        for r in &r2 {
            let i = &r.instance;
            assert_eq!(i.name, format!("{}:6379", i.ip));
            assert_eq!(i.port, 6379);
            assert_eq!(i.runid.len(), 40);
            assert_eq!(i.flags, Flags::new(&[Flag::Slave]));
            assert_eq!(r.info.role_reported, "slave");
            assert_eq!(r.master_link_down_time, 0);
            assert_eq!(r.master_link_status, "ok");
            assert_eq!(r.master_host, format!("{block}.1"));
            assert_eq!(r.master_port, 6379);
            assert_eq!(r.slave_priority, 100);
            assert!(r.slave_repl_offset >= 0, "{v}: {}", r.slave_repl_offset);
            assert_eq!(r.replica_announced, 1);
            assert!(r.extra.is_empty());
        }
        let frame2 = R2::Array(r2.iter().map(|m| pairs_to_resp2(&m.to_pairs())).collect());
        assert_eq!(enc2(&frame2), raw(v, "resp2-sentinel-replicas"));
        let frame3 = R3::Array {
            data: r3.iter().map(|m| pairs_to_resp3(&m.to_pairs())).collect(),
            attributes: None,
        };
        assert_eq!(enc3(&frame3), raw(v, "resp3-sentinel-replicas"));
    }
}

#[test]
fn sentinel_records() {
    for (v, block) in VERSIONS {
        let [r2, r3] = both::<Vec<SentinelRecord>>(v, "sentinel-sentinels");
        assert_eq!(r2.len(), 2, "{v}");
        assert_eq!(r3.len(), 2, "{v}");
        let mut ips: Vec<&str> = r2.iter().map(|r| r.instance.ip.as_str()).collect();
        ips.sort();
        assert_eq!(ips, [format!("{block}.12"), format!("{block}.13")]);
        for r in &r2 {
            let i = &r.instance;
            assert_eq!(i.name, i.runid, "a sentinel is named by its run id");
            assert_eq!(i.runid.len(), 40);
            assert_eq!(i.port, 26379);
            assert_eq!(i.flags, Flags::new(&[Flag::Sentinel]));
            assert_eq!(r.voted_leader, "?");
            assert_eq!(r.voted_leader_epoch, 0);
            assert!(r.last_hello_message >= 0);
            assert!(r.extra.is_empty());
        }
        let frame2 = R2::Array(r2.iter().map(|m| pairs_to_resp2(&m.to_pairs())).collect());
        assert_eq!(enc2(&frame2), raw(v, "resp2-sentinel-sentinels"));
        let frame3 = R3::Array {
            data: r3.iter().map(|m| pairs_to_resp3(&m.to_pairs())).collect(),
            attributes: None,
        };
        assert_eq!(enc3(&frame3), raw(v, "resp3-sentinel-sentinels"));
    }
}

#[test]
fn master_address_and_unknown_names() {
    for (v, block) in VERSIONS {
        let want = Some((format!("{block}.1"), 6379));
        for p in ["resp2", "resp3"] {
            let known = format!("{p}-get-master-addr");
            let unknown = format!("{p}-get-master-addr-unknown");
            let (k, u) = if p == "resp2" {
                (
                    Value::from(&resp2(v, &known)),
                    Value::from(&resp2(v, &unknown)),
                )
            } else {
                (
                    Value::from(&resp3(v, &known)),
                    Value::from(&resp3(v, &unknown)),
                )
            };
            assert_eq!(master_addr(&k).unwrap(), want, "{v} {p}");
            assert_eq!(master_addr(&u).unwrap(), None, "{v} {p}");
        }
        assert_eq!(raw(v, "resp2-get-master-addr-unknown"), b"*-1\r\n");
        assert_eq!(raw(v, "resp3-get-master-addr-unknown"), b"_\r\n");
        let err = MasterRecord::from_resp2(&resp2(v, "resp2-sentinel-master-unknown"));
        assert_eq!(
            err,
            Err(ReplyError::Server(
                "ERR No such master with that name".into()
            ))
        );
        let err = MasterRecord::from_resp3(&resp3(v, "resp3-sentinel-master-unknown"));
        assert_eq!(
            err,
            Err(ReplyError::Server(
                "ERR No such master with that name".into()
            ))
        );
    }
}

#[test]
fn ckquorum_reads_and_writes_back() {
    for (v, _) in VERSIONS {
        let [a, b] = both::<Ckquorum>(v, "ckquorum");
        assert_eq!(a, Ckquorum::reachable(3), "{v}");
        assert_eq!(a, b);
        assert_eq!(
            format!("+{}\r\n", a.wire_text()).into_bytes(),
            raw(v, "resp2-ckquorum")
        );
    }
    let no = Ckquorum::from_value(&Value::Error(
        "NOQUORUM 1 usable Sentinels. Not enough available Sentinels to reach the specified \
         quorum for this master"
            .into(),
    ))
    .unwrap();
    assert!(!no.ok);
    assert_eq!(no.usable, 1);
    assert!(
        no.wire_text()
            .starts_with("NOQUORUM 1 usable Sentinels. Not enough")
    );
}

#[test]
fn myid_is_a_40_char_bulk() {
    for (v, _) in VERSIONS {
        let id = Value::from(&resp2(v, "resp2-myid")).as_text().unwrap();
        assert_eq!(id.len(), 40, "{v}");
        let id3 = Value::from(&resp3(v, "resp3-myid")).as_text().unwrap();
        assert_eq!(id, id3);
    }
}

#[test]
fn role_replies() {
    for (v, block) in VERSIONS {
        for p in ["resp2", "resp3"] {
            let read = |name: &str| {
                let name = format!("{p}-{name}");
                if p == "resp2" {
                    Role::from_resp2(&resp2(v, &name)).unwrap()
                } else {
                    Role::from_resp3(&resp3(v, &name)).unwrap()
                }
            };
            let sentinel = read("role-sentinel");
            assert_eq!(
                sentinel,
                Role::Sentinel {
                    masters: vec!["mymaster".into()]
                }
            );
            let Role::Master { offset, replicas } = read("role-master") else {
                panic!("{v}: master ROLE");
            };
            assert!(offset > 0);
            let mut ips: Vec<&str> = replicas.iter().map(|r| r.ip.as_str()).collect();
            ips.sort();
            assert_eq!(ips, [format!("{block}.2"), format!("{block}.3")]);
            assert!(replicas.iter().all(|r| r.port == 6379 && r.offset >= 0));
            let Role::Slave {
                master_ip,
                master_port,
                state,
                offset,
            } = read("role-replica")
            else {
                panic!("{v}: replica ROLE");
            };
            assert_eq!(master_ip, format!("{block}.1"));
            assert_eq!(master_port, 6379);
            assert_eq!(state, LinkState::Connected);
            assert!(offset > 0);
        }
        for name in ["role-sentinel", "role-master", "role-replica"] {
            let role = Role::from_resp2(&resp2(v, &format!("resp2-{name}"))).unwrap();
            assert_eq!(enc2(&role.to_resp2()), raw(v, &format!("resp2-{name}")));
            let role = Role::from_resp3(&resp3(v, &format!("resp3-{name}"))).unwrap();
            assert_eq!(enc3(&role.to_resp3()), raw(v, &format!("resp3-{name}")));
        }
    }
}

#[test]
fn info_replication_of_master_and_replica() {
    for (v, block) in VERSIONS {
        let [m2, m3] = both::<InfoReplication>(v, "info-replication-master");
        assert_eq!(m2.role, m3.role);
        assert!(m2.is_master());
        assert_eq!(m2.connected_slaves, Some(2));
        assert_eq!(m2.slaves.len(), 2);
        let mut ips: Vec<&str> = m2.slaves.iter().map(|s| s.ip.as_str()).collect();
        ips.sort();
        assert_eq!(ips, [format!("{block}.2"), format!("{block}.3")]);
        for s in &m2.slaves {
            assert_eq!(s.port, 6379);
            assert_eq!(s.state, "online");
            assert!(s.offset >= 0 && s.lag >= 0);
            assert_eq!(s.extra, [("type".to_string(), "replica".to_string())]);
        }
        assert_eq!(m2.master_host, None);
        assert_eq!(m2.master_replid.as_ref().map(String::len), Some(40));
        assert!(m2.master_repl_offset.unwrap() > 0);
        assert_eq!(m2.second_repl_offset, Some(-1));
        assert_eq!(m2.master_failover_state.as_deref(), Some("no-failover"));
        assert_eq!(m2.repl_backlog_active, Some(true));

        let [r2, _] = both::<InfoReplication>(v, "info-replication-replica");
        assert!(!r2.is_master());
        assert_eq!(r2.role, "slave");
        assert_eq!(r2.master_host, Some(format!("{block}.1")));
        assert_eq!(r2.master_port, Some(6379));
        assert_eq!(r2.master_link_status.as_deref(), Some("up"));
        assert_eq!(r2.master_sync_in_progress, Some(false));
        assert!(r2.slave_repl_offset.unwrap() > 0);
        assert_eq!(r2.slave_read_repl_offset, r2.slave_repl_offset);
        assert_eq!(r2.slave_priority, Some(100));
        assert_eq!(r2.slave_read_only, Some(true));
        assert_eq!(r2.replica_announced, Some(true));
        assert_eq!(r2.connected_slaves, Some(0));
        assert!(r2.slaves.is_empty());
        // Replica and master share a replication id once the replica is in sync.
        assert_eq!(r2.master_replid, m2.master_replid);
    }
}

#[test]
fn info_sentinel_reads_and_writes_back() {
    for (v, block) in VERSIONS {
        let [s2, s3] = both::<InfoSentinel>(v, "info-sentinel");
        assert_eq!(s2, s3);
        assert_eq!(s2.field("sentinel_masters"), Some("1"));
        assert_eq!(s2.field("sentinel_tilt"), Some("0"));
        assert_eq!(s2.masters.len(), 1);
        let m = &s2.masters[0];
        assert_eq!(m.name, "mymaster");
        assert_eq!(m.status, MasterStatus::Ok);
        assert_eq!(m.ip, format!("{block}.1"));
        assert_eq!(m.port, 6379);
        assert_eq!(m.slaves, 2);
        assert_eq!(m.sentinels, 3);
        let R2::BulkString(body) = resp2(v, "resp2-info-sentinel") else {
            panic!("INFO is a bulk string");
        };
        assert_eq!(s2.to_text().as_bytes(), &body[..], "{v}");
    }
}

#[test]
fn hello_3_is_a_sentinel_map() {
    for (v, _) in VERSIONS {
        let Value::Map(kv) = Value::from(&resp3(v, "resp2-hello-3")) else {
            panic!("HELLO 3 answers a map");
        };
        let get = |k: &str| {
            kv.iter()
                .find(|(key, _)| key.as_text().as_deref() == Some(k))
                .map(|(_, val)| val.clone())
        };
        assert_eq!(kv.len(), 6, "{v}: sentinel omits role");
        assert_eq!(get("server"), Some(Value::Str(Bytes::from("valkey"))));
        assert_eq!(get("version"), Some(Value::Str(Bytes::from(v.to_string()))));
        assert_eq!(get("proto"), Some(Value::Int(3)));
        assert!(matches!(get("id"), Some(Value::Int(_))));
        assert_eq!(get("mode"), Some(Value::Str(Bytes::from("sentinel"))));
        assert_eq!(get("modules"), Some(Value::Array(vec![])));
        let Value::Array(flat) = Value::from(&resp2(v, "resp2-hello-2")) else {
            panic!("HELLO 2 answers a flat array");
        };
        assert_eq!(flat.len(), 12);
    }
}

fn error_text(version: &str, name: &str) -> String {
    let bytes = raw(version, name);
    assert!(bytes.starts_with(b"-") && bytes.ends_with(b"\r\n"));
    String::from_utf8(bytes[1..bytes.len() - 2].to_vec()).unwrap()
}

fn args(a: &[&str]) -> Vec<Bytes> {
    a.iter().map(|s| Bytes::from(s.to_string())).collect()
}

#[test]
fn parse_errors_are_worded_as_the_real_sentinel_words_them() {
    let cases: [(&str, &[&str]); 7] = [
        ("unknown-command", &["FOO", "bar", "baz"]),
        (
            "unknown-client-subcommand",
            &["CLIENT", "MAINT_NOTIFICATIONS", "on"],
        ),
        (
            "unknown-sentinel-subcommand",
            &["SENTINEL", "BOGUS", "mymaster"],
        ),
        ("wrong-arity-sentinel-master", &["SENTINEL", "MASTER"]),
        ("wrong-arity-client-setname", &["CLIENT", "SETNAME"]),
        ("wrong-arity-auth", &["AUTH", "a", "b", "c"]),
        ("hello-4", &["HELLO", "4"]),
    ];
    for (v, _) in VERSIONS {
        for p in ["resp2", "resp3"] {
            for (name, argv) in cases {
                if name == "hello-4" && p == "resp3" {
                    continue;
                }
                let want = error_text(v, &format!("{p}-{name}"));
                let got = Command::parse(&args(argv)).unwrap_err().to_string();
                assert_eq!(got, want, "{v} {p}-{name}");
            }
        }
        // Real sentinels do not know QUIT; the coordinator accepts it, but the zero-argument
        // form of the unknown-command error is still checked against the capture.
        assert_eq!(
            CommandError::unknown_command(&args(&["QUIT"])).to_string(),
            error_text(v, "resp2-quit")
        );
        assert_eq!(Command::parse(&args(&["quit"])), Ok(Command::Quit));
    }
}

#[test]
fn mid_failover_records_show_the_leader_trap() {
    for (v, block) in VERSIONS {
        for state in FAILOVER_STATES {
            let name = format!("sentinel-master-{state}");
            let [r2, r3] = both::<MasterRecord>(v, &name);
            assert_eq!(r2.failover_state.as_deref(), Some(state), "{v} {state}");
            assert_eq!(r3.failover_state, r2.failover_state);
            let f = &r2.instance.flags;
            assert!(f.contains(Flag::Master), "{v} {state}");
            assert!(f.contains(Flag::FailoverInProgress), "{v} {state}");
            assert!(f.contains(Flag::ForceFailover), "{v} {state}");
            // Sentinel puts failover-state right after link-refcount; the writer must too.
            assert_eq!(
                enc2(&pairs_to_resp2(&r2.to_pairs())),
                raw(v, &format!("resp2-{name}"))
            );
            assert_eq!(
                enc3(&pairs_to_resp3(&r3.to_pairs())),
                raw(v, &format!("resp3-{name}"))
            );
            // The record keeps naming the old master all through the failover...
            assert_eq!(r2.instance.ip, format!("{block}.1"), "{v} {state}");
            let addr = master_addr(&Value::from(&resp2(
                v,
                &format!("resp2-get-master-addr-{state}"),
            )))
            .unwrap()
            .unwrap();
            if state == "reconf_slaves" {
                // ...at the new epoch, while GET-MASTER-ADDR-BY-NAME already names the promoted
                // replica (DESIGN 2.8).
                assert_eq!(r2.config_epoch, 1, "{v}");
                assert_ne!(addr.0, r2.instance.ip, "{v}: the trap");
                assert!(addr.0 == format!("{block}.2") || addr.0 == format!("{block}.3"));
            } else {
                assert_eq!(addr.0, r2.instance.ip, "{v} {state}");
            }
        }
    }
}

fn events(frames: Vec<Value>) -> (PubSubFrame, Vec<SentinelEvent>) {
    let mut frames = frames.iter().map(|f| PubSubFrame::from_value(f).unwrap());
    let first = frames.next().unwrap();
    let evs = frames
        .map(|f| {
            let PubSubFrame::Message {
                pattern,
                channel,
                payload,
            } = &f
            else {
                panic!("only messages after the confirmation: {f:?}");
            };
            assert_eq!(pattern.as_deref(), Some(&b"*"[..]));
            let ev = f.event().unwrap();
            let (c, p) = ev.format();
            assert_eq!((&c, &p), (channel, payload), "byte-for-byte round trip");
            ev
        })
        .collect();
    (first, evs)
}

fn find<'a>(evs: &'a [SentinelEvent], ch: &Channel) -> &'a SentinelEvent {
    evs.iter()
        .find(|e| &e.channel == ch)
        .unwrap_or_else(|| panic!("no {ch} in {evs:?}"))
}

#[test]
fn failover_event_streams() {
    for (v, block) in VERSIONS {
        let s1 = all_resp2(&raw(v, "resp2-failover-events-s1"));
        let (confirm, evs) = events(s1.iter().map(Value::from).collect());
        assert_eq!(
            confirm,
            PubSubFrame::Confirmation {
                kind: "psubscribe".into(),
                channel: Some(Bytes::from("*")),
                count: 1
            }
        );
        let s1_3 = all_resp3(&raw(v, "resp3-failover-events-s1"));
        assert!(s1_3.iter().all(|f| matches!(f, R3::Push { .. })), "{v}");
        let (_, evs3) = events(s1_3.iter().map(Value::from).collect());
        assert_eq!(
            evs, evs3,
            "{v}: RESP2 and RESP3 subscribers saw the same events"
        );

        // Every payload on a known channel was typed, not kept as text (tilt has none here).
        for e in &evs {
            assert!(
                !matches!(e.payload, Payload::Text(_)),
                "{v}: untyped {:?}",
                e
            );
            assert!(!matches!(e.channel, Channel::Other(_)), "{v}: {e:?}");
        }
        assert_eq!(find(&evs, &Channel::NewEpoch).payload, Payload::Epoch(1));
        let Payload::Vote { runid, epoch } = &find(&evs, &Channel::VoteForLeader).payload else {
            panic!()
        };
        assert_eq!((runid.len(), *epoch), (40, 1));
        let Payload::Instance { instance, detail } = &find(&evs, &Channel::TryFailover).payload
        else {
            panic!()
        };
        assert_eq!(instance.kind, InstanceKind::Master);
        assert_eq!(instance.instance.ip, format!("{block}.1"));
        assert_eq!(instance.master, None);
        assert_eq!(*detail, None);
        let Payload::Instance { instance, .. } = &find(&evs, &Channel::SelectedSlave).payload
        else {
            panic!()
        };
        assert_eq!(instance.kind, InstanceKind::Slave);
        let promoted = instance.instance.clone();
        assert_eq!(promoted.name, format!("{}:{}", promoted.ip, promoted.port));
        let m = instance.master.as_ref().unwrap();
        assert_eq!(
            (m.name.as_str(), m.ip.clone()),
            ("mymaster", format!("{block}.1"))
        );
        let Payload::Instance { detail, .. } = &find(&evs, &Channel::RoleChangeUnexpected).payload
        else {
            panic!()
        };
        assert_eq!(detail.as_deref(), Some("new reported role is master"));
        find(&evs, &Channel::ElectedLeader);
        find(&evs, &Channel::PromotedSlave);
        find(&evs, &Channel::FailoverEnd);
        let switch = find(&evs, &Channel::SwitchMaster);
        assert_eq!(
            *switch,
            SentinelEvent::switch_master(
                "mymaster",
                (&format!("{block}.1"), 6379),
                (&promoted.ip, promoted.port)
            )
        );
        assert_eq!(switch.master_name(), Some("mymaster"));

        // A follower learns the new master from the leader's hello.
        let s2 = all_resp2(&raw(v, "resp2-failover-events-s2"));
        let (_, evs2) = events(s2.iter().map(Value::from).collect());
        let Payload::Instance { instance, .. } = &find(&evs2, &Channel::ConfigUpdateFrom).payload
        else {
            panic!()
        };
        assert_eq!(instance.kind, InstanceKind::Sentinel);
        assert_eq!(find(&evs2, &Channel::SwitchMaster), switch);
    }
}

#[test]
fn every_fixture_is_complete_resp_and_none_is_missing() {
    for (v, _) in VERSIONS {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(v);
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            // A RESP2 connection only receives RESP3 in the reply to HELLO 3 itself.
            let frames = if name.starts_with("resp3-") || name == "resp2-hello-3.resp" {
                all_resp3(&bytes).len()
            } else {
                all_resp2(&bytes).len()
            };
            assert!(frames > 0, "{}: at least one frame", path.display());
            count += 1;
        }
        // 20 RESP2 + 20 RESP3 commands, 3 HELLOs, the failover reply, 3 event streams and
        // 5 failover states × 3 files.
        assert_eq!(count, 70, "{v}");
    }
}
