//! WebSocket listeners for browser players, beside the TCP/UDP ones
//! (docs/protocol.md §17, docs/web.md).
//!
//! A connection is admitted like any other (the handshake pool, the first
//! bytes within `first_byte_timeout_ms`), then within
//! `handshake_timeout_ms` it must finish TLS (when the listener has a
//! certificate) and a WebSocket upgrade of at most `max_handshake_bytes`
//! that offers the `sustenet.v3` subprotocol from an allowed `Origin`.
//! After that each binary message is one web frame
//! ([`sustenet_proto::web`]) of at most `max_message_bytes`; anything else
//! closes the connection with a reason.
//!
//! - `stream.rs`: plain or TLS bytes, with the upgrade's byte cap;
//! - `tls.rs`: certificates from PEM files, the development certificate;
//! - `upgrade.rs`: admission, TLS, the upgrade and its checks;
//! - `link.rs`: one web frame in, one out, and refusals.

mod link;
mod stream;
mod tls;
mod upgrade;

use std::net::{IpAddr, SocketAddr};

pub use tls::{DevCertificate, TlsIdentity, ensure_dev_certificate};

pub(crate) use link::{WebError, WebRx, WebTx, close_code};
pub(crate) use upgrade::{Greeted, accept_hello};

use crate::config::ConfigError;
use crate::error::ServerError;

/// A WebSocket listener's settings (`[master] websocket_port`,
/// `[cluster] websocket_port` and the `[websocket]` section).
#[derive(Debug, Clone)]
pub struct WebSocketConfig {
    /// Where to listen.
    pub bind: SocketAddr,
    /// The port web clients are told (a cluster's, in the master's web
    /// list); 0 means the port it listens on (set it behind a proxy).
    pub public_port: u16,
    /// Whether web clients are told to use `wss://` when the listener
    /// itself has no certificate (a TLS-terminating proxy in front).
    pub public_tls: bool,
    /// The certificate for `wss://`; `None` serves `ws://`, which is only
    /// allowed on a loopback address unless `insecure`.
    pub tls: Option<TlsIdentity>,
    /// Origins (`scheme://host[:port]`) whose pages may connect; `*` allows
    /// every origin. Empty: only pages from a loopback host. Clients that
    /// send no `Origin` (not browsers) are not checked.
    pub allowed_origins: Vec<String>,
    /// Allows `ws://` without TLS on a non-loopback address and from
    /// non-loopback origins (behind a TLS-terminating proxy, or a closed
    /// network).
    pub insecure: bool,
    /// Largest web frame accepted, in bytes (a larger message, or a larger
    /// single WebSocket frame, closes the connection).
    pub max_message: usize,
    /// Most bytes of the WebSocket upgrade request (after TLS).
    pub max_handshake_bytes: usize,
    /// Datagrams kept for a web player while its socket is busy; past that
    /// the oldest is dropped.
    pub unreliable_queue: usize,
}

impl WebSocketConfig {
    /// Default largest web frame: the default `max_frame`.
    pub const DEFAULT_MAX_MESSAGE: usize = 65_536;
    /// Default upgrade request limit.
    pub const DEFAULT_MAX_HANDSHAKE_BYTES: usize = 8_192;
    /// Default unreliable queue, in datagrams (of at most 1,200 bytes).
    pub const DEFAULT_UNRELIABLE_QUEUE: usize = 64;

    /// A listener on `bind` with default limits, no TLS and no origins.
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            public_port: 0,
            public_tls: false,
            tls: None,
            allowed_origins: Vec::new(),
            insecure: false,
            max_message: Self::DEFAULT_MAX_MESSAGE,
            max_handshake_bytes: Self::DEFAULT_MAX_HANDSHAKE_BYTES,
            unreliable_queue: Self::DEFAULT_UNRELIABLE_QUEUE,
        }
    }

    /// Refuses `ws://` on a non-loopback address unless `insecure`, and
    /// limits out of range.
    pub fn check(&self) -> Result<(), ServerError> {
        let invalid = |key: &str, message: String| {
            ServerError::Config(ConfigError::Invalid {
                path: "<websocket>".into(),
                key: key.into(),
                message,
            })
        };
        if self.tls.is_none() && !self.insecure && !self.bind.ip().is_loopback() {
            return Err(invalid(
                "websocket.cert_file",
                format!(
                    "is needed to listen for WebSockets on {} (ws:// without TLS is for loopback development only; set `insecure = true` behind a TLS proxy)",
                    self.bind.ip()
                ),
            ));
        }
        if !(1024..=16_777_216).contains(&self.max_message) {
            return Err(invalid(
                "websocket.max_message_bytes",
                "must be between 1024 and 16777216".into(),
            ));
        }
        if !(1024..=65_536).contains(&self.max_handshake_bytes) {
            return Err(invalid(
                "websocket.max_handshake_bytes",
                "must be between 1024 and 65536".into(),
            ));
        }
        if !(1..=4096).contains(&self.unreliable_queue) {
            return Err(invalid(
                "websocket.unreliable_queue",
                "must be between 1 and 4096".into(),
            ));
        }
        Ok(())
    }

    /// Checks the settings ([`WebSocketConfig::check`]) and binds the
    /// listener; a bind that fails reads as the other ports' do
    /// (`cannot listen on WebSocket <address>: <reason> (is another server
    /// using that port?)`).
    pub async fn bind_listener(&self) -> Result<tokio::net::TcpListener, ServerError> {
        self.check()?;
        tokio::net::TcpListener::bind(self.bind)
            .await
            .map_err(|e| crate::bind::BindError::at("WebSocket", self.bind, e).into())
    }

    /// The listener a server serves for `config`: `bound` (bound already by
    /// [`WebSocketConfig::bind_listener`], so that a process binds all its
    /// ports before it starts any server), else one bound now; none without
    /// `config`. A listener given without settings is refused.
    pub(crate) async fn listener_for(
        config: Option<&Self>,
        bound: Option<tokio::net::TcpListener>,
    ) -> Result<Option<tokio::net::TcpListener>, ServerError> {
        match (config, bound) {
            (None, None) => Ok(None),
            (None, Some(_)) => Err(ServerError::Config(ConfigError::Invalid {
                path: "<websocket>".into(),
                key: "websocket".into(),
                message: "a WebSocket listener was given without its settings".into(),
            })),
            (Some(ws), Some(l)) => {
                ws.check()?;
                Ok(Some(l))
            }
            (Some(ws), None) => Ok(Some(ws.bind_listener().await?)),
        }
    }

    /// Whether web clients are told to use TLS.
    pub fn serves_tls(&self) -> bool {
        self.tls.is_some() || self.public_tls
    }
}

/// Whether an `Origin` value names a loopback host (`localhost`,
/// `*.localhost`, 127.0.0.0/8, `[::1]`).
pub(crate) fn is_loopback_origin(origin: &str) -> bool {
    let Some((_, rest)) = origin.split_once("://") else {
        return false;
    };
    let host = if let Some(v6) = rest.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        rest.split([':', '/']).next().unwrap_or("")
    };
    let host = host.to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why an `Origin` is refused, or `None` when it may connect.
pub(crate) fn origin_refusal(config: &WebSocketConfig, origin: Option<&str>) -> Option<String> {
    let origin = origin?;
    let wanted = origin.trim_end_matches('/');
    let loopback = is_loopback_origin(wanted);
    if config.tls.is_none() && !config.insecure && !loopback {
        return Some(format!(
            "origin {origin} refused: ws:// without TLS is for loopback development only"
        ));
    }
    let listed = config
        .allowed_origins
        .iter()
        .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(wanted));
    if listed || (config.allowed_origins.is_empty() && loopback) {
        None
    } else {
        Some(format!("origin {origin} is not in allowed_origins"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[tokio::test]
    async fn a_listener_is_served_only_with_its_settings() {
        let bound = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = bound.local_addr().unwrap();
        // Bound already: served as given, not bound again (its port is taken).
        let ws = WebSocketConfig::new(addr);
        let l = WebSocketConfig::listener_for(Some(&ws), Some(bound))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(l.local_addr().unwrap(), addr);
        // Without settings: refused, not served with made-up ones.
        let e = WebSocketConfig::listener_for(None, Some(l))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("without its settings"), "{e}");
        assert!(
            WebSocketConfig::listener_for(None, None)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn loopback_origins() {
        for o in [
            "http://localhost",
            "https://localhost:8080",
            "http://127.0.0.1:3000",
            "http://127.9.9.9",
            "http://[::1]:80",
            "http://game.localhost",
        ] {
            assert!(is_loopback_origin(o), "{o}");
        }
        for o in [
            "null",
            "https://example.com",
            "http://localhost.example.com",
            "http://10.0.0.1",
            "localhost",
        ] {
            assert!(!is_loopback_origin(o), "{o}");
        }
    }

    #[test]
    fn origins_are_checked_against_the_list_and_plain_text_against_loopback() {
        let mut c = WebSocketConfig::new("127.0.0.1:0".parse().unwrap());
        assert_eq!(origin_refusal(&c, None), None, "not a browser");
        assert_eq!(origin_refusal(&c, Some("http://localhost:8000")), None);
        assert!(origin_refusal(&c, Some("https://game.example")).is_some());
        c.allowed_origins = vec!["https://game.example".into()];
        assert!(
            origin_refusal(&c, Some("https://game.example")).is_some(),
            "ws:// from a non-loopback origin"
        );
        c.insecure = true;
        assert_eq!(origin_refusal(&c, Some("https://game.example/")), None);
        assert!(origin_refusal(&c, Some("https://evil.example")).is_some());
        assert!(
            origin_refusal(&c, Some("http://localhost")).is_some(),
            "a list replaces the loopback default"
        );
    }

    #[test]
    fn plain_text_is_refused_off_loopback() {
        let c = WebSocketConfig::new("0.0.0.0:0".parse().unwrap());
        assert!(c.check().is_err());
        let mut c = WebSocketConfig::new("127.0.0.1:0".parse().unwrap());
        assert!(c.check().is_ok());
        c.max_message = 10;
        assert!(c.check().is_err());
    }
}
