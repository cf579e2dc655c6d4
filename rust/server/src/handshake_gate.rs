//! Admission of connections that have not finished their handshake, shared
//! by the master and the cluster.
//!
//! A half-open connection costs a task, a socket and a slot until its
//! handshake ends, so they are bounded three ways: in total
//! (`max_handshakes`); per source address once the general pool is half
//! full (`max_handshakes_per_address`; IPv6 addresses count per /64, since
//! one host easily holds a whole /64), so a burst of joins through one NAT
//! passes while the pool has room, but under a flood no address holds more
//! than its share; and in a separate pool of `max_known_handshakes` slots for *known*
//! addresses, which a flood from other addresses cannot fill. The master
//! makes an address known when a cluster registers from it, so clusters
//! re-register while clients (or anyone) flood it. [`GateCounts`] is the
//! sans-IO bookkeeping; [`HandshakeGate`] wraps it for the connection tasks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::Limits;

/// Most addresses remembered as known; the oldest is forgotten first.
pub(crate) const KNOWN_ADDRESSES_MAX: usize = 4096;

/// Which pool a connection's slot is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pool {
    /// Everyone's.
    General,
    /// Known addresses only.
    Known,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GateRefusal {
    /// Every slot of the connection's pool is taken.
    Full,
    /// Its address already has as many connections in their handshake as allowed.
    PerAddress,
}

impl GateRefusal {
    /// The text sent with `Reject(TooManyHandshakes)`.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Full => "too many pending handshakes",
            Self::PerAddress => "too many pending handshakes from this address",
        }
    }
}

/// The counting, without locks or sockets.
#[derive(Debug)]
pub(crate) struct GateCounts {
    max_general: usize,
    max_known: usize,
    max_per_address: usize,
    general: usize,
    known_in_use: usize,
    per_address: HashMap<IpAddr, usize>,
    known: HashSet<IpAddr>,
    known_order: VecDeque<IpAddr>,
}

/// The address a per-address limit counts under: IPv4 as is, IPv6 by its /64.
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
    }
}

impl GateCounts {
    /// Empty counts with these limits.
    pub(crate) fn new(max_general: usize, max_known: usize, max_per_address: usize) -> Self {
        Self {
            max_general,
            max_known,
            max_per_address,
            general: 0,
            known_in_use: 0,
            per_address: HashMap::new(),
            known: HashSet::new(),
            known_order: VecDeque::new(),
        }
    }

    /// Takes a slot for a connection from `ip`.
    pub(crate) fn enter(&mut self, ip: IpAddr) -> Result<Pool, GateRefusal> {
        let key = address_key(ip);
        let from_address = self.per_address.get(&key).copied().unwrap_or(0);
        let under_pressure = self.general.saturating_mul(2) >= self.max_general;
        if from_address >= self.max_per_address && under_pressure {
            return Err(GateRefusal::PerAddress);
        }
        let pool = if self.known.contains(&key) && self.known_in_use < self.max_known {
            self.known_in_use += 1;
            Pool::Known
        } else if self.general < self.max_general {
            self.general += 1;
            Pool::General
        } else {
            return Err(GateRefusal::Full);
        };
        *self.per_address.entry(key).or_insert(0) += 1;
        Ok(pool)
    }

    /// Gives a slot back.
    pub(crate) fn leave(&mut self, ip: IpAddr, pool: Pool) {
        let key = address_key(ip);
        match pool {
            Pool::General => self.general = self.general.saturating_sub(1),
            Pool::Known => self.known_in_use = self.known_in_use.saturating_sub(1),
        }
        if let Some(n) = self.per_address.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_address.remove(&key);
            }
        }
    }

    /// Makes `ip` known (its later connections use the known pool first).
    pub(crate) fn remember(&mut self, ip: IpAddr) {
        let key = address_key(ip);
        if !self.known.insert(key) {
            return;
        }
        self.known_order.push_back(key);
        while self.known_order.len() > KNOWN_ADDRESSES_MAX {
            if let Some(old) = self.known_order.pop_front() {
                self.known.remove(&old);
            }
        }
    }

    /// Slots in use, general and known.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> (usize, usize) {
        (self.general, self.known_in_use)
    }
}

/// [`GateCounts`] behind a lock, handing out slots that give themselves back.
#[derive(Debug)]
pub(crate) struct HandshakeGate {
    counts: Mutex<GateCounts>,
    first_bytes: Duration,
}

impl HandshakeGate {
    /// A gate with the handshake limits of `limits`.
    pub(crate) fn new(limits: &Limits) -> Arc<Self> {
        Arc::new(Self {
            counts: Mutex::new(GateCounts::new(
                limits.max_handshakes,
                limits.max_known_handshakes,
                limits.max_handshakes_per_address,
            )),
            first_bytes: limits.first_byte_timeout(),
        })
    }

    fn counts(&self) -> MutexGuard<'_, GateCounts> {
        // Every update is a few integer operations; a poisoned lock is still consistent.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a connection from `ip`, held until the returned permit drops.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<HandshakePermit, GateRefusal> {
        let pool = self.counts().enter(ip)?;
        Ok(HandshakePermit {
            gate: self.clone(),
            ip,
            pool,
        })
    }

    /// Makes `ip` known: see the module documentation.
    pub(crate) fn remember(&self, ip: IpAddr) {
        self.counts().remember(ip);
    }

    /// Waits for the connection's first bytes (or its close) within the
    /// first-bytes deadline; `false` if none came in time.
    pub(crate) async fn first_bytes(&self, stream: &TcpStream) -> bool {
        let mut one = [0u8; 1];
        tokio::time::timeout(self.first_bytes, stream.peek(&mut one))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// A connection's handshake slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct HandshakePermit {
    gate: Arc<HandshakeGate>,
    ip: IpAddr,
    pool: Pool,
}

impl Drop for HandshakePermit {
    fn drop(&mut self) {
        self.gate.counts().leave(self.ip, self.pool);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn per_address_and_total_limits() {
        let mut g = GateCounts::new(4, 2, 2);
        let a = ip("10.0.0.1");
        assert_eq!(g.enter(a), Ok(Pool::General));
        assert_eq!(g.enter(a), Ok(Pool::General));
        // The pool is half full: the address is at its share.
        assert_eq!(g.enter(a), Err(GateRefusal::PerAddress));
        assert_eq!(g.enter(ip("10.0.0.2")), Ok(Pool::General));
        assert_eq!(g.enter(ip("10.0.0.3")), Ok(Pool::General));
        assert_eq!(g.enter(ip("10.0.0.4")), Err(GateRefusal::Full));
        g.leave(a, Pool::General);
        assert_eq!(g.enter(ip("10.0.0.4")), Ok(Pool::General));
        assert_eq!(g.in_use(), (4, 0));
    }

    #[test]
    fn known_addresses_have_their_own_pool() {
        let mut g = GateCounts::new(2, 2, 8);
        let cluster = ip("10.0.0.9");
        g.remember(cluster);
        assert_eq!(g.enter(ip("10.0.0.1")), Ok(Pool::General));
        assert_eq!(g.enter(ip("10.0.0.2")), Ok(Pool::General));
        assert_eq!(g.enter(ip("10.0.0.3")), Err(GateRefusal::Full));
        // The flood filled the general pool; the known address still gets in.
        assert_eq!(g.enter(cluster), Ok(Pool::Known));
        assert_eq!(g.enter(cluster), Ok(Pool::Known));
        assert_eq!(g.enter(cluster), Err(GateRefusal::Full));
        g.leave(cluster, Pool::Known);
        assert_eq!(g.enter(cluster), Ok(Pool::Known));
    }

    #[test]
    fn a_burst_from_one_address_passes_while_the_pool_has_room() {
        let mut g = GateCounts::new(10, 0, 2);
        let nat = ip("10.0.0.1");
        for _ in 0..5 {
            assert_eq!(g.enter(nat), Ok(Pool::General));
        }
        assert_eq!(g.enter(nat), Err(GateRefusal::PerAddress));
        assert_eq!(g.enter(ip("10.0.0.2")), Ok(Pool::General));
    }

    #[test]
    fn ipv6_counts_per_64() {
        let mut g = GateCounts::new(4, 0, 2);
        assert_eq!(g.enter(ip("2001:db8::1")), Ok(Pool::General));
        assert_eq!(g.enter(ip("2001:db8::ffff:2")), Ok(Pool::General));
        assert_eq!(g.enter(ip("2001:db8::3")), Err(GateRefusal::PerAddress));
        assert_eq!(g.enter(ip("2001:db8:0:1::1")), Ok(Pool::General));
        // An IPv4-mapped address counts as the IPv4 address.
        let mut g = GateCounts::new(4, 0, 2);
        assert_eq!(g.enter(ip("10.0.0.1")), Ok(Pool::General));
        assert_eq!(g.enter(ip("::ffff:10.0.0.1")), Ok(Pool::General));
        assert_eq!(g.enter(ip("10.0.0.1")), Err(GateRefusal::PerAddress));
    }

    #[test]
    fn known_addresses_are_bounded() {
        let mut g = GateCounts::new(1, 1, 1);
        for i in 0..(KNOWN_ADDRESSES_MAX as u32 + 10) {
            g.remember(IpAddr::V4(i.into()));
        }
        assert_eq!(g.known.len(), KNOWN_ADDRESSES_MAX);
        assert!(!g.known.contains(&IpAddr::V4(0u32.into())));
    }
}
