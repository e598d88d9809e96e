//! See `sluice::fuzzing::ndjson`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzzing::ndjson(data));
