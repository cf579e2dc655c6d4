//! The dashboard in a real headless Chromium (Debian's `chromium`, through
//! `scripts/chromium.sh`) against `sustenet up` under `sustenet bench` load:
//! the page loads, shows both clusters with players, and updates.
//!
//! `SUSTENET_DASHBOARD_PNG=<path>` also saves the screenshot there (how
//! `docs/images/dashboard.png` is made).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Proc, free_tcp_port, http, up};

fn chromium() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/chromium.sh")
}

/// Runs Chromium on the page with `args`; returns its standard output.
fn browse(args: &[&str], url: &str) -> String {
    let out = Command::new(chromium())
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `(name, players)` of each row of the cluster table in the dumped DOM.
fn rows(dom: &str) -> Vec<(String, u64)> {
    dom.split("<tr data-name=\"")
        .skip(1)
        .map(|r| {
            let name = r.split('"').next().unwrap().to_owned();
            let players = r
                .split("data-players=\"")
                .nth(1)
                .and_then(|p| p.split('"').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            (name, players)
        })
        .collect()
}

fn updates(dom: &str) -> u64 {
    dom.split("<span id=\"updates\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_dashboard_shows_both_clusters_with_players_and_updates() {
    let dir = tempfile::tempdir().unwrap();
    let admin = free_tcp_port();
    let _up = up(dir.path(), admin, &[]);
    // Load for as long as the browser needs; the bench stops by itself.
    let _bench = Proc(
        Command::new(BIN)
            .args([
                "bench",
                "--clients",
                "40",
                "--duration",
                "40",
                "--ramp",
                "1",
                "--world",
                "160",
                "--json",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Both clusters have players in the master's list before the page is opened.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http(admin, "GET", "/api/dashboard", &[]);
        let d: serde_json::Value = serde_json::from_str(&body).unwrap();
        let loaded = d["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["players"].as_u64() > Some(0));
        if loaded.count() == 2 && d["history"].as_array().unwrap().len() >= 3 {
            break;
        }
        assert!(Instant::now() < deadline, "clusters did not fill: {d}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let url = format!("http://127.0.0.1:{admin}/");

    // Five seconds of page time: the page polls once a second.
    let dom = browse(&["--virtual-time-budget=5000", "--dump-dom"], &url);
    let rows = rows(&dom);
    let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"cluster-1") && names.contains(&"cluster-2"),
        "{dom}"
    );
    assert!(rows.iter().all(|(_, p)| *p > 0), "{rows:?}\n{dom}");
    assert!(updates(&dom) >= 2, "the page did not update:\n{dom}");
    assert!(
        dom.contains("<option value=\"cluster-1\">cluster-1</option>"),
        "{dom}"
    );
    assert!(!dom.contains("HTTP 4"), "{dom}");

    let png = dir.path().join("dashboard.png");
    let shot = format!("--screenshot={}", png.display());
    browse(
        &[
            "--virtual-time-budget=4000",
            "--window-size=1280,900",
            "--hide-scrollbars",
            &shot,
        ],
        &url,
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "{}",
        bytes.len()
    );
    if let Some(keep) = std::env::var_os("SUSTENET_DASHBOARD_PNG") {
        std::fs::write(keep, &bytes).unwrap();
    }
}
