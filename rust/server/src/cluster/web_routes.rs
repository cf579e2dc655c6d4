//! The narrow hook between the cluster's core and its WebSocket players.
//!
//! To the core a web player is an ordinary player: its unreliable traffic
//! has a *path* like any other, whose address is a made-up one in the
//! discard-only prefix `100::/64` (RFC 6666) that names the player's
//! connection, so it never collides with a real source. The driver hands
//! datagrams sealed for such an address to the connection's [`Route`]
//! instead of the UDP socket; the connection opens them and passes the
//! data on over the WebSocket. A route holds at most `unreliable_queue`
//! datagrams: when the player's socket is backed up, the oldest (stalest)
//! are dropped rather than queued.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use sustenet_proto::SessionSecret;
use tokio::sync::Notify;

use crate::ids::PlayerId;

/// The made-up path address of web connection `conn`.
pub(crate) fn web_addr(conn: u64) -> SocketAddr {
    let s = |shift: u32| (conn >> shift) as u16;
    let ip = Ipv6Addr::new(0x100, 0, 0, 0, s(48), s(32), s(16), s(0));
    SocketAddr::V6(SocketAddrV6::new(ip, 0, 0, 0))
}

/// Whether `addr` is a web connection's path address.
pub(crate) fn is_web_addr(addr: SocketAddr) -> bool {
    match addr {
        SocketAddr::V6(a) => a.ip().segments()[..4] == [0x100, 0, 0, 0] && a.port() == 0,
        SocketAddr::V4(_) => false,
    }
}

/// Sealed datagrams waiting for a web connection, newest kept.
#[derive(Debug)]
pub(crate) struct Route {
    queue: Mutex<VecDeque<Vec<u8>>>,
    cap: usize,
    pub(crate) ready: Notify,
    dropped: AtomicU64,
}

impl Route {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::with_capacity(cap.min(64))),
            cap: cap.max(1),
            ready: Notify::new(),
            dropped: AtomicU64::new(0),
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Vec<u8>>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a datagram; when full, the oldest one is dropped.
    pub(crate) fn push(&self, d: &[u8]) {
        {
            let mut q = self.queue();
            if q.len() >= self.cap {
                q.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            q.push_back(d.to_vec());
        }
        self.ready.notify_one();
    }

    /// The oldest waiting datagram.
    pub(crate) fn pop(&self) -> Option<Vec<u8>> {
        self.queue().pop_front()
    }

    /// Datagrams dropped because the connection was behind.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The web side of a cluster: open routes, and the session secrets web
/// reconnects are proven with.
#[derive(Debug, Default)]
pub(crate) struct WebPlayers {
    routes: Mutex<HashMap<SocketAddr, Arc<Route>>>,
    secrets: Mutex<HashMap<u64, (PlayerId, SessionSecret)>>,
}

impl WebPlayers {
    fn routes(&self) -> MutexGuard<'_, HashMap<SocketAddr, Arc<Route>>> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn secrets(&self) -> MutexGuard<'_, HashMap<u64, (PlayerId, SessionSecret)>> {
        self.secrets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a datagram the core sealed for `addr` to its web connection;
    /// false when `addr` is not a web path (send it on the UDP socket).
    pub(crate) fn deliver(&self, addr: SocketAddr, d: &[u8]) -> bool {
        if !is_web_addr(addr) {
            return false;
        }
        if let Some(r) = self.routes().get(&addr) {
            r.push(d);
        }
        true
    }

    pub(crate) fn open_route(&self, addr: SocketAddr, route: Arc<Route>) {
        self.routes().insert(addr, route);
    }

    pub(crate) fn close_route(&self, addr: SocketAddr) {
        self.routes().remove(&addr);
    }

    /// Keeps a web session's secret for its reconnects.
    pub(crate) fn remember(&self, session_id: u64, player: PlayerId, secret: SessionSecret) {
        self.secrets().insert(session_id, (player, secret));
    }

    /// A web session's player and secret.
    pub(crate) fn secret(&self, session_id: u64) -> Option<(PlayerId, SessionSecret)> {
        self.secrets().get(&session_id).cloned()
    }

    /// The session ended: its secret is forgotten.
    pub(crate) fn forget(&self, session_id: u64) {
        self.secrets().remove(&session_id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn web_addresses_are_recognised_and_distinct() {
        assert!(is_web_addr(web_addr(1)));
        assert!(is_web_addr(web_addr(u64::MAX)));
        assert_ne!(web_addr(1), web_addr(2));
        assert!(!is_web_addr("127.0.0.1:6257".parse().unwrap()));
        assert!(!is_web_addr("[::1]:0".parse().unwrap()));
        assert!(!is_web_addr("[100::1]:5".parse().unwrap()), "a real port");
    }

    #[test]
    fn a_full_route_drops_the_oldest() {
        let r = Route::new(2);
        r.push(b"1");
        r.push(b"2");
        r.push(b"3");
        assert_eq!(r.dropped(), 1);
        assert_eq!(r.pop().unwrap(), b"2");
        assert_eq!(r.pop().unwrap(), b"3");
        assert!(r.pop().is_none());
    }
}
