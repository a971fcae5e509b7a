//! Arbitrary bytes through both scanners and all three decoders; see
//! `sentinel_protocol::codec::fuzz_decode` for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sentinel_protocol::codec::fuzz_decode(data);
});
