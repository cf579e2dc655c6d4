//! A web client over real loopback sockets (TLS with the development
//! certificate, WebSocket, web frames), and servers with WebSocket
//! listeners, for the WebSocket tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::RngCore;
use sustenet_proto::datagram::{self, Record};
use sustenet_proto::handshake;
use sustenet_proto::web::{self as wire, Channel, WebHello};
use sustenet_proto::{
    ClientToCluster, ClientToMaster, ClusterToClient, HandshakeError, JoinTarget, Key,
    MasterToClient, Message, Ticket,
};
use sustenet_server::cluster::{self, ClusterConfig, ClusterHandle, command_channel};
use sustenet_server::web::{DevCertificate, TlsIdentity, WebSocketConfig, ensure_dev_certificate};
use sustenet_server::{EchoChat, Plugin};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::GUARD;

/// Any byte stream a test WebSocket runs on.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Ws = WebSocketStream<Box<dyn Io>>;

/// The development certificate, made once per test in `dir`.
pub fn dev_cert(dir: &Path) -> (DevCertificate, TlsIdentity) {
    let dev = ensure_dev_certificate(dir, &["localhost".into(), "127.0.0.1".into()]).unwrap();
    let tls = TlsIdentity::from_pem_files(&dev.cert, &dev.key).unwrap();
    (dev, tls)
}

/// A `wss://` listener on a free loopback port.
pub async fn wss_config(tls: &TlsIdentity) -> WebSocketConfig {
    let port = free_port().await;
    let mut c = WebSocketConfig::new(SocketAddr::from(([127, 0, 0, 1], port)));
    c.tls = Some(tls.clone());
    c
}

/// A free TCP port on loopback (bound, then let go).
pub async fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// Trusts exactly the development certificate.
pub fn tls_client(cert: &Path) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// How a test client reaches a WebSocket listener.
#[derive(Clone)]
pub struct Target {
    pub port: u16,
    /// `Some(cert)`: `wss://` trusting that certificate.
    pub cert: Option<std::path::PathBuf>,
    pub origin: Option<String>,
}

/// Opens a WebSocket (TLS when the target has a certificate), offering the
/// subprotocol; `Err` is the upgrade's refusal.
pub async fn open(t: &Target) -> Result<Ws, String> {
    let tcp = TcpStream::connect(("127.0.0.1", t.port)).await.unwrap();
    let stream: Box<dyn Io> = match &t.cert {
        Some(cert) => {
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            Box::new(
                tls_client(cert)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| e.to_string())?,
            )
        }
        None => Box::new(tcp),
    };
    let scheme = if t.cert.is_some() { "wss" } else { "ws" };
    let mut req = format!("{scheme}://localhost:{}/", t.port)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", wire::SUBPROTOCOL.parse().unwrap());
    if let Some(o) = &t.origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    let (ws, _) = tokio_tungstenite::client_async(req, stream)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// The next binary message; `None` once closed.
pub async fn next_binary(ws: &mut Ws) -> Option<Vec<u8>> {
    loop {
        match tokio::time::timeout(GUARD, ws.next())
            .await
            .expect("web frame in time")
        {
            None | Some(Err(_)) => return None,
            Some(Ok(WsMessage::Binary(b))) => return Some(b.into()),
            Some(Ok(WsMessage::Close(_))) => return None,
            Some(Ok(_)) => {}
        }
    }
}

pub async fn send_frame(ws: &mut Ws, f: Vec<u8>) {
    ws.send(WsMessage::binary(f)).await.unwrap();
}

/// A web client logged in to a master.
pub struct WebMaster {
    pub ws: Ws,
}

impl WebMaster {
    pub async fn connect(t: &Target) -> Self {
        let mut ws = open(t).await.unwrap();
        send_frame(&mut ws, WebHello::Master.encode().unwrap()).await;
        Self { ws }
    }

    pub async fn send(&mut self, m: &ClientToMaster) {
        send_frame(&mut self.ws, wire::reliable_frame(m).unwrap()).await;
    }

    /// The next message that is not a ping (pings are answered).
    pub async fn recv(&mut self) -> MasterToClient {
        loop {
            let f = next_binary(&mut self.ws).await.expect("master message");
            if let Some(e) = handshake::check_refusal(&f) {
                panic!("refused by the master: {e}");
            }
            let Channel::Reliable(m) = Channel::split(&f).unwrap() else {
                panic!("unreliable records from the master")
            };
            match MasterToClient::decode(m).unwrap() {
                MasterToClient::Ping(v) => self.send(&ClientToMaster::Pong(v)).await,
                other => return other,
            }
        }
    }

    pub async fn login(&mut self, name: &str) -> u64 {
        self.send(&ClientToMaster::Login {
            username: name.into(),
            secret: vec![],
        })
        .await;
        match self.recv().await {
            MasterToClient::LoginOk { client_id } => client_id,
            other => panic!("login: {other:?}"),
        }
    }

    pub async fn ticket(&mut self, target: JoinTarget) -> Result<Ticket, sustenet_proto::Goodbye> {
        self.send(&ClientToMaster::Join(target)).await;
        match self.recv().await {
            MasterToClient::Ticket(t) => Ok(t),
            MasterToClient::JoinFailed(g) => Err(g),
            other => panic!("join: {other:?}"),
        }
    }

    pub async fn list(&mut self) -> Vec<sustenet_proto::ClusterInfo> {
        self.send(&ClientToMaster::ListClusters).await;
        match self.recv().await {
            MasterToClient::ClusterList(l) => l,
            other => panic!("list: {other:?}"),
        }
    }
}

/// What a web player heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    Data {
        command: u16,
        payload: Vec<u8>,
        reliable: bool,
    },
    Redirect(Box<Ticket>),
    Disconnect(sustenet_proto::Goodbye),
    Closed,
}

/// A web player on a cluster.
pub struct WebPlayer {
    pub ws: Ws,
    pub player_id: u64,
    pub session_id: u64,
    pub secret: [u8; 32],
    /// Data messages received in the session (for Ack and resume).
    pub received: u64,
    pub attempt: u64,
}

impl WebPlayer {
    /// Presents `ticket` to the cluster on `t`; `Err` is the refusal.
    pub async fn join(t: &Target, ticket: &Ticket) -> Result<Self, HandshakeError> {
        let mut ws = open(t).await.unwrap();
        let secret = *ticket.session_secret;
        let hello = WebHello::Join {
            token: ticket.token.clone(),
            proof: wire::join_proof(&secret),
        };
        send_frame(&mut ws, hello.encode().unwrap()).await;
        let f = next_binary(&mut ws).await.expect("an answer to the join");
        if let Some(e) = handshake::check_refusal(&f) {
            return Err(e);
        }
        let Channel::Reliable(m) = Channel::split(&f).unwrap() else {
            panic!()
        };
        match ClusterToClient::decode(m).unwrap() {
            ClusterToClient::Welcome {
                player_id,
                session_id,
                udp_port,
            } => {
                assert_eq!(udp_port, 0, "no UDP on a WebSocket");
                assert_eq!(player_id, ticket.client_id);
                Ok(Self {
                    ws,
                    player_id,
                    session_id,
                    secret,
                    received: 0,
                    attempt: 0,
                })
            }
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// Reconnects to the session on a new WebSocket; returns what the
    /// cluster says it had received.
    pub async fn resume(&mut self, t: &Target) -> Result<u64, HandshakeError> {
        self.attempt += 1;
        let mut ws = open(t).await.unwrap();
        let hello = WebHello::Resume {
            session_id: self.session_id,
            received: self.received,
            attempt: self.attempt,
            proof: wire::resume_proof(&self.secret, self.session_id, self.received, self.attempt),
        };
        send_frame(&mut ws, hello.encode().unwrap()).await;
        let f = next_binary(&mut ws).await.expect("an answer to the resume");
        if let Some(e) = handshake::check_refusal(&f) {
            return Err(e);
        }
        let Channel::Reliable(m) = Channel::split(&f).unwrap() else {
            panic!()
        };
        match ClusterToClient::decode(m).unwrap() {
            ClusterToClient::Resumed { received } => {
                self.ws = ws;
                Ok(received)
            }
            other => panic!("expected Resumed, got {other:?}"),
        }
    }

    pub async fn send(&mut self, command: u16, payload: &[u8]) {
        let m = ClientToCluster::Data {
            command,
            payload: payload.to_vec(),
        };
        send_frame(&mut self.ws, wire::reliable_frame(&m).unwrap()).await;
    }

    pub async fn send_unreliable(&mut self, command: u16, payload: &[u8]) {
        let plain = datagram::single(&Record::Data {
            command,
            payload: payload.to_vec(),
        })
        .unwrap();
        send_frame(&mut self.ws, wire::unreliable_frame(&plain)).await;
    }

    /// The next data, redirect or ending; pings are answered, data counted
    /// and acknowledged.
    pub async fn recv(&mut self) -> Heard {
        loop {
            let Some(f) = next_binary(&mut self.ws).await else {
                return Heard::Closed;
            };
            match Channel::split(&f).unwrap() {
                Channel::Unreliable(plain) => {
                    if let Some(Record::Data { command, payload }) =
                        datagram::decode_records(plain).unwrap().into_iter().next()
                    {
                        return Heard::Data {
                            command,
                            payload,
                            reliable: false,
                        };
                    }
                }
                Channel::Reliable(m) => match ClusterToClient::decode(m).unwrap() {
                    ClusterToClient::Ping(v) => {
                        let f = wire::reliable_frame(&ClientToCluster::Pong(v)).unwrap();
                        send_frame(&mut self.ws, f).await;
                    }
                    ClusterToClient::Data { command, payload } => {
                        self.received += 1;
                        let f = wire::reliable_frame(&ClientToCluster::Ack(self.received)).unwrap();
                        send_frame(&mut self.ws, f).await;
                        return Heard::Data {
                            command,
                            payload,
                            reliable: true,
                        };
                    }
                    ClusterToClient::Redirect(t) => return Heard::Redirect(Box::new(t)),
                    ClusterToClient::Disconnect(g) => return Heard::Disconnect(g),
                    _ => {}
                },
            }
        }
    }

    /// Waits for data with `command` and `payload`.
    pub async fn expect_data(&mut self, command: u16, payload: &[u8], reliable: bool) {
        loop {
            match self.recv().await {
                Heard::Data {
                    command: c,
                    payload: p,
                    reliable: r,
                } if c == command && p == payload && r == reliable => return,
                Heard::Data { .. } => {}
                other => panic!("waiting for data, got {other:?}"),
            }
        }
    }

    /// Sends unreliable echoes until one comes back.
    pub async fn unreliable_echo(&mut self, payload: &[u8]) {
        let deadline = tokio::time::Instant::now() + GUARD;
        loop {
            assert!(tokio::time::Instant::now() < deadline, "no unreliable echo");
            self.send_unreliable(EchoChat::ECHO, payload).await;
            let wait = tokio::time::sleep(Duration::from_millis(100));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    _ = &mut wait => break,
                    h = self.recv() => match h {
                        Heard::Data { reliable: false, payload: p, .. } if p == payload => return,
                        Heard::Data { .. } => {}
                        other => panic!("waiting for an unreliable echo, got {other:?}"),
                    }
                }
            }
        }
    }
}

/// A cluster with a WebSocket listener and a handle.
pub struct WebCluster {
    pub id: u64,
    pub ws_port: u16,
    pub handle: ClusterHandle,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<()>,
}

impl WebCluster {
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }
}

/// Starts `plugin` on a cluster with `ws` as its WebSocket listener.
pub async fn start_web_cluster(
    mut config: ClusterConfig,
    key: Key,
    ws: WebSocketConfig,
    plugin: impl Plugin,
) -> WebCluster {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ws_port = ws.bind.port();
    config.websocket = Some(ws);
    let id = *config
        .cluster_id
        .get_or_insert_with(|| rand::rng().next_u64() >> 1);
    let (handle, commands) = command_channel(65_536);
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        cluster::run_with_handle(tcp, udp, config, key, plugin, commands, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    WebCluster {
        id,
        ws_port,
        handle,
        stop: Some(tx),
        task,
    }
}
