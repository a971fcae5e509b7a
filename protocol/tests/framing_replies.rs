//! The client-side reply path: the reply scanner's limits, the captured sentinel fixtures, and
//! encode-then-decode identity for frame trees within the limits.

use std::path::Path;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use sentinel_protocol::codec::{
    ReplyCodec, ReplyCodecError, Resp2Frame, Resp3Frame, Resp3ReplyCodec,
};
use sentinel_protocol::limits::{
    ReplyLimitError, ReplyLimits, ReplyProtocol, ReplyScanner, Scan, scan_reply,
};
use tokio_util::codec::{Decoder, Encoder};

fn resp2_err(input: &[u8]) -> ReplyLimitError {
    scan_reply(input, &ReplyLimits::default(), ReplyProtocol::Resp2).unwrap_err()
}

fn resp3(input: &[u8]) -> Result<Scan, ReplyLimitError> {
    scan_reply(input, &ReplyLimits::default(), ReplyProtocol::Resp3)
}

#[test]
fn addr_reply_decodes() {
    let mut codec = ReplyCodec::new();
    let mut buf = BytesMut::from(&b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n+PONG\r\n"[..]);
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(Resp2Frame::Array(vec![
            Resp2Frame::BulkString(Bytes::from_static(b"127.0.0.1")),
            Resp2Frame::BulkString(Bytes::from_static(b"6379")),
        ]))
    );
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(Resp2Frame::SimpleString(Bytes::from_static(b"PONG")))
    );
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
}

#[test]
fn commands_encode_as_multibulk() {
    let mut codec = ReplyCodec::new();
    let mut buf = BytesMut::new();
    let cmd: &[&[u8]] = &[b"SENTINEL", b"get-master-addr-by-name", b"mymaster"];
    codec.encode(cmd, &mut buf).unwrap();
    codec.encode(vec!["PING"], &mut buf).unwrap();
    codec.encode(&["PING"], &mut buf).unwrap();
    codec
        .encode(&vec![Bytes::from_static(b"PING")], &mut buf)
        .unwrap();
    assert_eq!(
        &buf[..],
        &b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n"[..]
    );
}

#[test]
fn each_limit_has_its_typed_error() {
    let small = ReplyLimits {
        max_depth: 2,
        max_aggregate_len: 3,
        max_bulk_len: 5,
        max_frame_bytes: 40,
    };
    let scan = |b: &[u8]| scan_reply(b, &small, ReplyProtocol::Resp3);
    assert_eq!(
        scan(b"*1\r\n*1\r\n*1\r\n"),
        Err(ReplyLimitError::Depth { max: 2 })
    );
    assert_eq!(scan(b"*1\r\n*1\r\n:1\r\n"), Ok(Scan::Complete(12)));
    assert_eq!(
        scan(b"*4\r\n"),
        Err(ReplyLimitError::AggregateLength { len: 4, max: 3 })
    );
    assert_eq!(
        scan(b"%4\r\n"),
        Err(ReplyLimitError::AggregateLength { len: 4, max: 3 })
    );
    assert_eq!(
        scan(b"$6\r\n"),
        Err(ReplyLimitError::BulkLength { len: 6, max: 5 })
    );
    assert_eq!(
        scan(b"+123456789"),
        Err(ReplyLimitError::BulkLength { len: 9, max: 5 })
    );
    // A declared bulk that would end past the frame limit fails at its header.
    assert_eq!(
        scan(b"*3\r\n$5\r\n12345\r\n$5\r\n12345\r\n*1\r\n$5\r\n"),
        Err(ReplyLimitError::FrameBytes { max: 40 })
    );
    // An incomplete frame holding more bytes than the limit fails as soon as it is seen.
    let wide = ReplyLimits {
        max_aggregate_len: 100,
        ..small
    };
    let mut many = b"*50\r\n".to_vec();
    many.extend(b":1\r\n".repeat(10));
    assert_eq!(
        scan_reply(&many, &wide, ReplyProtocol::Resp2),
        Err(ReplyLimitError::FrameBytes { max: 40 })
    );
    assert_eq!(
        scan_reply(&many[..40], &wide, ReplyProtocol::Resp2),
        Ok(Scan::Incomplete)
    );
    assert_eq!(
        scan(b"$x\r\n"),
        Err(ReplyLimitError::MalformedHeader { offset: 0 })
    );
    assert_eq!(
        scan(b"*1\r\n$+1\r\n"),
        Err(ReplyLimitError::MalformedHeader { offset: 4 })
    );
    assert_eq!(
        scan(b"$3\r\nfooXY"),
        Err(ReplyLimitError::MalformedHeader { offset: 0 })
    );
    assert_eq!(
        scan(b"*?\r\n"),
        Err(ReplyLimitError::MalformedHeader { offset: 0 })
    );
    assert_eq!(
        scan(b"$-2\r\n"),
        Err(ReplyLimitError::MalformedHeader { offset: 0 })
    );
    assert_eq!(
        scan(b"*123456789012345678901234"),
        Err(ReplyLimitError::MalformedHeader { offset: 0 })
    );
    assert_eq!(
        scan(b"PING\r\n"),
        Err(ReplyLimitError::TypeByte {
            byte: b'P',
            offset: 0
        })
    );
    // RESP3 types are refused in RESP2 mode.
    assert_eq!(
        resp2_err(b"%1\r\n"),
        ReplyLimitError::TypeByte {
            byte: b'%',
            offset: 0
        }
    );
    assert_eq!(
        resp2_err(b"_\r\n"),
        ReplyLimitError::TypeByte {
            byte: b'_',
            offset: 0
        }
    );
}

#[test]
fn resp3_shapes_scan_to_their_exact_length() {
    let frames: &[&[u8]] = &[
        b"_\r\n",
        b"#t\r\n",
        b",3.14\r\n",
        b"(12345678901234567890\r\n",
        b"!3\r\nerr\r\n",
        b"=7\r\ntxt:abc\r\n",
        b"%1\r\n$1\r\na\r\n:1\r\n",
        b"~2\r\n:1\r\n:2\r\n",
        b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n",
        b"|1\r\n+ttl\r\n:3\r\n$2\r\nhi\r\n",
        b"*0\r\n",
        b"%0\r\n",
    ];
    for f in frames {
        let mut with_tail = f.to_vec();
        with_tail.extend_from_slice(b"+NEXT\r\n");
        assert_eq!(
            resp3(&with_tail),
            Ok(Scan::Complete(f.len())),
            "{:?}",
            String::from_utf8_lossy(f)
        );
        for n in 0..f.len() {
            assert_eq!(
                resp3(&f[..n]),
                Ok(Scan::Incomplete),
                "{:?} prefix {n}",
                String::from_utf8_lossy(f)
            );
        }
        // And the RESP3 decoder agrees on every one.
        let mut buf = BytesMut::from(&with_tail[..]);
        let mut codec = Resp3ReplyCodec::new();
        assert!(
            codec.decode(&mut buf).unwrap().is_some(),
            "{:?}",
            String::from_utf8_lossy(f)
        );
        assert_eq!(&buf[..], b"+NEXT\r\n");
    }
}

/// The reason the scanner exists: 100,000 nested `*1` headers (400 KB) must give the depth error
/// on a 2 MiB stack in a debug build, where `redis-protocol` alone aborts the process at ~300.
#[test]
fn a_hundred_thousand_nested_headers_give_the_depth_error_on_a_small_stack() {
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            let mut input = b"*1\r\n".repeat(100_000);
            input.extend_from_slice(b":1\r\n");
            let mut buf = BytesMut::from(&input[..]);
            let r2 = ReplyCodec::new().decode(&mut buf).unwrap_err();
            let mut buf = BytesMut::from(&input[..]);
            let r3 = Resp3ReplyCodec::new().decode(&mut buf).unwrap_err();
            (r2.to_string(), r3.to_string())
        })
        .unwrap();
    let (r2, r3) = handle.join().expect("no stack overflow, no panic");
    assert_eq!(r2, "reply nested deeper than 8 aggregates");
    assert_eq!(r3, r2);
    assert!(cfg!(debug_assertions) || !r2.is_empty());
}

#[test]
fn the_scanner_resumes_and_survives_byte_by_byte_feeding() {
    let frame = std::fs::read(fixtures_dir().join("8.0.1/resp2-sentinel-master.resp")).unwrap();
    assert_eq!(frame.len(), 611);
    let mut codec = ReplyCodec::new();
    let mut buf = BytesMut::new();
    for (i, b) in frame.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        let got = codec.decode(&mut buf).unwrap();
        assert_eq!(got.is_some(), i + 1 == frame.len(), "byte {i}");
        if let Some(Resp2Frame::Array(items)) = got {
            assert_eq!(items.len(), 40);
        }
    }
    // A fresh scanner over a different, shorter buffer after an incomplete scan starts again.
    let mut s = ReplyScanner::new(ReplyLimits::default(), ReplyProtocol::Resp2);
    assert_eq!(s.scan(&frame[..300]), Ok(Scan::Incomplete));
    assert_eq!(s.scan(b"+OK\r\n"), Ok(Scan::Complete(5)));
}

fn fixtures_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

/// Every reply captured from real sentinels decodes completely, through the codec for its
/// protocol, with nothing left over and no error.
#[test]
fn captured_sentinel_replies_decode_completely() {
    let mut seen = 0;
    for version in std::fs::read_dir(fixtures_dir()).unwrap() {
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
            let mut buf = BytesMut::from(&bytes[..]);
            let mut frames = 0;
            // `resp2-hello-3` is the RESP3 answer to a HELLO 3 sent on a RESP2 connection.
            if name.starts_with("resp3") || name.contains("hello-3") {
                let mut codec = Resp3ReplyCodec::new();
                while let Some(_f) = codec
                    .decode(&mut buf)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                {
                    frames += 1;
                }
            } else {
                let mut codec = ReplyCodec::new();
                while let Some(_f) = codec
                    .decode(&mut buf)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                {
                    frames += 1;
                }
            }
            assert!(
                buf.is_empty(),
                "{}: {} bytes left",
                path.display(),
                buf.len()
            );
            assert!(frames >= 1 || bytes.is_empty(), "{}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 50, "only {seen} fixtures found");
}

#[test]
fn decode_errors_after_a_clean_scan_are_typed() {
    // Scans fine (a line), but is not an integer.
    let mut buf = BytesMut::from(&b":abc\r\n"[..]);
    assert!(matches!(
        ReplyCodec::new().decode(&mut buf),
        Err(ReplyCodecError::Decode(_))
    ));
}

// -------------------------------------------------------------------------------------------
// Encode -> decode identity for frame trees within the limits
// -------------------------------------------------------------------------------------------

fn line_text() -> impl Strategy<Value = String> {
    "[ -~]{0,20}"
}

fn resp2_frame() -> impl Strategy<Value = Resp2Frame> {
    let leaf = prop_oneof![
        line_text().prop_map(|s| Resp2Frame::SimpleString(Bytes::from(s))),
        line_text().prop_map(|s| Resp2Frame::Error(s.into())),
        any::<i64>().prop_map(Resp2Frame::Integer),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|v| Resp2Frame::BulkString(v.into())),
        Just(Resp2Frame::Null),
    ];
    // Depth up to 8 aggregates: within the default limit.
    leaf.prop_recursive(8, 256, 10, |inner| {
        prop::collection::vec(inner, 0..10).prop_map(Resp2Frame::Array)
    })
}

fn resp3_key() -> impl Strategy<Value = Resp3Frame> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..16).prop_map(|v| Resp3Frame::BlobString {
            data: v.into(),
            attributes: None
        }),
        any::<i64>().prop_map(|n| Resp3Frame::Number {
            data: n,
            attributes: None
        }),
    ]
}

fn resp3_frame() -> impl Strategy<Value = Resp3Frame> {
    let leaf = prop_oneof![
        line_text().prop_map(|s| Resp3Frame::SimpleString {
            data: s.into(),
            attributes: None
        }),
        line_text().prop_map(|s| Resp3Frame::SimpleError {
            data: s.into(),
            attributes: None
        }),
        any::<i64>().prop_map(|n| Resp3Frame::Number {
            data: n,
            attributes: None
        }),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|v| Resp3Frame::BlobString {
            data: v.into(),
            attributes: None
        }),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(|v| Resp3Frame::BlobError {
            data: v.into(),
            attributes: None
        }),
        any::<bool>().prop_map(|b| Resp3Frame::Boolean {
            data: b,
            attributes: None
        }),
        (-1.0e12f64..1.0e12).prop_map(|d| Resp3Frame::Double {
            data: d,
            attributes: None
        }),
        "[0-9]{1,30}".prop_map(|s| Resp3Frame::BigNumber {
            data: s.into(),
            attributes: None
        }),
        Just(Resp3Frame::Null),
    ];
    leaf.prop_recursive(8, 256, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(|data| Resp3Frame::Array {
                data,
                attributes: None
            }),
            prop::collection::vec(inner.clone(), 0..8).prop_map(|data| Resp3Frame::Push {
                data,
                attributes: None
            }),
            prop::collection::vec((resp3_key(), inner), 0..6).prop_map(|pairs| Resp3Frame::Map {
                data: pairs.into_iter().collect(),
                attributes: None
            }),
        ]
    })
}

fn feed_in_chunks<D: Decoder>(codec: &mut D, wire: &[u8], chunks: &[usize]) -> Vec<D::Item>
where
    D::Error: std::fmt::Debug,
{
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut rest = wire;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap()).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            out.push(item);
        }
    }
    assert!(buf.is_empty());
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn resp2_frames_round_trip_in_any_chunking(
        frames in prop::collection::vec(resp2_frame(), 1..6),
        chunks in prop::collection::vec(1usize..97, 1..50),
    ) {
        let mut wire = BytesMut::new();
        for f in &frames {
            redis_protocol::resp2::encode::extend_encode(&mut wire, f, false).unwrap();
        }
        let got = feed_in_chunks(&mut ReplyCodec::new(), &wire, &chunks);
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn resp3_frames_round_trip_in_any_chunking(
        frames in prop::collection::vec(resp3_frame(), 1..6),
        chunks in prop::collection::vec(1usize..97, 1..50),
    ) {
        let mut wire = BytesMut::new();
        for f in &frames {
            redis_protocol::resp3::encode::complete::extend_encode(&mut wire, f, false).unwrap();
        }
        let got = feed_in_chunks(&mut Resp3ReplyCodec::new(), &wire, &chunks);
        // Doubles are compared through their encoding: RESP3 prints them in decimal.
        let reencode = |fs: &[Resp3Frame]| {
            let mut b = BytesMut::new();
            for f in fs {
                redis_protocol::resp3::encode::complete::extend_encode(&mut b, f, false).unwrap();
            }
            b
        };
        prop_assert_eq!(reencode(&got), wire);
    }

    /// Arbitrary bytes never panic any decoder; the fuzz body checks the rest.
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        sentinel_protocol::codec::fuzz_decode(&data);
    }

    /// RESP-shaped garbage (type bytes, digits, CRLFs) reaches deeper into the scanners than
    /// uniform bytes do.
    #[test]
    fn resp_shaped_garbage_never_panics(
        parts in prop::collection::vec(
            prop_oneof![
                Just(&b"*"[..]), Just(&b"$"[..]), Just(&b"%"[..]), Just(&b"|"[..]), Just(&b">"[..]),
                Just(&b"+"[..]), Just(&b":"[..]), Just(&b"_"[..]), Just(&b"\r\n"[..]), Just(&b"-1"[..]),
                Just(&b"1"[..]), Just(&b"3"[..]), Just(&b"0"[..]), Just(&b"\""[..]), Just(&b"'"[..]),
                Just(&b" "[..]), Just(&b"\\x4"[..]), Just(&b"abc"[..]), Just(&b"\n"[..]),
            ],
            0..64,
        )
    ) {
        sentinel_protocol::codec::fuzz_decode(&parts.concat());
    }
}
