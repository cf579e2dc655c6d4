//! `sustenet bench-web` against `sustenet up`: every web client joins over
//! wss, sends and gets its echoes back, and the summary says so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{free_ports, free_tcp_port, run, up};

#[test]
fn bench_web_runs_web_clients_against_up() {
    let dir = tempfile::tempdir().unwrap();
    let ws = free_ports(2).to_string();
    let _up = up(dir.path(), free_tcp_port(), &["--websocket-port", &ws]);
    let out = run(
        dir.path(),
        &[
            "bench-web",
            "--clients",
            "8",
            "--duration",
            "5",
            "--ramp",
            "0.5",
            "--world",
            "40",
            "--json",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(s["joined"], 8, "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    assert!(s["reliable_rtt_ms"]["count"].as_u64().unwrap() >= 8, "{s}");
    assert!(
        s["states_per_sec"].as_f64().unwrap() > 0.0,
        "neighbours' states arrive: {s}"
    );
}
