//! cargo-fuzz entry point: the master's directory under cluster messages and joins.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sustenet_server::fuzzing::master_directory(data));
