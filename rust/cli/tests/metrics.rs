//! The metrics endpoint as real processes: `sustenet up` under `sustenet
//! bench` load, scraped over HTTP, agrees with what bench did; the token
//! and the read-only rules hold; a public dashboard needs a token.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::{free_tcp_port, http, run, samples, sum, up};

fn scrape(port: u16) -> (String, std::collections::HashMap<String, f64>) {
    let (status, body) = http(port, "GET", "/metrics", &[]);
    assert_eq!(status, 200, "{body}");
    let s = samples(&body);
    (body, s)
}

#[test]
fn metrics_under_bench_load_match_what_bench_did() {
    // Long: one scenario (master and cluster processes, a bench run against
    // them, then every metric compared with what bench reported), read top to
    // bottom; split up, the comparisons would lose the numbers they check.
    let dir = tempfile::tempdir().unwrap();
    let admin = free_tcp_port();
    let _up = up(dir.path(), admin, &[]);
    // The readiness probes have left the clusters before the baseline.
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = loop {
        let (text, s) = scrape(admin);
        let joins = sum(&s, "sustenet_cluster_joins_total", &[]);
        if joins > 0.0 && sum(&s, "sustenet_cluster_disconnects_total", &[]) == joins {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the probes did not leave:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // Both clusters' cores are alive.
    assert_eq!(http(admin, "GET", "/health", &[]), (200, "ok\n".to_owned()));
    let out = run(
        dir.path(),
        &[
            "bench",
            "--clients",
            "24",
            "--duration",
            "3",
            "--ramp",
            "1",
            "--world",
            "120",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["ok"], true, "{b}");
    let joined = b["joined"].as_f64().unwrap();
    assert_eq!(joined, 24.0, "{b}");
    let sent_reliable = b["sent"]["reliable"].as_f64().unwrap();
    assert!(sent_reliable > 0.0, "{b}");

    // Bench's clients leave when it ends; wait until both clusters counted
    // every goodbye (and the master sampled its cluster list again).
    let delta = |after: &std::collections::HashMap<String, f64>, name: &str, labels: &[&str]| {
        sum(after, name, labels) - sum(&before, name, labels)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (text, after) = loop {
        let (text, after) = scrape(admin);
        let left = delta(
            &after,
            "sustenet_cluster_disconnects_total",
            &["reason=\"requested\""],
        );
        if left >= joined && sum(&after, "sustenet_master_players", &[]) == 0.0 {
            break (text, after);
        }
        assert!(
            Instant::now() < deadline,
            "goodbyes not counted: {left} of {joined}\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };

    // Logins, tickets and joins: one each per bench client.
    assert_eq!(
        delta(&after, "sustenet_master_logins_total", &["result=\"ok\""]),
        joined,
        "{text}"
    );
    assert_eq!(
        delta(
            &after,
            "sustenet_master_handshakes_total",
            &["result=\"ok\""]
        ),
        joined,
        "{text}"
    );
    assert_eq!(
        delta(
            &after,
            "sustenet_master_tickets_issued_total",
            &["kind=\"join\""]
        ),
        joined,
        "{text}"
    );
    assert_eq!(
        delta(&after, "sustenet_master_tickets_used_total", &[]),
        joined,
        "{text}"
    );
    assert_eq!(
        delta(&after, "sustenet_cluster_joins_total", &[]),
        joined,
        "{text}"
    );
    assert_eq!(
        delta(
            &after,
            "sustenet_cluster_handshakes_total",
            &["result=\"ok\""]
        ),
        joined,
        "{text}"
    );
    assert_eq!(
        delta(&after, "sustenet_cluster_disconnects_total", &[]),
        joined,
        "{text}"
    );
    // Both clusters got players (the master spreads joins by load).
    for c in ["cluster-1", "cluster-2"] {
        let label = format!("cluster=\"{c}\"");
        assert!(
            delta(&after, "sustenet_cluster_joins_total", &[&label]) > 0.0,
            "{c}\n{text}"
        );
    }
    // Every reliable echo bench sent reached a cluster as one reliable message.
    assert_eq!(
        delta(
            &after,
            "sustenet_cluster_messages_received_total",
            &["channel=\"reliable\""]
        ),
        sent_reliable,
        "{text}"
    );
    // Positions and unreliable echoes arrive as datagrams (some may be lost).
    let datagrams = delta(
        &after,
        "sustenet_cluster_messages_received_total",
        &["channel=\"unreliable\""],
    );
    let sent_datagrams =
        b["sent"]["positions"].as_f64().unwrap() + b["sent"]["unreliable"].as_f64().unwrap();
    assert!(
        datagrams > 0.5 * sent_datagrams,
        "{datagrams} of {sent_datagrams}\n{text}"
    );
    // Bench received its echoes and states: the clusters sent at least that much.
    let got = b["received"]["reliable"].as_f64().unwrap();
    assert!(
        delta(
            &after,
            "sustenet_cluster_messages_sent_total",
            &["channel=\"reliable\""]
        ) >= got,
        "{text}"
    );
    assert!(
        delta(
            &after,
            "sustenet_cluster_sent_bytes_total",
            &["channel=\"unreliable\""]
        ) > 0.0,
        "{text}"
    );

    // The core tick histogram has its explicit buckets and counted ticks.
    assert!(
        text.contains(
            "sustenet_cluster_core_tick_seconds_bucket{cluster=\"cluster-1\",le=\"0.0001\"}"
        ),
        "{text}"
    );
    assert!(
        sum(&after, "sustenet_cluster_core_tick_seconds_count", &[]) > 0.0,
        "{text}"
    );
    assert!(
        text.contains("# TYPE sustenet_cluster_transfer_pause_seconds histogram"),
        "{text}"
    );
    assert!(
        sum(&after, "process_resident_memory_bytes", &[]) > 1e6,
        "{text}"
    );
    assert_eq!(sum(&after, "sustenet_master_clusters", &[]), 2.0, "{text}");
    assert_eq!(
        sum(&after, "sustenet_cluster_master_link_up", &[]),
        2.0,
        "{text}"
    );
    // Every datagram bench sent was read by a UDP receiver (one each here).
    assert!(
        sum(&after, "sustenet_cluster_udp_datagrams_received_total", &[]) > 0.0,
        "{text}"
    );
    // No player ids as labels: every label is one of a small fixed set
    // (`receiver`: 0 to 63).
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((_, labels)) = line.split_once('{') {
            for kv in labels.split('}').next().unwrap().split(',') {
                let key = kv.split('=').next().unwrap();
                assert!(
                    [
                        "cluster", "result", "reason", "kind", "channel", "le", "receiver"
                    ]
                    .contains(&key),
                    "unexpected label {key}: {line}"
                );
            }
        }
    }
}

#[test]
fn the_admin_endpoint_needs_its_token_and_is_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let admin = free_tcp_port();
    let _up = up(dir.path(), admin, &["--metrics-token", "s3cret"]);
    assert_eq!(http(admin, "GET", "/metrics", &[]).0, 401);
    // Liveness probes send no token.
    assert_eq!(http(admin, "GET", "/health", &[]), (200, "ok\n".to_owned()));
    assert_eq!(http(admin, "GET", "/", &[]).0, 401);
    assert_eq!(http(admin, "GET", "/api/dashboard", &[]).0, 401);
    assert_eq!(
        http(admin, "GET", "/metrics", &["Authorization: Bearer wrong"]).0,
        401
    );
    assert_eq!(http(admin, "GET", "/metrics?token=s3cre", &[]).0, 401);
    let (status, body) = http(admin, "GET", "/metrics", &["Authorization: Bearer s3cret"]);
    assert_eq!(status, 200);
    assert!(body.contains("sustenet_master_logins_total"), "{body}");
    let (status, body) = http(admin, "GET", "/?token=s3cret", &[]);
    assert_eq!(status, 200);
    assert!(body.contains("<title>Sustenet dashboard</title>"), "{body}");
    let (status, body) = http(admin, "GET", "/api/dashboard?token=s3cret", &[]);
    assert_eq!(status, 200);
    let d: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        d["local_clusters"],
        serde_json::json!(["cluster-1", "cluster-2"]),
        "{d}"
    );
    // Read-only: nothing but GET and HEAD.
    for method in ["POST", "PUT", "DELETE"] {
        assert_eq!(
            http(admin, method, "/metrics?token=s3cret", &[]).0,
            405,
            "{method}"
        );
    }
    let (status, body) = http(admin, "HEAD", "/metrics?token=s3cret", &[]);
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(http(admin, "GET", "/nothing?token=s3cret", &[]).0, 404);
    // A request head over 8 KiB is refused.
    let long = format!("X-Padding: {}", "a".repeat(9 * 1024));
    assert!(
        common::try_http(admin, "GET", "/metrics?token=s3cret", &[&long])
            .is_none_or(|(s, _)| s == 400)
    );
}

#[test]
fn a_dashboard_beyond_loopback_needs_a_token_and_clusters_serve_no_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Config.toml"),
        "[metrics]\nbind = \"0.0.0.0:9100\"\ndashboard = true\n",
    )
    .unwrap();
    let out = run(dir.path(), &["master"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("metrics.bind") && err.contains("token"),
        "{err}"
    );

    let port = free_tcp_port().to_string();
    std::fs::write(
        dir.path().join("Config.toml"),
        format!("[metrics]\nbind = \"127.0.0.1:{port}\"\ndashboard = true\n"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    assert!(
        run(dir.path(), &["keygen", "--dir", "keys"])
            .status
            .success()
    );
    let out = run(
        dir.path(),
        &["cluster", "--port", &common::free_ports(0).to_string()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dashboard is served by the master"), "{err}");
}

/// Built without the `agones` feature, `[agones] enabled = true` is refused
/// with the way to get it.
#[cfg(not(feature = "agones"))]
#[test]
fn agones_without_the_feature_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Config.toml"), "[agones]\nenabled = true\n").unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    assert!(
        run(dir.path(), &["keygen", "--dir", "keys"])
            .status
            .success()
    );
    let out = run(
        dir.path(),
        &["cluster", "--port", &common::free_ports(0).to_string()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--features agones"), "{err}");
}
