//! Limit scanners that run over raw bytes *before* any RESP decoder sees them.
//!
//! `redis-protocol` 6 enforces no limits at all: it recurses once per nesting level (about 300
//! nested `*1\r\n` headers abort a debug build on a 2 MiB stack, and a stack overflow is a process
//! abort, not a panic), it happily waits for a declared 9 EB bulk, and it re-parses a partial frame
//! from byte 0 on every read. So nothing reaches it until one of the scanners here has walked the
//! frame header by header, iteratively, with a fixed-size counter stack and no allocation, and
//! answered [`Scan::Complete`] with the exact frame length. Only then does the decoder run, on
//! exactly those bytes.
//!
//! Two presets, because the two directions have different grammars and different threats:
//!
//! * [`scan_request`]: what a *client* may send the coordinator. It mirrors Valkey's own request
//!   parser (`processMultibulkBuffer` / `processInlineBuffer` in `networking.c`): a multibulk of
//!   bulk strings at depth 1, or an inline line split with `sdssplitargs` quoting rules. Its errors
//!   ([`RequestError`]) are worded exactly as Valkey words them, because clients and tests match
//!   on those strings; after one the connection is closed, as Valkey does.
//! * [`ReplyScanner`]: what a *sentinel* (or a data pod, or the lab's Valkey) may send us: any
//!   RESP2 or RESP3 type, with caps on depth, aggregate length, bulk length and frame bytes. It is
//!   resumable, so a large reply arriving in many small reads is walked once, not once per read.

use thiserror::Error;

/// Outcome of a successful scan: either more bytes are needed, or the first frame in the buffer
/// is complete and is exactly this many bytes long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The frame is not complete yet; read more and scan again.
    Incomplete,
    /// The first frame in the buffer is complete and `len` bytes long.
    Complete(usize),
}

/// Valkey's `PROTO_INLINE_MAX_SIZE`: how far it searches for the end of a count line or an
/// inline request before giving up.
pub const PROTO_INLINE_MAX_SIZE: usize = 64 * 1024;

/// Valkey's default `proto-max-bulk-len` (512 MiB). A declared bulk above this is an *invalid*
/// bulk length in Valkey's wording, whatever our own (smaller) cap says.
pub const VALKEY_PROTO_MAX_BULK_LEN: i64 = 512 * 1024 * 1024;

/// The hard ceiling on [`ReplyLimits::max_depth`]: the size of the scanner's fixed counter stack.
/// Sentinel replies need depth 3; the default limit is 8.
pub const MAX_DEPTH_CEILING: usize = 64;

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Valkey's `string2ll`: an optional `-`, then digits with no leading zero (except `0` itself),
/// no `+`, no spaces, no more than 20 characters, no overflow. Rust's `parse::<i64>` is more
/// lenient (it takes `+3`), which would make us accept requests Valkey rejects.
fn string2ll(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        Some((v as i128).wrapping_neg() as i64)
    } else {
        i64::try_from(v).ok()
    }
}

/// Position of the first `byte` in `buf[from..]`, as an absolute index.
#[inline]
fn find_byte(buf: &[u8], from: usize, byte: u8) -> Option<usize> {
    buf.get(from..)?
        .iter()
        .position(|&b| b == byte)
        .map(|i| from + i)
}

// ---------------------------------------------------------------------------------------------
// Requests (client -> coordinator)
// ---------------------------------------------------------------------------------------------

/// Caps on what a client may send. Valkey's own caps are far larger; a sentinel endpoint receives
/// short commands only, so the defaults leave generous room and no more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Most arguments in one request (multibulk count, or tokens on an inline line).
    pub max_args: usize,
    /// Longest single bulk argument, in bytes.
    pub max_bulk_len: usize,
    /// Most bytes one incomplete request may occupy in the client's buffer.
    pub max_request_bytes: usize,
    /// Longest inline request line (Valkey: 64 KiB).
    pub max_inline_len: usize,
    /// Before `AUTH` when a password is set: most elements (Valkey: 10).
    pub unauthenticated_max_args: usize,
    /// Before `AUTH` when a password is set: longest bulk (Valkey: 16384).
    pub unauthenticated_max_bulk_len: usize,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_args: 4096,
            max_bulk_len: 64 * 1024,
            max_request_bytes: 1024 * 1024,
            max_inline_len: PROTO_INLINE_MAX_SIZE,
            unauthenticated_max_args: 10,
            unauthenticated_max_bulk_len: 16384,
        }
    }
}

/// A request the client must not send. `Display` is the exact text Valkey puts after `-ERR ` for
/// the Valkey-defined ones; the caller replies with it and then closes the connection, because
/// after a framing error the position of the next request is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RequestError {
    /// `*` header not a valid integer, or above `INT_MAX`.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// An element of a multibulk does not start with `$`. (Valkey prints the raw byte, CR and LF
    /// as a space; `Display` shows a byte above 0x7f as its Latin-1 character, while
    /// [`RequestError::reply_bytes`] has the raw byte.)
    #[error("Protocol error: expected '$', got '{}'", shown_byte(*.0))]
    ExpectedDollar(u8),
    /// `$` header not a valid non-negative integer (or above Valkey's 512 MiB).
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// No line end within 64 KiB of a `*` header.
    #[error("Protocol error: too big mbulk count string")]
    TooBigMbulkCountString,
    /// No line end within 64 KiB of a `$` header.
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCountString,
    /// An inline line longer than the inline limit.
    #[error("Protocol error: too big inline request")]
    TooBigInlineRequest,
    /// An inline line with an unterminated quote.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A header `\r` not followed by `\n`, or a bulk not followed by `\r\n` (Valkey 8.1+).
    #[error("Protocol error: invalid CRLF in request")]
    InvalidCrlf,
    /// More than 10 elements before `AUTH`.
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// A bulk over 16384 bytes before `AUTH`.
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    /// Our own cap: more arguments than [`RequestLimits::max_args`].
    #[error("Protocol error: too many arguments in request (limit {0})")]
    TooManyArguments(usize),
    /// Our own cap: a bulk longer than [`RequestLimits::max_bulk_len`].
    #[error("Protocol error: bulk argument too long (limit {0} bytes)")]
    BulkTooLong(usize),
    /// Our own cap: one request larger than [`RequestLimits::max_request_bytes`].
    #[error("Protocol error: request too big (limit {0} bytes)")]
    RequestTooBig(usize),
}

impl RequestError {
    /// The error line a Valkey server sends for this error, without the leading `-` and the
    /// trailing CRLF: `ERR Protocol error: ...` (lossy for a non-ASCII byte; see `reply_bytes`).
    pub fn reply_text(&self) -> String {
        format!("ERR {self}")
    }

    /// The exact bytes of that line, as Valkey sends them.
    pub fn reply_bytes(&self) -> Vec<u8> {
        match self {
            RequestError::ExpectedDollar(b) => {
                let mut line = b"ERR Protocol error: expected '$', got '".to_vec();
                line.push(if matches!(b, b'\r' | b'\n') { b' ' } else { *b });
                line.push(b'\'');
                line
            }
            other => other.reply_text().into_bytes(),
        }
    }
}

/// How Valkey's `addReplyErrorFormat` shows a byte: CR and LF become spaces.
fn shown_byte(b: u8) -> char {
    if matches!(b, b'\r' | b'\n') {
        ' '
    } else {
        char::from(b)
    }
}

/// What [`scan_request`] found at the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestScan {
    /// Not complete yet.
    Incomplete,
    /// `len` bytes that Valkey silently consumes without running a command: `*0`, `*-1` (any
    /// count <= 0), or an inline line with no tokens.
    Skip(usize),
    /// A multibulk request of `len` bytes holding `args` (>= 1) bulk strings.
    Multibulk {
        /// Total bytes of the request, header included.
        len: usize,
        /// Number of arguments.
        args: usize,
    },
    /// An inline request: a line of `line` bytes (terminator excluded) that splits into `args`
    /// (>= 1) tokens, `len` bytes in total with its `\n` or `\r\n`.
    Inline {
        /// Total bytes consumed, terminator included.
        len: usize,
        /// Length of the line without its terminator.
        line: usize,
        /// Number of tokens.
        args: usize,
    },
}

/// Scans the request at the front of `buf` without allocating.
///
/// `auth_required` is Valkey's `authRequired(c)`: a password is set and this connection has not
/// authenticated yet; it switches on the tighter pre-auth limits.
pub fn scan_request(
    buf: &[u8],
    limits: &RequestLimits,
    auth_required: bool,
) -> Result<RequestScan, RequestError> {
    let scanned = match buf.first() {
        None => return Ok(RequestScan::Incomplete),
        Some(b'*') => scan_multibulk(buf, limits, auth_required)?,
        Some(_) => scan_inline(buf, limits)?,
    };
    if scanned == RequestScan::Incomplete && buf.len() > limits.max_request_bytes {
        // Everything buffered belongs to this one unfinished request.
        return Err(RequestError::RequestTooBig(limits.max_request_bytes));
    }
    Ok(scanned)
}

fn scan_multibulk(
    buf: &[u8],
    limits: &RequestLimits,
    auth_required: bool,
) -> Result<RequestScan, RequestError> {
    let Some(cr) = find_byte(buf, 0, b'\r') else {
        if buf.len() > PROTO_INLINE_MAX_SIZE {
            return Err(RequestError::TooBigMbulkCountString);
        }
        return Ok(RequestScan::Incomplete);
    };
    if cr + 1 >= buf.len() {
        return Ok(RequestScan::Incomplete);
    }
    if buf[cr + 1] != b'\n' {
        return Err(RequestError::InvalidCrlf);
    }
    let count = match string2ll(&buf[1..cr]) {
        Some(n) if n <= i64::from(i32::MAX) => n,
        _ => return Err(RequestError::InvalidMultibulkLength),
    };
    if auth_required && count > limits.unauthenticated_max_args as i64 {
        return Err(RequestError::UnauthenticatedMultibulkLength);
    }
    let mut pos = cr + 2;
    if count <= 0 {
        return Ok(RequestScan::Skip(pos));
    }
    if count as u64 > limits.max_args as u64 {
        return Err(RequestError::TooManyArguments(limits.max_args));
    }
    let args = count as usize;
    for _ in 0..args {
        let Some(cr) = find_byte(buf, pos, b'\r') else {
            if buf.len() - pos > PROTO_INLINE_MAX_SIZE {
                return Err(RequestError::TooBigBulkCountString);
            }
            return Ok(RequestScan::Incomplete);
        };
        if cr + 1 >= buf.len() {
            return Ok(RequestScan::Incomplete);
        }
        if buf[pos] != b'$' {
            return Err(RequestError::ExpectedDollar(buf[pos]));
        }
        if buf[cr + 1] != b'\n' {
            return Err(RequestError::InvalidCrlf);
        }
        let len = match string2ll(&buf[pos + 1..cr]) {
            Some(n) if (0..=VALKEY_PROTO_MAX_BULK_LEN).contains(&n) => n as usize,
            _ => return Err(RequestError::InvalidBulkLength),
        };
        if auth_required && len > limits.unauthenticated_max_bulk_len {
            return Err(RequestError::UnauthenticatedBulkLength);
        }
        if len > limits.max_bulk_len {
            return Err(RequestError::BulkTooLong(limits.max_bulk_len));
        }
        // Payload plus its CRLF, which Valkey 8.1+ checks once both bytes are there.
        let end = cr + 2 + len + 2;
        if end > limits.max_request_bytes {
            return Err(RequestError::RequestTooBig(limits.max_request_bytes));
        }
        if end > buf.len() {
            return Ok(RequestScan::Incomplete);
        }
        if &buf[end - 2..end] != b"\r\n" {
            return Err(RequestError::InvalidCrlf);
        }
        pos = end;
    }
    Ok(RequestScan::Multibulk { len: pos, args })
}

fn scan_inline(buf: &[u8], limits: &RequestLimits) -> Result<RequestScan, RequestError> {
    let max_line = limits.max_inline_len;
    // Valkey finds the end of an inline line with `strchr`, which stops at a NUL byte: a NUL
    // before the first '\n' means "no line yet", and the request can only grow into the
    // too-big error. Mirror that (and so no line ever reaches the tokenizer with a NUL in it).
    let window = &buf[..buf.len().min(max_line + 2)];
    let nl = window
        .iter()
        .position(|&b| b == b'\n' || b == 0)
        .filter(|&i| window[i] == b'\n');
    let Some(nl) = nl else {
        if buf.len() > max_line {
            return Err(RequestError::TooBigInlineRequest);
        }
        return Ok(RequestScan::Incomplete);
    };
    let line = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    if line > max_line {
        return Err(RequestError::TooBigInlineRequest);
    }
    let args = count_inline_args(&buf[..line])?;
    if args == 0 {
        return Ok(RequestScan::Skip(nl + 1));
    }
    if args > limits.max_args {
        return Err(RequestError::TooManyArguments(limits.max_args));
    }
    Ok(RequestScan::Inline {
        len: nl + 1,
        line,
        args,
    })
}

/// Counts the tokens of an inline line, validating its quotes, without allocating.
fn count_inline_args(line: &[u8]) -> Result<usize, RequestError> {
    let mut tokens = InlineTokens::new(line);
    let mut n = 0;
    while tokens.next_token(None)?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// C's `isspace` in the "C" locale, which is what `sdssplitargs` uses between tokens.
#[inline]
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

#[inline]
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One token of an inline line, as [`InlineTokens::next_token`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InlineToken {
    /// Where the token's raw text starts in the line.
    pub start: usize,
    /// Where its content ends when `quoted` is false (exclusive), so `line[start..end]` is the
    /// argument itself and can be sliced without copying.
    pub end: usize,
    /// The token contains quotes (and maybe escapes): its value must be rebuilt.
    pub quoted: bool,
}

/// A tokenizer that follows Valkey 9's `sdssplitargs` byte for byte: tokens separated by C
/// whitespace; inside a token, double quotes (with `\n \r \t \b \a \xHH` and `\<any>` escapes)
/// and single quotes (with `\'`) may open and close any number of times, shell style, so
/// `"a"'b'c` is one argument `abc`; an unquoted token ends at space, `\n`, `\r`, `\t` or the
/// end of the line; a `\"` (or `\'`) that ends the line is a backslash and a closing quote, not
/// an escape; the only error is a quote left open. (Valkey 8.0/8.1 also refused a closing
/// quote followed by anything but whitespace; `tests/framing_valkey_diff.rs` pins the difference.)
pub(crate) struct InlineTokens<'a> {
    line: &'a [u8],
    pos: usize,
}

impl<'a> InlineTokens<'a> {
    pub(crate) fn new(line: &'a [u8]) -> Self {
        Self { line, pos: 0 }
    }

    /// The byte at `i`, or NUL past the end, as the C code would see it.
    #[inline]
    fn at(&self, i: usize) -> u8 {
        self.line.get(i).copied().unwrap_or(0)
    }

    /// Finds the next token. With `out`, the token's decoded value is appended to it (quoted
    /// tokens only need that); without, nothing is allocated.
    pub(crate) fn next_token(
        &mut self,
        mut out: Option<&mut Vec<u8>>,
    ) -> Result<Option<InlineToken>, RequestError> {
        let mut p = self.pos;
        while self.at(p) != 0 && c_isspace(self.at(p)) {
            p += 1;
        }
        if self.at(p) == 0 {
            self.pos = self.line.len();
            return Ok(None);
        }
        let start = p;
        let mut end = p;
        let (mut in_double, mut in_single, mut quoted) = (false, false, false);
        let mut push = |b: u8| {
            if let Some(out) = out.as_deref_mut() {
                out.push(b);
            }
        };
        loop {
            let c = self.at(p);
            let mut done = false;
            if in_double {
                let (h1, h2) = (hex_value(self.at(p + 2)), hex_value(self.at(p + 3)));
                if c == b'\\' && self.at(p + 1) == b'x' && h1.is_some() && h2.is_some() {
                    push(h1.unwrap_or(0) * 16 + h2.unwrap_or(0));
                    p += 3;
                } else if c == b'\\'
                    && self.at(p + 1) != 0
                    && !(self.at(p + 1) == b'"' && self.at(p + 2) == 0)
                {
                    p += 1;
                    push(match self.at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    in_double = false;
                } else if c == 0 {
                    return Err(RequestError::UnbalancedQuotes);
                } else {
                    push(c);
                }
            } else if in_single {
                if c == b'\\' && self.at(p + 1) == b'\'' && self.at(p + 2) != 0 {
                    p += 1;
                    push(b'\'');
                } else if c == b'\'' {
                    in_single = false;
                } else if c == 0 {
                    return Err(RequestError::UnbalancedQuotes);
                } else {
                    push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        end = p;
                        done = true;
                    }
                    b'"' => {
                        in_double = true;
                        quoted = true;
                    }
                    b'\'' => {
                        in_single = true;
                        quoted = true;
                    }
                    _ => push(c),
                }
            }
            if self.at(p) != 0 {
                p += 1;
            }
            if done {
                break;
            }
        }
        self.pos = p;
        Ok(Some(InlineToken { start, end, quoted }))
    }
}

// ---------------------------------------------------------------------------------------------
// Replies (sentinel / data pod -> coordinator or lab)
// ---------------------------------------------------------------------------------------------

/// Which type bytes a reply scanner accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyProtocol {
    /// `+ - : $ *` only.
    #[default]
    Resp2,
    /// RESP2 plus `_ , # ( ! = % ~ > |`. Streamed aggregates (`*?`, `$?`) are refused: no
    /// sentinel sends them and they have no length to check up front. So are the RESP2 nulls
    /// `$-1` and `*-1`, which a RESP3 server never sends (it sends `_`).
    Resp3,
}

/// Caps on a reply from upstream. A violation is a broken or hostile peer: the link is dropped
/// and the sentinel counts as not voting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Deepest nesting of aggregates (an array of scalars is depth 1). At most
    /// [`MAX_DEPTH_CEILING`]; larger values are clamped to it.
    pub max_depth: usize,
    /// Most entries one aggregate may declare (pairs for a map or an attribute).
    pub max_aggregate_len: usize,
    /// Longest bulk (and simple-string line), in bytes.
    pub max_bulk_len: usize,
    /// Largest whole frame, in bytes.
    pub max_frame_bytes: usize,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        Self {
            max_depth: 8,
            max_aggregate_len: 65536,
            max_bulk_len: 1024 * 1024,
            max_frame_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Why a reply was refused before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ReplyLimitError {
    /// Aggregates nested deeper than allowed.
    #[error("reply nested deeper than {max} aggregates")]
    Depth {
        /// The configured limit.
        max: usize,
    },
    /// An aggregate declared more entries than allowed.
    #[error("reply aggregate declares {len} entries, limit {max}")]
    AggregateLength {
        /// Declared entry count.
        len: u64,
        /// The configured limit.
        max: usize,
    },
    /// A bulk (or a simple line) longer than allowed.
    #[error("reply bulk of {len} bytes, limit {max}")]
    BulkLength {
        /// Declared (or so far seen) length.
        len: u64,
        /// The configured limit.
        max: usize,
    },
    /// The frame is larger than allowed.
    #[error("reply frame larger than {max} bytes")]
    FrameBytes {
        /// The configured limit.
        max: usize,
    },
    /// A length header that is not a valid length, a missing CRLF after a bulk, or a streamed
    /// RESP3 header.
    #[error("malformed reply header at byte {offset}")]
    MalformedHeader {
        /// Offset of the element within the frame.
        offset: usize,
    },
    /// A byte that starts no RESP type (of the accepted protocol).
    #[error("invalid reply type byte {byte:#04x} at byte {offset}")]
    TypeByte {
        /// The offending byte.
        byte: u8,
        /// Offset within the frame.
        offset: usize,
    },
}

/// Longest length header we accept, digits and sign (`-9223372036854775808` is 20).
const MAX_LEN_HEADER_DIGITS: usize = 20;

/// A resumable, allocation-free scanner for one reply frame at a time.
///
/// Between calls it remembers the offset of the first element it has not finished and the
/// remaining-children counters of the open aggregates, so a frame arriving in many reads is
/// walked once overall. Contract: between a call that returned [`Scan::Incomplete`] and the next
/// call, the buffer may only grow at its end (what `FramedRead` guarantees); after
/// [`Scan::Complete`] (or an error, or [`reset`](Self::reset)) it starts afresh at offset 0.
#[derive(Debug, Clone)]
pub struct ReplyScanner {
    limits: ReplyLimits,
    protocol: ReplyProtocol,
    /// Offset of the next element to scan.
    pos: usize,
    /// Number of open aggregates.
    depth: usize,
    /// Remaining children per open aggregate; `stack[depth - 1]` is the innermost.
    stack: [u64; MAX_DEPTH_CEILING],
}

impl ReplyScanner {
    /// A scanner with these limits for this protocol.
    pub fn new(limits: ReplyLimits, protocol: ReplyProtocol) -> Self {
        let limits = ReplyLimits {
            max_depth: limits.max_depth.min(MAX_DEPTH_CEILING),
            ..limits
        };
        Self {
            limits,
            protocol,
            pos: 0,
            depth: 0,
            stack: [0; MAX_DEPTH_CEILING],
        }
    }

    /// The limits in force (with the depth clamped).
    pub fn limits(&self) -> &ReplyLimits {
        &self.limits
    }

    /// The protocol whose type bytes are accepted.
    pub fn protocol(&self) -> ReplyProtocol {
        self.protocol
    }

    /// Switches the accepted protocol; forgets any partial scan.
    pub fn set_protocol(&mut self, protocol: ReplyProtocol) {
        self.protocol = protocol;
        self.reset();
    }

    /// Forgets any partial scan.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.depth = 0;
    }

    /// Scans the frame at the front of `buf`, resuming where the last call stopped.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Scan, ReplyLimitError> {
        if buf.len() < self.pos {
            // The caller broke the contract (a different buffer); start again rather than
            // misread.
            self.reset();
        }
        let result = self.scan_inner(buf);
        match result {
            Ok(Scan::Incomplete) => {
                if buf.len() > self.limits.max_frame_bytes {
                    self.reset();
                    return Err(ReplyLimitError::FrameBytes {
                        max: self.limits.max_frame_bytes,
                    });
                }
            }
            Ok(Scan::Complete(_)) | Err(_) => self.reset(),
        }
        result
    }

    fn scan_inner(&mut self, buf: &[u8]) -> Result<Scan, ReplyLimitError> {
        let lim = self.limits;
        loop {
            let start = self.pos;
            let Some(&kind) = buf.get(start) else {
                return Ok(Scan::Incomplete);
            };
            let resp3 = self.protocol == ReplyProtocol::Resp3;
            // `children`: Some(n) when this element opens an aggregate with n children.
            let (end, children) = match kind {
                b'+' | b'-' | b':' => match self.line(buf, start)? {
                    Some(cr) => (cr + 2, None),
                    None => return Ok(Scan::Incomplete),
                },
                b'_' | b',' | b'#' | b'(' if resp3 => match self.line(buf, start)? {
                    Some(cr) => (cr + 2, None),
                    None => return Ok(Scan::Incomplete),
                },
                b'$' | b'!' | b'=' if kind == b'$' || resp3 => {
                    let Some((len, cr)) = self.length(buf, start)? else {
                        return Ok(Scan::Incomplete);
                    };
                    match len {
                        None => (cr + 2, None),
                        Some(len) => {
                            if len > lim.max_bulk_len as u64 {
                                return Err(ReplyLimitError::BulkLength {
                                    len,
                                    max: lim.max_bulk_len,
                                });
                            }
                            let end = cr + 2 + len as usize + 2;
                            if end > lim.max_frame_bytes {
                                return Err(ReplyLimitError::FrameBytes {
                                    max: lim.max_frame_bytes,
                                });
                            }
                            if end > buf.len() {
                                return Ok(Scan::Incomplete);
                            }
                            if &buf[end - 2..end] != b"\r\n" {
                                return Err(ReplyLimitError::MalformedHeader { offset: start });
                            }
                            (end, None)
                        }
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' if kind == b'*' || resp3 => {
                    let Some((len, cr)) = self.length(buf, start)? else {
                        return Ok(Scan::Incomplete);
                    };
                    match len {
                        None => (cr + 2, None),
                        Some(len) => {
                            if len > lim.max_aggregate_len as u64 {
                                return Err(ReplyLimitError::AggregateLength {
                                    len,
                                    max: lim.max_aggregate_len,
                                });
                            }
                            let children = match kind {
                                b'%' => len * 2,
                                // An attribute map is followed by the value it annotates; count
                                // that value as one more child so the frame ends after it.
                                b'|' => len * 2 + 1,
                                _ => len,
                            };
                            (cr + 2, Some(children))
                        }
                    }
                }
                other => {
                    return Err(ReplyLimitError::TypeByte {
                        byte: other,
                        offset: start,
                    });
                }
            };
            if end > lim.max_frame_bytes {
                return Err(ReplyLimitError::FrameBytes {
                    max: lim.max_frame_bytes,
                });
            }
            self.pos = end;
            match children {
                Some(n) if n > 0 => {
                    if self.depth >= lim.max_depth {
                        return Err(ReplyLimitError::Depth { max: lim.max_depth });
                    }
                    self.stack[self.depth] = n;
                    self.depth += 1;
                    continue;
                }
                // A scalar, a null, or an empty aggregate: one element finished.
                _ => {}
            }
            // Close every aggregate this element was the last child of.
            loop {
                if self.depth == 0 {
                    return Ok(Scan::Complete(self.pos));
                }
                let top = &mut self.stack[self.depth - 1];
                *top -= 1;
                if *top > 0 {
                    break;
                }
                self.depth -= 1;
            }
        }
    }

    /// Finds the CRLF ending a simple line that starts at `start`; returns the index of its `\r`.
    fn line(&self, buf: &[u8], start: usize) -> Result<Option<usize>, ReplyLimitError> {
        let max = self.limits.max_bulk_len;
        let window_end = buf.len().min(start + 1 + max + 2);
        let mut from = start + 1;
        while let Some(cr) = find_byte(&buf[..window_end], from, b'\r') {
            match buf.get(cr + 1) {
                Some(b'\n') => return Ok(Some(cr)),
                Some(_) => from = cr + 1,
                None => return Ok(None),
            }
        }
        if buf.len() - start > 1 + max + 1 {
            return Err(ReplyLimitError::BulkLength {
                len: (buf.len() - start - 1) as u64,
                max,
            });
        }
        Ok(None)
    }

    /// Parses a length header at `start`. Returns `(None, cr)` for the `-1` null forms, or
    /// `(Some(len), cr)`; `Ok(None)` when the line is not complete.
    #[allow(clippy::type_complexity)]
    fn length(
        &self,
        buf: &[u8],
        start: usize,
    ) -> Result<Option<(Option<u64>, usize)>, ReplyLimitError> {
        let malformed = ReplyLimitError::MalformedHeader { offset: start };
        let window_end = buf.len().min(start + 1 + MAX_LEN_HEADER_DIGITS + 2);
        let Some(cr) = find_byte(&buf[..window_end], start + 1, b'\r') else {
            if buf.len() - start > 1 + MAX_LEN_HEADER_DIGITS {
                return Err(malformed);
            }
            return Ok(None);
        };
        match buf.get(cr + 1) {
            None => return Ok(None),
            Some(b'\n') => {}
            Some(_) => return Err(malformed),
        }
        let digits = &buf[start + 1..cr];
        // `$-1` / `*-1` are RESP2's nulls. RESP3 has `_` instead, and redis-protocol's RESP3
        // decoder refuses the RESP2 forms, so refuse them here too rather than hand it a frame
        // it will reject.
        if digits == b"-1"
            && (buf[start] == b'$' || buf[start] == b'*')
            && self.protocol == ReplyProtocol::Resp2
        {
            return Ok(Some((None, cr)));
        }
        let mut v: u64 = 0;
        if digits.is_empty() || digits.len() > 19 {
            return Err(malformed);
        }
        for &d in digits {
            if !d.is_ascii_digit() {
                return Err(malformed);
            }
            v = v * 10 + u64::from(d - b'0');
        }
        Ok(Some((Some(v), cr)))
    }
}

/// One-shot convenience: scans the reply at the front of `buf` from scratch.
pub fn scan_reply(
    buf: &[u8],
    limits: &ReplyLimits,
    protocol: ReplyProtocol,
) -> Result<Scan, ReplyLimitError> {
    ReplyScanner::new(*limits, protocol).scan(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string2ll_matches_valkey() {
        assert_eq!(string2ll(b"0"), Some(0));
        assert_eq!(string2ll(b"-1"), Some(-1));
        assert_eq!(string2ll(b"123"), Some(123));
        assert_eq!(string2ll(b"+3"), None);
        assert_eq!(string2ll(b"03"), None);
        assert_eq!(string2ll(b"-0"), None);
        assert_eq!(string2ll(b""), None);
        assert_eq!(string2ll(b" 1"), None);
        assert_eq!(string2ll(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(string2ll(b"9223372036854775808"), None);
        assert_eq!(string2ll(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(string2ll(b"-9223372036854775809"), None);
    }

    #[test]
    fn resumable_scan_equals_one_shot() {
        let frame = b"*2\r\n$9\r\n127.0.0.1\r\n*1\r\n:6379\r\n";
        let mut s = ReplyScanner::new(ReplyLimits::default(), ReplyProtocol::Resp2);
        for n in 0..frame.len() {
            assert_eq!(s.scan(&frame[..n]), Ok(Scan::Incomplete), "prefix {n}");
        }
        assert_eq!(s.scan(frame), Ok(Scan::Complete(frame.len())));
    }
}
