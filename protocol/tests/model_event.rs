//! Sentinel events: each payload form typed, unknown input kept verbatim, and format/parse round
//! trips in both directions.

use bytes::Bytes;
use proptest::prelude::*;
use sentinel_protocol::event::{
    Channel, Endpoint, Instance, InstanceKind, Payload, PubSubFrame, SentinelEvent,
};
use sentinel_protocol::sentinel::Value;

fn ev(channel: &str, payload: &str) -> SentinelEvent {
    SentinelEvent::parse(channel.as_bytes(), payload.as_bytes())
}

fn ep(name: &str, ip: &str, port: u16) -> Endpoint {
    Endpoint {
        name: name.into(),
        ip: ip.into(),
        port,
    }
}

fn assert_round_trip(channel: &str, payload: &str) {
    let (c, p) = ev(channel, payload).format();
    assert_eq!(&c[..], channel.as_bytes());
    assert_eq!(&p[..], payload.as_bytes());
}

#[test]
fn instance_form_with_and_without_master() {
    let e = ev(
        "+slave",
        "slave 127.0.0.1:16391 127.0.0.1 16391 @ mymaster 127.0.0.1 16390",
    );
    assert_eq!(e.channel, Channel::Slave);
    assert_eq!(
        e.payload,
        Payload::Instance {
            instance: Instance {
                kind: InstanceKind::Slave,
                instance: ep("127.0.0.1:16391", "127.0.0.1", 16391),
                master: Some(ep("mymaster", "127.0.0.1", 16390)),
            },
            detail: None,
        }
    );
    assert_eq!(e.master_name(), Some("mymaster"));

    let e = ev("+odown", "master mymaster 10.0.0.1 6379 #quorum 2/2");
    assert_eq!(
        e.payload,
        Payload::Instance {
            instance: Instance {
                kind: InstanceKind::Master,
                instance: ep("mymaster", "10.0.0.1", 6379),
                master: None,
            },
            detail: Some("#quorum 2/2".into()),
        }
    );
    assert_eq!(e.master_name(), Some("mymaster"));

    let e = ev(
        "-role-change",
        "slave 10.0.0.2:6379 10.0.0.2 6379 @ mymaster 10.0.0.1 6379 new reported role is master",
    );
    assert_eq!(e.channel, Channel::RoleChangeUnexpected);
    let Payload::Instance { detail, .. } = &e.payload else {
        panic!("{e:?}")
    };
    assert_eq!(detail.as_deref(), Some("new reported role is master"));

    let e = ev("+monitor", "master mymaster 10.0.0.1 6379 quorum 2");
    let Payload::Instance { detail, .. } = &e.payload else {
        panic!("{e:?}")
    };
    assert_eq!(detail.as_deref(), Some("quorum 2"));

    // IPv6 literals carry colons, not spaces.
    let e = ev("+sdown", "sentinel abcd ::1 26379 @ mymaster ::1 6379");
    let Payload::Instance { instance, .. } = &e.payload else {
        panic!("{e:?}")
    };
    assert_eq!(instance.kind, InstanceKind::Sentinel);
    assert_eq!(instance.instance.ip, "::1");

    for (c, p) in [
        (
            "+slave",
            "slave 127.0.0.1:16391 127.0.0.1 16391 @ mymaster 127.0.0.1 16390",
        ),
        ("+odown", "master mymaster 10.0.0.1 6379 #quorum 2/2"),
        ("+set", "master mymaster 10.0.0.1 6379 auth-pass ******"),
        (
            "+sentinel-address-switch",
            "master m 1.2.3.4 6379 ip 1.2.3.5 port 26379 for abc",
        ),
    ] {
        assert_round_trip(c, p);
    }
}

#[test]
fn special_payloads() {
    let e = ev("+switch-master", "mymaster 10.0.0.1 6379 10.0.0.2 6380");
    assert_eq!(
        e,
        SentinelEvent::switch_master("mymaster", ("10.0.0.1", 6379), ("10.0.0.2", 6380))
    );
    let (c, p) = e.format();
    assert_eq!(&c[..], b"+switch-master");
    assert_eq!(&p[..], b"mymaster 10.0.0.1 6379 10.0.0.2 6380");

    assert_eq!(ev("+new-epoch", "42").payload, Payload::Epoch(42));
    assert_eq!(
        ev("+vote-for-leader", "0123abcd 7").payload,
        Payload::Vote {
            runid: "0123abcd".into(),
            epoch: 7
        }
    );
    let tilt = ev("+tilt", "#tilt mode entered");
    assert_eq!(tilt.channel, Channel::Tilt);
    assert_eq!(
        tilt.payload,
        Payload::Text(Bytes::from("#tilt mode entered"))
    );
    assert_eq!(
        ev("-tilt", "#tilt mode exited").channel,
        Channel::TiltExited
    );
    assert_round_trip("+tilt", "#tilt mode entered");
    assert_round_trip("-script-error", "/bin/notify.sh 0 1");
}

#[test]
fn unknown_and_malformed_input_is_kept_verbatim() {
    let e = ev("+cluster-something", "whatever it says");
    assert_eq!(e.channel, Channel::Other(Bytes::from("+cluster-something")));
    assert_eq!(e.payload, Payload::Text(Bytes::from("whatever it says")));
    assert_round_trip("+cluster-something", "whatever it says");

    // A known channel with a payload not in its form: text, never an error.
    for (c, p) in [
        ("+switch-master", "mymaster 10.0.0.1 6379"),
        ("+switch-master", "mymaster 10.0.0.1 06379 10.0.0.2 6380"),
        ("+new-epoch", "+5"),
        ("+new-epoch", ""),
        ("+sdown", "primary mymaster 10.0.0.1 6379"),
        ("+sdown", "master mymaster 10.0.0.1  6379"),
        ("+sdown", "master mymaster 10.0.0.1 99999"),
        ("+vote-for-leader", "abc"),
    ] {
        assert!(
            matches!(ev(c, p).payload, Payload::Text(_)),
            "{c} {p:?} should stay text"
        );
        assert_round_trip(c, p);
    }
    // Invalid UTF-8 survives too.
    let e = SentinelEvent::parse(b"+sdown", b"\xff\xfe master");
    assert_eq!(&e.format().1[..], b"\xff\xfe master");
}

#[test]
fn channel_catalogue() {
    let published: Vec<&str> = Channel::published().collect();
    for must in [
        "+switch-master",
        "+sdown",
        "-sdown",
        "+odown",
        "-odown",
        "+failover-end",
        "+elected-leader",
        "+slave",
        "+sentinel",
        "+reset-master",
        "+tilt",
        "-tilt",
        "+config-update-from",
        "-role-change",
        "+role-change",
    ] {
        assert!(published.contains(&must), "{must}");
        assert_eq!(Channel::parse(must.as_bytes()).as_bytes(), must.as_bytes());
        assert!(!matches!(
            Channel::parse(must.as_bytes()),
            Channel::Other(_)
        ));
    }
    // Logged at debug level: sentinel never publishes these.
    for never in [
        "+script-child",
        "-cmd-link-reconnection",
        "-pubsub-link-reconnection",
    ] {
        assert!(!published.contains(&never), "{never}");
    }
}

#[test]
fn pubsub_frames() {
    let s = |x: &str| Value::Str(Bytes::from(x.to_string()));
    let msg = Value::Array(vec![s("message"), s("+sdown"), s("master m 1.2.3.4 6379")]);
    let f = PubSubFrame::from_value(&msg).unwrap();
    assert_eq!(f.event().unwrap().channel, Channel::SDown);
    let conf = Value::Array(vec![s("unsubscribe"), Value::Null, Value::Int(0)]);
    assert_eq!(
        PubSubFrame::from_value(&conf).unwrap(),
        PubSubFrame::Confirmation {
            kind: "unsubscribe".into(),
            channel: None,
            count: 0
        }
    );
    assert!(PubSubFrame::from_value(&Value::Array(vec![s("message")])).is_err());
    assert!(PubSubFrame::from_value(&Value::Int(3)).is_err());
}

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.:-]{1,12}"
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    (word(), word(), any::<u16>()).prop_map(|(name, ip, port)| Endpoint { name, ip, port })
}

fn instance() -> impl Strategy<Value = Instance> {
    (
        prop::sample::select(vec![
            InstanceKind::Master,
            InstanceKind::Slave,
            InstanceKind::Sentinel,
        ]),
        endpoint(),
        prop::option::of(endpoint()),
    )
        .prop_map(|(kind, instance, master)| Instance {
            kind,
            instance,
            master,
        })
}

fn typed_event() -> impl Strategy<Value = SentinelEvent> {
    let instance_channels = prop::sample::select(vec![
        Channel::Slave,
        Channel::SDown,
        Channel::ODown,
        Channel::Monitor,
        Channel::PromotedSlave,
        Channel::FailoverEnd,
        Channel::ConfigUpdateFrom,
        Channel::RoleChangeUnexpected,
        Channel::Set,
    ]);
    // Details are free text: anything but a leading "@" (which would read as a master part).
    let detail = prop::option::of("[#a-z0-9/ ]{0,20}");
    prop_oneof![
        (instance_channels, instance(), detail).prop_map(|(channel, instance, detail)| {
            SentinelEvent {
                channel,
                payload: Payload::Instance { instance, detail },
            }
        }),
        (word(), word(), any::<u16>(), word(), any::<u16>()).prop_map(|(n, oi, op, ni, np)| {
            SentinelEvent::switch_master(&n, (&oi, op), (&ni, np))
        }),
        any::<u64>().prop_map(|e| SentinelEvent {
            channel: Channel::NewEpoch,
            payload: Payload::Epoch(e)
        }),
        (word(), any::<u64>()).prop_map(|(runid, epoch)| SentinelEvent {
            channel: Channel::VoteForLeader,
            payload: Payload::Vote { runid, epoch }
        }),
    ]
}

proptest! {
    #[test]
    fn typed_events_format_then_parse_to_themselves(e in typed_event()) {
        let (c, p) = e.format();
        prop_assert_eq!(SentinelEvent::parse(&c, &p), e);
    }

    #[test]
    fn any_bytes_parse_then_format_to_themselves(
        channel in prop_oneof![
            Just(b"+sdown".to_vec()),
            Just(b"+switch-master".to_vec()),
            Just(b"+new-epoch".to_vec()),
            Just(b"+vote-for-leader".to_vec()),
            Just(b"+slave".to_vec()),
            prop::collection::vec(any::<u8>(), 0..20),
        ],
        payload in prop_oneof![
            "(master|slave|sentinel|x)( [a-z0-9.:@#]{0,6}){0,10}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..64),
        ],
    ) {
        let (c, p) = SentinelEvent::parse(&channel, &payload).format();
        prop_assert_eq!(&c[..], &channel[..]);
        prop_assert_eq!(&p[..], &payload[..]);
    }
}
