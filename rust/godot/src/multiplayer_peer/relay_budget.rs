//! How many bytes each client may make the cluster's SceneMultiplayer relay
//! a second, sans-IO (the caller passes the time in).
//!
//! One relay request to every peer costs the server its packet size times
//! the number of other peers: a client could make the cluster send N times
//! what it sends. Each client gets a bucket of `bytes_per_sec` relayed bytes
//! (packet size × receivers) that refills continuously and holds at most one
//! second's worth; a request that does not fit is refused, and the caller
//! disconnects the client.

use std::collections::HashMap;
use std::time::Instant;

use sustenet_server::PlayerId;

/// One client's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Relayed bytes the client may still send now.
    bytes: u64,
    /// When `bytes` was last refilled.
    at: Instant,
}

/// The relayed-bytes budgets of every client that relayed.
#[derive(Debug, Default)]
pub struct RelayBudget {
    buckets: HashMap<PlayerId, Bucket>,
}

impl RelayBudget {
    /// Takes `bytes` relayed bytes from `player`'s bucket at `now`, with
    /// `per_sec` bytes a second allowed (0: no limit). `false`: over budget.
    pub fn spend(&mut self, player: PlayerId, bytes: u64, per_sec: u64, now: Instant) -> bool {
        if per_sec == 0 {
            return true;
        }
        let b = self.buckets.entry(player).or_insert(Bucket {
            bytes: per_sec,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at);
        let refill =
            u64::try_from(elapsed.as_micros().saturating_mul(u128::from(per_sec)) / 1_000_000)
                .unwrap_or(u64::MAX);
        if refill > 0 {
            b.bytes = b.bytes.saturating_add(refill).min(per_sec);
            b.at = now;
        }
        if bytes > b.bytes {
            return false;
        }
        b.bytes -= bytes;
        true
    }

    /// Forgets a player that left.
    pub fn forget(&mut self, player: PlayerId) {
        self.buckets.remove(&player);
    }
}

/// Receivers of a relay request to `target` with `clients` client peers
/// connected (the sender included, the server not): every other client for
/// 0, every other client but one for a negative target, one for a positive
/// target.
pub fn relay_receivers(target: i32, clients: usize) -> u64 {
    let clients = u64::try_from(clients).unwrap_or(u64::MAX);
    match target {
        0 => clients.saturating_sub(1),
        t if t < 0 => clients.saturating_sub(2),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_client_gets_one_second_of_budget_and_it_refills() {
        let mut b = RelayBudget::default();
        let t0 = Instant::now();
        assert!(b.spend(1, 600, 1000, t0));
        assert!(b.spend(1, 400, 1000, t0));
        assert!(!b.spend(1, 1, 1000, t0), "the second's budget is spent");
        // Half a second later, half the budget is back; never more than one second's.
        assert!(b.spend(1, 500, 1000, t0 + Duration::from_millis(500)));
        assert!(!b.spend(1, 1, 1000, t0 + Duration::from_millis(500)));
        assert!(!b.spend(1, 1001, 1000, t0 + Duration::from_secs(60)));
        assert!(b.spend(1, 1000, 1000, t0 + Duration::from_secs(60)));
    }

    #[test]
    fn clients_have_their_own_buckets_and_zero_means_no_limit() {
        let mut b = RelayBudget::default();
        let t0 = Instant::now();
        assert!(b.spend(1, 1000, 1000, t0));
        assert!(
            b.spend(2, 1000, 1000, t0),
            "another client's budget is whole"
        );
        assert!(b.spend(3, u64::MAX, 0, t0));
        b.forget(1);
        assert!(b.spend(1, 1000, 1000, t0), "a client that left starts anew");
    }

    #[test]
    fn receivers_follow_scene_multiplayers_targets() {
        assert_eq!(relay_receivers(0, 10), 9);
        assert_eq!(relay_receivers(-5, 10), 8);
        assert_eq!(relay_receivers(7, 10), 1);
        assert_eq!(relay_receivers(0, 0), 0);
        assert_eq!(relay_receivers(-5, 1), 0);
    }
}
