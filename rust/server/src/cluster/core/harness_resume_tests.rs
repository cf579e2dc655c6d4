//! Reconnects on a fake clock, where they meet a redirect or a full send
//! queue: a player away keeps its seat for the whole reconnect window even
//! while it is being moved, and what a reconnect sends again takes none of
//! the send queue's room.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use sustenet_proto::{ClusterToClient, DisconnectReason};

use super::LinkEvent;
use super::harness::{Conn, Harness, Seen};
use super::harness_tests::{GRACE, config, data, ticket};
use crate::cluster::ClusterConfig;
use crate::config::Limits;

/// How long a connected player has to follow its redirect (`limits.timeout`).
const REDIRECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Asks the master to move player 1 and returns the request's id.
fn ask_transfer(h: &mut Harness) -> u64 {
    h.command(|ctx| ctx.transfer(1, 99, b"state").unwrap());
    h.link
        .drain(..)
        .find_map(|e| match e {
            LinkEvent::Transfer { request_id, .. } => Some(request_id),
            _ => None,
        })
        .unwrap()
}

/// The master's ticket for request `request_id` of player 1 arrives.
fn ticket_arrives(h: &mut Harness, request_id: u64) {
    let now = h.now;
    h.core.handle_transfer_ready(now, request_id, 1, ticket(1));
    h.pump();
}

/// The player is away for `away`, past the redirect's timeout and inside
/// the window; then it reconnects and gets its redirect.
fn away_then_back_with_the_redirect(h: &mut Harness, away: Duration) -> Conn {
    assert!(away > REDIRECT_TIMEOUT && away < GRACE);
    h.advance(away);
    assert_eq!(h.seats(), 1, "the seat is held for the whole window");
    assert!(
        !h.seen().iter().any(|s| matches!(s, Seen::Disconnect(..))),
        "let go while away"
    );
    let (mut c2, _) = h.resume(1, 0, 1).expect("the session is still there");
    assert!(
        matches!(c2.drain().last(), Some(ClusterToClient::Redirect(_))),
        "the redirect comes again after the reconnect"
    );
    c2
}

#[test]
fn a_redirect_lost_with_the_connection_waits_for_the_reconnect_window() {
    let mut h = Harness::new(config());
    let c = h.join(1).unwrap();
    let request_id = ask_transfer(&mut h);
    ticket_arrives(&mut h, request_id);
    // The redirect was queued, but the connection died before it was read.
    h.lost(1, &c);
    away_then_back_with_the_redirect(&mut h, REDIRECT_TIMEOUT + Duration::from_secs(5));
    // From the redirect sent again, the client has the redirect's timeout
    // to follow it, no less.
    h.advance(REDIRECT_TIMEOUT - Duration::from_millis(1));
    assert_eq!(h.seats(), 1);
    h.drive(10);
    assert!(
        h.seen()
            .contains(&Seen::Disconnect(1, DisconnectReason::Redirected))
    );
    assert_eq!((h.seats(), h.resumable()), (0, 0));
}

#[test]
fn a_ticket_that_arrives_while_the_player_is_away_waits_for_the_reconnect() {
    let mut h = Harness::new(config());
    let c = h.join(1).unwrap();
    let request_id = ask_transfer(&mut h);
    h.lost(1, &c);
    ticket_arrives(&mut h, request_id);
    away_then_back_with_the_redirect(&mut h, GRACE - Duration::from_secs(1));
}

#[test]
fn a_player_being_moved_that_never_comes_back_leaves_when_its_window_ends() {
    let mut h = Harness::new(config());
    let c = h.join(1).unwrap();
    let request_id = ask_transfer(&mut h);
    ticket_arrives(&mut h, request_id);
    h.lost(1, &c);
    let gone_at = h.now + GRACE;
    h.advance(REDIRECT_TIMEOUT + Duration::from_secs(1));
    // The next deadline is the window's end, not the passed redirect
    // timeout (which would wake the driver again and again).
    assert_eq!(h.core.poll_timeout(), Some(gone_at));
    h.advance(gone_at - h.now - Duration::from_millis(1));
    assert_eq!(h.seats(), 1);
    assert!(h.step());
    // It may have followed the redirect and lost only its goodbye.
    assert_eq!(
        h.seen().last(),
        Some(&Seen::Disconnect(1, DisconnectReason::Redirected))
    );
    assert_eq!((h.seats(), h.resumable()), (0, 0));
    assert!(!h.step(), "nothing is left to wait for");
}

#[test]
fn what_a_reconnect_sends_again_takes_none_of_the_send_queue() {
    const QUEUE: usize = 64;
    let mut h = Harness::new(ClusterConfig {
        limits: Limits {
            send_queue: QUEUE,
            ..Limits::default()
        },
        ..config()
    });
    let c = h.join(1).unwrap();
    h.lost(1, &c);
    // Away: more messages than the send queue holds, well inside the
    // reconnect buffer.
    let payload = |i: usize| format!("m{i}").into_bytes();
    h.command(move |ctx| {
        for i in 0..QUEUE * 2 {
            ctx.send(1, 5, &payload(i)).unwrap();
        }
    });
    let (mut c2, _) = h.resume(1, 0, 1).unwrap();
    // Before the new connection's writer took anything out: a heartbeat's
    // ping and a full queue of new messages still fit.
    h.advance(Duration::from_secs(1));
    h.command(move |ctx| {
        for i in QUEUE * 2..QUEUE * 3 - 1 {
            ctx.send(1, 5, &payload(i)).unwrap();
        }
    });
    assert_eq!(h.seats(), 1, "{:?}", h.seen());
    let want: Vec<Vec<u8>> = (0..QUEUE * 3 - 1).map(payload).collect();
    assert_eq!(data(&c2.drain()), want);
    assert!(c2.goodbye().is_none());
}
