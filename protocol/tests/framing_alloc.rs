//! Arbitrary and hostile bytes never make the framing layer allocate past its limits.
//!
//! A counting global allocator records, per thread, the live heap bytes and their peak, so each
//! measurement sees only the allocations of the code under test (the test harness runs tests on
//! other threads). `unsafe` is allowed in this file only: `GlobalAlloc` is an unsafe trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use proptest::prelude::*;
use sentinel_protocol::codec::{ReplyCodec, RequestCodec, Resp3ReplyCodec};
use sentinel_protocol::limits::{
    ReplyLimits, ReplyProtocol, ReplyScanner, RequestLimits, scan_request,
};
use tokio_util::codec::Decoder;

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static CALLS: Cell<usize> = const { Cell::new(0) };
}

fn on_alloc(size: usize) {
    // `try_with`: the thread-locals may be gone while a thread is being torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + size;
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        let _ = CALLS.try_with(|c| c.set(c.get() + 1));
    });
}

fn on_free(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(size)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        on_free(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        on_free(layout.size());
        on_alloc(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result, the peak heap bytes above the starting point, and the
/// number of allocation calls, all on this thread.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let calls = CALLS.with(Cell::get);
    let out = f();
    let peak = PEAK.with(Cell::get) - base;
    (out, peak, CALLS.with(Cell::get) - calls)
}

/// Everything the decoders may allocate for one input: the frame tree is at most a few dozen
/// bytes per input byte (a 4-byte `:1\r\n` becomes a range frame and a bytes frame), plus the
/// error value's text.
fn decode_budget(input_len: usize) -> usize {
    48 * input_len + 8 * 1024
}

fn drain<D: Decoder>(codec: &mut D, buf: &mut BytesMut) {
    while let Ok(Some(_)) = codec.decode(buf) {}
}

#[test]
fn the_counter_sees_allocations() {
    let (_, peak, calls) = measure(|| drop(std::hint::black_box(Vec::<u8>::with_capacity(100))));
    assert_eq!((peak, calls), (100, 1));
    let mut buf = BytesMut::from(&b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n"[..]);
    let (frame, peak, calls) = measure(|| ReplyCodec::new().decode(&mut buf).unwrap());
    assert!(frame.is_some() && peak > 0 && calls > 0);
}

#[test]
fn the_scanners_never_allocate() {
    let inputs: Vec<Vec<u8>> = vec![
        b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n".to_vec(),
        b"SET \"a\\x41 b\" 'c\\'d' e\r\n".to_vec(),
        b"*1\r\n".repeat(100_000),
        b"%9223372036854775807\r\n".to_vec(),
        vec![b'+'; 1 << 20],
        vec![b'a'; 70_000],
    ];
    for input in &inputs {
        let (_, peak, calls) = measure(|| {
            let _ = scan_request(input, &RequestLimits::default(), true);
            let _ = scan_request(input, &RequestLimits::default(), false);
            let mut s = ReplyScanner::new(ReplyLimits::default(), ReplyProtocol::Resp3);
            let _ = s.scan(input);
            let mut s = ReplyScanner::new(ReplyLimits::default(), ReplyProtocol::Resp2);
            let _ = s.scan(input);
        });
        assert_eq!((peak, calls), (0, 0), "input of {} bytes", input.len());
    }
}

/// The inputs rust-stack.md 1.6 measured against bare redis-protocol (64 KiB transient from
/// nom's pre-allocation, a process abort from nesting) cost next to nothing behind the scanner.
#[test]
fn hostile_headers_are_refused_before_any_allocation_of_note() {
    let mut nested = b"*1\r\n".repeat(100_000);
    nested.extend_from_slice(b":1\r\n");
    let hostile: Vec<Vec<u8>> = vec![
        b"$9223372036854775807\r\nabc".to_vec(),
        b"*2147483647\r\n:1\r\n".to_vec(),
        b"*9223372036854775807\r\n".to_vec(),
        b"%9223372036854775807\r\n".to_vec(),
        b"*-2\r\n".to_vec(),
        vec![b'+'; (1 << 20) + 8],
        nested,
    ];
    for input in &hostile {
        for which in 0..3 {
            let mut buf = BytesMut::from(&input[..]);
            let (_, peak, _) = measure(|| match which {
                0 => drain(&mut ReplyCodec::new(), &mut buf),
                1 => drain(&mut Resp3ReplyCodec::new(), &mut buf),
                _ => drain(
                    &mut RequestCodec::new(RequestLimits::default(), true),
                    &mut buf,
                ),
            });
            assert!(
                peak <= 1024,
                "codec {which}: {peak} bytes for a {}-byte hostile input starting {:?}",
                input.len(),
                String::from_utf8_lossy(&input[..input.len().min(24)])
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_stay_within_the_decode_budget(
        data in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        for which in 0..3 {
            let mut buf = BytesMut::from(&data[..]);
            let (_, peak, _) = measure(|| match which {
                0 => drain(&mut ReplyCodec::new(), &mut buf),
                1 => drain(&mut Resp3ReplyCodec::new(), &mut buf),
                _ => drain(&mut RequestCodec::default(), &mut buf),
            });
            prop_assert!(peak <= decode_budget(data.len()), "codec {} peak {}", which, peak);
        }
    }

    /// Well-formed but maximal-looking frames (long arrays of tiny elements) also stay within
    /// the budget: the allocation is proportional to the bytes actually received.
    #[test]
    fn dense_arrays_stay_within_the_decode_budget(n in 0usize..5000) {
        let mut input = format!("*{n}\r\n").into_bytes();
        input.extend(b":1\r\n".repeat(n));
        let mut buf = BytesMut::from(&input[..]);
        let (_, peak, _) = measure(|| drain(&mut ReplyCodec::new(), &mut buf));
        prop_assert!(peak <= decode_budget(input.len()), "peak {} for {} bytes", peak, input.len());
    }
}
