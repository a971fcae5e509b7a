//! Records, flags, addresses, ROLE and INFO on hand-made input: the error paths and the shapes the
//! coordinator builds itself.

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame as R2;
use redis_protocol::resp3::types::BytesFrame as R3;
use sentinel_protocol::info::{InfoReplication, InfoSentinel, MasterStatus, SentinelMasterLine};
use sentinel_protocol::role::{LinkState, Role, RoleReplica};
use sentinel_protocol::sentinel::{
    Ckquorum, Flag, Flags, FromReply, InstanceFields, MasterRecord, ReplicaRecord, ReplyError,
    SentinelRecord, Value, master_addr, pairs_to_resp2,
};

fn bulk(s: &str) -> R2 {
    R2::BulkString(Bytes::from(s.to_string()))
}

fn record(pairs: &[(&str, &str)]) -> R2 {
    R2::Array(pairs.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect())
}

const MASTER: [(&str, &str); 20] = [
    ("name", "mymaster"),
    ("ip", "10.0.0.1"),
    ("port", "6379"),
    ("runid", "abc"),
    ("flags", "s_down,master"),
    ("link-pending-commands", "0"),
    ("link-refcount", "1"),
    ("last-ping-sent", "0"),
    ("last-ok-ping-reply", "5"),
    ("last-ping-reply", "5"),
    ("s-down-time", "1234"),
    ("down-after-milliseconds", "1000"),
    ("info-refresh", "10"),
    ("role-reported", "master"),
    ("role-reported-time", "99"),
    ("config-epoch", "3"),
    ("num-slaves", "2"),
    ("num-other-sentinels", "2"),
    ("quorum", "2"),
    ("failover-timeout", "180000"),
];

fn master_pairs() -> Vec<(&'static str, &'static str)> {
    let mut v = MASTER.to_vec();
    v.push(("parallel-syncs", "1"));
    v
}

#[test]
fn optional_fields_land_in_sentinel_order_and_unknown_fields_are_kept() {
    let mut pairs = master_pairs();
    pairs.insert(3, ("future-field", "x"));
    pairs.push(("another", "y"));
    let rec = MasterRecord::from_resp2(&record(&pairs)).unwrap();
    assert_eq!(rec.instance.s_down_time, Some(1234));
    assert!(rec.instance.flags.contains(Flag::SDown));
    assert_eq!(rec.config_epoch, 3);
    assert_eq!(
        rec.extra,
        [
            ("future-field".to_string(), "x".to_string()),
            ("another".to_string(), "y".to_string())
        ]
    );
    // Known fields in sentinel's order, s-down-time between last-ping-reply and
    // down-after-milliseconds; unknown ones at the end.
    let out: Vec<(String, String)> = rec.to_pairs();
    let mut want: Vec<(String, String)> = master_pairs()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.push(("future-field".into(), "x".into()));
    want.push(("another".into(), "y".into()));
    assert_eq!(out, want);
    // Every value, numbers included, is a bulk string.
    let R2::Array(items) = pairs_to_resp2(&out) else {
        panic!()
    };
    assert!(items.iter().all(|f| matches!(f, R2::BulkString(_))));
}

#[test]
fn missing_or_unparsable_fields_are_named() {
    for field in [
        "name",
        "ip",
        "port",
        "flags",
        "config-epoch",
        "quorum",
        "num-other-sentinels",
    ] {
        let pairs: Vec<_> = master_pairs()
            .into_iter()
            .filter(|(k, _)| *k != field)
            .collect();
        assert_eq!(
            MasterRecord::from_resp2(&record(&pairs)),
            Err(ReplyError::MissingField(field)),
            "{field}"
        );
    }
    let pairs: Vec<_> = master_pairs()
        .into_iter()
        .map(|(k, v)| if k == "port" { (k, "70000") } else { (k, v) })
        .collect();
    assert_eq!(
        MasterRecord::from_resp2(&record(&pairs)),
        Err(ReplyError::InvalidField {
            field: "port".into(),
            value: "70000".into()
        })
    );
    let pairs: Vec<_> = master_pairs()
        .into_iter()
        .map(|(k, v)| {
            if k == "config-epoch" {
                (k, "-1")
            } else {
                (k, v)
            }
        })
        .collect();
    let err = MasterRecord::from_resp2(&record(&pairs)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "field 'config-epoch' has an unparsable value '-1'"
    );
    assert_eq!(
        ReplicaRecord::from_resp2(&record(&master_pairs())),
        Err(ReplyError::MissingField("master-link-down-time"))
    );
    assert_eq!(
        SentinelRecord::from_resp2(&record(&[("name", "x")])),
        Err(ReplyError::MissingField("ip"))
    );
    // Wrong shapes and error replies.
    assert_eq!(
        MasterRecord::from_resp2(&R2::Array(vec![bulk("odd")])),
        Err(ReplyError::Shape("a record (field/value array or map)"))
    );
    assert!(matches!(
        Vec::<MasterRecord>::from_resp2(&R2::Integer(1)),
        Err(ReplyError::Shape(_))
    ));
    assert_eq!(
        Vec::<MasterRecord>::from_resp2(&R2::Error("NOPERM no".into())),
        Err(ReplyError::Server("NOPERM no".into()))
    );
    assert_eq!(
        Vec::<MasterRecord>::from_resp2(&R2::Array(vec![])),
        Ok(vec![])
    );
}

#[test]
fn flags_keep_sentinel_order_and_unknown_words() {
    let f = Flags::parse("failover_in_progress,master,new_flag,s_down");
    assert!(f.contains(Flag::Master) && f.contains(Flag::SDown));
    assert_eq!(f.unknown(), ["new_flag"]);
    assert_eq!(f.to_string(), "s_down,master,failover_in_progress,new_flag");
    assert_eq!(Flags::parse("").to_string(), "");
    let mut f = Flags::new(&[Flag::Master]);
    f.insert(Flag::FailoverInProgress);
    assert_eq!(f.to_string(), "master,failover_in_progress");
    f.remove(Flag::Master);
    assert_eq!(f.to_string(), "failover_in_progress");
    for flag in Flag::ALL {
        assert_eq!(Flag::parse(flag.as_str()), Some(flag));
    }
    assert_eq!(
        Flags::new(&Flag::ALL).to_string(),
        "s_down,o_down,master,slave,sentinel,disconnected,master_down,failover_in_progress,\
         promoted,reconf_sent,reconf_inprog,reconf_done,force_failover,script_kill_sent,master_reboot"
    );
}

#[test]
fn a_record_the_coordinator_builds_serves_in_sentinel_order() {
    let rec = MasterRecord {
        instance: InstanceFields {
            name: "mymaster".into(),
            ip: "10.0.0.1".into(),
            port: 6379,
            flags: Flags::new(&[Flag::Master]),
            ..Default::default()
        },
        config_epoch: 4,
        num_other_sentinels: 1,
        quorum: 2,
        ..Default::default()
    };
    let keys: Vec<String> = rec.to_pairs().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "name",
            "ip",
            "port",
            "runid",
            "flags",
            "link-pending-commands",
            "link-refcount",
            "last-ping-sent",
            "last-ok-ping-reply",
            "last-ping-reply",
            "down-after-milliseconds",
            "info-refresh",
            "role-reported",
            "role-reported-time",
            "config-epoch",
            "num-slaves",
            "num-other-sentinels",
            "quorum",
            "failover-timeout",
            "parallel-syncs"
        ]
    );
    // And what it writes, it reads back unchanged.
    let back = MasterRecord::from_resp2(&pairs_to_resp2(&rec.to_pairs())).unwrap();
    assert_eq!(back, rec);
}

#[test]
fn master_address_shapes() {
    let addr = R2::Array(vec![bulk("10.0.0.1"), bulk("6379")]);
    assert_eq!(
        master_addr(&Value::from(&addr)),
        Ok(Some(("10.0.0.1".into(), 6379)))
    );
    assert_eq!(master_addr(&Value::from(&R2::Null)), Ok(None));
    assert_eq!(master_addr(&Value::from(&R3::Null)), Ok(None));
    assert!(matches!(
        master_addr(&Value::from(&R2::Array(vec![bulk("x")]))),
        Err(ReplyError::Shape(_))
    ));
    assert!(matches!(
        master_addr(&Value::from(&R2::Array(vec![bulk("x"), bulk("port")]))),
        Err(ReplyError::InvalidField { .. })
    ));
    assert_eq!(
        master_addr(&Value::from(&R2::Error("ERR x".into()))),
        Err(ReplyError::Server("ERR x".into()))
    );
}

#[test]
fn ckquorum_failure_forms() {
    let both = "NOQUORUM 1 usable Sentinels. Not enough available Sentinels to reach the specified \
                quorum for this master. Not enough available Sentinels to reach the majority and \
                authorize a failover";
    let q = Ckquorum::from_value(&Value::Error(both.into())).unwrap();
    assert_eq!((q.ok, q.usable), (false, 1));
    assert_eq!(q.wire_text(), both);
    assert_eq!(
        Ckquorum::from_value(&Value::Error("ERR No such master with that name".into())),
        Err(ReplyError::Server(
            "ERR No such master with that name".into()
        ))
    );
    assert!(Ckquorum::from_value(&Value::Str(Bytes::from("OK lots"))).is_err());
    assert_eq!(
        Ckquorum::reachable(2).wire_text(),
        "OK 2 usable Sentinels. Quorum and failover authorization can be reached"
    );
}

#[test]
fn role_shapes_and_errors() {
    let sentinel = Role::Sentinel {
        masters: vec!["a".into(), "b".into()],
    };
    assert_eq!(Role::from_resp2(&sentinel.to_resp2()), Ok(sentinel.clone()));
    assert_eq!(Role::from_resp3(&sentinel.to_resp3()), Ok(sentinel));
    let master = Role::Master {
        offset: 10,
        replicas: vec![RoleReplica {
            ip: "10.0.0.2".into(),
            port: 6379,
            offset: 9,
        }],
    };
    assert_eq!(Role::from_resp2(&master.to_resp2()), Ok(master));
    for state in [
        "connect",
        "connecting",
        "handshake",
        "sync",
        "connected",
        "later",
    ] {
        let slave = Role::Slave {
            master_ip: "10.0.0.1".into(),
            master_port: 6379,
            state: LinkState::parse(state),
            offset: -1,
        };
        assert_eq!(LinkState::parse(state).as_str(), state);
        assert_eq!(Role::from_resp3(&slave.to_resp3()), Ok(slave));
    }
    assert!(matches!(
        Role::from_resp2(&R2::Array(vec![bulk("primary")])),
        Err(ReplyError::Shape(_))
    ));
    assert!(matches!(
        Role::from_resp2(&R2::Array(vec![
            bulk("master"),
            bulk("x"),
            R2::Array(vec![])
        ])),
        Err(ReplyError::InvalidField { .. })
    ));
    assert!(Role::from_resp2(&R2::Array(vec![])).is_err());
}

#[test]
fn info_replication_edge_cases() {
    let text = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n\
                slave0:ip=10.0.0.2,port=6379,state=wait_bgsave,offset=0,lag=0\r\n\
                new_field:7\r\nmaster_repl_offset:0\r\n";
    let r = InfoReplication::parse(text).unwrap();
    assert_eq!(r.slaves.len(), 1);
    assert_eq!(r.slaves[0].state, "wait_bgsave");
    assert!(r.slaves[0].extra.is_empty());
    assert_eq!(r.extra, [("new_field".to_string(), "7".to_string())]);
    assert_eq!(
        InfoReplication::parse("connected_slaves:0\r\n"),
        Err(ReplyError::MissingField("role"))
    );
    assert!(matches!(
        InfoReplication::parse("role:master\r\nmaster_repl_offset:x\r\n"),
        Err(ReplyError::InvalidField { .. })
    ));
    assert!(matches!(
        InfoReplication::parse("role:master\r\nslave0:port=1\r\n"),
        Err(ReplyError::InvalidField { .. })
    ));
}

#[test]
fn info_sentinel_the_coordinator_serves() {
    let info = InfoSentinel {
        fields: vec![
            ("sentinel_masters".into(), "1".into()),
            ("sentinel_tilt".into(), "0".into()),
        ],
        masters: vec![SentinelMasterLine {
            name: "mymaster".into(),
            status: MasterStatus::Ok,
            ip: "10.0.0.1".into(),
            port: 6379,
            slaves: 2,
            sentinels: 3,
        }],
    };
    let text = info.to_text();
    assert_eq!(
        text,
        "# Sentinel\r\nsentinel_masters:1\r\nsentinel_tilt:0\r\n\
         master0:name=mymaster,status=ok,address=10.0.0.1:6379,slaves=2,sentinels=3\r\n"
    );
    assert_eq!(InfoSentinel::parse(&text), Ok(info));
    let v6 = SentinelMasterLine::parse("name=m,status=odown,address=::1:6379,slaves=0,sentinels=1")
        .unwrap();
    assert_eq!((v6.ip.as_str(), v6.port), ("::1", 6379));
    assert_eq!(v6.status, MasterStatus::ODown);
    assert!(SentinelMasterLine::parse("name=m,status=ok").is_err());
}
