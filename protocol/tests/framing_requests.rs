//! The server-side request path: Valkey's request grammar, its exact error strings, pre-auth
//! limits, inline quoting, pipelining across arbitrary read boundaries.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use sentinel_protocol::codec::{RequestCodec, RequestCodecError, encode_command};
use sentinel_protocol::limits::{RequestError, RequestLimits, RequestScan, scan_request};
use sentinel_protocol::reply::{Protocol, Reply};
use tokio_util::codec::{Decoder, Encoder};

fn args(v: &[&str]) -> Vec<Bytes> {
    v.iter()
        .map(|s| Bytes::copy_from_slice(s.as_bytes()))
        .collect()
}

/// Decodes everything in `input`; returns the requests and the error that ended it, if any.
fn decode_all(codec: &mut RequestCodec, input: &[u8]) -> (Vec<Vec<Bytes>>, Option<String>) {
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(req)) => out.push(req),
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e.to_string())),
        }
    }
}

fn error_of(input: &[u8]) -> String {
    error_with(RequestCodec::default(), input)
}

fn error_with(mut codec: RequestCodec, input: &[u8]) -> String {
    decode_all(&mut codec, input)
        .1
        .unwrap_or_else(|| panic!("no error for {:?}", String::from_utf8_lossy(input)))
}

#[test]
fn the_typical_request_decodes_to_its_arguments() {
    let mut codec = RequestCodec::default();
    let mut buf = BytesMut::from(
        &b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n"[..],
    );
    assert_eq!(buf.len(), 62);
    let req = codec.decode(&mut buf).unwrap().unwrap();
    assert_eq!(
        req,
        args(&["SENTINEL", "get-master-addr-by-name", "mymaster"])
    );
    assert!(buf.is_empty());
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
}

#[test]
fn valkey_error_strings_are_exact() {
    let cases: &[(&[u8], &str)] = &[
        (b"*abc\r\n", "Protocol error: invalid multibulk length"),
        (b"*\r\n", "Protocol error: invalid multibulk length"),
        (b"*+1\r\n", "Protocol error: invalid multibulk length"),
        (
            b"*2147483648\r\n",
            "Protocol error: invalid multibulk length",
        ),
        (b"*1\r\n:1\r\n", "Protocol error: expected '$', got ':'"),
        (b"*1\r\nfoo\r\n", "Protocol error: expected '$', got 'f'"),
        (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
        (
            b"*1\r\n$+3\r\nfoo\r\n",
            "Protocol error: invalid bulk length",
        ),
        (b"*1\r\n$x\r\n", "Protocol error: invalid bulk length"),
        (
            b"*1\r\n$536870913\r\n",
            "Protocol error: invalid bulk length",
        ),
        (
            b"\"unterminated\r\n",
            "Protocol error: unbalanced quotes in request",
        ),
        (
            b"SET 'a\r\n",
            "Protocol error: unbalanced quotes in request",
        ),
        (
            b"SET \"a\\\" \r\n",
            "Protocol error: unbalanced quotes in request",
        ),
        (
            b"SET 'a\\'x\r\n",
            "Protocol error: unbalanced quotes in request",
        ),
        (b"*1\rx", "Protocol error: invalid CRLF in request"),
        (b"*abc\rx", "Protocol error: invalid CRLF in request"),
        (
            b"*1\r\n$4\rxPING\r\n",
            "Protocol error: invalid CRLF in request",
        ),
        (
            b"*1\r\n$4\r\nPINGxx",
            "Protocol error: invalid CRLF in request",
        ),
        (
            b"*1\r\n$4\r\nPING\rx",
            "Protocol error: invalid CRLF in request",
        ),
        (b"*0\rxPING\r\n", "Protocol error: invalid CRLF in request"),
        // The '$' check comes before the CRLF check, as in Valkey.
        (b"*1\r\n:1\rx", "Protocol error: expected '$', got ':'"),
        (b"*-0\r\n", "Protocol error: invalid multibulk length"),
        (b"*01\r\n", "Protocol error: invalid multibulk length"),
        (b"*1\r\n$-0\r\n", "Protocol error: invalid bulk length"),
        (b"*1\0\r\n", "Protocol error: invalid multibulk length"),
    ];
    for (input, want) in cases {
        assert_eq!(
            error_of(input),
            *want,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn count_strings_without_a_line_end_are_too_big_past_64k() {
    let mut input = b"*".to_vec();
    input.extend(std::iter::repeat_n(b'1', 64 * 1024 + 1));
    assert_eq!(
        error_of(&input),
        "Protocol error: too big mbulk count string"
    );

    let mut input = b"*1\r\n$".to_vec();
    input.extend(std::iter::repeat_n(b'1', 64 * 1024 + 1));
    assert_eq!(
        error_of(&input),
        "Protocol error: too big bulk count string"
    );

    let input = vec![b'a'; 64 * 1024 + 1];
    assert_eq!(error_of(&input), "Protocol error: too big inline request");

    // Exactly 64 KiB without a line end is still just incomplete, as in Valkey.
    let input = vec![b'a'; 64 * 1024];
    assert_eq!(
        decode_all(&mut RequestCodec::default(), &input),
        (vec![], None)
    );
}

#[test]
fn pre_auth_limits_apply_only_while_a_password_is_required() {
    let eleven = format!("*11\r\n{}", "$1\r\na\r\n".repeat(11));
    let big_bulk = format!("*1\r\n$16385\r\n{}\r\n", "x".repeat(16385));

    let locked = || RequestCodec::new(RequestLimits::default(), true);
    assert_eq!(
        error_with(locked(), eleven.as_bytes()),
        "Protocol error: unauthenticated multibulk length"
    );
    assert_eq!(
        error_with(locked(), big_bulk.as_bytes()),
        "Protocol error: unauthenticated bulk length"
    );
    // Exactly 10 elements and 16384 bytes are fine.
    let ten = format!("*10\r\n{}", "$1\r\na\r\n".repeat(10));
    assert_eq!(decode_all(&mut locked(), ten.as_bytes()).0.len(), 1);
    let ok_bulk = format!("*1\r\n$16384\r\n{}\r\n", "x".repeat(16384));
    assert_eq!(decode_all(&mut locked(), ok_bulk.as_bytes()).0.len(), 1);

    let mut unlocked = locked();
    unlocked.set_authenticated(true);
    assert!(!unlocked.auth_required());
    assert_eq!(decode_all(&mut unlocked, eleven.as_bytes()).0.len(), 1);
    assert_eq!(decode_all(&mut unlocked, big_bulk.as_bytes()).0.len(), 1);

    // Without a password the pre-auth limits never apply.
    let mut open = RequestCodec::new(RequestLimits::default(), false);
    assert_eq!(decode_all(&mut open, eleven.as_bytes()).0.len(), 1);
}

#[test]
fn our_own_caps_have_their_own_errors() {
    let limits = RequestLimits {
        max_args: 3,
        max_bulk_len: 8,
        max_request_bytes: 40,
        ..RequestLimits::default()
    };
    let codec = || RequestCodec::new(limits, false);
    assert_eq!(
        error_with(codec(), b"*4\r\n"),
        "Protocol error: too many arguments in request (limit 3)"
    );
    assert_eq!(
        error_with(codec(), b"a b c d\r\n"),
        "Protocol error: too many arguments in request (limit 3)"
    );
    assert_eq!(
        error_with(codec(), b"*1\r\n$9\r\n"),
        "Protocol error: bulk argument too long (limit 8 bytes)"
    );
    assert_eq!(
        error_with(codec(), b"*3\r\n$8\r\n12345678\r\n$8\r\n12345678\r\n$8\r\n"),
        "Protocol error: request too big (limit 40 bytes)"
    );
    assert_eq!(
        RequestError::TooManyArguments(3).reply_text(),
        "ERR Protocol error: too many arguments in request (limit 3)"
    );
}

#[test]
fn protocol_errors_become_err_replies() {
    let mut codec = RequestCodec::default();
    let mut buf = BytesMut::from(&b"*1\r\n:1\r\n"[..]);
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(matches!(
        err,
        RequestCodecError::Protocol(RequestError::ExpectedDollar(b':'))
    ));
    let reply = err.reply().unwrap();
    assert_eq!(
        &reply.to_bytes(Protocol::Resp2)[..],
        b"-ERR Protocol error: expected '$', got ':'\r\n"
    );
    // Raw bytes go back raw, CR and LF as a space: what Valkey 9.1.2 sends.
    for (input, wire) in [
        (
            &b"*1\r\n\x80\r\n"[..],
            &b"-ERR Protocol error: expected '$', got '\x80'\r\n"[..],
        ),
        (
            b"*1\r\n\r\n\r\n",
            b"-ERR Protocol error: expected '$', got ' '\r\n",
        ),
        (
            b"*1\r\n\0\r\n",
            b"-ERR Protocol error: expected '$', got '\0'\r\n",
        ),
    ] {
        let err = RequestCodec::default()
            .decode(&mut BytesMut::from(input))
            .unwrap_err();
        assert_eq!(&err.reply().unwrap().to_bytes(Protocol::Resp3)[..], wire);
    }
}

#[test]
fn empty_and_null_multibulks_and_blank_lines_are_skipped() {
    let input = b"*0\r\n*-1\r\n*-7\r\n\r\n\n   \t \r\n*1\r\n$4\r\nPING\r\n";
    assert_eq!(
        decode_all(&mut RequestCodec::default(), input),
        (vec![args(&["PING"])], None)
    );
    assert_eq!(
        scan_request(b"*0\r\n", &RequestLimits::default(), false),
        Ok(RequestScan::Skip(4))
    );
}

#[test]
fn partial_terminators_wait_like_valkey() {
    // One byte of a bulk's CRLF, or a header's lone '\r', is not yet an error.
    for input in [
        &b"*1\r\n$4\r\nPINGx"[..],
        b"*1\r\n$4\r\nPING\r",
        b"*1\r",
        b"*1\r\n$4\r",
    ] {
        assert_eq!(
            decode_all(&mut RequestCodec::default(), input),
            (vec![], None),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn a_nul_before_the_line_end_stalls_an_inline_request_as_in_valkey() {
    // Valkey looks for the '\n' with strchr, which stops at the NUL.
    assert_eq!(
        decode_all(&mut RequestCodec::default(), b"P\0ING\r\nPING\r\n"),
        (vec![], None)
    );
    let mut stalled = b"PING\0\n".to_vec();
    stalled.extend(vec![b'x'; 64 * 1024]);
    assert_eq!(error_of(&stalled), "Protocol error: too big inline request");
    // In a bulk a NUL is just a byte.
    assert_eq!(
        decode_all(&mut RequestCodec::default(), b"*1\r\n$4\r\nP\0NG\r\n"),
        (vec![vec![Bytes::from_static(b"P\0NG")]], None)
    );
}

#[test]
fn inline_commands_follow_sdssplitargs() {
    let cases: &[(&[u8], &[&[u8]])] = &[
        (b"PING\r\n", &[b"PING"]),
        (b"PING\n", &[b"PING"]),
        (b"  SENTINEL   masters  \r\n", &[b"SENTINEL", b"masters"]),
        (b"SET \"a b\" 'c d'\r\n", &[b"SET", b"a b", b"c d"]),
        (
            b"ECHO \"\\x41\\x4a\\n\\r\\t\\b\\a\\\\\\\"\\q\"\n",
            &[b"ECHO", b"AJ\n\r\t\x08\x07\\\"q"],
        ),
        (b"ECHO 'it\\'s' '\\n'\n", &[b"ECHO", b"it's", b"\\n"]),
        (b"ECHO \"\\x4\"\n", &[b"ECHO", b"x4"]),
        (b"ECHO foo\"bar baz\"\n", &[b"ECHO", b"foobar baz"]),
        (b"ECHO \"\"\n", &[b"ECHO", b""]),
        (b"a\x0bb\n", &[b"a\x0bb"]),
        (b"a\tb\r\n", &[b"a", b"b"]),
        (b"\x0bPING\r\n", &[b"PING"]),
        // Valkey 9: quotes open and close inside one token, shell style.
        (
            b"SET \"a\"b 'c'\"d\"e \"\"\"\" x\"\"\r\n",
            &[b"SET", b"ab", b"cde", b"", b"x"],
        ),
        (b"ECHO \"a\"\x0c\r\n", &[b"ECHO", b"a\x0c"]),
        (b"ECHO \"\\x41\"\\x41\r\n", &[b"ECHO", b"A\\x41"]),
        (b"ECHO \"a\"\r\r\n", &[b"ECHO", b"a"]),
        (b"ECHO \"a\r\"\r\n", &[b"ECHO", b"a\r"]),
        // A quote escape that ends the line is a backslash and the closing quote (Valkey 9).
        (b"ECHO \"b\\\"\r\n", &[b"ECHO", b"b\\"]),
        (b"ECHO 'b\\'\r\n", &[b"ECHO", b"b\\"]),
    ];
    for (input, want) in cases {
        let (got, err) = decode_all(&mut RequestCodec::default(), input);
        assert_eq!(err, None, "input {:?}", String::from_utf8_lossy(input));
        let want: Vec<Bytes> = want.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        assert_eq!(
            got,
            vec![want],
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn replies_switch_protocol_after_hello() {
    let mut codec = RequestCodec::default();
    let mut out = BytesMut::new();
    codec.encode(&Reply::NullArray, &mut out).unwrap();
    codec.set_protocol(Protocol::Resp3);
    codec.encode(Reply::NullArray, &mut out).unwrap();
    assert_eq!(&out[..], b"*-1\r\n_\r\n");
}

/// A request as a client might send it: multibulk or inline (for arguments an inline line can
/// carry unambiguously).
fn request_strategy() -> impl Strategy<Value = (Vec<Vec<u8>>, bool)> {
    prop_oneof![
        (
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..8),
            Just(false)
        ),
        (
            prop::collection::vec("[a-zA-Z0-9_.:-]{1,12}", 1..6)
                .prop_map(|v| v.into_iter().map(String::into_bytes).collect()),
            Just(true)
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Pipelined requests come out one by one, in order, whatever the read boundaries.
    #[test]
    fn pipelined_requests_survive_any_chunking(
        reqs in prop::collection::vec(request_strategy(), 1..20),
        chunks in prop::collection::vec(1usize..64, 1..200),
    ) {
        let mut wire = BytesMut::new();
        for (req, inline) in &reqs {
            if *inline {
                let line: Vec<u8> = req.join(&b' ');
                wire.extend_from_slice(&line);
                wire.extend_from_slice(b"\r\n");
            } else {
                encode_command(req, &mut wire);
            }
        }
        let mut codec = RequestCodec::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut rest = &wire[..];
        let mut sizes = chunks.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).min(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(req) = codec.decode(&mut buf).unwrap() {
                got.push(req);
            }
        }
        prop_assert!(buf.is_empty());
        let want: Vec<Vec<Bytes>> = reqs
            .iter()
            .map(|(r, _)| r.iter().map(|a| Bytes::copy_from_slice(a)).collect())
            .collect();
        prop_assert_eq!(got, want);
    }

    /// A quoted inline argument made of any bytes round-trips through escapes.
    #[test]
    fn any_bytes_round_trip_through_double_quote_escapes(arg in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut line = b"ECHO \"".to_vec();
        for b in &arg {
            line.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        }
        line.extend_from_slice(b"\"\r\n");
        let (got, err) = decode_all(&mut RequestCodec::default(), &line);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, vec![vec![Bytes::from_static(b"ECHO"), Bytes::from(arg)]]);
    }
}
