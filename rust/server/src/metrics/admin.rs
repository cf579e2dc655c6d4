//! The admin HTTP endpoint: `/metrics` (Prometheus text format), `/health`
//! (200 while every watched cluster core has a recent heartbeat, else 503:
//! see [`super::core_health`]) and, when a [`Dashboard`] is given, the
//! dashboard page `/` and its data `/api/dashboard`. Read-only: GET and
//! HEAD only.
//!
//! Every limit is explicit: at most [`MAX_CONNECTIONS`] connections at once
//! (more are closed unanswered), a request head of at most
//! [`MAX_REQUEST_HEAD`] bytes read within [`REQUEST_TIMEOUT`], one request per
//! connection. With a token set, every path but `/health` needs it, as
//! `Authorization: Bearer <token>` or `?token=<token>`; without one, the
//! endpoint must stay on loopback when it serves the dashboard
//! ([`check_exposure`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, info};

use super::dashboard::{Dashboard, PAGE};

/// Most admin connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// Largest request head (request line and headers), in bytes.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Time allowed to send the request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the admin endpoint serves.
#[derive(Debug)]
pub struct Admin {
    registry: Registry,
    rss: Gauge,
    token: Option<String>,
    dashboard: Option<Dashboard>,
    /// The cluster cores `/health` judges, by cluster name.
    cores: Vec<(String, super::CoreHeartbeat)>,
}

impl Admin {
    /// An endpoint serving `registry` (plus `process_resident_memory_bytes`),
    /// and the dashboard if one is given; `token` (when non-empty) guards
    /// every path.
    pub fn new(
        mut registry: Registry,
        token: Option<String>,
        dashboard: Option<Dashboard>,
    ) -> Self {
        let rss = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the process",
            rss.clone(),
        );
        Self {
            registry,
            rss,
            token: token.filter(|t| !t.is_empty()),
            dashboard,
            cores: Vec::new(),
        }
    }

    /// Makes `/health` judge the core of the cluster `name` too.
    pub fn watch_core(mut self, name: impl Into<String>, heartbeat: super::CoreHeartbeat) -> Self {
        self.cores.push((name.into(), heartbeat));
        self
    }

    /// `/health`: 200 `ok` while every watched core is alive, else 503
    /// with one line per stuck core (`cluster <name>: <why>`).
    fn health(&self) -> Response {
        let now = crate::time::now_ms();
        let stuck: String = self
            .cores
            .iter()
            .filter_map(|(name, h)| Some(format!("cluster {name}: {}\n", h.stuck(now)?)))
            .collect();
        if stuck.is_empty() {
            Response::text(200, "ok\n")
        } else {
            Response::text(503, &stuck)
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render_metrics(&self) -> String {
        if let Some(rss) = super::resident_memory_bytes() {
            self.rss.set(i64::try_from(rss).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The answer to one request head.
    fn respond(&self, head: &str) -> Response {
        let mut lines = head.split("\r\n");
        let mut parts = lines.next().unwrap_or("").split(' ');
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if method != "GET" && method != "HEAD" {
            return Response::text(405, "only GET and HEAD\n");
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        // Liveness probes (Kubernetes, Docker's HEALTHCHECK) cannot send a
        // token: `/health` needs none. It tells only whether a core is stuck.
        if path == "/health" {
            return self.health();
        }
        if let Some(token) = &self.token {
            let bearer = lines
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
                .and_then(|(_, v)| v.trim().strip_prefix("Bearer "));
            let given = bearer.or_else(|| query_value(query, "token"));
            if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
                return Response::text(
                    401,
                    "a token is needed: Authorization: Bearer <token> or ?token=<token>\n",
                );
            }
        }
        match (path, &self.dashboard) {
            ("/metrics", _) => Response {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: self.render_metrics(),
            },
            ("/", Some(_)) => Response {
                status: 200,
                content_type: "text/html; charset=utf-8",
                body: PAGE.to_owned(),
            },
            ("/api/dashboard", Some(d)) => Response {
                status: 200,
                content_type: "application/json",
                body: d.json(query_value(query, "cluster")),
            },
            _ => Response::text(404, "not found\n"),
        }
    }
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of `key` in a query string (no percent-decoding: tokens and
/// cluster names are sent as they are).
fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Refuses a dashboard on an address beyond loopback without a token.
pub fn check_exposure(addr: SocketAddr, token: &str, dashboard: bool) -> Result<(), String> {
    if dashboard && token.is_empty() && !addr.ip().is_loopback() {
        return Err(format!(
            "the dashboard on {addr} (beyond loopback) needs a token: set [metrics] token"
        ));
    }
    Ok(())
}

struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
        }
    }

    fn bytes(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            503 => "Service Unavailable",
            _ => "Bad Request",
        };
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        if self.status == 401 {
            out.push_str("WWW-Authenticate: Bearer\r\n");
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// Serves `admin` on `listener` until `shutdown` completes.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, shutdown: impl Future<Output = ()>) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, dashboard = admin.dashboard.is_some(), "admin endpoint listening");
    }
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            (stream, _peer) = crate::listen::accept(&listener) => {
                // Over the limit: closed unanswered.
                let Ok(permit) = slots.clone().try_acquire_owned() else { continue };
                let admin = admin.clone();
                tasks.spawn(async move {
                    answer(&admin, stream).await;
                    drop(permit);
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.shutdown().await;
}

async fn answer(admin: &Admin, mut stream: TcpStream) {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(Some(h)) => h,
        Ok(None) => {
            let _ = stream
                .write_all(&Response::text(400, "bad request\n").bytes(false))
                .await;
            return;
        }
        Err(_) => return,
    };
    let head_only = head.starts_with("HEAD ");
    let response = admin.respond(&head);
    let bytes = response.bytes(head_only);
    if tokio::time::timeout(REQUEST_TIMEOUT, stream.write_all(&bytes))
        .await
        .is_err()
    {
        debug!("admin client too slow to read its answer");
    }
    let _ = stream.shutdown().await;
}

/// The request head, up to the blank line; `None` if it is longer than
/// [`MAX_REQUEST_HEAD`], not UTF-8, or the connection closes first.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end);
            return String::from_utf8(buf).ok();
        }
        if buf.len() > MAX_REQUEST_HEAD {
            return None;
        }
    }
}
