//! Replays the fuzz seed corpus (and anything the fuzzer found that was saved as a `seed-*`)
//! through the fuzz body, so CI checks it without cargo-fuzz or a nightly toolchain.

use std::path::Path;

#[test]
fn fuzz_seed_corpus_replays_cleanly() {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/decode"));
    let mut replayed = 0;
    for entry in std::fs::read_dir(dir).expect("protocol/fuzz/corpus/decode exists") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("seed-") {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        sentinel_protocol::codec::fuzz_decode(&data);
        // Also every prefix, which is how reads arrive.
        for n in (0..data.len()).step_by(7) {
            sentinel_protocol::codec::fuzz_decode(&data[..n]);
        }
        replayed += 1;
    }
    assert!(replayed >= 10, "only {replayed} seeds");
}

#[test]
fn fuzz_body_handles_the_empty_input_and_each_single_byte() {
    sentinel_protocol::codec::fuzz_decode(b"");
    for b in 0..=255u8 {
        sentinel_protocol::codec::fuzz_decode(&[b]);
        sentinel_protocol::codec::fuzz_decode(&[b, b'\r', b'\n']);
    }
}
