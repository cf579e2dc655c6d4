//! Where a player's datagrams go, and the checks that keep the cluster from
//! being used as a reflector (sans-IO: the caller passes the time in).
//!
//! The cluster sends a player's unreliable traffic to one *validated*
//! address: one that proved it receives the session's datagrams by echoing a
//! [`Record::PathChallenge`](sustenet_proto::datagram::Record) sealed with the
//! session's key. An authenticated datagram from any other address (the
//! first one of the session, a NAT rebinding, or a spoofed source) makes that
//! address a *candidate*: it gets the challenge, and until it answers, it
//! receives no more bytes and no more datagrams than it sent (the answer to a
//! datagram is at most one datagram). A validated address that sends nothing
//! for the silence window stops receiving datagrams and must prove itself
//! again. A player's datagrams are authenticated, so only the player (or a
//! copy of its traffic, which the replay window refuses) can make an address
//! a candidate; a candidate that never answers never gets a stream.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngCore;
use rand::rngs::StdRng;
use sustenet_proto::crypto::DATAGRAM_OVERHEAD;
use sustenet_proto::datagram::{self, Record};
use tracing::debug;

use super::players::Player;
use super::transmit::Transmits;

/// A player's UDP address state.
#[derive(Debug, Default)]
pub(crate) struct UdpPath {
    /// The validated address and when a datagram last came from it.
    validated: Option<(SocketAddr, Instant)>,
    /// The address being checked, if any (the newest unproven source).
    candidate: Option<Candidate>,
    /// The value of the challenge sent to the validated address when the
    /// candidate appeared (the old path's probe), and whether it still has
    /// to be sent ([`UdpPath::take_probe`]).
    probe: Option<(u64, bool)>,
}

/// An address that sent authenticated datagrams but has not echoed its
/// challenge yet, with what it may still be sent.
#[derive(Debug)]
struct Candidate {
    addr: SocketAddr,
    challenge: u64,
    /// Bytes it may still be sent: those received from it, less those sent.
    bytes: usize,
    /// Datagrams it may still be sent, counted the same way.
    datagrams: usize,
}

/// What the cluster may answer a datagram with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The validated address: any answer may go to it.
    Validated,
    /// A candidate that must echo this challenge; an answer must fit its
    /// allowance ([`UdpPath::spend`]).
    Candidate {
        /// The challenge to send it.
        challenge: u64,
    },
}

impl UdpPath {
    /// Records an authenticated datagram of `len` bytes from `from` at
    /// `now`. `fresh` draws a new random challenge when `from` becomes the
    /// candidate.
    pub(crate) fn on_datagram(
        &mut self,
        now: Instant,
        silence: Duration,
        from: SocketAddr,
        len: usize,
        mut fresh: impl FnMut() -> u64,
    ) -> Source {
        if let Some((addr, heard)) = self.validated.as_mut()
            && *addr == from
        {
            if now.saturating_duration_since(*heard) <= silence {
                *heard = now;
                return Source::Validated;
            }
            // Silent too long: the address may belong to someone else by now.
            self.validated = None;
        }
        match self.candidate.as_mut() {
            Some(c) if c.addr == from => {
                c.bytes = c.bytes.saturating_add(len);
                c.datagrams = c.datagrams.saturating_add(1);
                Source::Candidate {
                    challenge: c.challenge,
                }
            }
            _ => {
                let challenge = fresh();
                // Probe the old path too, as QUIC does: a player still
                // answering there has not moved, and the new source was a
                // copy of its datagram sent from elsewhere.
                self.probe = self.target(now, silence).map(|_| (fresh(), true));
                self.candidate = Some(Candidate {
                    addr: from,
                    challenge,
                    bytes: len,
                    datagrams: 1,
                });
                Source::Candidate { challenge }
            }
        }
    }

    /// A `PathResponse` carrying `value` came from `from`: if it answers the
    /// candidate's challenge, from the candidate's address, that address is
    /// validated and every datagram goes there from now on. Returns whether
    /// it was.
    ///
    /// The old path's probe answered from the validated address means the
    /// player is still there: the candidate is dropped (its allowance too),
    /// and the address does not move.
    pub(crate) fn on_response(&mut self, now: Instant, from: SocketAddr, value: u64) -> bool {
        if self.probe.is_some_and(|(v, _)| v == value)
            && let Some((addr, heard)) = self.validated.as_mut()
            && *addr == from
        {
            *heard = now;
            self.probe = None;
            self.candidate = None;
            return false;
        }
        match &self.candidate {
            Some(c) if c.addr == from && c.challenge == value => {
                self.validated = Some((from, now));
                self.candidate = None;
                self.probe = None;
                true
            }
            _ => false,
        }
    }

    /// The old path's probe, once: the validated address and the challenge
    /// to send it, when a new candidate appeared while that address was live.
    pub(crate) fn take_probe(&mut self) -> Option<(SocketAddr, u64)> {
        let (value, unsent) = self.probe.as_mut()?;
        let (addr, _) = self.validated?;
        if !*unsent {
            return None;
        }
        *unsent = false;
        Some((addr, *value))
    }

    /// Takes `len` bytes and one datagram from `to`'s allowance: whether an
    /// answer of `len` bytes may be sent to it. Always true for the
    /// validated address.
    pub(crate) fn spend(&mut self, to: SocketAddr, len: usize) -> bool {
        if self.validated.is_some_and(|(a, _)| a == to) {
            return true;
        }
        match self.candidate.as_mut() {
            Some(c) if c.addr == to && c.bytes >= len && c.datagrams >= 1 => {
                c.bytes -= len;
                c.datagrams -= 1;
                true
            }
            _ => false,
        }
    }

    /// Where the player's unreliable traffic goes at `now`: the validated
    /// address, unless it has been silent for longer than `silence`.
    pub(crate) fn target(&self, now: Instant, silence: Duration) -> Option<SocketAddr> {
        self.target_heard_since(now.checked_sub(silence))
    }

    /// [`Self::target`] with `now - silence` found once for many players:
    /// the validated address if it was heard at or after `since` (`None`:
    /// before the clock's origin, so any time it was heard).
    pub(crate) fn target_heard_since(&self, since: Option<Instant>) -> Option<SocketAddr> {
        let (addr, heard) = self.validated?;
        since.is_none_or(|s| heard >= s).then_some(addr)
    }
}

/// How and when a datagram arrived.
pub(crate) struct Arrived {
    pub(crate) now: Instant,
    /// `udp_silence`.
    pub(crate) silence: Duration,
    pub(crate) from: SocketAddr,
    pub(crate) len: usize,
}

/// Handles an authenticated datagram of `len` bytes that came from `from`:
/// moves the player's address only once `from` proved itself (its
/// `PathResponse`), answers with at most one datagram (the challenge for an
/// unproven source, the `Pong` to the datagram's last `Ping`), within the
/// source's allowance, and returns the data records for the plugin.
pub(crate) fn on_datagram(
    transmits: &mut Transmits,
    rng: &mut StdRng,
    p: &mut Player,
    a: Arrived,
    records: Vec<Record>,
) -> Vec<(u16, Vec<u8>)> {
    let Arrived {
        now,
        silence,
        from,
        len,
    } = a;
    // The challenge for a new, unproven source.
    let source = p
        .path
        .on_datagram(now, silence, from, len, || rng.next_u64());
    let mut ping = None;
    let mut data = Vec::new();
    let mut proven = false;
    for r in records {
        match r {
            Record::Data { command, payload } => data.push((command, payload)),
            Record::Ping(v) => ping = Some(v),
            Record::PathResponse(v) => proven |= p.path.on_response(now, from, v),
            Record::Pong(_) | Record::PathChallenge(_) => {}
        }
    }
    if proven {
        debug!(%from, "player's UDP address validated");
    }
    let challenge = match source {
        Source::Candidate { challenge } if !proven => Some(challenge),
        _ => None,
    };
    let mut answer: Vec<Record> = challenge
        .map(Record::PathChallenge)
        .into_iter()
        .chain(ping.map(Record::Pong))
        .collect();
    let size = |r: &[Record]| DATAGRAM_OVERHEAD + r.iter().map(Record::encoded_len).sum::<usize>();
    // The challenge first: a source whose allowance is too small for both
    // gets only the challenge.
    while !answer.is_empty() && !p.path.spend(from, size(&answer)) {
        answer.pop();
    }
    if !answer.is_empty() {
        let mut batch = datagram::Batch::new();
        for r in &answer {
            let _ = batch.push(r);
        }
        transmits.seal(&mut p.udp, from, batch.as_bytes());
    }
    // A new candidate while the validated address is live: one challenge to
    // that (proven) address as well.
    if let Some((old, value)) = p.path.take_probe() {
        let mut batch = datagram::Batch::new();
        let _ = batch.push(&Record::PathChallenge(value));
        transmits.seal(&mut p.udp, old, batch.as_bytes());
    }
    data
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const SILENCE: Duration = Duration::from_secs(10);

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// A path whose player proved `addr(1)` at `t0` (its challenge was 7).
    fn proven_at(t0: Instant) -> UdpPath {
        let mut p = UdpPath::default();
        p.on_datagram(t0, SILENCE, addr(1), 42, || 7);
        assert!(p.on_response(t0, addr(1), 7));
        p
    }

    #[test]
    fn a_copy_from_elsewhere_does_not_move_a_player_that_answers_on_its_proven_address() {
        let t0 = Instant::now();
        let mut p = proven_at(t0);
        assert_eq!(p.take_probe(), None);
        // A copy of the player's datagram arrives from addr(2) first: a
        // candidate, and a probe of the old path.
        let mut values = [11u64, 12].into_iter();
        let s = p.on_datagram(t0, SILENCE, addr(2), 42, || values.next().unwrap());
        assert_eq!(s, Source::Candidate { challenge: 11 });
        assert_eq!(p.take_probe(), Some((addr(1), 12)));
        assert_eq!(p.take_probe(), None, "the probe goes once");
        // The player answers the probe from its proven address: it has not
        // moved, and the candidate is gone, even if its challenge is answered
        // later (an on-path attacker relaying the player's answer).
        assert!(!p.on_response(t0, addr(1), 12));
        assert!(!p.on_response(t0, addr(2), 11));
        assert_eq!(p.target(t0, SILENCE), Some(addr(1)));
        assert!(
            !p.spend(addr(2), 1),
            "the dropped candidate has no allowance left"
        );
    }

    #[test]
    fn an_address_is_live_for_exactly_the_silence_after_it_was_heard() {
        let t0 = Instant::now();
        let p = proven_at(t0);
        let ns = Duration::from_nanos(1);
        for (now, live) in [(t0, true), (t0 + SILENCE, true), (t0 + SILENCE + ns, false)] {
            let expected = live.then_some(addr(1));
            assert_eq!(p.target(now, SILENCE), expected);
            assert_eq!(p.target_heard_since(now.checked_sub(SILENCE)), expected);
        }
        // Before the clock's origin plus the silence: any time heard is live.
        assert_eq!(p.target_heard_since(None), Some(addr(1)));
    }

    #[test]
    fn a_rebinding_client_is_not_held_back_by_the_old_path_probe() {
        let t0 = Instant::now();
        let mut p = proven_at(t0);
        let mut values = [11u64, 12].into_iter();
        p.on_datagram(t0, SILENCE, addr(2), 42, || values.next().unwrap());
        assert_eq!(p.take_probe(), Some((addr(1), 12)));
        // Its NAT now sends everything from addr(2): the probe's answer
        // comes from there too and proves nothing; its own challenge moves it.
        assert!(!p.on_response(t0, addr(2), 12));
        assert!(p.on_response(t0, addr(2), 11));
        assert_eq!(p.target(t0, SILENCE), Some(addr(2)));
        assert_eq!(p.take_probe(), None);
    }

    #[test]
    fn an_address_gets_traffic_only_after_echoing_its_challenge() {
        let t0 = Instant::now();
        let mut p = UdpPath::default();
        let s = p.on_datagram(t0, SILENCE, addr(1), 42, || 77);
        assert_eq!(s, Source::Candidate { challenge: 77 });
        assert_eq!(p.target(t0, SILENCE), None);
        // A wrong value, or the right one from elsewhere, proves nothing.
        assert!(!p.on_response(t0, addr(1), 78));
        assert!(!p.on_response(t0, addr(2), 77));
        assert_eq!(p.target(t0, SILENCE), None);
        assert!(p.on_response(t0, addr(1), 77));
        assert_eq!(p.target(t0, SILENCE), Some(addr(1)));
        // Once validated, answers of any size may go there.
        assert!(p.spend(addr(1), 10_000));
    }

    #[test]
    fn a_candidate_is_sent_no_more_than_it_sent() {
        let t0 = Instant::now();
        let mut p = UdpPath::default();
        p.on_datagram(t0, SILENCE, addr(1), 42, || 5);
        assert!(!p.spend(addr(1), 43), "more bytes than received");
        assert!(p.spend(addr(1), 42));
        assert!(!p.spend(addr(1), 1), "a second datagram for one received");
        assert_eq!(
            p.on_datagram(t0, SILENCE, addr(1), 100, || 6),
            Source::Candidate { challenge: 5 },
            "the challenge stays the same while the address is a candidate"
        );
        assert!(p.spend(addr(1), 60));
        assert!(!p.spend(addr(1), 40), "one datagram per datagram received");
        assert!(
            !p.spend(addr(2), 1),
            "never to an address that sent nothing"
        );
    }

    #[test]
    fn a_new_source_does_not_move_traffic_until_it_proves_itself() {
        let t0 = Instant::now();
        let mut p = proven_at(t0);
        // A rebinding (or a spoofed source) becomes a candidate; traffic
        // stays on the proven address meanwhile.
        let s = p.on_datagram(t0, SILENCE, addr(2), 42, || 2);
        assert_eq!(s, Source::Candidate { challenge: 2 });
        assert_eq!(p.target(t0, SILENCE), Some(addr(1)));
        assert_eq!(
            p.on_datagram(t0, SILENCE, addr(1), 42, || 3),
            Source::Validated
        );
        assert!(p.on_response(t0, addr(2), 2));
        assert_eq!(p.target(t0, SILENCE), Some(addr(2)));
    }

    #[test]
    fn a_silent_address_stops_receiving_and_must_prove_itself_again() {
        let t0 = Instant::now();
        let mut p = proven_at(t0);
        assert_eq!(p.target(t0 + SILENCE, SILENCE), Some(addr(1)));
        let late = t0 + SILENCE + Duration::from_millis(1);
        assert_eq!(p.target(late, SILENCE), None);
        let s = p.on_datagram(late, SILENCE, addr(1), 42, || 9);
        assert_eq!(s, Source::Candidate { challenge: 9 });
        assert_eq!(p.target(late, SILENCE), None);
        assert!(p.on_response(late, addr(1), 9));
        assert_eq!(p.target(late, SILENCE), Some(addr(1)));
    }
}
