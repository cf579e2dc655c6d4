//! Cluster choice: ping the listed clusters and pick one by round trip and load.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sustenet_proto::ClusterInfo;
use sustenet_proto::datagram;
use tokio::net::UdpSocket;
use tracing::debug;

/// A cluster's measured round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterPing {
    /// The cluster's id.
    pub id: u64,
    /// The best of the round trips measured; `None` when it did not answer.
    pub rtt: Option<Duration>,
}

/// How much a full cluster weighs against round trip in [`pick_best`]: a
/// full cluster scores as if it were this much farther away.
pub const LOAD_WEIGHT: Duration = Duration::from_millis(100);
/// The round trip assumed for a cluster that did not answer its pings.
pub const NO_ANSWER_RTT: Duration = Duration::from_secs(1);

/// Picks the cluster to join by round trip and load. The rule: among the
/// clusters that are not full, the lowest `rtt + LOAD_WEIGHT × fill` wins,
/// where `fill` is `players / capacity` (from 0 to 1), or for clusters
/// without a limit `players / (players + 100)`; a cluster that did not
/// answer counts as [`NO_ANSWER_RTT`] away; ties go to the lower id.
pub fn pick_best(clusters: &[ClusterInfo], pings: &[ClusterPing]) -> Option<u64> {
    let score = |c: &ClusterInfo| {
        let rtt = pings
            .iter()
            .find(|p| p.id == c.id)
            .and_then(|p| p.rtt)
            .unwrap_or(NO_ANSWER_RTT);
        let players = f64::from(c.players);
        let fill = if c.capacity > 0 {
            (players / f64::from(c.capacity)).min(1.0)
        } else {
            players / (players + 100.0)
        };
        rtt.as_secs_f64() + LOAD_WEIGHT.as_secs_f64() * fill
    };
    clusters
        .iter()
        .filter(|c| !c.locked)
        .map(|c| (score(c), c.id))
        .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
        .map(|(_, id)| id)
}

/// Pings every cluster's UDP port twice and keeps the best answer of each,
/// waiting at most `timeout` in all.
pub(crate) async fn measure_pings(clusters: &[ClusterInfo], timeout: Duration) -> Vec<ClusterPing> {
    let mut targets: Vec<(u64, SocketAddr)> = Vec::new();
    for c in clusters {
        if let Ok(mut addrs) = tokio::net::lookup_host((c.address.as_str(), c.udp_port)).await {
            if let Some(a) = addrs.next() {
                targets.push((c.id, a));
            }
        }
    }
    let mut best: Vec<ClusterPing> = clusters
        .iter()
        .map(|c| ClusterPing {
            id: c.id,
            rtt: None,
        })
        .collect();
    let (Ok(v4), v6) = (
        UdpSocket::bind(SocketAddr::from(([0u8; 4], 0))).await,
        UdpSocket::bind(SocketAddr::from(([0u16; 8], 0))).await.ok(),
    ) else {
        return best;
    };
    let start = Instant::now();
    let mut sent_at: Vec<(u64, u64, Instant)> = Vec::new();
    for attempt in 0..2u64 {
        for (i, (id, addr)) in targets.iter().enumerate() {
            let nonce = ((i as u64) << 8) | attempt;
            let sock = if addr.is_ipv6() {
                v6.as_ref()
            } else {
                Some(&v4)
            };
            if let Some(sock) = sock {
                if sock
                    .send_to(&datagram::ping_request(nonce), addr)
                    .await
                    .is_ok()
                {
                    sent_at.push((nonce, *id, Instant::now()));
                }
            }
        }
    }
    let (mut buf4, mut buf6) = ([0u8; 64], [0u8; 64]);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut answered = 0;
    while answered < sent_at.len() {
        let recv = async {
            match &v6 {
                Some(v6) => tokio::select! {
                    r = v4.recv_from(&mut buf4) => r.map(|(n, _)| buf4[..n].to_vec()),
                    r = v6.recv_from(&mut buf6) => r.map(|(n, _)| buf6[..n].to_vec()),
                },
                None => v4
                    .recv_from(&mut buf4)
                    .await
                    .map(|(n, _)| buf4[..n].to_vec()),
            }
        };
        let Ok(Ok(d)) = tokio::time::timeout_at(deadline, recv).await else {
            break;
        };
        let Some((nonce, _, _)) = datagram::parse_ping_response(&d) else {
            continue;
        };
        let Some((_, id, at)) = sent_at.iter().find(|(n, _, _)| *n == nonce).copied() else {
            continue;
        };
        answered += 1;
        let rtt = at.elapsed();
        if let Some(b) = best.iter_mut().find(|b| b.id == id) {
            b.rtt = Some(b.rtt.map_or(rtt, |r| r.min(rtt)));
        }
    }
    debug!(clusters = clusters.len(), took = ?start.elapsed(), "cluster pings measured");
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(id: u64, players: u32, capacity: u32) -> ClusterInfo {
        ClusterInfo {
            id,
            name: format!("c{id}"),
            address: "127.0.0.1".into(),
            tcp_port: 1,
            udp_port: 1,
            players,
            capacity,
            locked: capacity > 0 && players >= capacity,
        }
    }

    fn ping(id: u64, ms: Option<u64>) -> ClusterPing {
        ClusterPing {
            id,
            rtt: ms.map(Duration::from_millis),
        }
    }

    #[test]
    fn nearest_wins_when_load_is_equal() {
        let list = [cluster(1, 10, 100), cluster(2, 10, 100)];
        assert_eq!(
            pick_best(&list, &[ping(1, Some(80)), ping(2, Some(20))]),
            Some(2)
        );
    }

    #[test]
    fn load_outweighs_a_small_ping_difference() {
        // 1: 20 ms, 90 % full → 20 + 90 = 110; 2: 40 ms, 10 % full → 40 + 10 = 50.
        let list = [cluster(1, 90, 100), cluster(2, 10, 100)];
        assert_eq!(
            pick_best(&list, &[ping(1, Some(20)), ping(2, Some(40))]),
            Some(2)
        );
        // ... but not a large one: 1: 20 + 90 = 110; 2: 150 + 10 = 160.
        assert_eq!(
            pick_best(&list, &[ping(1, Some(20)), ping(2, Some(150))]),
            Some(1)
        );
    }

    #[test]
    fn full_and_silent_clusters() {
        let list = [cluster(1, 100, 100), cluster(2, 0, 0), cluster(3, 0, 0)];
        // 1 is full; 2 did not answer (1000 ms); 3 answered.
        assert_eq!(
            pick_best(
                &list,
                &[ping(1, Some(1)), ping(2, None), ping(3, Some(300))]
            ),
            Some(3)
        );
        // Nobody answered: the least loaded unlocked one, ties to the lower id.
        assert_eq!(pick_best(&list, &[]), Some(2));
        assert_eq!(pick_best(&[cluster(1, 5, 5)], &[]), None);
        assert_eq!(pick_best(&[], &[]), None);
    }

    #[test]
    fn unlimited_clusters_fill_slowly() {
        // 100 players without a limit count as half full: 10 + 50 = 60 vs 70 + 0.
        let list = [cluster(1, 100, 0), cluster(2, 0, 0)];
        assert_eq!(
            pick_best(&list, &[ping(1, Some(10)), ping(2, Some(70))]),
            Some(1)
        );
        assert_eq!(
            pick_best(&list, &[ping(1, Some(10)), ping(2, Some(50))]),
            Some(2)
        );
    }
}
