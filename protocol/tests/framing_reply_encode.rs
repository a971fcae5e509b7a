//! `Reply` encoding: byte-exact against the replies captured from real sentinels, the special
//! shapes (`*-1`, `_`, maps, pushes), and agreement with `redis-protocol`'s own encoder.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use sentinel_protocol::codec::{ReplyCodec, Resp2Frame, Resp3Frame, Resp3ReplyCodec};
use sentinel_protocol::reply::{Protocol, RecordBuilder, Reply};
use tokio_util::codec::Decoder;

fn b2(r: &Reply) -> Bytes {
    r.to_bytes(Protocol::Resp2)
}
fn b3(r: &Reply) -> Bytes {
    r.to_bytes(Protocol::Resp3)
}

#[test]
fn nulls_have_their_sentinel_shapes() {
    assert_eq!(&b2(&Reply::NullArray)[..], b"*-1\r\n");
    assert_eq!(&b2(&Reply::Null)[..], b"$-1\r\n");
    assert_eq!(&b3(&Reply::NullArray)[..], b"_\r\n");
    assert_eq!(&b3(&Reply::Null)[..], b"_\r\n");
}

#[test]
fn scalars_encode_exactly() {
    assert_eq!(&b2(&Reply::ok())[..], b"+OK\r\n");
    assert_eq!(&b2(&Reply::simple("PONG"))[..], b"+PONG\r\n");
    assert_eq!(
        &b2(&Reply::error("ERR No such master with that name"))[..],
        b"-ERR No such master with that name\r\n"
    );
    assert_eq!(
        &b3(&Reply::error("ERR bad\r\nthing"))[..],
        b"-ERR bad  thing\r\n",
        "CR/LF in an error become spaces, as in Valkey"
    );
    assert_eq!(&b2(&Reply::Integer(-42))[..], b":-42\r\n");
    assert_eq!(&b3(&Reply::Integer(7))[..], b":7\r\n");
    assert_eq!(&b2(&Reply::bulk_display(6379))[..], b"$4\r\n6379\r\n");
    assert_eq!(&b2(&Reply::bulk(Bytes::new()))[..], b"$0\r\n\r\n");
    assert_eq!(&b2(&Reply::Boolean(true))[..], b":1\r\n");
    assert_eq!(&b3(&Reply::Boolean(false))[..], b"#f\r\n");
    assert_eq!(&b2(&Reply::Double(1.5))[..], b"$3\r\n1.5\r\n");
    assert_eq!(&b2(&Reply::Double(f64::INFINITY))[..], b"$3\r\ninf\r\n");
    assert_eq!(&b3(&Reply::Double(1.5))[..], b",1.5\r\n");
    assert_eq!(&b2(&Reply::Verbatim("a".into()))[..], b"$1\r\na\r\n");
    assert_eq!(&b3(&Reply::Verbatim("a".into()))[..], b"=5\r\ntxt:a\r\n");
}

#[test]
fn aggregates_encode_per_protocol() {
    let addr = Reply::addr("127.0.0.1", 6379);
    assert_eq!(&b2(&addr)[..], b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n");
    assert_eq!(&b3(&addr)[..], &b2(&addr)[..]);

    let record = Reply::record([("name", "mymaster"), ("ip", "10.0.0.1")]);
    assert_eq!(
        &b2(&record)[..],
        b"*4\r\n$4\r\nname\r\n$8\r\nmymaster\r\n$2\r\nip\r\n$8\r\n10.0.0.1\r\n"
    );
    assert_eq!(
        &b3(&record)[..],
        b"%2\r\n$4\r\nname\r\n$8\r\nmymaster\r\n$2\r\nip\r\n$8\r\n10.0.0.1\r\n"
    );

    let push = Reply::Push(vec![
        Reply::bulk_static("message"),
        Reply::bulk_static("+switch-master"),
        Reply::bulk_static("m 1 2 3 4"),
    ]);
    assert_eq!(
        &b2(&push)[..],
        b"*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$9\r\nm 1 2 3 4\r\n"
    );
    assert_eq!(
        &b3(&push)[..],
        b">3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$9\r\nm 1 2 3 4\r\n"
    );

    let nested = Reply::array(vec![
        Reply::NullArray,
        Reply::Map(vec![]),
        Reply::array(vec![]),
    ]);
    assert_eq!(&b2(&nested)[..], b"*3\r\n*-1\r\n*0\r\n*0\r\n");
    assert_eq!(&b3(&nested)[..], b"*3\r\n_\r\n%0\r\n*0\r\n");
}

#[test]
fn record_builder_keeps_order_and_stringifies_numbers() {
    let mut rb = RecordBuilder::with_capacity(4)
        .field("name", "mymaster")
        .field("port", 6379u16)
        .field_bytes("runid", Bytes::from_static(b"abc"));
    rb.push("config-epoch", 12u64);
    let r = rb.build();
    assert_eq!(
        &b3(&r)[..],
        &b"%4\r\n$4\r\nname\r\n$8\r\nmymaster\r\n$4\r\nport\r\n$4\r\n6379\r\n$5\r\nrunid\r\n$3\r\nabc\r\n$12\r\nconfig-epoch\r\n$2\r\n12\r\n"[..]
    );
}

// -------------------------------------------------------------------------------------------
// Byte-exact against real sentinels
// -------------------------------------------------------------------------------------------

/// What the coordinator would build to give the same answer as this frame.
fn reply_from_resp2(frame: &Resp2Frame, raw: &[u8]) -> Reply {
    match frame {
        Resp2Frame::SimpleString(s) => Reply::Simple(s.clone()),
        Resp2Frame::Error(e) => Reply::error(e.to_string()),
        Resp2Frame::Integer(n) => Reply::Integer(*n),
        Resp2Frame::BulkString(b) => Reply::Bulk(b.clone()),
        // Only a top-level null can be told apart by its bytes; that is where sentinels use it.
        Resp2Frame::Null if raw.starts_with(b"*-1") => Reply::NullArray,
        Resp2Frame::Null => Reply::Null,
        Resp2Frame::Array(items) => {
            Reply::Array(items.iter().map(|f| reply_from_resp2(f, b"")).collect())
        }
    }
}

fn reply_from_resp3(frame: &Resp3Frame) -> Reply {
    match frame {
        Resp3Frame::SimpleString { data, .. } => Reply::Simple(data.clone()),
        Resp3Frame::SimpleError { data, .. } => Reply::error(data.to_string()),
        Resp3Frame::Number { data, .. } => Reply::Integer(*data),
        Resp3Frame::BlobString { data, .. } => Reply::Bulk(data.clone()),
        Resp3Frame::Null => Reply::Null,
        Resp3Frame::Boolean { data, .. } => Reply::Boolean(*data),
        Resp3Frame::Double { data, .. } => Reply::Double(*data),
        Resp3Frame::VerbatimString { data, .. } => Reply::Verbatim(data.clone()),
        Resp3Frame::Array { data, .. } => Reply::Array(data.iter().map(reply_from_resp3).collect()),
        Resp3Frame::Push { data, .. } => Reply::Push(data.iter().map(reply_from_resp3).collect()),
        Resp3Frame::Map { data, .. } => Reply::Map(
            data.iter()
                .map(|(k, v)| (reply_from_resp3(k), reply_from_resp3(v)))
                .collect(),
        ),
        other => panic!("no Reply shape for {other:?}"),
    }
}

/// Every captured reply, decoded and rebuilt as a `Reply`, encodes to exactly the bytes the real
/// sentinel (or data node) sent. This pins the RESP2 `*-1`, the RESP3 `_`, map order, `>` pushes
/// and verbatim `INFO` against the real thing.
#[test]
fn rebuilt_replies_are_byte_identical_to_captured_ones() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"));
    let mut checked = 0;
    for version in std::fs::read_dir(dir).unwrap() {
        let version = version.unwrap().path();
        if !version.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&version).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_none_or(|e| e != "resp") {
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).unwrap();
            let resp3 = name.starts_with("resp3") || name.contains("hello-3");
            let mut buf = BytesMut::from(&bytes[..]);
            let mut rebuilt = BytesMut::new();
            let mut offset = 0;
            loop {
                let before = buf.len();
                let reply = if resp3 {
                    match Resp3ReplyCodec::new().decode(&mut buf).unwrap() {
                        Some(f) => reply_from_resp3(&f),
                        None => break,
                    }
                } else {
                    match ReplyCodec::new().decode(&mut buf).unwrap() {
                        Some(f) => reply_from_resp2(&f, &bytes[offset..]),
                        None => break,
                    }
                };
                offset += before - buf.len();
                let proto = if resp3 {
                    Protocol::Resp3
                } else {
                    Protocol::Resp2
                };
                reply.encode(proto, &mut rebuilt).unwrap();
            }
            assert_eq!(
                String::from_utf8_lossy(&rebuilt),
                String::from_utf8_lossy(&bytes),
                "{}",
                path.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} fixtures");
}

// -------------------------------------------------------------------------------------------
// Agreement with redis-protocol's encoder, and decode identity
// -------------------------------------------------------------------------------------------

fn reply_tree() -> impl Strategy<Value = Reply> {
    let leaf = prop_oneof![
        "[ -~]{0,16}".prop_map(|s| Reply::Simple(s.into())),
        "[ -~]{0,16}".prop_map(Reply::error),
        any::<i64>().prop_map(Reply::Integer),
        prop::collection::vec(any::<u8>(), 0..48).prop_map(|v| Reply::Bulk(v.into())),
        Just(Reply::Null),
        any::<bool>().prop_map(Reply::Boolean),
        (-1.0e9f64..1.0e9).prop_map(Reply::Double),
        "[ -~]{0,16}".prop_map(|s| Reply::Verbatim(s.into())),
    ];
    leaf.prop_recursive(6, 128, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Reply::Array),
            prop::collection::vec(inner.clone(), 0..8).prop_map(Reply::Push),
            prop::collection::vec(("[a-z]{1,8}", inner), 0..6).prop_map(|pairs| {
                // Unique keys, so the RESP3 frame (a map) can represent it.
                let mut seen = std::collections::HashSet::new();
                Reply::Map(
                    pairs
                        .into_iter()
                        .filter(|(k, _)| seen.insert(k.clone()))
                        .map(|(k, v)| (Reply::Bulk(k.into()), v))
                        .collect(),
                )
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Our hand-written aggregate headers plus redis-protocol's scalars give the same bytes as
    /// redis-protocol encoding the equivalent frame tree, in both protocols; and those bytes
    /// decode back to that frame.
    #[test]
    fn reply_encoding_matches_redis_protocol_and_decodes_back(reply in reply_tree()) {
        let frame2 = reply.to_resp2_frame().expect("no nested null array generated");
        let mut want2 = BytesMut::new();
        redis_protocol::resp2::encode::extend_encode(&mut want2, &frame2, false).unwrap();
        let got2 = b2(&reply);
        prop_assert_eq!(&got2[..], &want2[..]);
        let mut buf = BytesMut::from(&got2[..]);
        prop_assert_eq!(ReplyCodec::new().decode(&mut buf).unwrap(), Some(frame2));

        let frame3 = reply.to_resp3_frame().expect("unique scalar keys");
        let mut want3 = BytesMut::new();
        redis_protocol::resp3::encode::complete::extend_encode(&mut want3, &frame3, false).unwrap();
        let got3 = b3(&reply);
        prop_assert_eq!(&got3[..], &want3[..]);
        let mut buf = BytesMut::from(&got3[..]);
        let decoded = Resp3ReplyCodec::new().decode(&mut buf).unwrap().unwrap();
        let mut again = BytesMut::new();
        redis_protocol::resp3::encode::complete::extend_encode(&mut again, &decoded, false).unwrap();
        prop_assert_eq!(&again[..], &got3[..]);
    }
}
