//! The servers' message handlers driven by arbitrary bytes, for the fuzz
//! targets in `fuzz/` (feature `fuzzing`; not part of a normal build).
//!
//! Each entry point reads its input as a script of steps, every step a byte
//! that picks what happens next and the bytes after it its arguments. Messages
//! are decoded with the real decoders from the fuzzed bytes, and what decodes
//! is handed to the sans-IO state machines the servers' tasks drive: the
//! master's [`Directory`] (as `master/cluster_link.rs` and `master/client.rs`
//! call it) and the cluster's core (through the in-memory harness its unit
//! tests use). A panic is a finding: the invariants below are asserts.

#![allow(clippy::panic)]

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use sustenet_proto::datagram::decode_records;
use sustenet_proto::{ClientToCluster, ClusterToMaster, JoinTarget, Key, Message};

use crate::cluster::ClusterConfig;
use crate::cluster::core::harness::{Conn, Harness};
use crate::master::directory::{Directory, DirectorySettings, Holder};

/// The bytes of a script, taken from the front.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }
    /// A length byte, then that many bytes (fewer at the end).
    fn chunk(&mut self) -> Option<&[u8]> {
        let n = usize::from(self.byte()?).min(self.0.len());
        let (c, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(c)
    }
}

const MAX_CLUSTERS_PER_KEY: usize = 3;

/// The master's directory under a script of cluster messages (decoded
/// `ClusterToMaster`), client joins, registrations and dropped links.
///
/// Invariants: a cluster gets a transfer ticket only for a player the
/// master issued it a ticket for (a join or a transfer); no key name has more
/// than its cap of clusters listed; the cluster list has one entry per listed
/// cluster.
pub fn master_directory(data: &[u8]) {
    let mut s = Script(data);
    let mut dir = Directory::new(DirectorySettings {
        token_ttl_ms: 30_000,
        ticket_hold_ms: 2_000,
        max_tickets_per_connection: 2,
        max_tickets_per_user: 3,
        max_tickets_per_address: 5,
        max_clusters_per_key: MAX_CLUSTERS_PER_KEY,
    });
    let mut rng = StdRng::seed_from_u64(1);
    let mut now = 1_000u64;
    // (cluster, client) pairs the master issued a ticket for.
    let mut issued: HashSet<(u64, u64)> = HashSet::new();
    // The connection each cluster id registered on last, and its key.
    let mut conns: std::collections::HashMap<u64, (u64, &'static str)> = Default::default();
    let mut next_conn = 1u64;
    while let Some(op) = s.byte() {
        let id = u64::from(s.byte().unwrap_or(0) % 6);
        match op % 6 {
            0 => {
                let key_name = if s.byte().unwrap_or(0) % 4 == 0 {
                    "b"
                } else {
                    "a"
                };
                let reg = sustenet_proto::Register {
                    cluster_id: id,
                    name: format!("c{id}"),
                    address: "127.0.0.1".into(),
                    tcp_port: 1,
                    udp_port: 1,
                    capacity: u32::from(s.byte().unwrap_or(0) % 4),
                };
                next_conn += 1;
                let old = conns.get(&id).map(|c| c.0);
                let key = Key::from_bytes([1; 32]);
                if let Ok(replaced) = dir.handle_register(reg, key, key_name.into(), next_conn) {
                    assert_eq!(replaced, old, "the replaced link is the one registered");
                    conns.insert(id, (next_conn, key_name));
                }
                while let Some(m) = dir.poll_cluster_message() {
                    assert_eq!(Some(m.conn), old, "only a replaced link is told to go");
                }
            }
            1 => {
                if let Some((conn, _)) = conns.remove(&id) {
                    dir.handle_unregister(id, conn);
                }
            }
            2 => {
                let client = u64::from(s.byte().unwrap_or(0) % 8);
                let holder = Holder {
                    client_id: client,
                    user: Arc::from(format!("u{}", client % 3).as_str()),
                    user_data: Vec::new(),
                    source: IpAddr::from([127, 0, 0, (client % 2) as u8]),
                };
                let target = if id == 5 {
                    JoinTarget::Auto
                } else {
                    JoinTarget::Id(id)
                };
                if let Ok(t) = dir.handle_join(now, &holder, target, &mut rng) {
                    issued.insert((t.cluster.id, client));
                }
            }
            3 => {
                let Some(bytes) = s.chunk() else { break };
                let Ok(msg) = ClusterToMaster::decode(bytes) else {
                    continue;
                };
                let conn = conns.get(&id).map_or(0, |c| c.0);
                cluster_message(&mut dir, &mut rng, now, id, conn, msg, &mut issued);
            }
            4 => now += u64::from(s.byte().unwrap_or(0)) * 100,
            _ => {
                let list = dir.cluster_list(now);
                assert_eq!(
                    list.len(),
                    conns.len(),
                    "the list and the registrations disagree"
                );
            }
        }
        for key in ["a", "b"] {
            let listed = conns.values().filter(|(_, k)| *k == key).count();
            assert!(
                listed <= MAX_CLUSTERS_PER_KEY,
                "too many clusters under {key}"
            );
        }
    }
}

/// One message from cluster `id` on link `conn`, handled as
/// `master/cluster_link.rs` does.
fn cluster_message(
    dir: &mut Directory,
    rng: &mut StdRng,
    now: u64,
    id: u64,
    conn: u64,
    msg: ClusterToMaster,
    issued: &mut HashSet<(u64, u64)>,
) {
    match msg {
        ClusterToMaster::Status(st) => dir.handle_status(id, conn, st),
        ClusterToMaster::PlayerJoined { client_id } => {
            dir.handle_player_joined(now, id, conn, client_id);
        }
        ClusterToMaster::PlayerLeft { client_id } => dir.handle_player_left(id, conn, client_id),
        ClusterToMaster::Transfer {
            client_id,
            target,
            user_data,
            ..
        } => {
            if let Ok(t) = dir.handle_transfer(now, id, conn, client_id, target, &user_data, rng) {
                assert!(
                    issued.contains(&(id, client_id)),
                    "cluster {id} got a transfer ticket for player {client_id} the master never sent it"
                );
                issued.insert((t.cluster.id, client_id));
            }
        }
        _ => {}
    }
}

/// The cluster's core under a script of joins, reliable messages (decoded
/// `ClientToCluster`, handled as `cluster/player_conn.rs` hands them on),
/// datagrams (decoded records, from one of a few source addresses), dropped
/// connections, reconnects and time passing.
///
/// Invariants: the seat count never exceeds the player limit; after the
/// clock runs past every deadline (silence and reconnect windows), no seat,
/// no resumable session and no connection is left for a player that left.
pub fn cluster_core(data: &[u8]) {
    let limit = 4u32;
    let mut h = Harness::new(ClusterConfig {
        max_connections: limit,
        resume_grace: Duration::from_secs(2),
        resume_buffer: 4096,
        send_queue_bytes: 8192,
        ..ClusterConfig::default()
    });
    let mut s = Script(data);
    let mut conns: Vec<Option<Conn>> = (0..6).map(|_| None).collect();
    while let Some(op) = s.byte() {
        let p = usize::from(s.byte().unwrap_or(0) % 6);
        let player = p as u64 + 1;
        match op % 7 {
            0 => {
                if let Ok(c) = h.join(player) {
                    conns[p] = Some(c);
                }
            }
            1 => {
                let Some(bytes) = s.chunk() else { break };
                let (Some(c), Ok(msg)) = (&conns[p], ClientToCluster::decode(bytes)) else {
                    continue;
                };
                match msg {
                    ClientToCluster::Data { command, payload } => {
                        h.packet(player, c, command, &payload)
                    }
                    ClientToCluster::Ack(count) => h.ack(player, c, count),
                    ClientToCluster::Disconnect(_) => {
                        if let Some(c) = conns[p].take() {
                            h.lost(player, &c);
                        }
                    }
                    _ => {}
                }
            }
            2 => {
                let port = 40_000 + u16::from(s.byte().unwrap_or(0) % 3);
                let Some(bytes) = s.chunk() else { break };
                if let Ok(records) = decode_records(bytes) {
                    let from = SocketAddr::from(([127, 0, 0, 1], port));
                    h.datagram(player, from, bytes.len(), records);
                }
            }
            3 => {
                if let Some(c) = conns[p].take() {
                    h.lost(player, &c);
                }
            }
            4 => {
                let received = u64::from(s.u16().unwrap_or(0));
                let attempt = u64::from(s.byte().unwrap_or(0));
                if let Ok((c, _)) = h.resume(player, received, attempt) {
                    conns[p] = Some(c);
                }
            }
            5 => h.advance(Duration::from_millis(u64::from(s.byte().unwrap_or(0)) * 50)),
            _ => {
                h.step();
            }
        }
        assert!(h.seats() <= limit as usize, "more players than the limit");
    }
    // Everyone goes; every deadline passes.
    for (p, c) in conns.iter_mut().enumerate() {
        if let Some(c) = c.take() {
            h.lost(p as u64 + 1, &c);
        }
    }
    h.advance(Duration::from_secs(60));
    h.drive(10_000);
    assert_eq!(h.seats(), 0, "a seat outlived every deadline");
    assert_eq!(h.resumable(), 0, "a session outlived its reconnect window");
    assert_eq!(h.open_writers(), 0, "a connection outlived its player");
}
