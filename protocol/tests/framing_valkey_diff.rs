//! Differential test: the request scanner against a real `valkey-server`.
//!
//! "Mirrors Valkey's request grammar" is only a claim until it is checked against Valkey. This
//! starts the installed `valkey-server` (the lab's installer puts it in `.deps/valkey/`) on a
//! Unix socket with TCP off, sends each input on a fresh connection, half-closes, reads every
//! reply, and compares with what `RequestCodec` makes of the same bytes: the number of requests
//! parsed (one reply each), the protocol error and its exact text, and, for inline lines of the
//! form `EVAL "return ARGV" 0 <tokens>`, the arguments themselves (the script echoes them back).
//!
//! Without the binary the test says so and passes: CI installs it before running the lab.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use sentinel_protocol::codec::{ReplyCodec, RequestCodec, Resp2Frame};
use sentinel_protocol::limits::RequestLimits;
use tokio_util::codec::Decoder;

/// Kills (by its own pid) the server this test started, however the test ends.
struct Server {
    child: Child,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    fn socket(&self) -> PathBuf {
        self.dir.join("valkey.sock")
    }
}

fn valkey_binaries() -> Vec<PathBuf> {
    let deps = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.deps/valkey"));
    let Ok(dir) = std::fs::read_dir(deps) else {
        return vec![];
    };
    let mut versions: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path().join("bin/valkey-server")))
        .filter(|p| p.exists())
        .collect();
    // Numerically, so 10.0 sorts after 9.1.
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .map(|v| {
                v.to_string_lossy()
                    .split('.')
                    .map(|n| n.parse::<u32>().unwrap_or(0))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    });
    versions
}

fn start(binary: &Path, tag: usize, extra: &[&str]) -> Server {
    let dir =
        std::env::temp_dir().join(format!("framing-valkey-diff-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new(binary)
        .args(["--port", "0", "--save", "", "--appendonly", "no"])
        .args(extra)
        .arg("--unixsocket")
        .arg(dir.join("valkey.sock"))
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(server.socket()).is_err() {
        assert!(Instant::now() < deadline, "valkey-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// What one side made of an input: requests parsed, then the protocol error, if any.
#[derive(Debug, PartialEq)]
struct Outcome {
    requests: usize,
    protocol_error: Option<String>,
    /// For `EVAL "return ARGV" 0 ...` lines: the ARGV of each.
    argvs: Vec<Vec<Bytes>>,
}

fn valkey_outcome(server: &Server, input: &[u8], eval: bool) -> Outcome {
    let mut s = UnixStream::connect(server.socket()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(input).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let mut buf = BytesMut::from(&raw[..]);
    let mut codec = ReplyCodec::new();
    let mut out = Outcome {
        requests: 0,
        protocol_error: None,
        argvs: vec![],
    };
    while let Some(frame) = codec.decode(&mut buf).unwrap() {
        match frame {
            Resp2Frame::Error(e) if e.starts_with("ERR Protocol error") => {
                out.protocol_error = Some(e.strip_prefix("ERR ").unwrap().to_string());
            }
            Resp2Frame::Array(items) if eval => {
                out.requests += 1;
                out.argvs.push(
                    items
                        .into_iter()
                        .map(|f| match f {
                            Resp2Frame::BulkString(b) => b,
                            other => panic!("ARGV item {other:?}"),
                        })
                        .collect(),
                );
            }
            _ => out.requests += 1,
        }
    }
    out
}

fn our_outcome(input: &[u8], eval: bool) -> Outcome {
    our_outcome_with(input, eval, false)
}

fn our_outcome_with(input: &[u8], eval: bool, password_set: bool) -> Outcome {
    // Only the grammar is compared: lift our own caps (argument count, bulk and request size)
    // to Valkey's, where they are deliberately tighter.
    let limits = RequestLimits {
        max_args: i32::MAX as usize,
        max_bulk_len: 512 * 1024 * 1024,
        max_request_bytes: usize::MAX,
        ..RequestLimits::default()
    };
    let mut codec = RequestCodec::new(limits, password_set);
    let mut buf = BytesMut::from(input);
    let mut out = Outcome {
        requests: 0,
        protocol_error: None,
        argvs: vec![],
    };
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(args)) => {
                out.requests += 1;
                if eval && args.len() >= 3 && args[0].eq_ignore_ascii_case(b"EVAL") {
                    out.argvs.push(args[3..].to_vec());
                }
            }
            Ok(None) => break,
            Err(e) => {
                out.protocol_error = Some(e.to_string());
                break;
            }
        }
    }
    out
}

/// A small deterministic generator, so a failure reproduces without a seed file.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, from: &[&'a [u8]]) -> &'a [u8] {
        from[(self.next() % from.len() as u64) as usize]
    }
}

#[test]
fn request_parsing_matches_real_valkey() {
    let binaries = valkey_binaries();
    if binaries.is_empty() {
        eprintln!("valkey-server not installed under .deps/valkey; differential test skipped");
        return;
    }
    let inputs = inputs();
    let mut report = Vec::new();
    let mut checked_strictly = 0;
    for (tag, binary) in binaries.iter().enumerate() {
        let server = start(binary, tag, &[]);
        let mut mismatches = Vec::new();
        for (input, eval) in &inputs {
            let theirs = valkey_outcome(&server, input, *eval);
            let ours = our_outcome(input, *eval);
            if theirs != ours {
                mismatches.push(format!(
                    "input {:?}\n  valkey: {theirs:?}\n  ours:   {ours:?}",
                    String::from_utf8_lossy(&input[..input.len().min(80)])
                ));
            }
        }
        // The grammar mirrored is Valkey 9's. Older lines differ on purpose and are only
        // reported: 8.0 does not check CRLFs and lets a NUL stall a header; 8.0 and 8.1 refuse a
        // closing quote followed by anything but whitespace and, after a blank inline line,
        // parse a following `*` request as inline.
        let version = binary
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default();
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 9 {
            eprintln!(
                "valkey {version}: {} of {} inputs parse differently (expected: older grammar)",
                mismatches.len(),
                inputs.len()
            );
            continue;
        }
        checked_strictly += 1;
        if !mismatches.is_empty() {
            report.push(format!(
                "{} of {} inputs differ from {}:\n{}",
                mismatches.len(),
                inputs.len(),
                binary.display(),
                mismatches.join("\n")
            ));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n\n"));
    if checked_strictly == 0 {
        eprintln!("no Valkey 9 binary installed: nothing checked strictly");
    }
}

fn inputs() -> Vec<(Vec<u8>, bool)> {
    let fixed: &[&[u8]] = &[
        b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n",
        b"PING\r\nPING\n\r\n  \r\n*0\r\n*-1\r\n*-5\r\nPING\r\n",
        b"*abc\r\n",
        b"*\r\n",
        b"*+1\r\n",
        b"*2147483648\r\n",
        b"*2147483647\r\n",
        b"*1\r\n:1\r\n",
        b"*1\r\nfoo\r\n",
        b"*1\r\n$-1\r\n",
        b"*1\r\n$+3\r\nfoo\r\n",
        b"*1\r\n$03\r\nfoo\r\n",
        b"*1\r\n$536870913\r\n",
        b"*2\r\n$4\r\nECHO\r\n$3\r\nfooXY",
        b"*2\r\n$4\r\nECHO\r\n$3\rXfoo\r\n",
        b"*1\0\r\n",
        b"*1\r\n$4\0\r\nPING\r\n",
        b"\"unterminated\r\n",
        b"SET 'a\r\n",
        b"SET \"a\"b\r\n",
        b"SET 'a'b\r\n",
        b"PING\0junk\r\n",
        b"\0\r\n",
    ];
    let mut inputs: Vec<(Vec<u8>, bool)> = fixed.iter().map(|i| (i.to_vec(), false)).collect();
    let mut big = b"*".to_vec();
    big.extend(std::iter::repeat_n(b'1', 64 * 1024 + 1));
    inputs.push((big, false));
    let mut big = b"*1\r\n$".to_vec();
    big.extend(std::iter::repeat_n(b'1', 64 * 1024 + 1));
    inputs.push((big, false));
    inputs.push((vec![b'a'; 64 * 1024 + 1], false));

    // Inline lines that echo their own arguments back.
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let atoms: &[&[u8]] = &[
        b"a", b"b", b" ", b"  ", b"\t", b"\"", b"'", b"\\", b"\\x", b"4", b"1", b"f", b"n", b"\\n",
        b"\\'", b"\\\"", b"\\x41", b"\\x4", b"\x0b", b"\x0c", b"\r", b"\0", b"\\t", b"\\a", b"\\b",
    ];
    for _ in 0..2000 {
        let mut line = b"EVAL \"return ARGV\" 0 ".to_vec();
        for _ in 0..(rng.next() % 12) {
            line.extend_from_slice(rng.pick(atoms));
        }
        line.extend_from_slice(if rng.next() & 1 == 0 { b"\r\n" } else { b"\n" });
        inputs.push((line, true));
    }
    // Multibulk-shaped streams (commands are one-letter names: unknown, harmless).
    let mb: &[&[u8]] = &[
        b"*",
        b"$",
        b"1",
        b"2",
        b"0",
        b"-",
        b"\r\n",
        b"\r",
        b"\n",
        b"a",
        b":",
        b"+",
        b"*1\r\n",
        b"$1\r\na\r\n",
        b"*2\r\n",
    ];
    for _ in 0..1000 {
        let mut s = b"*".to_vec();
        for _ in 0..(1 + rng.next() % 10) {
            s.extend_from_slice(rng.pick(mb));
        }
        inputs.push((s, false));
    }

    inputs
}

/// Before `AUTH`, with a password set: Valkey's tighter limits and where they sit among the other
/// checks, against the newest installed Valkey.
#[test]
fn pre_auth_limits_match_real_valkey() {
    let Some(binary) = valkey_binaries().pop() else {
        eprintln!("valkey-server not installed under .deps/valkey; differential test skipped");
        return;
    };
    let server = start(&binary, 100, &["--requirepass", "secret"]);
    let many = |n: usize| format!("*{n}\r\n{}", "$1\r\na\r\n".repeat(n)).into_bytes();
    let bulk = |n: usize| format!("*1\r\n${n}\r\n{}\r\n", "x".repeat(n)).into_bytes();
    let inputs: Vec<Vec<u8>> = vec![
        many(10),
        many(11),
        b"*11\r\n".to_vec(),
        b"*11\rx".to_vec(),
        b"*2147483648\r\n".to_vec(),
        b"*-1\r\n*0\r\nPING\r\n".to_vec(),
        bulk(16384),
        bulk(16385),
        b"*1\r\n$16385\r\n".to_vec(),
        b"*1\r\n$16385\rx".to_vec(),
        b"*1\r\n$536870913\r\n".to_vec(),
        b"*1\r\n$-1\r\n".to_vec(),
        b"*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n".to_vec(),
        b"a b c d e f g h i j k l\r\n".to_vec(),
    ];
    let mut mismatches = Vec::new();
    for input in &inputs {
        let theirs = valkey_outcome(&server, input, false);
        let ours = our_outcome_with(input, false, true);
        if theirs != ours {
            mismatches.push(format!(
                "input {:?}\n  valkey: {theirs:?}\n  ours:   {ours:?}",
                String::from_utf8_lossy(&input[..input.len().min(80)])
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} differ from {} with requirepass:\n{}",
        mismatches.len(),
        binary.display(),
        mismatches.join("\n")
    );
}
