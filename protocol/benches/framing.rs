//! Throughput of the framing layer on typical sentinel traffic, one thread, release build.
//!
//!     cargo bench -p sentinel-protocol --bench framing
//!
//! Each row is the median of 15 batches; the machine is a noisy shared VM, so compare rows of
//! one run rather than runs. The bare `redis-protocol` rows are the baseline the scanners and
//! codecs add their cost to (rust-stack.md 1.7 measured them at 280-410 ns and 2.0-2.3 us).

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use sentinel_protocol::codec::{ReplyCodec, RequestCodec, Resp3ReplyCodec};
use sentinel_protocol::limits::{
    ReplyLimits, ReplyProtocol, ReplyScanner, RequestLimits, scan_request,
};
use sentinel_protocol::reply::{Protocol, RecordBuilder, Reply};
use tokio_util::codec::Decoder;

const REQUEST: &[u8] =
    b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n";
const ADDR_REPLY: &[u8] = b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n";
const MASTER_RESP2: &[u8] = include_bytes!("../tests/fixtures/8.0.1/resp2-sentinel-master.resp");
const MASTER_RESP3: &[u8] = include_bytes!("../tests/fixtures/8.0.1/resp3-sentinel-master.resp");

/// Runs `f` (which handles `per_call` frames) in 15 batches sized to ~20 ms each and returns
/// the median nanoseconds per frame.
fn bench(name: &str, bytes: usize, per_call: usize, mut f: impl FnMut()) {
    // Calibrate.
    let mut iters = 1usize;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        if t.elapsed().as_millis() >= 20 {
            break;
        }
        iters *= 2;
    }
    let mut samples: Vec<f64> = (0..15)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / (iters * per_call) as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    let ns = samples[7];
    println!(
        "{name:<58} {bytes:>5} B  {ns:>8.1} ns/frame  {:>6.2} M frames/s  (batch range {:.1}-{:.1} ns)",
        1e3 / ns,
        samples[0],
        samples[14]
    );
}

fn main() {
    let limits = RequestLimits::default();
    println!("framing throughput, one thread (median of 15 batches)");

    bench("scan_request (scanner alone)", REQUEST.len(), 1, || {
        black_box(scan_request(black_box(REQUEST), &limits, false).unwrap());
    });
    bench(
        "RequestCodec::decode, fresh buffer per request",
        REQUEST.len(),
        1,
        || {
            let mut buf = BytesMut::from(black_box(REQUEST));
            black_box(RequestCodec::default().decode(&mut buf).unwrap());
        },
    );
    let pipelined: Vec<u8> = REQUEST.repeat(64);
    bench(
        "RequestCodec::decode, 64 pipelined in one buffer",
        REQUEST.len(),
        64,
        || {
            let mut buf = BytesMut::from(&pipelined[..]);
            let mut codec = RequestCodec::default();
            while let Some(req) = codec.decode(&mut buf).unwrap() {
                black_box(req);
            }
        },
    );
    bench(
        "baseline: resp2::decode_bytes_mut (no limits)",
        REQUEST.len(),
        1,
        || {
            let mut buf = BytesMut::from(black_box(REQUEST));
            black_box(redis_protocol::resp2::decode::decode_bytes_mut(&mut buf).unwrap());
        },
    );
    bench(
        "inline: RequestCodec::decode \"SENTINEL get-master-addr-by-name mymaster\"",
        43,
        1,
        || {
            let mut buf = BytesMut::from(&b"SENTINEL get-master-addr-by-name mymaster\r\n"[..]);
            black_box(RequestCodec::default().decode(&mut buf).unwrap());
        },
    );

    let mut scanner = ReplyScanner::new(ReplyLimits::default(), ReplyProtocol::Resp2);
    bench(
        "ReplyScanner::scan, *2 ip port",
        ADDR_REPLY.len(),
        1,
        || {
            black_box(scanner.scan(black_box(ADDR_REPLY)).unwrap());
        },
    );
    bench(
        "ReplyCodec::decode, *2 ip port",
        ADDR_REPLY.len(),
        1,
        || {
            let mut buf = BytesMut::from(black_box(ADDR_REPLY));
            black_box(ReplyCodec::new().decode(&mut buf).unwrap());
        },
    );
    bench(
        "baseline: resp2::decode_bytes_mut, *2 ip port",
        ADDR_REPLY.len(),
        1,
        || {
            let mut buf = BytesMut::from(black_box(ADDR_REPLY));
            black_box(redis_protocol::resp2::decode::decode_bytes_mut(&mut buf).unwrap());
        },
    );
    bench(
        "ReplyScanner::scan, SENTINEL MASTER record",
        MASTER_RESP2.len(),
        1,
        || {
            black_box(scanner.scan(black_box(MASTER_RESP2)).unwrap());
        },
    );
    bench(
        "ReplyCodec::decode, SENTINEL MASTER record (RESP2)",
        MASTER_RESP2.len(),
        1,
        || {
            let mut buf = BytesMut::from(black_box(MASTER_RESP2));
            black_box(ReplyCodec::new().decode(&mut buf).unwrap());
        },
    );
    bench(
        "baseline: resp2::decode_bytes_mut, SENTINEL MASTER",
        MASTER_RESP2.len(),
        1,
        || {
            let mut buf = BytesMut::from(black_box(MASTER_RESP2));
            black_box(redis_protocol::resp2::decode::decode_bytes_mut(&mut buf).unwrap());
        },
    );
    bench(
        "Resp3ReplyCodec::decode, SENTINEL MASTER record (RESP3)",
        MASTER_RESP3.len(),
        1,
        || {
            let mut buf = BytesMut::from(black_box(MASTER_RESP3));
            black_box(Resp3ReplyCodec::new().decode(&mut buf).unwrap());
        },
    );

    bench(
        "baseline: resp3 complete::decode_bytes_mut, SENTINEL MASTER",
        MASTER_RESP3.len(),
        1,
        || {
            let mut buf = BytesMut::from(black_box(MASTER_RESP3));
            black_box(redis_protocol::resp3::decode::complete::decode_bytes_mut(&mut buf).unwrap());
        },
    );

    let addr = Reply::addr("127.0.0.1", 6379);
    let mut out = BytesMut::with_capacity(1 << 16);
    bench(
        "Reply::encode RESP2, *2 ip port",
        ADDR_REPLY.len(),
        1,
        || {
            out.clear();
            black_box(&addr).encode(Protocol::Resp2, &mut out).unwrap();
        },
    );
    let mut rb = RecordBuilder::with_capacity(40);
    for i in 0..20u32 {
        rb.push("some-field-name", i * 1000);
        rb.push("flags", "master");
    }
    let record = rb.build();
    let len = record.to_bytes(Protocol::Resp3).len();
    bench("Reply::encode RESP3, 40-field record", len, 1, || {
        out.clear();
        black_box(&record)
            .encode(Protocol::Resp3, &mut out)
            .unwrap();
    });
}
