//! A player's TCP connection: the handshake (a join or a proven reconnect,
//! checked here, off the core), then a reader that feeds the core and a
//! writer that drains the player's bounded queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rand::RngCore;
use sustenet_net::{FrameReader, NetError, SealedReader, SealedWriter, write_frame};
use sustenet_proto::crypto::StreamSession;
use sustenet_proto::handshake::{self, ClusterAccept, Hello, ResumeClaim};
use sustenet_proto::{
    ClientSessionKeys, ClientToCluster, ClusterToClient, DisconnectReason, Goodbye, HandshakeError,
    Side,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tracing::{Instrument, debug, info, info_span, warn};

use super::queue::{Outbox, OutboxRx, outbox};
use super::{CoreEvent, ResumeRequest, Resumed, Shared, Writer};
use crate::ids::PlayerId;
use crate::listen::{self, Greeted, refuse};
use crate::time::now_ms;

pub(crate) async fn accept_loop(shared: Arc<Shared>, tcp: TcpListener) {
    let shutdown = shared.shutdown.clone();
    crate::listen::serve_each(&tcp, shutdown, |stream, peer, id| {
        shared.config.metrics.connection();
        let span = info_span!("player_conn", id, %peer);
        player_conn(shared.clone(), stream, peer).instrument(span)
    })
    .await;
}

/// A refusal to send before closing a connection in its handshake, or
/// `None` to close it without a word (it went away, or the cluster stops).
type Refusal = Option<(DisconnectReason, String)>;

/// What a connection's handshake admitted: a player on a new connection
/// (joined or resumed), and its first message.
struct Admitted {
    player: PlayerId,
    stream: StreamSession,
    out: Outbox,
    out_rx: OutboxRx,
    kill: oneshot::Receiver<(Goodbye, bool)>,
    /// Written before `first` (the join's `JoinAccept`).
    preface: Option<Vec<u8>>,
    /// `Welcome` or `Resumed`.
    first: ClusterToClient,
}

async fn player_conn(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let limits = shared.config.limits;
    let refused = |r: DisconnectReason| shared.config.metrics.handshake(Err(r));
    let greeted = listen::accept_hello(stream, peer, &shared.handshakes, &limits, &refused);
    let Some(greeted) = greeted.await else {
        return;
    };
    let Greeted {
        frames,
        mut wr,
        permit,
        ..
    } = greeted;
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let admitted = match greeted.hello {
        Hello::ClientCluster { token, proof } => join(&shared, conn, &token, &proof).await,
        Hello::ClientResume {
            session_id,
            nonce,
            proof,
        } => resume(&shared, conn, session_id, &nonce, &proof).await,
        _ => {
            warn!("refused: not a client hello");
            let why = listen::MASTER_HELLO_AT_CLUSTER;
            Err(Some((DisconnectReason::ProtocolViolation, why.into())))
        }
    };
    let a = match admitted {
        Ok(a) => a,
        Err(Some((reason, message))) => {
            shared.config.metrics.handshake(Err(reason));
            return refuse(&mut wr, reason, &message).await;
        }
        Err(None) => return,
    };
    shared.config.metrics.handshake(Ok(()));
    drop(permit);
    if let Some(preface) = &a.preface {
        // A failed write shows up as a failed first message in run_session.
        let _ = write_frame(&mut wr, preface, limits.max_frame).await;
    }
    let session = PlayerConn {
        player: a.player,
        conn,
        frames,
        wr,
        stream: a.stream,
        out: a.out,
        out_rx: a.out_rx,
        kill: a.kill,
    };
    run_session(&shared, session, a.first, peer).await;
}

/// A join: the cluster has room, the token and proof hold, and the core
/// admits the player.
async fn join(shared: &Shared, conn: u64, token: &[u8], proof: &[u8]) -> Result<Admitted, Refusal> {
    check_room(shared)?;
    let accepted = accept_token(shared, token, proof, now_ms()).map_err(|e| {
        warn!("refused: {e}");
        Some((e.reason(), e.to_string()))
    })?;
    let player = accepted.token.client_id;
    let session_id = new_session_id();
    let user_data = accepted.token.user_data;
    let (out, out_rx, kill) =
        ask_core_to_join(shared, conn, player, session_id, user_data, accepted.keys).await?;
    Ok(Admitted {
        player,
        stream: accepted.session,
        out,
        out_rx,
        kill,
        // The cluster's nonce for the session keys, right before the Welcome.
        preface: Some(accepted.accept_frame),
        first: ClusterToClient::Welcome {
            player_id: player,
            session_id,
            udp_port: shared.udp_port,
        },
    })
}

/// A reconnect: the session exists, the proof holds (checked here, so a
/// flood of made-up reconnects costs the connection tasks, never the core),
/// and the core accepts the claim.
async fn resume(
    shared: &Shared,
    conn: u64,
    session_id: u64,
    nonce: &[u8; 32],
    proof: &[u8],
) -> Result<Admitted, Refusal> {
    let (player, keys) = resumable(shared, session_id)?;
    let (session, claim) = handshake::accept_resume(&keys, nonce, proof).map_err(|e| {
        warn!(player, "reconnect refused: {e}");
        Some((e.reason(), e.to_string()))
    })?;
    let (r, out, out_rx, kill) =
        ask_core_to_resume(shared, conn, player, session_id, session, claim).await?;
    Ok(Admitted {
        player: r.player,
        stream: *r.session,
        out,
        out_rx,
        kill,
        preface: None,
        first: ClusterToClient::Resumed {
            received: r.received,
        },
    })
}

/// The player and keys of session `session_id`, which a reconnect may
/// resume; refused when the core has no such session (it ended, or its
/// grace passed).
pub(super) fn resumable(
    shared: &Shared,
    session_id: u64,
) -> Result<(PlayerId, Arc<ClientSessionKeys>), Refusal> {
    let found = {
        let s = (shared.published.sessions)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        s.get(&session_id).cloned()
    };
    found.ok_or_else(|| {
        info!("reconnect refused: no such session");
        no_such_session()
    })
}

/// The refusal of a reconnect to a session this cluster does not have.
pub(super) fn no_such_session() -> Refusal {
    let why = "no such session on this cluster (it ended, or the reconnect window passed)";
    Some((DisconnectReason::ResumeRefused, why.into()))
}

/// Refuses a join when the cluster is full.
pub(super) fn check_room(shared: &Shared) -> Result<(), Refusal> {
    let cap = shared.config.connection_limit() as usize;
    if shared.published.player_count.load(Ordering::Relaxed) >= cap {
        info!("refused: the cluster is full");
        let why = "the cluster is full".into();
        return Err(Some((DisconnectReason::ServerFull, why)));
    }
    Ok(())
}

/// A new session id (never 0).
pub(super) fn new_session_id() -> u64 {
    loop {
        let id = rand::rng().next_u64();
        if id != 0 {
            return id;
        }
    }
}

/// Asks the core to admit `player` (its token and proof already hold) on
/// connection `conn` as session `session_id`, with a new writer. Gives the
/// writer's ends; a refusal comes back as the core's goodbye, a stopped core
/// as `None`. TCP and WebSocket joins both come here.
pub(super) async fn ask_core_to_join(
    shared: &Shared,
    conn: u64,
    player: PlayerId,
    session_id: u64,
    user_data: Vec<u8>,
    keys: ClientSessionKeys,
) -> Result<(Outbox, OutboxRx, oneshot::Receiver<(Goodbye, bool)>), Refusal> {
    let udp = keys.datagram(Side::Responder, session_id);
    let (writer, out_rx, kill) = new_writer(shared);
    let out = writer.out.clone();
    let (reply_tx, reply_rx) = oneshot::channel();
    let join = CoreEvent::Join {
        player,
        conn,
        session_id,
        user_data,
        writer,
        keys: Arc::new(keys),
        udp: Box::new(udp),
        reply: reply_tx,
    };
    shared.events.send(join).await.map_err(|_| None)?;
    match reply_rx.await {
        Ok(Ok(())) => Ok((out, out_rx, kill)),
        Ok(Err(g)) => {
            info!("refused: {}", g.reason);
            Err(Some((g.reason, g.message)))
        }
        Err(_) => Err(None),
    }
}

/// A new connection's writer queue and close signal: the driver's end, and
/// the writer task's.
pub(super) fn new_writer(
    shared: &Shared,
) -> (Writer, OutboxRx, oneshot::Receiver<(Goodbye, bool)>) {
    let (out, out_rx) = outbox(
        shared.config.limits.send_queue,
        shared.config.send_queue_bytes,
    );
    let (kill_tx, kill) = oneshot::channel();
    let writer = Writer { out, kill: kill_tx };
    (writer, out_rx, kill)
}

/// Asks the core to take `player`'s session onto connection `conn` (a
/// reconnect whose proof already holds), with a new writer. Gives the core's
/// answer and the writer's ends; a refusal comes back as the core's goodbye,
/// a stopped core as `None`. TCP and WebSocket reconnects both come here.
pub(super) async fn ask_core_to_resume(
    shared: &Shared,
    conn: u64,
    player: PlayerId,
    session_id: u64,
    session: StreamSession,
    claim: ResumeClaim,
) -> Result<
    (
        Resumed,
        Outbox,
        OutboxRx,
        oneshot::Receiver<(Goodbye, bool)>,
    ),
    Refusal,
> {
    let (writer, out_rx, kill) = new_writer(shared);
    let out = writer.out.clone();
    let (reply_tx, reply_rx) = oneshot::channel();
    let ev = CoreEvent::Resume(ResumeRequest {
        conn,
        player,
        session_id,
        session: Box::new(session),
        claim,
        writer,
        reply: reply_tx,
    });
    shared.events.send(ev).await.map_err(|_| None)?;
    match reply_rx.await {
        Ok(Ok(r)) => Ok((r, out, out_rx, kill)),
        Ok(Err(g)) => Err(Some((g.reason, g.message))),
        Err(_) => Err(None),
    }
}

/// Opens a join hello's token and checks its proof, then records the token
/// as used: the used-token lock is held only for that record, never while
/// a token is decrypted, so one large forged token does not hold up every
/// other join.
pub(crate) fn accept_token(
    shared: &Shared,
    token: &[u8],
    proof: &[u8],
    now_ms: u64,
) -> Result<ClusterAccept, HandshakeError> {
    let token = handshake::open_join(token, proof, &shared.key, shared.cluster_id, now_ms)?;
    {
        let mut used = shared.used_tokens.lock().unwrap_or_else(|p| p.into_inner());
        used.use_token(&token, now_ms)
            .map_err(HandshakeError::Token)?;
    }
    handshake::finish_join(token, &mut rand::rng())
}

/// One accepted connection of a player, first or resumed: its reader and
/// writer halves, the sealed session, and its queue to the writer.
struct PlayerConn {
    player: PlayerId,
    conn: u64,
    frames: FrameReader<tokio::net::tcp::OwnedReadHalf>,
    wr: tokio::net::tcp::OwnedWriteHalf,
    stream: StreamSession,
    out: Outbox,
    out_rx: OutboxRx,
    kill: oneshot::Receiver<(Goodbye, bool)>,
}

/// Sends `first` (Welcome or Resumed), then carries the player's traffic
/// until the connection ends, and tells the core why.
async fn run_session(shared: &Shared, s: PlayerConn, first: ClusterToClient, peer: SocketAddr) {
    let limits = shared.config.limits;
    let PlayerConn {
        player,
        conn,
        frames,
        wr,
        stream,
        out: out_tx,
        out_rx,
        kill,
    } = s;
    let mut writer =
        SealedWriter::new(wr, stream.sealer, limits.max_frame).with_write_timeout(limits.timeout());
    let queued = writer.queue(&first);
    let metrics = shared.config.metrics.clone();
    let writer_task = tokio::spawn(
        player_writer(writer, out_rx, kill, metrics).instrument(tracing::Span::current()),
    );
    let mut reader = SealedReader::new(frames, stream.opener, limits.max_auth_failures);
    debug!(player, %peer, "player session started");
    let reason = loop {
        if queued.is_err() {
            break DisconnectReason::ConnectionLost;
        }
        tokio::select! {
            r = tokio::time::timeout(limits.timeout(), reader.recv::<ClientToCluster>()) => match r {
                Err(_) => {
                    info!(player, "player timed out");
                    break DisconnectReason::Timeout;
                }
                Ok(Ok(None)) => break DisconnectReason::ConnectionLost,
                Ok(Ok(Some(msg))) => match msg {
                    ClientToCluster::Data { command, payload } => {
                        let Some(budget) = shared.event_budget.take(payload.len()).await else {
                            break DisconnectReason::ServerShutdown;
                        };
                        if shared.events.send(CoreEvent::Packet { player, conn, command, payload, budget }).await.is_err() {
                            break DisconnectReason::ServerShutdown;
                        }
                    }
                    ClientToCluster::Ack(count) => {
                        if shared.events.send(CoreEvent::Ack { player, conn, count }).await.is_err() {
                            break DisconnectReason::ServerShutdown;
                        }
                    }
                    ClientToCluster::Ping(v) => {
                        if out_tx.push(ClusterToClient::Pong(v)).is_err() {
                            break DisconnectReason::SendQueueFull;
                        }
                    }
                    ClientToCluster::Pong(_) => {}
                    ClientToCluster::Disconnect(g) => {
                        debug!(player, "player said goodbye: {}", g.reason);
                        break DisconnectReason::Requested;
                    }
                },
                Ok(Err(e)) => {
                    warn!(player, "dropping player: {e}");
                    break e.reason();
                }
            },
            // The writer stopped: a failed write (the peer is gone), or the
            // core closed this connection, and then the reason is not used.
            _ = out_tx.closed() => break DisconnectReason::ConnectionLost,
        }
    };
    let stats = reader.stats();
    if stats.auth_failures + stats.replays + stats.stale > 0 {
        warn!(
            player,
            auth_failures = stats.auth_failures,
            replays = stats.replays,
            stale = stats.stale,
            "refused frames on this connection"
        );
    }
    let _ = shared
        .events
        .send(CoreEvent::Left {
            player,
            conn,
            reason,
        })
        .await;
    drop(out_tx);
    let _ = writer_task.await;
}

async fn player_writer(
    mut writer: SealedWriter<tokio::net::tcp::OwnedWriteHalf>,
    mut rx: OutboxRx,
    mut kill: oneshot::Receiver<(Goodbye, bool)>,
    metrics: crate::metrics::ClusterMetrics,
) {
    let r: Result<(), NetError> = async {
        writer.flush().await?;
        loop {
            tokio::select! {
                biased;
                k = &mut kill => {
                    if let Ok((goodbye, drain)) = k {
                        if drain {
                            while let Some(m) = rx.try_recv() {
                                writer.queue(&m)?;
                            }
                        }
                        writer.queue(&ClusterToClient::Disconnect(goodbye))?;
                        writer.shutdown().await?;
                    }
                    return Ok(());
                }
                m = rx.recv() => {
                    let Some(m) = m else { return writer.shutdown().await };
                    writer.queue(&m)?;
                    let mut messages = 1;
                    while writer.pending() < 64 * 1024 {
                        match rx.try_recv() {
                            Some(m) => writer.queue(&m)?,
                            None => break,
                        }
                        messages += 1;
                    }
                    let bytes = writer.pending();
                    writer.flush().await?;
                    metrics.sent(true, messages, bytes);
                }
            }
        }
    }
    .await;
    if let Err(e) = r {
        debug!("writer stopped: {e}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::time::Duration;

    use sustenet_proto::DisconnectReason;

    use crate::cluster::ClusterConfig;

    #[test]
    fn the_used_token_lock_is_taken_only_to_record_a_token() {
        use crate::cluster::player_conn::accept_token;
        use sustenet_proto::ConnectToken;
        use sustenet_proto::handshake::{self, Hello};

        let (shared, _events, _stop) = crate::cluster::test_shared(ClusterConfig::default());
        let now_ms = 1_000_000;
        let guard = shared.used_tokens.lock().unwrap();
        // While another join holds the lock, a forged token of the largest size
        // is refused without waiting for it.
        let (tx, rx) = std::sync::mpsc::channel();
        let s = shared.clone();
        std::thread::spawn(move || {
            let forged = vec![0x5A; 16_000];
            let _ = tx.send(accept_token(&s, &forged, &[0; 32], now_ms).is_err());
        });
        let refused = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a forged token waited for the used-token lock");
        assert!(refused);
        drop(guard);
        // A genuine one is accepted once (recorded under the lock), then refused.
        let secret = [9; 32];
        let token = ConnectToken {
            client_id: 4,
            cluster_id: shared.cluster_id,
            token_id: [1; 16],
            expires_at_ms: now_ms + 30_000,
            session_secret: sustenet_proto::SessionSecret(secret),
            user_data: Vec::new(),
        }
        .seal(&shared.key, &mut rand::rng())
        .unwrap();
        let (hello, _) = handshake::client_cluster_hello(&token, &secret).unwrap();
        let Ok(Hello::ClientCluster { token, proof }) = handshake::parse_hello(&hello) else {
            panic!("not a client hello");
        };
        assert!(accept_token(&shared, &token, &proof, now_ms).is_ok());
        let again = accept_token(&shared, &token, &proof, now_ms).err().unwrap();
        assert_eq!(again.reason(), DisconnectReason::TokenUsed);
    }
}
