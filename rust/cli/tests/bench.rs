//! `sustenet bench` as real processes: against `sustenet up`, in one worker
//! process and spread over several, and against a dead port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Output;

use common::{Proc, free_ports, run, up_clusters};

/// `sustenet up --clusters 1` in `dir`, ready once a probe gets through.
fn up(dir: &Path) -> Proc {
    up_clusters(dir, 1, &[])
}

fn summary(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "bench failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn check_healthy(s: &serde_json::Value, clients: u64, processes: u64) {
    assert_eq!(s["ok"], true, "{s}");
    assert_eq!(s["clients"], clients, "{s}");
    assert_eq!(s["processes"], processes, "{s}");
    assert_eq!(s["joined"], clients, "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    assert_eq!(s["disconnected"], 0, "{s}");
    assert_eq!(s["errors"], 0, "{s}");
    assert!(s["sent"]["positions"].as_u64().unwrap() > 0, "{s}");
    let rel_sent = s["sent"]["reliable"].as_u64().unwrap();
    assert!(rel_sent > 0, "{s}");
    // Reliable echoes all come back (the run waits for them).
    assert_eq!(s["received"]["reliable"], rel_sent, "{s}");
    assert!(s["sent"]["unreliable"].as_u64().unwrap() > 0, "{s}");
    assert!(s["received"]["unreliable"].as_u64().unwrap() > 0, "{s}");
    assert!(s["msgs_out_per_s"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s["msgs_in_per_s"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s["unreliable_delivery"].as_f64().unwrap() > 0.5, "{s}");
    for ch in ["reliable", "unreliable"] {
        let q = &s["rtt_us"][ch];
        assert!(q["count"].as_u64().unwrap() > 0, "{ch}: {s}");
        let (p50, p99, p999, max) = (
            q["p50"].as_u64().unwrap(),
            q["p99"].as_u64().unwrap(),
            q["p999"].as_u64().unwrap(),
            q["max"].as_u64().unwrap(),
        );
        assert!(
            0 < p50 && p50 <= p99 && p99 <= p999 && p999 <= max,
            "{ch}: {s}"
        );
    }
}

/// The `World` plugin's state records reached the clients they should
/// have, and the figures agree with each other.
fn check_state(s: &serde_json::Value) {
    let st = &s["state"];
    let delivered = st["delivered"].as_u64().unwrap();
    let expected = st["expected"].as_u64().unwrap();
    assert!(delivered > 0, "{s}");
    assert!(delivered <= expected, "{s}");
    let ratio = st["delivery"].as_f64().unwrap();
    assert!(ratio > 0.0 && ratio <= 1.0, "{s}");
    assert!(
        (ratio - delivered as f64 / expected as f64).abs() < 1e-9,
        "{s}"
    );
    assert!(
        s["received"]["states"].as_u64().unwrap() >= delivered,
        "{s}"
    );
    let q = &st["latency_us"];
    assert_eq!(q["count"].as_u64().unwrap(), delivered, "{s}");
    let (p50, p99, p999, max) = (
        q["p50"].as_u64().unwrap(),
        q["p99"].as_u64().unwrap(),
        q["p999"].as_u64().unwrap(),
        q["max"].as_u64().unwrap(),
    );
    assert!(p50 <= p99 && p99 <= p999 && p999 <= max && max > 0, "{s}");
}

#[test]
fn bench_against_up_one_and_several_processes() {
    let dir = tempfile::tempdir().unwrap();
    let _up = up(dir.path());

    // One worker process; master and key from .sustenet/client.toml; the
    // light generator, its clients in groups of up to 8 per socket.
    let out = run(
        dir.path(),
        &[
            "bench",
            "--clients",
            "30",
            "--clients-per-socket",
            "8",
            "--duration",
            "3",
            "--ramp",
            "1",
            // About 10 neighbours each within `up`'s interest radius (40).
            "--world",
            "120",
            "--json",
        ],
    );
    let s = summary(&out);
    check_healthy(&s, 30, 1);
    check_state(&s);
    assert!(
        String::from_utf8_lossy(&out.stderr).trim().is_empty(),
        "--json prints no progress: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Spread over processes: 25 clients at most 10 per process = 3 workers,
    // each a full client driver per simulated client.
    let out = run(
        dir.path(),
        &[
            "bench",
            "--full-clients",
            "--clients",
            "25",
            "--per-process",
            "10",
            "--duration",
            "2",
            "--ramp",
            "0.5",
            "--world",
            "110",
            "--json",
        ],
    );
    // Senders and receivers in different processes agree on who should
    // hear whom.
    let s = summary(&out);
    check_healthy(&s, 25, 3);
    check_state(&s);

    // Without --json: progress lines on stderr, a readable summary on stdout.
    let out = run(
        dir.path(),
        &[
            "bench",
            "--clients",
            "5",
            // The light generator in two processes.
            "--processes",
            "2",
            "--duration",
            "2",
            "--ramp",
            "0",
            "--world",
            "50",
        ],
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bench OK"), "{text}");
    assert!(text.contains("in 2 process(es)"), "{text}");
    assert!(text.contains("joined        5/5"), "{text}");
    assert!(text.contains("expected updates delivered"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("clients 5/5") && err.contains("rtt ms") && err.contains("state "),
        "{err}"
    );
}

#[test]
fn bench_against_a_dead_port_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["keygen", "--master"]);
    let public = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("master public key (give this to clients): "))
        .unwrap()
        .trim()
        .to_owned();
    // A port nobody listens on: bound, then released.
    let port = free_ports(1);
    let out = run(
        dir.path(),
        &[
            "bench",
            "--master",
            &format!("127.0.0.1:{port}"),
            "--key",
            &public,
            "--clients",
            "10",
            "--duration",
            "1",
            "--ramp",
            "0.2",
            "--json",
        ],
    );
    assert!(!out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["ok"], false);
    assert_eq!(s["joined"], 0);
    assert_eq!(s["failed"], 10);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("10 of 10 clients failed to join") && err.contains("cannot reach the master"),
        "{err}"
    );

    // No client.toml and no --master: says what to do.
    let out = run(dir.path(), &["bench"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sustenet up"), "{err}");
}
