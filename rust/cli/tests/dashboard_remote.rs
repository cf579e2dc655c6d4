//! The dashboard for clusters in other processes: a real `sustenet master`
//! serving the dashboard, two `sustenet cluster` processes and `sustenet
//! bench` load in a world. Each cluster reports its occupied fragments and
//! its latest disconnect reasons over its master link, and the dashboard
//! shows them for both clusters, as it does for `sustenet up`'s own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Proc, free_tcp_port, try_http};
use serde_json::Value;
use support::Deployment;

/// The dashboard's data, `None` while the master is not listening yet.
fn dashboard(admin: u16, cluster: Option<&str>) -> Option<Value> {
    let target = match cluster {
        Some(c) => format!("/api/dashboard?cluster={c}"),
        None => "/api/dashboard".to_owned(),
    };
    std::net::TcpStream::connect(("127.0.0.1", admin)).ok()?;
    let (status, body) = try_http(admin, "GET", &target, &[])?;
    assert_eq!(status, 200, "{body}");
    Some(serde_json::from_str(&body).unwrap())
}

/// Polls the dashboard (of `cluster`'s heat map) until `ready` accepts it.
fn until(admin: u16, cluster: Option<&str>, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = dashboard(admin, cluster);
        if let Some(d) = d.as_ref().filter(|d| ready(d)) {
            return d.clone();
        }
        assert!(Instant::now() < deadline, "{what}: {d:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn players_in(heat: &Value) -> u64 {
    heat["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[3].as_u64().unwrap())
        .sum()
}

#[test]
fn clusters_in_other_processes_show_their_heat_maps_and_disconnects() {
    let admin = free_tcp_port();
    let dep = Deployment::new(&format!(
        "[metrics]\nbind = \"127.0.0.1:{admin}\"\ndashboard = true\n"
    ));
    let east = dep.cluster_spec("east", "", "", "");
    let west = dep.cluster_spec("west", "", "", "");
    let master = dep.start_master();
    // The demo world: bench's position updates fill the fragment grid.
    let east_proc = dep.start_cluster_with(&east, &["--world"]);
    let west_proc = dep.start_cluster_with(&west, &["--world"]);
    until(admin, None, "both clusters listed", |d| {
        d["clusters"].as_array().is_some_and(|c| c.len() == 2)
    });

    let master_addr = dep.master_addr().to_string();
    let key = dep.master_public.to_base64();
    let mut bench = Proc(
        Command::new(BIN)
            .args([
                "bench",
                "--master",
                &master_addr,
                "--key",
                &key,
                "--clients",
                "24",
                "--duration",
                "6",
                "--ramp",
                "1",
                "--world",
                "120",
                "--json",
            ])
            .current_dir(dep.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Under load: both clusters' heat maps come from their reports.
    for name in ["east", "west"] {
        let d = until(admin, Some(name), "a reported heat map", |d| {
            d["heat"]["cluster"] == name && players_in(&d["heat"]) > 0
        });
        assert!(
            d["heat_clusters"]
                .as_array()
                .unwrap()
                .contains(&Value::from(name)),
            "{d}"
        );
        let c = d["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone();
        assert_eq!(
            (c["local"].as_bool(), c["reported"].as_bool()),
            (Some(false), Some(true)),
            "{d}"
        );
        assert!(c["fragments"].as_u64() > Some(0), "{d}");
        let cells = d["heat"]["cells"].as_array().unwrap().len() as u64;
        assert!(
            players_in(&d["heat"]) <= c["players"].as_u64().unwrap() + cells,
            "{d}"
        );
    }

    // Bench's clients say goodbye when it ends: both clusters report them.
    let status = bench.0.wait().unwrap();
    assert!(status.success(), "bench failed");
    let mut out = String::new();
    std::io::Read::read_to_string(bench.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    let b: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(b["joined"], 24, "{b}");
    let d = until(admin, None, "both clusters' goodbyes", |d| {
        let list = d["disconnects"].as_array().unwrap();
        ["east", "west"].iter().all(|n| {
            list.iter()
                .any(|x| x["cluster"] == *n && x["reason"] == "requested")
        })
    });
    let now = d["now_ms"].as_u64().unwrap();
    for x in d["disconnects"].as_array().unwrap() {
        assert!(x["at_ms"].as_u64().unwrap() <= now, "{d}");
    }

    east_proc.terminate();
    west_proc.terminate();
    master.terminate();
}
