//! Runs the cluster core's per-tick work plus sealing (`CoreBench`, as
//! `benches/core_threads.rs` on one thread: the `World` plugin, N players at
//! 20 Hz with about 10 neighbours each, the 5 ms state window, deadlines on
//! a 1 ms timer, every datagram sealed with AES-GCM on this thread) for a
//! fixed number of periods, and prints what was sent. Deterministic, so an
//! instruction count of it (`valgrind --tool=callgrind`) is repeatable:
//!
//! ```sh
//! cargo build --release -p sustenet-server --example core_profile
//! valgrind --tool=callgrind target/release/examples/core_profile 2000 20
//! ```
//!
//! Arguments: players (2,000) and periods (20), after two periods of warm-up.
//! Every datagram of a period holds state records only, each of the same
//! length (a player id and the 28-byte position report), so the records
//! are counted from the bytes. The instructions per delivered record are
//! the difference between a run of N periods and one of 0, over the
//! records of the N periods.

use std::time::Duration;

use sustenet_proto::crypto::DATAGRAM_OVERHEAD;
use sustenet_proto::datagram::DATA_RECORD_OVERHEAD;
use sustenet_server::cluster::ClusterConfig;
use sustenet_server::cluster::core_bench::CoreBench;

fn main() {
    let mut args = std::env::args().skip(1);
    let players = args.next().and_then(|a| a.parse().ok()).unwrap_or(2_000);
    let periods: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let window = Duration::from_millis(ClusterConfig::DEFAULT_STATE_WINDOW_MS);
    let tick = Duration::from_millis(10);
    let mut b = CoreBench::new(players, 10.0, 32.0, 20.0, (tick, window))
        .with_timer_resolution(Duration::from_millis(1));
    b.period();
    b.period();
    let (mut datagrams, mut bytes) = (0, 0);
    for _ in 0..periods {
        let s = b.period();
        datagrams += s.datagrams;
        bytes += s.bytes;
    }
    // A state record: its header, the subject's id and the 28-byte report.
    let record = DATA_RECORD_OVERHEAD + 8 + 28;
    let payload = bytes - datagrams * DATAGRAM_OVERHEAD;
    let records = payload / record;
    println!(
        "players {players} periods {periods} datagrams {datagrams} bytes {bytes} records {records}{}",
        if payload % record == 0 {
            ""
        } else {
            " (bytes not whole records)"
        }
    );
}
