//! cargo-fuzz entry point: the cluster's core under player messages, datagrams and time.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sustenet_server::fuzzing::cluster_core(data));
