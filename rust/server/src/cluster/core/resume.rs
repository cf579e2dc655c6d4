//! Reconnects: holding a dropped player's seat, checking a proven
//! reconnect against what was kept for it, and moving it onto its new
//! connection with what it missed queued first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sustenet_proto::handshake::ResumeClaim;
use sustenet_proto::resume::Rewind;
use sustenet_proto::{ClusterToClient, DisconnectReason, Goodbye};
use tracing::debug;

use super::Player;
use super::outbox::QueueLevel;
use super::output::{Output, Outputs};
use crate::ids::PlayerId;

/// What the core tells a connection whose reconnect it accepted (the
/// messages to send again are queued to it first).
#[derive(Debug)]
pub(crate) struct Accepted {
    /// Data messages of the client's that the cluster had received.
    pub(crate) received: u64,
}

/// `now + after`, or a year on when that cannot be represented.
pub(crate) fn after(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

/// Marks a player away and holds its seat for `grace`. Its connection's
/// writer is let go without a goodbye: a goodbye would end the session on
/// a client that may still hear it, and the client is meant to come back.
pub(crate) fn go_away(p: &mut Player, outputs: &mut Outputs, now: Instant, grace: Duration) {
    if p.out.take().is_some() {
        outputs.push(Output::Release { conn: p.conn });
    }
    p.away_until = Some(after(now, grace));
}

/// Closes the player's connection that is still open on this side only,
/// once a reconnect proved the client has left it; its late events no
/// longer match the player's connection.
pub(crate) fn close_left_behind(p: &mut Player, outputs: &mut Outputs) {
    if p.out.take().is_some() {
        outputs.push(Output::Close {
            conn: p.conn,
            goodbye: Goodbye {
                reason: DisconnectReason::Kicked,
                message: "reconnected on a new connection".into(),
            },
            drain: false,
        });
    }
}

/// Whether a proven reconnect of `p` can be accepted; a refusal is the
/// goodbye for the client.
pub(crate) fn resume_check(p: &Player, claim: ResumeClaim) -> Result<(), Goodbye> {
    let refuse = |reason, message: String| Goodbye { reason, message };
    let Some(log) = p.replay.as_ref() else {
        return Err(refuse(
            DisconnectReason::ResumeRefused,
            "reconnects are turned off on this cluster".into(),
        ));
    };
    // A copy of an earlier attempt (even one that never got here) is
    // worthless once a later one was accepted.
    if claim.attempt <= p.last_attempt {
        return Err(refuse(
            DisconnectReason::AuthFailed,
            "an old or repeated reconnect attempt".into(),
        ));
    }
    let client_has = claim.received;
    match log.rewind(client_has) {
        Rewind::Replay(_) => Ok(()),
        Rewind::Lost {
            client_has,
            oldest_kept,
        } => {
            let message = format!(
                "the client has {client_has} messages and the oldest one kept is number \
                 {oldest_kept}: the ones between are gone (resume_buffer)"
            );
            Err(refuse(DisconnectReason::ResumeRefused, message))
        }
        Rewind::Impossible => Err(refuse(
            DisconnectReason::ProtocolViolation,
            format!("the client claims {client_has} messages, more than were sent"),
        )),
    }
}

/// Moves the player of a proven reconnect onto connection `conn` (whose
/// queue is `level`), with the reliable messages it missed queued first
/// (and its redirect, if it was being moved).
pub(crate) fn resume_player<S: std::hash::BuildHasher>(
    players: &mut HashMap<PlayerId, Player, S>,
    outputs: &mut Outputs,
    level: Arc<QueueLevel>,
    conn: u64,
    player: PlayerId,
    session_id: u64,
    claim: ResumeClaim,
) -> Result<Accepted, (Goodbye, Option<PlayerId>)> {
    let Some(p) = players
        .get_mut(&player)
        .filter(|p| p.session_id == session_id)
    else {
        let message = "the session ended before the reconnect was handled".into();
        return Err((
            Goodbye {
                reason: DisconnectReason::ResumeRefused,
                message,
            },
            None,
        ));
    };
    if let Err(goodbye) = resume_check(p, claim) {
        // Only a player already away, with nothing else to go on, is let go
        // for a reconnect that cannot work; an open connection stays.
        let end = match goodbye.reason {
            DisconnectReason::AuthFailed => None,
            _ => p.away_until.is_some().then_some(player),
        };
        return Err((goodbye, end));
    }
    let Some(log) = p.replay.as_mut() else {
        return Err((Goodbye::new(DisconnectReason::ResumeRefused), None));
    };
    let client_has = claim.received;
    let again: Vec<ClusterToClient> = match log.rewind(client_has) {
        Rewind::Replay(kept) => kept
            .into_iter()
            .map(|(command, payload)| ClusterToClient::Data {
                command: *command,
                payload: payload.clone(),
            })
            .collect(),
        // resume_check said it is in range.
        Rewind::Lost { .. } | Rewind::Impossible => Vec::new(),
    };
    p.last_attempt = claim.attempt;
    log.ack(client_has);
    // The Resumed message carries the count: nothing to acknowledge yet.
    let received = log.mark_acked();
    debug!(
        player,
        again = again.len(),
        client_has,
        received,
        "resuming: sending the player's missed messages again"
    );
    close_left_behind(p, outputs);
    // Counted in whatever the bound, so none of it can be refused.
    for m in again {
        outputs.send_kept(conn, &level, m);
    }
    if let Some(ticket) = &p.redirect {
        outputs.send_kept(conn, &level, ClusterToClient::Redirect((**ticket).clone()));
    }
    p.out = Some(level);
    p.conn = conn;
    p.away_until = None;
    Ok(Accepted { received })
}
