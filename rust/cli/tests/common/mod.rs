//! Helpers of the tests that run `sustenet up` and `sustenet bench` as real
//! processes and read the admin endpoint over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod instance_master;
pub mod marked;

pub const BIN: &str = env!("CARGO_BIN_EXE_sustenet");

/// A port free for TCP and UDP with the next `n` free too (the clusters').
pub fn free_ports(n: u16) -> u16 {
    'outer: loop {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if port > u16::MAX - n {
            continue;
        }
        for p in port..=port + n {
            let tcp_ok = p == port || TcpListener::bind(("127.0.0.1", p)).is_ok();
            if !tcp_ok || UdpSocket::bind(("127.0.0.1", p)).is_err() {
                continue 'outer;
            }
        }
        return port;
    }
}

/// A port free for both TCP and UDP right now.
pub fn free_port() -> u16 {
    free_ports(0)
}

/// A free TCP port.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills the child on drop, so a failing test leaves no server behind.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// `sustenet <args>` in `dir`, logging at info level to nowhere.
    pub fn start(dir: &Path, args: &[&str]) -> Proc {
        Proc(
            Command::new(BIN)
                .args(args)
                .current_dir(dir)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("SUSTENET_MASTER")
        .env_remove("SUSTENET_MASTER_KEY")
        .env_remove("SUSTENET_METRICS_TOKEN")
        .output()
        .unwrap()
}

/// `sustenet up` with two clusters and its admin endpoint on `admin`, plus
/// `extra` flags, as [`up_clusters`].
pub fn up(dir: &Path, admin: u16, extra: &[&str]) -> Proc {
    let metrics = format!("127.0.0.1:{admin}");
    let mut args = vec!["--metrics-bind", &metrics];
    args.extend_from_slice(extra);
    up_clusters(dir, 2, &args)
}

/// `sustenet up` with `clusters` clusters plus `extra` flags; ready once a
/// probe gets through. The master's and clusters' ports are picked free but
/// may be taken by another test before `up` binds them: an `up` that exits
/// at start is started again on new ones.
pub fn up_clusters(dir: &Path, clusters: u16, extra: &[&str]) -> Proc {
    for _attempt in 0..5 {
        let port = free_ports(clusters).to_string();
        let count = clusters.to_string();
        let mut args = vec!["up", "--clusters", &count, "--port", &port];
        args.extend_from_slice(extra);
        let mut p = Proc(
            Command::new(BIN)
                .args(&args)
                .current_dir(dir)
                .env_remove("SUSTENET_METRICS_TOKEN")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if p.0.try_wait().unwrap().is_some() {
                break; // it could not bind its ports: try others
            }
            let out = run(dir, &["probe", "--count", "1"]);
            if out.status.success() {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "sustenet up did not come up:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    panic!("sustenet up exited at start five times");
}

/// One HTTP/1.1 request on loopback: (status, body).
pub fn http(port: u16, method: &str, target: &str, headers: &[&str]) -> (u16, String) {
    try_http(port, method, target, headers).expect("the HTTP exchange failed")
}

/// One HTTP/1.1 request on loopback: (status, body), or `None` when the
/// server closed the connection before answering.
pub fn try_http(port: u16, method: &str, target: &str, headers: &[&str]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Some((status, body.to_owned()))
}

/// The scrape's samples: `name{labels}` → value (bucket lines included).
pub fn samples(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// The sum of every sample of `name` whose labels contain all of `labels`.
pub fn sum(s: &std::collections::HashMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    s.iter()
        .filter(|(k, _)| {
            let (n, l) = k.split_once('{').unwrap_or((k.as_str(), ""));
            n == name && labels.iter().all(|x| l.contains(x))
        })
        .map(|(_, v)| v)
        .sum()
}
