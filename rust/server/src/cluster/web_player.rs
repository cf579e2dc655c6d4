//! A player on a WebSocket (docs/protocol.md §17): the web join or
//! reconnect, checked here as the TCP ones are in `player_conn.rs`, then
//! the same events to the core as a TCP player; its unreliable traffic goes
//! through a [`Route`] (see `web_routes.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rand::RngCore;
use sustenet_proto::crypto::DatagramOpener;
use sustenet_proto::datagram::{self, MAX_DATAGRAM, MAX_DATAGRAM_PLAINTEXT, Record};
use sustenet_proto::handshake::{self, ResumeClaim};
use sustenet_proto::web::{self as wire, Channel, WebHello};
use sustenet_proto::{
    ClientToCluster, ClusterToClient, DisconnectReason, Goodbye, HandshakeError, Message, Side,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing::{Instrument, debug, info, info_span, warn};

use super::player_conn::{
    ask_core_to_join, ask_core_to_resume, check_room, new_session_id, no_such_session, resumable,
};
use super::queue::{Outbox, OutboxRx};
use super::web_routes::{Route, web_addr};
use super::{CoreEvent, Shared};
use crate::ids::PlayerId;
use crate::time::now_ms;
use crate::web::{self, WebError, WebRx, WebTx};

type Refusal = Option<(DisconnectReason, String)>;

pub(crate) async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let shutdown = shared.shutdown.clone();
    crate::listen::serve_each(&listener, shutdown, |stream, peer, id| {
        shared.config.metrics.connection();
        let span = info_span!("web_player", id, %peer);
        web_player(shared.clone(), stream, peer).instrument(span)
    })
    .await;
}

/// What a web hello admitted.
struct Admitted {
    player: PlayerId,
    session_id: u64,
    out: Outbox,
    out_rx: OutboxRx,
    kill: oneshot::Receiver<(Goodbye, bool)>,
    /// Opens the datagrams the core seals for this player.
    opener: DatagramOpener,
    /// `Welcome` or `Resumed`.
    first: ClusterToClient,
}

async fn web_player(shared: Arc<Shared>, tcp: tokio::net::TcpStream, peer: SocketAddr) {
    let limits = shared.config.limits;
    let Some(ws_config) = shared.config.websocket.as_ref() else {
        return;
    };
    let refused = |r: DisconnectReason| shared.config.metrics.handshake(Err(r));
    let greeted = web::accept_hello(tcp, peer, ws_config, &shared.handshakes, &limits, &refused);
    let Some(web::Greeted {
        mut tx,
        mut rx,
        hello,
        permit,
    }) = greeted.await
    else {
        return;
    };
    let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let admitted = match WebHello::parse(&hello) {
        Ok(WebHello::Join { token, proof }) => join(&shared, conn, &token, &proof).await,
        Ok(WebHello::Resume {
            session_id,
            received,
            attempt,
            proof,
        }) => {
            let claim = ResumeClaim { received, attempt };
            resume(&shared, conn, session_id, claim, &proof).await
        }
        Ok(WebHello::Master) => {
            warn!("refused: a master hello sent to a cluster");
            let why = crate::listen::MASTER_HELLO_AT_CLUSTER;
            Err(Some((DisconnectReason::ProtocolViolation, why.into())))
        }
        Err(e) => {
            warn!("refused: {e}");
            Err(Some((e.reason(), e.to_string())))
        }
    };
    let a = match admitted {
        Ok(a) => a,
        Err(Some((reason, message))) => {
            refused(reason);
            tx.refuse(reason, &message).await;
            drop(permit);
            return rx.linger().await;
        }
        Err(None) => return,
    };
    drop(permit);
    shared.config.metrics.handshake(Ok(()));
    let addr = web_addr(conn);
    let route = Arc::new(Route::new(ws_config.unreliable_queue));
    shared.web.open_route(addr, route.clone());
    let session = Session {
        player: a.player,
        conn,
        session_id: a.session_id,
        addr,
    };
    run_session(&shared, session, a, tx, rx, route.clone()).await;
    shared.web.close_route(addr);
    if route.dropped() > 0 {
        debug!(
            dropped = route.dropped(),
            "unreliable datagrams dropped while the socket was behind"
        );
    }
}

/// A web join: the cluster has room, the token and the HMAC proof hold,
/// the token is recorded as used, and the core admits the player.
async fn join(
    shared: &Shared,
    conn: u64,
    token: &[u8],
    proof: &[u8; wire::PROOF_LEN],
) -> Result<Admitted, Refusal> {
    check_room(shared)?;
    let refused = |e: HandshakeError| {
        warn!("refused: {e}");
        Some((e.reason(), e.to_string()))
    };
    let token = wire::open_web_join(token, proof, &shared.key, shared.cluster_id, now_ms())
        .map_err(refused)?;
    {
        let mut used = shared.used_tokens.lock().unwrap_or_else(|p| p.into_inner());
        used.use_token(&token, now_ms())
            .map_err(|e| refused(HandshakeError::Token(e)))?;
    }
    let accepted = handshake::finish_join(token, &mut rand::rng()).map_err(refused)?;
    let player = accepted.token.client_id;
    let session_id = new_session_id();
    let opener = accepted.keys.datagram(Side::Initiator, session_id).opener;
    let secret = accepted.token.session_secret.clone();
    let user_data = accepted.token.user_data;
    let (out, out_rx, kill) =
        ask_core_to_join(shared, conn, player, session_id, user_data, accepted.keys).await?;
    shared.web.remember(session_id, player, secret);
    Ok(Admitted {
        player,
        session_id,
        out,
        out_rx,
        kill,
        opener,
        first: ClusterToClient::Welcome {
            player_id: player,
            session_id,
            udp_port: 0,
        },
    })
}

/// A web reconnect: a web session of this cluster, a proof made with its
/// secret, and the core accepts the claim (the attempt number must grow).
async fn resume(
    shared: &Shared,
    conn: u64,
    session_id: u64,
    claim: ResumeClaim,
    proof: &[u8; wire::PROOF_LEN],
) -> Result<Admitted, Refusal> {
    let (_, keys) = resumable(shared, session_id)?;
    let Some((player, secret)) = shared.web.secret(session_id) else {
        info!("reconnect refused: not a web session");
        return Err(no_such_session());
    };
    if !wire::check_resume_proof(&secret, session_id, claim.received, claim.attempt, proof) {
        warn!(player, "reconnect refused: the proof does not hold");
        let e = HandshakeError::AuthenticationFailed;
        return Err(Some((e.reason(), e.to_string())));
    }
    // The core keeps the session's state; the stream keys are not used on a
    // WebSocket (TLS carries the bytes), but the event carries a session.
    let mut nonce = [0u8; 32];
    rand::rng().fill_bytes(&mut nonce);
    let session = keys
        .resume_stream(&nonce, Side::Responder)
        .map_err(|e| Some((DisconnectReason::ProtocolViolation, e.to_string())))?;
    let (r, out, out_rx, kill) =
        ask_core_to_resume(shared, conn, player, session_id, session, claim).await?;
    Ok(Admitted {
        player: r.player,
        session_id,
        out,
        out_rx,
        kill,
        opener: keys.datagram(Side::Initiator, session_id).opener,
        first: ClusterToClient::Resumed {
            received: r.received,
        },
    })
}

/// Who a web connection carries.
#[derive(Clone, Copy)]
struct Session {
    player: PlayerId,
    conn: u64,
    session_id: u64,
    addr: SocketAddr,
}

/// Hands records to the core as if they came in a datagram from the
/// player's web path (dropped, like a datagram, when the core is behind).
fn to_core(shared: &Shared, s: Session, records: Vec<Record>, len: usize) {
    let Some(budget) = shared.event_budget.try_take(len) else {
        return;
    };
    let ev = CoreEvent::Udp {
        player: s.player,
        session_id: s.session_id,
        addr: s.addr,
        len,
        records,
        budget,
    };
    let _ = shared.events.try_send(ev);
}

/// Sends `first`, then carries the player's traffic until the connection
/// ends, and tells the core why.
async fn run_session(
    shared: &Arc<Shared>,
    s: Session,
    a: Admitted,
    tx: WebTx,
    mut rx: WebRx,
    route: Arc<Route>,
) {
    let limits = shared.config.limits;
    let Admitted {
        out: out_tx,
        out_rx,
        kill,
        opener,
        first,
        ..
    } = a;
    let writer = tokio::spawn(
        web_writer(shared.clone(), s, tx, first, out_rx, kill, route, opener)
            .instrument(tracing::Span::current()),
    );
    // A first record makes the web path a candidate; the writer answers the
    // core's challenge, and the path carries the player's datagrams.
    to_core(shared, s, vec![Record::Ping(0)], MAX_DATAGRAM);
    let mut keepalive = tokio::time::interval(limits.heartbeat());
    let player = s.player;
    debug!(player, "web player session started");
    let reason = loop {
        tokio::select! {
            r = tokio::time::timeout(limits.timeout(), rx.recv()) => match r {
                Err(_) => {
                    info!(player, "web player timed out");
                    break DisconnectReason::Timeout;
                }
                Ok(Ok(None)) => break DisconnectReason::ConnectionLost,
                Ok(Ok(Some(frame))) => {
                    if let Err((reason, why)) = on_frame(shared, s, &out_tx, &frame).await {
                        if reason != DisconnectReason::Requested {
                            warn!(player, "dropping web player: {why}");
                        }
                        break reason;
                    }
                }
                Ok(Err(e)) => {
                    warn!(player, "dropping web player: {e}");
                    break e.reason();
                }
            },
            _ = keepalive.tick() => to_core(shared, s, vec![Record::Ping(0)], MAX_DATAGRAM),
            _ = out_tx.closed() => {
                // The writer ended the link (its close frame is sent).
                rx.linger().await;
                break DisconnectReason::ConnectionLost;
            }
        }
    };
    let left = CoreEvent::Left {
        player,
        conn: s.conn,
        reason,
    };
    let _ = shared.events.send(left).await;
    drop(out_tx);
    let _ = writer.await;
}

/// One web frame from the player; `Err` ends the connection.
async fn on_frame(
    shared: &Shared,
    s: Session,
    out: &Outbox,
    frame: &[u8],
) -> Result<(), (DisconnectReason, String)> {
    let violation = |why: String| (DisconnectReason::ProtocolViolation, why);
    match Channel::split(frame).map_err(|e| violation(e.to_string()))? {
        Channel::Reliable(m) => {
            let msg = ClientToCluster::decode(m).map_err(|e| violation(e.to_string()))?;
            on_message(shared, s, out, msg).await
        }
        Channel::Unreliable(plain) => {
            if plain.len() > MAX_DATAGRAM_PLAINTEXT {
                return Err(violation(format!(
                    "unreliable records of {} bytes (at most {MAX_DATAGRAM_PLAINTEXT})",
                    plain.len()
                )));
            }
            let records = datagram::decode_records(plain).map_err(|e| violation(e.to_string()))?;
            let data: Vec<Record> = records
                .into_iter()
                .filter(|r| matches!(r, Record::Data { .. }))
                .collect();
            if !data.is_empty() {
                to_core(shared, s, data, plain.len() + 32);
            }
            Ok(())
        }
    }
}

async fn on_message(
    shared: &Shared,
    s: Session,
    out: &Outbox,
    msg: ClientToCluster,
) -> Result<(), (DisconnectReason, String)> {
    let stopping = || {
        (
            DisconnectReason::ServerShutdown,
            "the cluster is stopping".to_owned(),
        )
    };
    match msg {
        ClientToCluster::Data { command, payload } => {
            let budget = shared
                .event_budget
                .take(payload.len())
                .await
                .ok_or_else(stopping)?;
            let ev = CoreEvent::Packet {
                player: s.player,
                conn: s.conn,
                command,
                payload,
                budget,
            };
            shared.events.send(ev).await.map_err(|_| stopping())
        }
        ClientToCluster::Ack(count) => {
            let ev = CoreEvent::Ack {
                player: s.player,
                conn: s.conn,
                count,
            };
            shared.events.send(ev).await.map_err(|_| stopping())
        }
        ClientToCluster::Ping(v) => out
            .push(ClusterToClient::Pong(v))
            .map_err(|_| (DisconnectReason::SendQueueFull, "send queue full".into())),
        ClientToCluster::Pong(_) => Ok(()),
        ClientToCluster::Disconnect(g) => {
            debug!(player = s.player, "web player said goodbye: {}", g.reason);
            Err((DisconnectReason::Requested, String::new()))
        }
    }
}

/// Queues one reliable message (written at the next flush); its size.
async fn send_reliable(tx: &mut WebTx, m: &ClusterToClient) -> Result<usize, WebError> {
    let f = wire::reliable_frame(m).map_err(|e| WebError::Socket(e.to_string()))?;
    let len = f.len();
    tx.feed(f).await?;
    Ok(len)
}

/// Opens a datagram the core sealed for the player: answers a path
/// challenge (to the core), passes the data records on as one web frame.
async fn on_datagram(
    shared: &Shared,
    s: Session,
    tx: &mut WebTx,
    opener: &mut DatagramOpener,
    d: &[u8],
) -> Result<(), WebError> {
    let Ok(plain) = opener.open(d) else {
        return Ok(());
    };
    let Ok(records) = datagram::decode_records(&plain) else {
        return Ok(());
    };
    let mut batch = datagram::Batch::new();
    for r in records {
        match r {
            Record::PathChallenge(v) => {
                to_core(shared, s, vec![Record::PathResponse(v)], MAX_DATAGRAM);
            }
            r @ Record::Data { .. } => {
                let _ = batch.push(&r);
            }
            Record::Ping(_) | Record::Pong(_) | Record::PathResponse(_) => {}
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    tx.feed(wire::unreliable_frame(batch.as_bytes())).await
}

/// Writes the player's reliable queue and its unreliable route to the
/// WebSocket, until the core closes the connection.
#[allow(clippy::too_many_arguments)]
async fn web_writer(
    shared: Arc<Shared>,
    s: Session,
    mut tx: WebTx,
    first: ClusterToClient,
    mut rx: OutboxRx,
    mut kill: oneshot::Receiver<(Goodbye, bool)>,
    route: Arc<Route>,
    mut opener: DatagramOpener,
) {
    // The reason, and the text of the close frame (the goodbye's message, if any).
    let r: Result<(DisconnectReason, String), WebError> = async {
        send_reliable(&mut tx, &first).await?;
        tx.flush().await?;
        loop {
            tokio::select! {
                biased;
                k = &mut kill => {
                    let Ok((goodbye, drain)) = k else {
                        return Ok((DisconnectReason::ConnectionLost, String::new()));
                    };
                    if drain {
                        while let Some(m) = rx.try_recv() {
                            send_reliable(&mut tx, &m).await?;
                        }
                    }
                    let (reason, text) = (goodbye.reason, goodbye.message.clone());
                    send_reliable(&mut tx, &ClusterToClient::Disconnect(goodbye)).await?;
                    tx.flush().await?;
                    return Ok((reason, text));
                }
                m = rx.recv() => {
                    let Some(m) = m else {
                        return Ok((DisconnectReason::ConnectionLost, String::new()));
                    };
                    let mut bytes = send_reliable(&mut tx, &m).await?;
                    let mut messages = 1;
                    while messages < 256 {
                        match rx.try_recv() {
                            Some(m) => bytes += send_reliable(&mut tx, &m).await?,
                            None => break,
                        }
                        messages += 1;
                    }
                    tx.flush().await?;
                    shared.config.metrics.sent(true, messages, bytes);
                }
                _ = route.ready.notified() => {
                    // The newest datagrams: those that waited while a write
                    // was blocked were dropped by the route, oldest first.
                    while let Some(d) = route.pop() {
                        on_datagram(&shared, s, &mut tx, &mut opener, &d).await?;
                    }
                    tx.flush().await?;
                }
            }
        }
    }
    .await;
    match r {
        Ok((reason, text)) => {
            let text = if text.is_empty() {
                reason.to_string()
            } else {
                text
            };
            tx.close(web::close_code(reason), &text).await;
        }
        Err(e) => debug!("web writer stopped: {e}"),
    }
}
