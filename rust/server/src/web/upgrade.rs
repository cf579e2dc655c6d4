//! From an accepted TCP connection to a WebSocket: admission, TLS, the
//! upgrade request and its checks, all within the handshake deadlines.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sustenet_proto::DisconnectReason;
use sustenet_proto::web::SUBPROTOCOL;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig as WsLimits;
use tracing::{info, warn};

use super::link::{WebLink, WebRx, WebTx};
use super::stream::WebStream;
use super::{WebSocketConfig, origin_refusal};
use crate::config::Limits;
use crate::handshake_gate::{HandshakeGate, HandshakePermit};

/// A connection that became a WebSocket, still holding its handshake slot
/// (kept until the hello is answered).
pub(crate) struct Upgraded {
    pub(crate) link: WebLink,
    pub(crate) permit: HandshakePermit,
    /// When the whole handshake (TLS, upgrade, hello) must be done:
    /// `handshake_timeout_ms` after the connection was accepted.
    pub(crate) deadline: tokio::time::Instant,
}

impl Upgraded {
    /// What is left of the handshake deadline for the hello.
    pub(crate) fn hello_time(&self) -> Duration {
        self.deadline
            .saturating_duration_since(tokio::time::Instant::now())
    }
}

/// The WebSocket limits of a listener: frames and messages up to
/// `max_message`, small read buffers, a bounded write buffer.
fn ws_limits(config: &WebSocketConfig) -> WsLimits {
    WsLimits::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(
            config
                .max_message
                .saturating_mul(2)
                .saturating_add(64 * 1024),
        )
        .max_message_size(Some(config.max_message))
        .max_frame_size(Some(config.max_message))
}

/// Answers a connection refused before its upgrade with a short HTTP
/// response (what a browser can show), waiting at most a second.
async fn refuse_http(mut tcp: TcpStream, status: &str, why: &str) {
    let body = format!("{why}\n");
    let text = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(text.as_bytes())).await;
}

/// Checks an upgrade request: an allowed origin and the subprotocol.
fn check_request(config: &WebSocketConfig, req: &Request) -> Result<(), (StatusCode, String)> {
    let origin = req.headers().get("origin").and_then(|v| v.to_str().ok());
    if let Some(why) = origin_refusal(config, origin) {
        return Err((StatusCode::FORBIDDEN, why));
    }
    let offered = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    if !offered {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("offer the WebSocket subprotocol {SUBPROTOCOL}"),
        ));
    }
    Ok(())
}

/// Admits `tcp` and upgrades it, or refuses it (logged) and returns `None`.
/// Each refusal is passed to `refused` (for the handshake metric) with the
/// reason the native listeners count it under: a full handshake pool is
/// `TooManyHandshakes`, no first bytes or no upgrade in time is
/// `HandshakeTimeout`, an upgrade request the checks refuse (Origin,
/// subprotocol) is `ProtocolViolation`. A connection that fails on its own
/// (closed, not TLS, not HTTP) is dropped without being counted.
pub(crate) async fn upgrade(
    tcp: TcpStream,
    peer: SocketAddr,
    config: &WebSocketConfig,
    gate: &Arc<HandshakeGate>,
    limits: &Limits,
    refused: &(dyn Fn(DisconnectReason) + Sync),
) -> Option<Upgraded> {
    let _ = tcp.set_nodelay(true);
    let deadline = tokio::time::Instant::now() + limits.handshake_timeout();
    let permit = match gate.admit(peer.ip()) {
        Ok(p) => p,
        Err(why) => {
            warn!("refused: {}", why.message());
            refused(DisconnectReason::TooManyHandshakes);
            refuse_http(tcp, "503 Service Unavailable", why.message()).await;
            return None;
        }
    };
    if !gate.first_bytes(&tcp).await {
        warn!("dropped: no first bytes in time");
        refused(DisconnectReason::HandshakeTimeout);
        return None;
    }
    let checks_refused = std::sync::atomic::AtomicBool::new(false);
    let steps = async {
        let stream = match &config.tls {
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
                let s = acceptor
                    .accept(tcp)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {e}"))?;
                WebStream::tls(s, config.max_handshake_bytes)
            }
            None => WebStream::plain(tcp, config.max_handshake_bytes),
        };
        // The callback's type is tungstenite's; its error is an HTTP response.
        #[allow(clippy::result_large_err)]
        let check = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
            match check_request(config, req) {
                Ok(()) => {
                    resp.headers_mut().insert(
                        "sec-websocket-protocol",
                        HeaderValue::from_static(SUBPROTOCOL),
                    );
                    Ok(resp)
                }
                Err((status, why)) => {
                    info!("upgrade refused: {why}");
                    checks_refused.store(true, std::sync::atomic::Ordering::Relaxed);
                    let mut e = ErrorResponse::new(Some(why));
                    *e.status_mut() = status;
                    Err(e)
                }
            }
        };
        tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(ws_limits(config)))
            .await
            .map_err(|e| format!("WebSocket upgrade failed: {e}"))
    };
    match tokio::time::timeout_at(deadline, steps).await {
        Ok(Ok(mut ws)) => {
            ws.get_mut().lift_limit();
            Some(Upgraded {
                link: WebLink::new(ws),
                permit,
                deadline,
            })
        }
        Ok(Err(why)) => {
            warn!("dropped: {why}");
            if checks_refused.load(std::sync::atomic::Ordering::Relaxed) {
                refused(DisconnectReason::ProtocolViolation);
            }
            None
        }
        Err(_) => {
            warn!("dropped: no WebSocket upgrade within the handshake timeout");
            refused(DisconnectReason::HandshakeTimeout);
            None
        }
    }
}

/// A WebSocket whose hello arrived: its halves, the hello, and the
/// handshake slot (kept until the hello is answered).
pub(crate) struct Greeted {
    pub(crate) tx: WebTx,
    pub(crate) rx: WebRx,
    pub(crate) hello: Vec<u8>,
    pub(crate) permit: HandshakePermit,
}

/// [`upgrade`], then [`read_hello`] within what is left of the handshake
/// deadline; the link's frames time out after `limits.timeout()`. What
/// masters and clusters do with every web connection before its hello is
/// parsed; `None` when refused (counted through `refused`; a refused hello's
/// link lingers for the client's close, its handshake slot freed) or closed.
pub(crate) async fn accept_hello(
    tcp: TcpStream,
    peer: SocketAddr,
    config: &WebSocketConfig,
    gate: &Arc<HandshakeGate>,
    limits: &Limits,
    refused: &(dyn Fn(DisconnectReason) + Sync),
) -> Option<Greeted> {
    let up = upgrade(tcp, peer, config, gate, limits, refused).await?;
    let hello_time = up.hello_time();
    let (mut tx, mut rx) = up.link.split(limits.timeout());
    let Some(hello) = read_hello(&mut rx, &mut tx, hello_time, refused).await else {
        drop(up.permit);
        rx.linger().await;
        return None;
    };
    Some(Greeted {
        tx,
        rx,
        hello,
        permit: up.permit,
    })
}

/// Reads the hello, the first web frame, within `within`; a bad frame or
/// none in time is refused on the link and passed to `refused`. `None`:
/// refused, or the client closed first (not counted); the caller then
/// frees its handshake slot and lets the link linger.
pub(crate) async fn read_hello(
    rx: &mut WebRx,
    tx: &mut WebTx,
    within: Duration,
    refused: &(dyn Fn(DisconnectReason) + Sync),
) -> Option<Vec<u8>> {
    match rx.recv_within(within).await {
        Ok(Ok(Some(f))) => Some(f),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            warn!("dropped: {e}");
            refused(e.reason());
            tx.refuse(e.reason(), &e.to_string()).await;
            None
        }
        Err(()) => {
            warn!("dropped: no hello within the handshake timeout");
            refused(DisconnectReason::HandshakeTimeout);
            tx.refuse(DisconnectReason::HandshakeTimeout, "no hello in time")
                .await;
            None
        }
    }
}
