//! Connections and their handshakes: the master (Noise), a cluster (the
//! ticket's hello, the `Welcome`) and the cluster's UDP socket.

use std::net::SocketAddr;
use std::time::Instant;

use sustenet_net::{FrameReader, SealedReader, SealedWriter, write_frame};
use sustenet_proto::crypto::{
    DatagramOpener, DatagramSealer, DatagramSession, NOISE_MAX_PLAINTEXT,
};
use sustenet_proto::handshake::{self, ClientMasterInitiator, ResumeClaim};
use sustenet_proto::resume::ReplayLog;
use sustenet_proto::{
    ClientSessionKeys, ClusterInfo, ClusterToClient, DisconnectReason, Message, Side, Ticket,
};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, UdpSocket};
use tracing::info;

use crate::reconnect::Away;
use crate::resume::{Attempt, Resume, attempt};
use crate::{ClientConfig, ClientError};

/// The sealed connection to the master.
pub(crate) struct MasterConn {
    pub(crate) reader: SealedReader<OwnedReadHalf>,
    pub(crate) writer: SealedWriter<OwnedWriteHalf>,
    pub(crate) last_seen: Instant,
}

/// The session with a cluster: its TCP link (while up), its UDP socket and
/// keys, and what a reconnect needs.
pub(crate) struct ClusterConn {
    pub(crate) info: ClusterInfo,
    /// The TCP connection; `None` while reconnecting.
    pub(crate) link: Option<Link>,
    pub(crate) udp: UdpSocket,
    pub(crate) udp_sealer: DatagramSealer,
    pub(crate) udp_opener: DatagramOpener,
    pub(crate) last_seen: Instant,
    /// `host:port` of the cluster's TCP listener.
    pub(crate) addr: String,
    pub(crate) keys: Box<ClientSessionKeys>,
    pub(crate) session_id: u64,
    /// Reliable messages kept for a reconnect, and the received count.
    pub(crate) replay: ReplayLog,
    pub(crate) away: Option<Away>,
    /// Reconnect attempts made in the session (each proof carries the next).
    pub(crate) attempts: u64,
}

impl ClusterConn {
    /// The next reconnect attempt of this session, to run beside the task.
    pub(crate) fn next_attempt(
        &mut self,
        config: &ClientConfig,
    ) -> impl std::future::Future<Output = Result<Attempt, Resume>> + Send + 'static {
        self.attempts += 1;
        let claim = ResumeClaim {
            received: self.replay.received(),
            attempt: self.attempts,
        };
        attempt(
            self.addr.clone(),
            (*self.keys).clone(),
            self.session_id,
            claim,
            config.clone(),
        )
    }
}

/// A cluster's sealed TCP connection.
pub(crate) struct Link {
    pub(crate) reader: SealedReader<OwnedReadHalf>,
    pub(crate) writer: SealedWriter<OwnedWriteHalf>,
}

/// Connects to the master and runs the Noise handshake.
pub(crate) async fn connect_master(config: &ClientConfig) -> Result<MasterConn, ClientError> {
    let addr = config.master_addr.clone();
    let unreachable = |message: String| ClientError::MasterUnreachable {
        addr: addr.clone(),
        message,
    };
    let t = config.handshake_timeout;
    let stream = tokio::time::timeout(t, TcpStream::connect(&addr))
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut frames = FrameReader::new(rd, config.max_frame);
    let (init, hello) = ClientMasterInitiator::start(&config.master_public_key)?;
    write_frame(&mut wr, &hello, config.max_frame)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let reply = frames
        .next_within(t)
        .await
        .map_err(|e| ClientError::Handshake(format!("master handshake: {e}")))?
        .ok_or_else(|| {
            ClientError::Handshake("the master closed the connection during the handshake".into())
        })?;
    let session = init.handle_reply(&reply)?;
    info!(addr = %config.master_addr, "connected to the master");
    Ok(MasterConn {
        reader: SealedReader::new(frames, session.opener, 16),
        writer: SealedWriter::new(
            wr,
            session.sealer,
            config.max_frame.min(NOISE_MAX_PLAINTEXT),
        )
        .with_write_timeout(config.timeout),
        last_seen: Instant::now(),
    })
}

/// Why a join failed, as `JoinFailed` reports it.
pub(crate) type JoinError = (DisconnectReason, String);

/// A cluster session's TCP link, open, with what the UDP side needs.
pub(crate) struct OpenLink {
    pub(crate) info: ClusterInfo,
    /// `host:port` of the cluster's TCP listener.
    pub(crate) addr: String,
    pub(crate) keys: ClientSessionKeys,
    pub(crate) session_id: u64,
    pub(crate) udp_addr: SocketAddr,
    pub(crate) reader: SealedReader<OwnedReadHalf>,
    pub(crate) writer: SealedWriter<OwnedWriteHalf>,
    pub(crate) datagrams: DatagramSession,
}

/// Opens the ticket's cluster session over TCP: the ticket hello and the
/// `Welcome`.
pub(crate) async fn open_link(config: &ClientConfig, t: Ticket) -> Result<OpenLink, JoinError> {
    let addr = format!("{}:{}", t.cluster.address, t.cluster.tcp_port);
    let lost = |m: String| {
        (
            DisconnectReason::ConnectionLost,
            format!("cannot reach the cluster at {addr}: {m}"),
        )
    };
    let to = config.handshake_timeout;
    let stream = tokio::time::timeout(to, TcpStream::connect(&addr))
        .await
        .map_err(|_| lost("timed out".into()))?
        .map_err(|e| lost(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().map_err(|e| lost(e.to_string()))?;
    let (rd, mut wr) = stream.into_split();
    let mut frames = FrameReader::new(rd, config.max_frame);
    let (hello, init) = handshake::client_cluster_hello(&t.token, &t.session_secret)
        .map_err(|e| (e.reason(), e.to_string()))?;
    write_frame(&mut wr, &hello, config.max_frame)
        .await
        .map_err(|e| lost(e.to_string()))?;
    let mut next = async || {
        frames
            .next_within(to)
            .await
            .map_err(|e| lost(e.to_string()))?
            .ok_or_else(|| lost("closed during the handshake".into()))
    };
    // A refusal, or the cluster's nonce for the session keys...
    let accept = next().await?;
    let (keys, session) = init
        .handle_accept(&accept)
        .map_err(|e| (e.reason(), e.to_string()))?;
    // ...then the Welcome.
    let first = next().await?;
    let mut opener = session.opener;
    let (session_id, udp_port) = read_welcome(&first, &mut opener, t.client_id)?;
    let datagrams = keys.datagram(Side::Initiator, session_id);
    info!(cluster = %t.cluster.name, player_id = t.client_id, "joined the cluster");
    Ok(OpenLink {
        info: t.cluster,
        addr,
        keys,
        session_id,
        udp_addr: SocketAddr::new(peer.ip(), udp_port),
        reader: SealedReader::new(frames, opener, 16),
        writer: SealedWriter::new(wr, session.sealer, config.max_frame)
            .with_write_timeout(config.timeout),
        datagrams,
    })
}

/// Connects to the ticket's cluster: [`open_link`], and a UDP socket of its
/// own connected to the cluster's UDP port.
pub(crate) async fn connect_cluster(
    config: &ClientConfig,
    t: Ticket,
) -> Result<ClusterConn, JoinError> {
    let link = open_link(config, t).await?;
    let udp = cluster_udp(link.udp_addr).await.map_err(|e| {
        (
            DisconnectReason::ConnectionLost,
            format!("cannot reach the cluster at {}: {e}", link.addr),
        )
    })?;
    Ok(ClusterConn {
        info: link.info,
        link: Some(Link {
            reader: link.reader,
            writer: link.writer,
        }),
        udp,
        udp_sealer: link.datagrams.sealer,
        udp_opener: link.datagrams.opener,
        last_seen: Instant::now(),
        addr: link.addr,
        keys: Box::new(link.keys),
        session_id: link.session_id,
        replay: ReplayLog::new(config.resume_buffer),
        away: None,
        attempts: 0,
    })
}

/// Reads the cluster's first frame: a refusal, or the `Welcome` for
/// `player_id`. Returns the session id and the cluster's UDP port.
fn read_welcome(
    first: &[u8],
    opener: &mut sustenet_proto::crypto::StreamOpener,
    player_id: u64,
) -> Result<(u64, u16), JoinError> {
    if let Some(refusal) = handshake::check_refusal(first) {
        return Err((refusal.reason(), refusal.to_string()));
    }
    let plain = opener
        .open(first)
        .map_err(|e| (DisconnectReason::ProtocolViolation, e.to_string()))?;
    match ClusterToClient::decode(&plain) {
        Ok(ClusterToClient::Welcome {
            player_id: id,
            session_id,
            udp_port,
        }) if id == player_id => Ok((session_id, udp_port)),
        Ok(ClusterToClient::Welcome { .. }) => Err((
            DisconnectReason::ProtocolViolation,
            "the cluster gave another player id".into(),
        )),
        Ok(other) => Err((
            DisconnectReason::ProtocolViolation,
            format!("expected Welcome, got {other:?}"),
        )),
        Err(e) => Err((DisconnectReason::ProtocolViolation, e.to_string())),
    }
}

/// A UDP socket of the cluster's address family, connected to `to`.
async fn cluster_udp(to: SocketAddr) -> std::io::Result<UdpSocket> {
    let bind: SocketAddr = if to.is_ipv6() {
        SocketAddr::from(([0u16; 8], 0))
    } else {
        SocketAddr::from(([0u8; 4], 0))
    };
    let udp = UdpSocket::bind(bind).await?;
    udp.connect(to).await?;
    Ok(udp)
}
