//! A real browser: headless Chromium (Debian's `chromium`, installed by
//! `scripts/install-chromium.sh`) opens a test page whose plain JavaScript
//! speaks the protocol (docs/protocol.md §17) over `wss://` to `sustenet up`,
//! trusting the development certificate by its key
//! (`--ignore-certificate-errors-spki-list`): it logs in, joins and gets a
//! reliable and an unreliable echo. Then `ws://` without TLS: refused to a
//! page from a non-loopback origin, served to one from a loopback origin.
//! The page reports its outcome by posting it to the test's own page server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use common::{Proc, free_ports, free_tcp_port, up};

const PAGE: &str = include_str!("web/browser_client.html");

/// Serves the test page to every GET and hands each POSTed body (the
/// page's outcome) to the test; stops when dropped.
struct PageServer {
    port: u16,
    results: mpsc::Receiver<String>,
    stop: Arc<AtomicBool>,
}

impl PageServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, results) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => serve(s, &tx),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Self {
            port,
            results,
            stop,
        }
    }

    /// The page's outcome, within the guard time.
    fn outcome(&self) -> String {
        self.results
            .recv_timeout(Duration::from_secs(40))
            .expect("the page reported its outcome")
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(s: std::net::TcpStream, results: &mpsc::Sender<String>) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let (status, body) = if line.starts_with("POST /result") {
        let mut b = vec![0; len.min(4096)];
        let _ = r.read_exact(&mut b);
        let _ = results.send(String::from_utf8_lossy(&b).into_owned());
        ("200 OK", String::new())
    } else if line.starts_with("GET /index.html") {
        ("200 OK", PAGE.to_owned())
    } else {
        ("404 Not Found", String::new())
    };
    let mut s = r.into_inner();
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The Chromium binary (installed if missing).
fn chromium_bin() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-chromium.sh");
    let out = Command::new(script).output().unwrap();
    assert!(out.status.success(), "install-chromium.sh failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Headless Chromium on `url` with `extra` flags (the flags of
/// scripts/chromium.sh), in its own process group, killed whole on drop.
struct Browser {
    proc: Option<Proc>,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn open(url: &str, extra: &[String]) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(chromium_bin())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        Self {
            proc: Some(Proc(child)),
            _profile: profile,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(p) = &self.proc {
            // The browser's helpers (zygote, renderers) are in its group.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", p.0.id())])
                .status();
        }
        self.proc.take();
    }
}

/// The `key = "value"` of up's client file.
fn client_value(dir: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(dir.join(".sustenet/client.toml")).unwrap();
    let v: toml::Value = toml::from_str(&text).unwrap();
    v[key].as_str().unwrap().to_owned()
}

#[test]
fn a_browser_plays_over_wss_with_the_development_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ws = free_ports(2).to_string();
    let _up = up(dir.path(), free_tcp_port(), &["--websocket-port", &ws]);
    let url = client_value(dir.path(), "websocket");
    assert_eq!(url, format!("wss://127.0.0.1:{ws}"));
    let spki = client_value(dir.path(), "certificate_spki");
    let page = PageServer::start();
    let _browser = Browser::open(
        &format!("http://127.0.0.1:{}/index.html?ws={url}", page.port),
        &[format!("--ignore-certificate-errors-spki-list={spki}")],
    );
    let outcome = page.outcome();
    assert!(
        outcome.starts_with("PASS: joined cluster-") && outcome.contains("over wss"),
        "{outcome}"
    );
}

#[test]
fn plain_ws_is_refused_to_pages_from_other_origins() {
    let dir = tempfile::tempdir().unwrap();
    let ws = free_ports(2).to_string();
    let _up = up(
        dir.path(),
        free_tcp_port(),
        &["--websocket-port", &ws, "--plain-websocket"],
    );
    let url = client_value(dir.path(), "websocket");
    assert_eq!(url, format!("ws://127.0.0.1:{ws}"));
    let page = PageServer::start();
    // A page from game.example (resolved to loopback by the browser only).
    let foreign = format!(
        "http://game.example:{}/index.html?mode=login&ws={url}",
        page.port
    );
    let rules = "--host-resolver-rules=MAP game.example 127.0.0.1".to_owned();
    let outcome = {
        let _b = Browser::open(&foreign, &[rules]);
        page.outcome()
    };
    assert!(
        outcome.starts_with("FAIL: master closed"),
        "a ws:// upgrade from a non-loopback page must be refused: {outcome}"
    );
    // The same page from a loopback origin logs in.
    let local = format!(
        "http://127.0.0.1:{}/index.html?mode=login&ws={url}",
        page.port
    );
    let outcome = {
        let _b = Browser::open(&local, &[]);
        page.outcome()
    };
    assert_eq!(outcome, "PASS: logged in over ws");
}
