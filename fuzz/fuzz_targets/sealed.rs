//! cargo-fuzz entry point; the body lives in the library so the stable smoke test runs it too.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sustenet_proto_fuzz::sealed(data));
