//! The replies the coordinator builds, and their bytes in each protocol.
//!
//! A [`Reply`] is protocol-neutral; [`Reply::encode`] picks the RESP2 or RESP3 shape at write time,
//! because a connection may switch protocol with `HELLO` between two pipelined commands. The shapes
//! are the ones a real sentinel produces, byte for byte:
//!
//! | value | RESP2 | RESP3 |
//! |---|---|---|
//! | [`Reply::Null`] | `$-1` | `_` |
//! | [`Reply::NullArray`] (unknown master for `GET-MASTER-ADDR-BY-NAME`) | `*-1` | `_` |
//! | [`Reply::Map`] (a `SENTINEL MASTER` record) | flat `*2N`, insertion order | `%N`, insertion order |
//! | [`Reply::Push`] (pub/sub message) | `*N` | `>N` |
//! | [`Reply::Boolean`] | `:1` / `:0` | `#t` / `#f` |
//! | [`Reply::Double`] | bulk string | `,` |
//! | [`Reply::Verbatim`] (`INFO`) | bulk string | `=N txt:` |
//!
//! Most scalars are encoded by `redis-protocol` (`extend_encode_borrowed`, no allocation). Four
//! things are written here instead, each for a measured or structural reason:
//! * the RESP2 null array `*-1`, which `redis-protocol` cannot express at all;
//! * errors, because `redis-protocol` takes them as `str` and Valkey echoes raw client bytes into
//!   some (`Protocol error: expected '$', got '\x80'`);
//! * aggregate headers (`*N`, `%N`, `>N`): going through `redis-protocol` would mean materialising
//!   a frame tree (a `Vec` per aggregate, an `IndexMap` per RESP3 map) for every reply;
//! * bulk strings, nearly every leaf of a sentinel reply: `extend_encode_borrowed` zero-fills the
//!   buffer and then overwrites it, and hand-writing `$len\r\n..\r\n` measured 2.6x faster for
//!   the `[ip, port]` reply (62.7 -> 24.0 ns) and 3.7x for a 40-field record (2.7 -> 0.73 us;
//!   `cargo bench -p sentinel-protocol --bench framing`).
//!
//! A property test (`tests/framing_reply_encode.rs`) holds every encoding byte-identical to
//! `redis-protocol`'s for the equivalent frame tree, and a fixture test to what real sentinels send.

use std::borrow::Cow;
use std::fmt::Display;

use bytes::{BufMut, Bytes, BytesMut};
use redis_protocol::error::RedisProtocolError;
use redis_protocol::resp2::types::BorrowedFrame as Resp2Borrowed;
use redis_protocol::resp2::types::BytesFrame as Resp2Frame;
use redis_protocol::resp3::types::BorrowedFrame as Resp3Borrowed;
use redis_protocol::resp3::types::BytesFrame as Resp3Frame;
use redis_protocol::resp3::types::VerbatimStringFormat;

/// The protocol a connection speaks, as negotiated with `HELLO` (RESP2 until then).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// RESP2, every connection's starting protocol.
    #[default]
    Resp2,
    /// RESP3, after `HELLO 3`.
    Resp3,
}

impl Protocol {
    /// The number `HELLO` reports as `proto`.
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// A reply value, protocol-neutral until encoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+text`. Must not contain CR or LF (encoding replaces them with spaces).
    Simple(Bytes),
    /// `-text`: the whole line after the `-`, error code included (`ERR ...`, `WRONGPASS ...`).
    /// CR and LF are replaced with spaces on encoding, as Valkey's `addReplyError` does. Bytes,
    /// not `str`: Valkey echoes raw client bytes into some errors (`expected '$', got '\x80'`).
    Error(Bytes),
    /// `:n`.
    Integer(i64),
    /// `$len` bulk string.
    Bulk(Bytes),
    /// The null bulk: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// The null array: `*-1` in RESP2 (a sentinel's answer to `GET-MASTER-ADDR-BY-NAME` for an
    /// unknown name), `_` in RESP3.
    NullArray,
    /// `*N`.
    Array(Vec<Reply>),
    /// A map in insertion order: `%N` in RESP3, a flat `*2N` array of key, value, ... in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// Out-of-band data (pub/sub): `>N` in RESP3, `*N` in RESP2.
    Push(Vec<Reply>),
    /// A double: `,` in RESP3, a bulk string of its decimal form in RESP2.
    Double(f64),
    /// A boolean: `#t`/`#f` in RESP3, `:1`/`:0` in RESP2.
    Boolean(bool),
    /// Plain text as a verbatim string: `=N\r\ntxt:...` in RESP3 (what Valkey answers `INFO`
    /// with), a bulk string in RESP2.
    Verbatim(Bytes),
}

impl Reply {
    /// `+OK`.
    pub fn ok() -> Reply {
        Reply::Simple(Bytes::from_static(b"OK"))
    }

    /// `+text` from a static string (no allocation).
    pub fn simple(text: &'static str) -> Reply {
        Reply::Simple(Bytes::from_static(text.as_bytes()))
    }

    /// `-text`; `text` includes the error code, e.g. `"ERR No such master with that name"`.
    /// A `&'static str` costs no allocation.
    pub fn error(text: impl Into<Bytes>) -> Reply {
        Reply::Error(text.into())
    }

    /// A bulk string.
    pub fn bulk(data: impl Into<Bytes>) -> Reply {
        Reply::Bulk(data.into())
    }

    /// A bulk string from a static string (no allocation).
    pub fn bulk_static(text: &'static str) -> Reply {
        Reply::Bulk(Bytes::from_static(text.as_bytes()))
    }

    /// A bulk string holding the decimal form of `value`: sentinels send every number inside a
    /// record (ports, epochs, counts) as a bulk string, never as an integer.
    pub fn bulk_display(value: impl Display) -> Reply {
        Reply::Bulk(Bytes::from(value.to_string()))
    }

    /// An array.
    pub fn array(items: Vec<Reply>) -> Reply {
        Reply::Array(items)
    }

    /// The `[ip, port]` pair `SENTINEL GET-MASTER-ADDR-BY-NAME` answers, both bulk strings.
    pub fn addr(ip: impl Into<Bytes>, port: u16) -> Reply {
        Reply::Array(vec![Reply::Bulk(ip.into()), Reply::bulk_display(port)])
    }

    /// A map of bulk-string keys and bulk-string values, in the given order: the shape of a
    /// sentinel record (`SENTINEL MASTER`, each entry of `SENTINEL MASTERS|REPLICAS|SENTINELS`).
    pub fn record<K, V, I>(fields: I) -> Reply
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<Bytes>,
        V: Into<Bytes>,
    {
        Reply::Map(
            fields
                .into_iter()
                .map(|(k, v)| (Reply::Bulk(k.into()), Reply::Bulk(v.into())))
                .collect(),
        )
    }

    /// Appends this reply's bytes in `protocol` to `dst`.
    pub fn encode(&self, protocol: Protocol, dst: &mut BytesMut) -> Result<(), RedisProtocolError> {
        match protocol {
            Protocol::Resp2 => self.encode_resp2(dst),
            Protocol::Resp3 => self.encode_resp3(dst),
        }
    }

    /// This reply's bytes in `protocol`, as a fresh buffer (tests, fixtures).
    pub fn to_bytes(&self, protocol: Protocol) -> Bytes {
        let mut buf = BytesMut::new();
        // Encoding into a growable buffer has no failure mode for these frame kinds.
        self.encode(protocol, &mut buf)
            .expect("encoding into a BytesMut cannot fail");
        buf.freeze()
    }

    fn encode_resp2(&self, dst: &mut BytesMut) -> Result<(), RedisProtocolError> {
        use redis_protocol::resp2::encode::extend_encode_borrowed as enc;
        match self {
            Reply::Simple(s) => {
                enc(dst, &Resp2Borrowed::SimpleString(&one_line_bytes(s)), false)?;
            }
            Reply::Error(e) => put_error(dst, e),
            Reply::Integer(n) => {
                enc(dst, &Resp2Borrowed::Integer(*n), false)?;
            }
            Reply::Bulk(b) | Reply::Verbatim(b) => put_bulk(dst, b),
            Reply::Null => {
                enc(dst, &Resp2Borrowed::Null, false)?;
            }
            // redis-protocol's RESP2 null is always `$-1`; the null array has to be written here.
            Reply::NullArray => dst.put_slice(b"*-1\r\n"),
            Reply::Array(items) | Reply::Push(items) => {
                put_header(dst, b'*', items.len());
                for item in items {
                    item.encode_resp2(dst)?;
                }
            }
            Reply::Map(pairs) => {
                put_header(dst, b'*', pairs.len() * 2);
                for (k, v) in pairs {
                    k.encode_resp2(dst)?;
                    v.encode_resp2(dst)?;
                }
            }
            Reply::Double(d) => {
                let text = format_double(*d);
                enc(dst, &Resp2Borrowed::BulkString(text.as_bytes()), false)?;
            }
            Reply::Boolean(b) => {
                enc(dst, &Resp2Borrowed::Integer(i64::from(*b)), false)?;
            }
        }
        Ok(())
    }

    fn encode_resp3(&self, dst: &mut BytesMut) -> Result<(), RedisProtocolError> {
        use redis_protocol::resp3::encode::complete::extend_encode_borrowed as enc;
        match self {
            Reply::Simple(s) => {
                let data = &one_line_bytes(s);
                enc(
                    dst,
                    &Resp3Borrowed::SimpleString {
                        data,
                        attributes: None,
                    },
                    false,
                )?;
            }
            Reply::Error(e) => put_error(dst, e),
            Reply::Integer(n) => {
                let data = *n;
                enc(
                    dst,
                    &Resp3Borrowed::Number {
                        data,
                        attributes: None,
                    },
                    false,
                )?;
            }
            Reply::Bulk(b) => put_bulk(dst, b),
            Reply::Null | Reply::NullArray => {
                enc(dst, &Resp3Borrowed::Null, false)?;
            }
            Reply::Array(items) => {
                put_header(dst, b'*', items.len());
                for item in items {
                    item.encode_resp3(dst)?;
                }
            }
            Reply::Push(items) => {
                put_header(dst, b'>', items.len());
                for item in items {
                    item.encode_resp3(dst)?;
                }
            }
            Reply::Map(pairs) => {
                put_header(dst, b'%', pairs.len());
                for (k, v) in pairs {
                    k.encode_resp3(dst)?;
                    v.encode_resp3(dst)?;
                }
            }
            Reply::Double(d) => {
                let data = *d;
                enc(
                    dst,
                    &Resp3Borrowed::Double {
                        data,
                        attributes: None,
                    },
                    false,
                )?;
            }
            Reply::Boolean(b) => {
                let data = *b;
                enc(
                    dst,
                    &Resp3Borrowed::Boolean {
                        data,
                        attributes: None,
                    },
                    false,
                )?;
            }
            Reply::Verbatim(text) => {
                let frame = Resp3Borrowed::VerbatimString {
                    data: text,
                    format: VerbatimStringFormat::Text,
                    attributes: None,
                };
                enc(dst, &frame, false)?;
            }
        }
        Ok(())
    }

    /// The `redis-protocol` RESP2 frame with the same bytes, or `None` if the reply holds a null
    /// array below the top level (RESP2 frames cannot express one). For tests and for handing a
    /// reply to code that wants frames; the server itself encodes with [`Reply::encode`].
    pub fn to_resp2_frame(&self) -> Option<Resp2Frame> {
        Some(match self {
            Reply::Simple(s) => Resp2Frame::SimpleString(one_line_bytes(s).into_owned().into()),
            Reply::Error(e) => Resp2Frame::Error(lossy_line(e).into()),
            Reply::Integer(n) => Resp2Frame::Integer(*n),
            Reply::Bulk(b) | Reply::Verbatim(b) => Resp2Frame::BulkString(b.clone()),
            Reply::Null => Resp2Frame::Null,
            Reply::NullArray => return None,
            Reply::Array(items) | Reply::Push(items) => Resp2Frame::Array(
                items
                    .iter()
                    .map(Reply::to_resp2_frame)
                    .collect::<Option<_>>()?,
            ),
            Reply::Map(pairs) => {
                let mut flat = Vec::with_capacity(pairs.len() * 2);
                for (k, v) in pairs {
                    flat.push(k.to_resp2_frame()?);
                    flat.push(v.to_resp2_frame()?);
                }
                Resp2Frame::Array(flat)
            }
            Reply::Double(d) => Resp2Frame::BulkString(Bytes::from(format_double(*d))),
            Reply::Boolean(b) => Resp2Frame::Integer(i64::from(*b)),
        })
    }

    /// The `redis-protocol` RESP3 frame with the same bytes, or `None` where a RESP3 frame cannot
    /// represent the reply: a map key that is an aggregate (its `Hash` panics) or a duplicate key.
    pub fn to_resp3_frame(&self) -> Option<Resp3Frame> {
        Some(match self {
            Reply::Simple(s) => Resp3Frame::SimpleString {
                data: one_line_bytes(s).into_owned().into(),
                attributes: None,
            },
            Reply::Error(e) => Resp3Frame::SimpleError {
                data: lossy_line(e).into(),
                attributes: None,
            },
            Reply::Integer(n) => Resp3Frame::Number {
                data: *n,
                attributes: None,
            },
            Reply::Bulk(b) => Resp3Frame::BlobString {
                data: b.clone(),
                attributes: None,
            },
            Reply::Null | Reply::NullArray => Resp3Frame::Null,
            Reply::Array(items) => Resp3Frame::Array {
                data: items
                    .iter()
                    .map(Reply::to_resp3_frame)
                    .collect::<Option<_>>()?,
                attributes: None,
            },
            Reply::Push(items) => Resp3Frame::Push {
                data: items
                    .iter()
                    .map(Reply::to_resp3_frame)
                    .collect::<Option<_>>()?,
                attributes: None,
            },
            Reply::Map(pairs) => {
                let mut map = redis_protocol::resp3::types::FrameMap::default();
                for (k, v) in pairs {
                    if matches!(k, Reply::Array(_) | Reply::Map(_) | Reply::Push(_)) {
                        return None;
                    }
                    if map
                        .insert(k.to_resp3_frame()?, v.to_resp3_frame()?)
                        .is_some()
                    {
                        return None;
                    }
                }
                Resp3Frame::Map {
                    data: map,
                    attributes: None,
                }
            }
            Reply::Double(d) => Resp3Frame::Double {
                data: *d,
                attributes: None,
            },
            Reply::Boolean(b) => Resp3Frame::Boolean {
                data: *b,
                attributes: None,
            },
            Reply::Verbatim(text) => Resp3Frame::VerbatimString {
                data: text.clone(),
                format: VerbatimStringFormat::Text,
                attributes: None,
            },
        })
    }
}

/// Builds a sentinel record field by field, every value a bulk string, in insertion order.
///
/// ```
/// use sentinel_protocol::reply::{Protocol, RecordBuilder};
/// let record = RecordBuilder::with_capacity(3)
///     .field("name", "mymaster")
///     .field("port", 6379)
///     .field("flags", "master")
///     .build();
/// assert_eq!(
///     &record.to_bytes(Protocol::Resp2)[..],
///     &b"*6\r\n$4\r\nname\r\n$8\r\nmymaster\r\n$4\r\nport\r\n$4\r\n6379\r\n$5\r\nflags\r\n$6\r\nmaster\r\n"[..]
/// );
/// ```
#[derive(Debug, Clone, Default)]
pub struct RecordBuilder {
    fields: Vec<(Reply, Reply)>,
}

impl RecordBuilder {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty record with room for `n` fields (a `SENTINEL MASTER` record has about 40).
    pub fn with_capacity(n: usize) -> Self {
        Self {
            fields: Vec::with_capacity(n),
        }
    }

    /// Adds `key` with the decimal or textual form of `value` as a bulk string.
    pub fn field(mut self, key: &'static str, value: impl Display) -> Self {
        self.push(key, value);
        self
    }

    /// Adds `key` with raw bytes as the value.
    pub fn field_bytes(mut self, key: &'static str, value: impl Into<Bytes>) -> Self {
        self.fields
            .push((Reply::bulk_static(key), Reply::Bulk(value.into())));
        self
    }

    /// In-place form of [`field`](Self::field), for loops.
    pub fn push(&mut self, key: &'static str, value: impl Display) {
        self.fields
            .push((Reply::bulk_static(key), Reply::bulk_display(value)));
    }

    /// The record as a [`Reply::Map`].
    pub fn build(self) -> Reply {
        Reply::Map(self.fields)
    }
}

/// `$len\r\n<data>\r\n`, identical in RESP2 and RESP3.
fn put_bulk(dst: &mut BytesMut, data: &[u8]) {
    dst.reserve(data.len() + 16);
    put_header(dst, b'$', data.len());
    dst.put_slice(data);
    dst.put_slice(b"\r\n");
}

/// `-text\r\n`, identical in RESP2 and RESP3. Written here because `redis-protocol`'s error
/// frames are `str`, and Valkey puts raw client bytes into some protocol errors.
fn put_error(dst: &mut BytesMut, text: &[u8]) {
    dst.reserve(text.len() + 3);
    dst.put_u8(b'-');
    dst.put_slice(&one_line_bytes(text));
    dst.put_slice(b"\r\n");
}

/// The error text as a `redis-protocol` frame wants it (UTF-8; invalid bytes become U+FFFD).
fn lossy_line(text: &[u8]) -> String {
    String::from_utf8_lossy(&one_line_bytes(text)).into_owned()
}

/// Valkey's `addReplyError` turns CR and LF into spaces so an error can never break framing;
/// do the same (and borrow when there is nothing to fix, which is always on the hot path).
fn one_line_bytes(data: &[u8]) -> Cow<'_, [u8]> {
    if data.iter().any(|&b| b == b'\r' || b == b'\n') {
        Cow::Owned(
            data.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(data)
    }
}

/// RESP2 has no double type; Valkey sends the shortest round-tripping decimal as a bulk string,
/// with `inf`, `-inf` and `nan` for the specials.
fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".to_owned()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{d}")
    }
}

/// Writes `<kind><n>\r\n` without going through `fmt`.
pub(crate) fn put_header(dst: &mut BytesMut, kind: u8, n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    dst.put_u8(kind);
    dst.put_slice(&digits[i..]);
    dst.put_slice(b"\r\n");
}
