//! Connections done by hand: raw frames, a client-cluster or client-master
//! session without the client library, a cluster registered by hand, and
//! connect tokens made with a cluster's key.

use std::net::SocketAddr;

use rand::RngCore;
use sustenet_net::{FrameReader, SealedReader, SealedWriter, write_frame};
use sustenet_proto::crypto::{StreamOpener, StreamSealer};
use sustenet_proto::handshake::{self, ClientMasterInitiator};
use sustenet_proto::{
    ClientSessionKeys, ClientToCluster, ClientToMaster, ClusterToClient, ConnectToken,
    DisconnectReason, Goodbye, HandshakeError, JoinTarget, Key, MasterToClient, Message, PublicKey,
    Ticket,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::*;

/// A connect token made by hand with a cluster's key; returns the sealed
/// token and its session secret.
pub fn craft_token(
    key: &Key,
    cluster_id: u64,
    client_id: u64,
    expires_at_ms: u64,
) -> (Vec<u8>, [u8; 32]) {
    let mut rng = rand::rng();
    let mut token_id = [0u8; 16];
    rng.fill_bytes(&mut token_id);
    let mut session_secret = [0u8; 32];
    rng.fill_bytes(&mut session_secret);
    let t = ConnectToken {
        client_id,
        cluster_id,
        token_id,
        expires_at_ms,
        session_secret: session_secret.into(),
        user_data: b"crafted".to_vec(),
    };
    (t.seal(key, &mut rng).unwrap(), session_secret)
}

/// A raw TCP connection speaking frames.
pub struct Raw {
    pub frames: FrameReader<OwnedReadHalf>,
    pub wr: OwnedWriteHalf,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let (rd, wr) = s.into_split();
        Raw {
            frames: FrameReader::new(rd, 16 * 1024 * 1024),
            wr,
        }
    }

    /// Writes one frame.
    pub async fn send(&mut self, body: &[u8]) {
        write_frame(&mut self.wr, body, usize::MAX).await.unwrap();
    }

    /// Writes raw bytes; `false` if the peer already closed.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> bool {
        self.wr.write_all(bytes).await.is_ok()
    }

    /// The next frame; `None` when the peer closed (or reset) the connection.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        match tokio::time::timeout(GUARD, self.frames.next()).await {
            Err(_) => panic!("no frame and no close within {GUARD:?}"),
            Ok(Ok(Some(f))) => Some(f.to_vec()),
            Ok(Ok(None) | Err(_)) => None,
        }
    }

    /// The next frame, which must be a plaintext refusal; returns what it says.
    pub async fn refusal(&mut self) -> HandshakeError {
        let f = self
            .recv()
            .await
            .expect("the server closed without a refusal");
        handshake::check_refusal(&f).expect("the answer is not a refusal")
    }

    /// Waits until the peer closes; returns the frames that came before.
    pub async fn closed(&mut self) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        while let Some(f) = self.recv().await {
            got.push(f);
        }
        got
    }
}

/// The reason a refusal carries.
pub fn refusal_reason(e: &HandshakeError) -> DisconnectReason {
    e.reason()
}

/// A client-cluster session done by hand over a raw TCP connection.
pub struct RawPlayer {
    pub raw: Raw,
    pub sealer: StreamSealer,
    pub opener: StreamOpener,
    pub keys: ClientSessionKeys,
    pub player_id: u64,
    pub session_id: u64,
    pub udp_port: u16,
}

impl RawPlayer {
    /// Presents `token` to the cluster at `addr`; `Err` is the refusal.
    pub async fn connect(
        addr: SocketAddr,
        token: &[u8],
        secret: &[u8; 32],
    ) -> Result<RawPlayer, HandshakeError> {
        let (hello, init) = handshake::client_cluster_hello(token, secret).unwrap();
        let mut raw = Raw::connect(addr).await;
        raw.send(&hello).await;
        let accept = raw
            .recv()
            .await
            .expect("the cluster closed during the handshake");
        let (keys, session) = init.handle_accept(&accept)?;
        let first = raw
            .recv()
            .await
            .expect("the cluster closed before its Welcome");
        let mut opener = session.opener;
        let plain = opener.open(&first).unwrap();
        let ClusterToClient::Welcome {
            player_id,
            session_id,
            udp_port,
        } = ClusterToClient::decode(&plain).unwrap()
        else {
            panic!("expected Welcome");
        };
        Ok(RawPlayer {
            raw,
            sealer: session.sealer,
            opener,
            keys,
            player_id,
            session_id,
            udp_port,
        })
    }

    /// Seals a message into a frame body (not sent).
    pub fn seal(&mut self, msg: &ClientToCluster) -> Vec<u8> {
        let mut plain = Vec::new();
        msg.encode(&mut plain).unwrap();
        self.sealer.seal(&plain).unwrap()
    }

    /// Seals and sends a message.
    pub async fn send(&mut self, msg: &ClientToCluster) {
        let f = self.seal(msg);
        self.raw.send(&f).await;
    }

    /// The next message from the cluster, answering its pings on the way;
    /// `None` when the connection closed.
    pub async fn recv(&mut self) -> Option<ClusterToClient> {
        loop {
            let f = self.raw.recv().await?;
            let plain = self.opener.open(&f).unwrap();
            match ClusterToClient::decode(&plain).unwrap() {
                ClusterToClient::Ping(v) => self.send(&ClientToCluster::Pong(v)).await,
                m => return Some(m),
            }
        }
    }

    /// The next data message (ECHO replies, chat).
    pub async fn recv_data(&mut self) -> (u16, Vec<u8>) {
        loop {
            match self.recv().await {
                Some(ClusterToClient::Data { command, payload }) => return (command, payload),
                Some(ClusterToClient::Pong(_)) => {}
                other => panic!("expected data, got {other:?}"),
            }
        }
    }
}

/// A client-master session done by hand (for tickets that are never used).
pub struct RawMasterClient {
    pub reader: SealedReader<OwnedReadHalf>,
    pub writer: SealedWriter<OwnedWriteHalf>,
}

impl RawMasterClient {
    pub async fn connect(addr: SocketAddr, key: &PublicKey) -> Result<Self, HandshakeError> {
        let (init, hello) = ClientMasterInitiator::start(key).unwrap();
        let mut raw = Raw::connect(addr).await;
        raw.send(&hello).await;
        let reply = raw
            .recv()
            .await
            .expect("the master closed during the handshake");
        let session = init.handle_reply(&reply)?;
        Ok(Self {
            reader: SealedReader::new(raw.frames, session.opener, 16),
            writer: SealedWriter::new(raw.wr, session.sealer, 64 * 1024),
        })
    }

    /// The next message from the master, skipping its pings.
    pub async fn recv(&mut self) -> MasterToClient {
        loop {
            let m = tokio::time::timeout(GUARD, self.reader.recv::<MasterToClient>())
                .await
                .expect("no answer from the master")
                .unwrap()
                .expect("the master closed the connection");
            match m {
                MasterToClient::Ping(v) => {
                    self.writer.send(&ClientToMaster::Pong(v)).await.unwrap()
                }
                m => return m,
            }
        }
    }

    pub async fn login(&mut self, name: &str) -> u64 {
        self.writer
            .send(&ClientToMaster::Login {
                username: name.into(),
                secret: vec![],
            })
            .await
            .unwrap();
        match self.recv().await {
            MasterToClient::LoginOk { client_id } => client_id,
            other => panic!("expected LoginOk, got {other:?}"),
        }
    }

    pub async fn join(&mut self, target: JoinTarget) -> Result<Ticket, Goodbye> {
        self.writer
            .send(&ClientToMaster::Join(target))
            .await
            .unwrap();
        match self.recv().await {
            MasterToClient::Ticket(t) => Ok(t),
            MasterToClient::JoinFailed(g) => Err(g),
            other => panic!("expected a ticket, got {other:?}"),
        }
    }
}

use sustenet_proto::handshake::ClusterInitiator;
use sustenet_proto::{ClusterToMaster, MasterToCluster, Register};

/// The registration of a cluster made by hand: id, name, loopback, no capacity.
pub fn hand_registration(cluster_id: u64, name: &str) -> ClusterToMaster {
    ClusterToMaster::Register(Register {
        cluster_id,
        name: name.to_owned(),
        address: "127.0.0.1".into(),
        tcp_port: 1,
        udp_port: 1,
        capacity: 0,
    })
}

/// A cluster registered by hand with a valid key, speaking raw messages.
pub struct HandCluster {
    pub reader: SealedReader<tokio::net::tcp::OwnedReadHalf>,
    pub writer: SealedWriter<tokio::net::tcp::OwnedWriteHalf>,
}

impl HandCluster {
    /// Registers `id` with the master at `addr`; panics unless `Registered`.
    pub async fn register(addr: SocketAddr, key_name: &str, key: Key, id: u64) -> Self {
        match Self::try_register(addr, key_name, key, id).await {
            Ok(me) => me,
            Err(other) => panic!("expected Registered, got {other:?}"),
        }
    }

    /// Registers `id`; `Err` is the master's answer when it is not `Registered`.
    pub async fn try_register(
        addr: SocketAddr,
        key_name: &str,
        key: Key,
        id: u64,
    ) -> Result<Self, Option<MasterToCluster>> {
        let mut raw = Raw::connect(addr).await;
        let (init, hello) = ClusterInitiator::start(key_name, key, &mut rand::rng()).unwrap();
        raw.send(&hello).await;
        let challenge = raw.recv().await.expect("no challenge");
        let session = init.handle_challenge(&challenge).unwrap();
        let mut writer = SealedWriter::new(raw.wr, session.sealer, 64 * 1024);
        writer
            .send(&hand_registration(id, &format!("Hand {id}")))
            .await
            .unwrap();
        let mut me = Self {
            reader: SealedReader::new(raw.frames, session.opener, 16),
            writer,
        };
        match tokio::time::timeout(GUARD, me.reader.recv::<MasterToCluster>()).await {
            Ok(Ok(Some(MasterToCluster::Registered { cluster_id }))) if cluster_id == id => Ok(me),
            Ok(Ok(other)) => Err(other),
            Ok(Err(_)) => Err(None),
            Err(_) => panic!("no answer to a registration"),
        }
    }

    /// The next message from the master, answering its pings.
    pub async fn recv(&mut self) -> MasterToCluster {
        loop {
            let m = tokio::time::timeout(GUARD, self.reader.recv::<MasterToCluster>())
                .await
                .expect("no answer from the master")
                .unwrap()
                .expect("the master closed the link");
            match m {
                MasterToCluster::Ping(v) => {
                    self.writer.send(&ClusterToMaster::Pong(v)).await.unwrap()
                }
                m => return m,
            }
        }
    }

    /// Asks for a transfer ticket; returns the answer.
    pub async fn transfer(&mut self, client_id: u64, target: u64) -> MasterToCluster {
        self.writer
            .send(&ClusterToMaster::Transfer {
                request_id: 1,
                client_id,
                target,
                user_data: vec![],
            })
            .await
            .unwrap();
        self.recv().await
    }
}
