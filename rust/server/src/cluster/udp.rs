//! The UDP receiver: drops anything that is not an authenticated datagram
//! of a live session (answering only ping requests, within their limits),
//! decodes records and hands them to the core.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use sustenet_proto::crypto::{DatagramOpener, datagram_session_id};
use sustenet_proto::datagram::{self, MAX_DATAGRAM};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::ping_limit::PingLimiter;
use super::{CoreEvent, Shared};
use crate::ids::PlayerId;

/// Sessions the receiver knows, told by the core.
pub(crate) enum UdpControl {
    Add {
        session_id: u64,
        player: PlayerId,
        opener: Box<DatagramOpener>,
    },
    Remove {
        session_id: u64,
    },
}

/// What the cluster asks for its UDP socket's receive buffer (the kernel
/// caps it at `net.core.rmem_max`). Every player's datagrams arrive on this
/// one socket, and while the core seals a tick's fan-out the receiving task
/// may wait for a thread: at 2,000 players and 20 Hz a 20 ms wait is 800
/// datagrams, several times what a default buffer (about 200 KiB) holds.
const UDP_RECEIVE_BUFFER: usize = 4 << 20;

pub(crate) fn widen_receive_buffer(udp: &UdpSocket) {
    let sock = socket2::SockRef::from(udp);
    if let Err(e) = sock.set_recv_buffer_size(UDP_RECEIVE_BUFFER) {
        debug!("cannot widen the UDP receive buffer: {e}");
    }
    if let Ok(n) = sock.recv_buffer_size() {
        debug!(bytes = n, "UDP receive buffer");
    }
}

pub(crate) async fn udp_loop(
    shared: Arc<Shared>,
    udp: Arc<UdpSocket>,
    mut ctl: mpsc::Receiver<UdpControl>,
) {
    let mut sessions: HashMap<u64, (PlayerId, Box<DatagramOpener>)> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    let mut refused = 0u64;
    let mut malformed = 0u64;
    let c = &shared.config;
    let mut pings = PingLimiter::new(
        c.ping_rate,
        c.ping_rate_per_source,
        c.ping_sources,
        Instant::now(),
    );
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            biased;
            _ = crate::time::stopped(&mut shutdown) => break,
            Some(c) = ctl.recv() => match c {
                UdpControl::Add { session_id, player, opener } => { sessions.insert(session_id, (player, opener)); }
                UdpControl::Remove { session_id } => { sessions.remove(&session_id); }
            },
            r = udp.recv_from(&mut buf) => {
                let (n, addr) = match r {
                    Ok(x) => x,
                    Err(e) => { debug!("udp receive failed: {e}"); continue; }
                };
                let d = &buf[..n];
                // A ping before joining: answered without a token, but only
                // with fewer bytes than the request, and within a rate limit.
                if let Some(nonce) = datagram::parse_ping_request(d) {
                    if !pings.allow(Instant::now(), addr.ip()) {
                        shared.config.metrics.datagram_dropped("rate");
                    } else {
                        let players = u32::try_from(shared.published.player_count.load(Ordering::Relaxed)).unwrap_or(u32::MAX);
                        let resp = datagram::ping_response(nonce, players, shared.config.connection_limit());
                        let _ = udp.try_send_to(&resp, addr);
                    }
                    continue;
                }
                // Anything else that is not a session datagram of a known
                // session is dropped without an answer.
                let metrics = &shared.config.metrics;
                if n > MAX_DATAGRAM {
                    refused += 1;
                    metrics.datagram_dropped("size");
                    continue;
                }
                let Some(sid) = datagram_session_id(d) else {
                    refused += 1;
                    metrics.datagram_dropped("malformed");
                    continue;
                };
                let Some((player, opener)) = sessions.get_mut(&sid) else {
                    refused += 1;
                    metrics.datagram_dropped("unknown_session");
                    continue;
                };
                let plain = match opener.open(d) {
                    Ok(p) => p,
                    Err(e) => {
                        refused += 1;
                        metrics.datagram_dropped(match e {
                            sustenet_proto::CryptoError::Replay(_) | sustenet_proto::CryptoError::Stale { .. } => "replay",
                            _ => "auth",
                        });
                        if refused.is_power_of_two() {
                            debug!(player = *player, "datagram refused: {e} ({refused} refused so far)");
                        }
                        continue;
                    }
                };
                let records = match datagram::decode_records(&plain) {
                    Ok(r) => r,
                    Err(e) => {
                        // Authenticated, so the player's own doing: logged at powers of two only,
                        // so that a player cannot flood the log.
                        malformed += 1;
                        metrics.datagram_dropped("malformed");
                        if malformed.is_power_of_two() {
                            warn!(player = *player, "malformed datagram: {e} ({malformed} so far)");
                        }
                        continue;
                    }
                };
                // Unreliable: when the core is behind, drop instead of queueing.
                let Some(budget) = shared.event_budget.try_take(n) else {
                    metrics.datagram_dropped("busy");
                    continue;
                };
                let ev = CoreEvent::Udp { player: *player, session_id: sid, addr, len: n, records, budget };
                let _ = shared.events.try_send(ev);
            }
        }
    }
}
