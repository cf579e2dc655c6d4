//! Bad input on the WebSocket listeners, over real loopback sockets: bytes
//! that are not a WebSocket upgrade, an upgrade that never ends or is too
//! long, huge and fragmented messages, text, an unknown or non-loopback
//! `Origin` on `ws://`, and many idle sockets. Each is refused or closed,
//! and the listener still serves a good client afterwards (no slot leaks).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod web_common;

use common::*;
use sustenet_proto::web::{SUBPROTOCOL, WebHello};
use sustenet_proto::{DisconnectReason, HandshakeError, handshake};
use sustenet_server::EchoChat;
use sustenet_server::Limits;
use sustenet_server::web::WebSocketConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use web_common::*;

const MAX_MESSAGE: usize = 4096;

/// A master and one cluster whose `ws://` listener (loopback) has small
/// limits: 4 KiB messages, 1 KiB upgrade requests, 8 handshake slots.
async fn setup(tweak: impl FnOnce(&mut WebSocketConfig)) -> (RunningMaster, WebCluster) {
    setup_with(tweak, |_| {}).await
}

async fn setup_with(
    tweak: impl FnOnce(&mut WebSocketConfig),
    limits: impl FnOnce(&mut Limits),
) -> (RunningMaster, WebCluster) {
    init_tracing();
    let keys = keys(&["c"]);
    let master = start_master(&keys).await;
    let mut cfg = cluster_config(master.addr, "c", "c", 0);
    cfg.limits = Limits {
        max_handshakes: 8,
        max_handshakes_per_address: 8,
        ..fast_limits()
    };
    limits(&mut cfg.limits);
    let mut ws = WebSocketConfig::new(([127, 0, 0, 1], free_port().await).into());
    ws.max_message = MAX_MESSAGE;
    ws.max_handshake_bytes = 1024;
    tweak(&mut ws);
    let cluster = start_web_cluster(cfg, keys["c"].clone(), ws, EchoChat).await;
    // Registered means listening: the WebSocket listener is bound first.
    wait_for_clusters(&master, 1).await;
    (master, cluster)
}

/// Reads until the server closes the connection; returns what it sent.
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(GUARD, s.read(&mut buf))
            .await
            .expect("closed in time")
        {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

fn upgrade_request(port: u16, origin: Option<&str>, protocol: bool) -> String {
    let mut r = format!(
        "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if protocol {
        r += &format!("Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n");
    }
    if let Some(o) = origin {
        r += &format!("Origin: {o}\r\n");
    }
    r + "\r\n"
}

/// Opens `n` sockets at once that send nothing; what the server sent each
/// before closing it.
async fn silent_sockets(port: u16, n: usize) -> Vec<String> {
    let mut idle = Vec::new();
    for _ in 0..n {
        idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    let mut answers = Vec::new();
    for mut s in idle {
        answers.push(String::from_utf8_lossy(&until_closed(&mut s).await).to_string());
    }
    answers
}

/// A raw upgraded connection (the 101 answer read).
async fn raw_ws(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(upgrade_request(port, None, true).as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "upgrade answer");
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    s
}

/// A masked client frame: `opcode`, FIN bit, payload; `announce` overrides
/// the length field (a frame that claims more than it carries).
fn frame(opcode: u8, fin: bool, payload: &[u8], announce: Option<u64>) -> Vec<u8> {
    let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
    let len = announce.unwrap_or(payload.len() as u64);
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&len.to_be_bytes());
    }
    let mask = [1u8, 2, 3, 4];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Whether raw server bytes hold a `Reject` frame with `reason`.
fn refused_for(answer: &[u8], reason: DisconnectReason) -> bool {
    let reject = handshake::reject_frame(reason, "");
    answer.windows(8).any(|w| w == &reject[..8])
}

/// A good web client still gets an answer (a refusal of its made-up token);
/// returns its WebSocket, after the refusal.
async fn still_serves(port: u16) -> Ws {
    let mut ws = open(&Target {
        port,
        cert: None,
        origin: Some("http://localhost:8000".into()),
    })
    .await
    .unwrap();
    let hello = WebHello::Join {
        token: vec![1; 40],
        proof: [0; 32],
    };
    send_frame(&mut ws, hello.encode().unwrap()).await;
    let f = next_binary(&mut ws).await.expect("an answer");
    assert!(
        matches!(
            handshake::check_refusal(&f),
            Some(HandshakeError::Rejected {
                reason: DisconnectReason::TokenInvalid,
                ..
            })
        ),
        "{:?}",
        handshake::check_refusal(&f)
    );
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_are_not_a_websocket_are_refused() {
    let (master, cluster) = setup(|_| {}).await;
    let port = cluster.ws_port;
    // A native hello, garbage, and an HTTP request that is not an upgrade.
    let hello = WebHello::Master.encode().unwrap();
    let mut native = (hello.len() as u32).to_le_bytes().to_vec();
    native.extend_from_slice(&hello);
    for bytes in [
        native,
        b"\x00\x01garbage\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(&bytes).await.unwrap();
        let answer = until_closed(&mut s).await;
        assert!(
            !String::from_utf8_lossy(&answer).contains(" 101 "),
            "not upgraded"
        );
    }
    // No subprotocol: 400.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(upgrade_request(port, None, false).as_bytes())
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&until_closed(&mut s).await).to_string();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    still_serves(port).await;
    cluster.stop().await;
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_oversized_upgrades_are_cut() {
    let (master, cluster) = setup(|_| {}).await;
    let port = cluster.ws_port;
    // Starts an upgrade and never finishes it: closed at the handshake timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut slow).await;
    assert!(answer.is_empty(), "no answer to half a request");
    // A request over max_handshake_bytes (1 KiB): closed without an upgrade.
    let mut big = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let padding = format!("X-Padding: {}\r\n", "a".repeat(4000));
    let req = upgrade_request(port, None, true).replace("\r\n\r\n", &format!("\r\n{padding}\r\n"));
    let _ = big.write_all(req.as_bytes()).await;
    let answer = until_closed(&mut big).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains(" 101 "),
        "not upgraded"
    );
    // Upgraded, then silent: closed with a HandshakeTimeout refusal.
    let mut idle = open(&Target {
        port,
        cert: None,
        origin: None,
    })
    .await
    .unwrap();
    let f = next_binary(&mut idle).await.expect("a refusal");
    assert!(matches!(
        handshake::check_refusal(&f),
        Some(HandshakeError::Rejected {
            reason: DisconnectReason::HandshakeTimeout,
            ..
        })
    ));
    still_serves(port).await;
    cluster.stop().await;
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_fragmented_and_text_messages() {
    let (master, cluster) = setup(|_| {}).await;
    let port = cluster.ws_port;
    // A frame that announces 1 GiB: closed as soon as its header is in.
    let mut s = raw_ws(port).await;
    s.write_all(&frame(0x2, true, &[], Some(1 << 30)))
        .await
        .unwrap();
    assert!(refused_for(
        &until_closed(&mut s).await,
        DisconnectReason::ProtocolViolation
    ));
    // A message of max_message + 1 bytes, whole.
    let mut s = raw_ws(port).await;
    let _ = s
        .write_all(&frame(0x2, true, &vec![0; MAX_MESSAGE + 1], None))
        .await;
    assert!(refused_for(
        &until_closed(&mut s).await,
        DisconnectReason::ProtocolViolation
    ));
    // The same in three fragments, each under the limit: the whole counts.
    let mut s = raw_ws(port).await;
    let part = vec![0u8; MAX_MESSAGE / 2];
    let _ = s.write_all(&frame(0x2, false, &part, None)).await;
    let _ = s.write_all(&frame(0x0, false, &part, None)).await;
    let _ = s.write_all(&frame(0x0, true, &part, None)).await;
    assert!(refused_for(
        &until_closed(&mut s).await,
        DisconnectReason::ProtocolViolation
    ));
    // A fragmented hello within the limit is joined and answered.
    let mut s = raw_ws(port).await;
    let hello = WebHello::Join {
        token: vec![1; 40],
        proof: [0; 32],
    }
    .encode()
    .unwrap();
    let (a, b) = hello.split_at(10);
    s.write_all(&frame(0x2, false, a, None)).await.unwrap();
    s.write_all(&frame(0x0, true, b, None)).await.unwrap();
    assert!(
        refused_for(&until_closed(&mut s).await, DisconnectReason::TokenInvalid),
        "a Reject(TokenInvalid) answers the joined hello"
    );
    // A native hello inside a WebSocket: refused with ProtocolViolation.
    let mut ws = open(&Target {
        port,
        cert: None,
        origin: None,
    })
    .await
    .unwrap();
    let mut native = WebHello::Master.encode().unwrap();
    native[6] = 0x03; // ClientClusterHello
    send_frame(&mut ws, native).await;
    let f = next_binary(&mut ws).await.expect("a refusal");
    assert!(matches!(
        handshake::check_refusal(&f),
        Some(HandshakeError::Rejected {
            reason: DisconnectReason::ProtocolViolation,
            ..
        })
    ));
    // A text message: closed with ProtocolViolation.
    let mut ws = open(&Target {
        port,
        cert: None,
        origin: None,
    })
    .await
    .unwrap();
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::text("hello"))
        .await
        .unwrap();
    let f = next_binary(&mut ws).await.expect("a refusal");
    assert!(matches!(
        handshake::check_refusal(&f),
        Some(HandshakeError::Rejected {
            reason: DisconnectReason::ProtocolViolation,
            ..
        })
    ));
    still_serves(port).await;
    cluster.stop().await;
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_are_checked() {
    let (master, cluster) =
        setup(|ws| ws.allowed_origins = vec!["https://game.example".into()]).await;
    let port = cluster.ws_port;
    for origin in [
        "https://evil.example",
        "https://game.example",
        "http://localhost:8000",
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(upgrade_request(port, Some(origin), true).as_bytes())
            .await
            .unwrap();
        let answer = String::from_utf8_lossy(&until_closed(&mut s).await).to_string();
        // game.example is listed, but this listener is ws:// (no TLS): a
        // non-loopback page may not use it; localhost is not listed.
        assert!(answer.starts_with("HTTP/1.1 403"), "{origin}: {answer}");
    }
    // No Origin (not a browser): not checked.
    let mut ws = open(&Target {
        port,
        cert: None,
        origin: None,
    })
    .await
    .unwrap();
    send_frame(
        &mut ws,
        WebHello::Join {
            token: vec![1; 40],
            proof: [0; 32],
        }
        .encode()
        .unwrap(),
    )
    .await;
    assert!(next_binary(&mut ws).await.is_some());
    cluster.stop().await;
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_idle_sockets_are_refused_then_released() {
    // A first-byte deadline as long as the handshake's, so that twelve
    // silent sockets are all in their handshake at once.
    let (master, cluster) = setup_with(
        |_| {},
        |l| {
            l.first_byte_timeout_ms = 5_000;
            l.handshake_timeout_ms = 5_000;
        },
    )
    .await;
    let port = cluster.ws_port;
    // Twelve silent sockets: eight take every handshake slot, the others
    // are refused at once with 503.
    let mut refused = 0;
    for answer in silent_sockets(port, 12).await {
        if answer.is_empty() {
            continue; // held a slot until the first-byte deadline
        }
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("too many pending handshakes"), "{answer}");
        refused += 1;
    }
    assert_eq!(refused, 4, "twelve sockets, eight slots");
    // The silent ones were closed at the first-byte deadline, freeing their slots.
    still_serves(port).await;
    cluster.stop().await;
    master.stop().await;
}

/// Whether a web frame is a `Reject` with `reason`.
fn is_refusal(f: &[u8], reason: DisconnectReason) -> bool {
    matches!(handshake::check_refusal(f), Some(HandshakeError::Rejected { reason: r, .. }) if r == reason)
}

/// `sustenet_master_handshakes_total{result}` as the master's registry reads now.
fn master_handshakes(registry: &prometheus_client::registry::Registry, result: &str) -> u64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    let key = format!("sustenet_master_handshakes_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_counts_web_handshake_refusals_as_it_counts_tcp_ones() {
    init_tracing();
    let mut cfg = master_config();
    cfg.limits.max_handshakes = 2;
    cfg.limits.max_handshakes_per_address = 2;
    cfg.limits.first_byte_timeout_ms = 300;
    let ws = WebSocketConfig::new(([127, 0, 0, 1], free_port().await).into());
    let port = ws.bind.port();
    cfg.websocket = Some(ws);
    let mut registry = prometheus_client::registry::Registry::default();
    cfg.metrics.register(&mut registry);
    let master = start_master_on(
        "127.0.0.1:0",
        sustenet_proto::MasterKeypair::generate().unwrap(),
        Default::default(),
        cfg,
    )
    .await;
    let target = Target {
        port,
        cert: None,
        origin: None,
    };
    // A good client: one "ok" (the listener may need a moment to bind).
    let deadline = tokio::time::Instant::now() + GUARD;
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the master's WebSocket listener"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    WebMaster::connect(&target).await.login("ann").await;
    assert_eq!(master_handshakes(&registry, "ok"), 1);

    // A cluster's hello sent to the master: refused, protocol_violation.
    let mut ws = open(&target).await.unwrap();
    let join = WebHello::Join {
        token: vec![1; 40],
        proof: [0; 32],
    };
    send_frame(&mut ws, join.encode().unwrap()).await;
    let f = next_binary(&mut ws).await.expect("a refusal");
    assert!(is_refusal(&f, DisconnectReason::ProtocolViolation));
    assert_eq!(master_handshakes(&registry, "protocol_violation"), 1);

    // An upgrade from a page the listener does not serve: 403, protocol_violation.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(upgrade_request(port, Some("https://evil.example"), true).as_bytes())
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&until_closed(&mut s).await).to_string();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert_eq!(master_handshakes(&registry, "protocol_violation"), 2);

    // Upgraded, then no hello within the handshake timeout: handshake_timeout.
    let mut ws = open(&target).await.unwrap();
    let f = next_binary(&mut ws).await.expect("a refusal");
    assert!(is_refusal(&f, DisconnectReason::HandshakeTimeout));
    assert_eq!(master_handshakes(&registry, "handshake_timeout"), 1);

    // Three silent sockets for two handshake slots: one refused at once
    // (too_many_handshakes), two cut at the first-byte deadline (handshake_timeout).
    let answers = silent_sockets(port, 3).await;
    let full = answers.iter().filter(|a| a.starts_with("HTTP/1.1 503"));
    assert_eq!(full.count(), 1, "{answers:?}");
    assert_eq!(master_handshakes(&registry, "too_many_handshakes"), 1);
    assert_eq!(master_handshakes(&registry, "handshake_timeout"), 3);
    assert_eq!(master_handshakes(&registry, "ok"), 1);
    master.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_closes_with_4000_plus_its_reason() {
    let (master, cluster) = setup(|_| {}).await;
    let mut ws = still_serves(cluster.ws_port).await;
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let close = loop {
        match tokio::time::timeout(GUARD, ws.next())
            .await
            .expect("a close in time")
        {
            Some(Ok(Message::Close(c))) => break c.expect("a close frame with a code"),
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    };
    let code = u16::from(close.code);
    assert_eq!(
        code,
        4000 + u16::from(DisconnectReason::TokenInvalid.code())
    );
    assert!(!close.reason.is_empty());
    cluster.stop().await;
    master.stop().await;
}
