//! The directory in memory: unit tests of each rule, and a fake-clock
//! harness driving random sequences of registrations, logins, joins,
//! reports, transfers and time through it (property tests): tickets never
//! leak, no player is in two places, the caps and loads hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

const KEY_NAME: &str = "alpha";

fn settings() -> DirectorySettings {
    DirectorySettings {
        token_ttl_ms: 30_000,
        ticket_hold_ms: 2_000,
        max_tickets_per_connection: 2,
        max_tickets_per_user: 3,
        max_tickets_per_address: 5,
        max_clusters_per_key: 3,
    }
}

fn reg(id: u64, capacity: u32) -> Register {
    Register {
        cluster_id: id,
        name: format!("c{id}"),
        address: "127.0.0.1".into(),
        tcp_port: 1,
        udp_port: 1,
        capacity,
    }
}

fn holder(client_id: u64, user: &str) -> Holder {
    holder_from(client_id, user, [127, 0, 0, 1])
}

fn holder_from(client_id: u64, user: &str, ip: [u8; 4]) -> Holder {
    Holder {
        client_id,
        user: Arc::from(user),
        user_data: user.as_bytes().to_vec(),
        source: IpAddr::from(ip),
    }
}

fn directory(clusters: &[(u64, u32)]) -> Directory {
    let mut d = Directory::new(settings());
    for (i, (id, cap)) in clusters.iter().enumerate() {
        let key = Key::from_bytes([*id as u8; 32]);
        d.handle_register(reg(*id, *cap), key, KEY_NAME.into(), i as u64)
            .unwrap();
    }
    d
}

fn players(d: &mut Directory, now: u64, id: u64) -> (u32, bool) {
    let l = d.cluster_list(now);
    let c = l.iter().find(|c| c.id == id).unwrap();
    (c.players, c.locked)
}

#[test]
fn an_unused_ticket_holds_its_seat_only_for_the_hold_time() {
    let mut d = directory(&[(1, 1)]);
    let mut rng = StdRng::seed_from_u64(1);
    d.handle_join(1_000, &holder(10, "ann"), JoinTarget::Auto, &mut rng)
        .unwrap();
    assert_eq!(players(&mut d, 1_000, 1), (1, true));
    assert_eq!(players(&mut d, 2_999, 1), (1, true));
    // Past the hold (long before the token expires) the seat is free.
    assert_eq!(players(&mut d, 3_000, 1), (0, false));
    assert!(
        d.handle_join(3_000, &holder(11, "bob"), JoinTarget::Auto, &mut rng)
            .is_ok()
    );
}

#[test]
fn a_reserved_cluster_is_left_out_of_auto_joins_but_joined_by_id() {
    let mut d = directory(&[(1, 0), (2, 0)]);
    let mut rng = StdRng::seed_from_u64(7);
    // Both empty: Auto takes the lower id.
    let t = d
        .handle_join(
            0,
            &holder_from(10, "ann", [10, 0, 0, 10]),
            JoinTarget::Auto,
            &mut rng,
        )
        .unwrap();
    assert_eq!(t.cluster.id, 1);
    // Cluster 1 reserved (a report from a replaced link is ignored).
    assert!(!d.handle_reserved(1, 99, true));
    assert!(!d.is_reserved(1));
    assert!(d.handle_reserved(1, 0, true));
    assert!(d.is_reserved(1));
    // The same flag again changes nothing.
    assert!(!d.handle_reserved(1, 0, true));
    // Cluster 2 now has a held seat and 1 one too, yet Auto never takes 1.
    for (i, name) in ["bob", "cid", "dan"].into_iter().enumerate() {
        let t = d
            .handle_join(
                0,
                &holder_from(20 + i as u64, name, [10, 0, 0, (20 + i as u64) as u8]),
                JoinTarget::Auto,
                &mut rng,
            )
            .unwrap();
        assert_eq!(t.cluster.id, 2);
    }
    // By id, the reserved cluster takes its players; it stays listed.
    let t = d
        .handle_join(
            0,
            &holder_from(30, "eve", [10, 0, 0, 30]),
            JoinTarget::Id(1),
            &mut rng,
        )
        .unwrap();
    assert_eq!(t.cluster.id, 1);
    assert_eq!(d.cluster_list(0).len(), 2);
    // Both reserved: Auto is refused, and says why.
    assert!(d.handle_reserved(2, 1, true));
    let e = d
        .handle_join(
            0,
            &holder_from(40, "fay", [10, 0, 0, 40]),
            JoinTarget::Auto,
            &mut rng,
        )
        .unwrap_err();
    assert_eq!(e.reason, DisconnectReason::ServerFull);
    assert!(e.message.contains("2 reserved"), "{}", e.message);
    // Back in the pool: Auto takes it again (the least loaded).
    assert!(d.handle_reserved(1, 0, false));
    let t = d
        .handle_join(
            0,
            &holder_from(41, "gus", [10, 0, 0, 41]),
            JoinTarget::Auto,
            &mut rng,
        )
        .unwrap();
    assert_eq!(t.cluster.id, 1);
    // A new registration starts unreserved.
    d.handle_register(reg(2, 0), Key::from_bytes([2; 32]), KEY_NAME.into(), 7)
        .unwrap();
    assert!(!d.is_reserved(2));
}

#[test]
fn unused_tickets_are_capped_per_connection_and_per_user() {
    let mut d = directory(&[(1, 0), (2, 0)]);
    let mut rng = StdRng::seed_from_u64(2);
    let a = holder(10, "ann");
    d.handle_join(0, &a, JoinTarget::Id(1), &mut rng).unwrap();
    d.handle_join(0, &a, JoinTarget::Id(2), &mut rng).unwrap();
    let e = d
        .handle_join(0, &a, JoinTarget::Auto, &mut rng)
        .unwrap_err();
    assert_eq!(e.reason, DisconnectReason::TooManyTickets, "{}", e.message);
    // The same user on another connection: one more fits the user's cap.
    let a2 = holder(20, "ann");
    d.handle_join(0, &a2, JoinTarget::Auto, &mut rng).unwrap();
    let e = d
        .handle_join(0, &a2, JoinTarget::Auto, &mut rng)
        .unwrap_err();
    assert_eq!(e.reason, DisconnectReason::TooManyTickets);
    assert!(e.message.contains("ann"), "{}", e.message);
    // A used ticket no longer counts.
    assert!(d.handle_player_joined(1, 1, 0, 10));
    d.handle_join(1, &a, JoinTarget::Auto, &mut rng).unwrap();
    // Nor an expired one.
    let e = d
        .handle_join(29_999, &a, JoinTarget::Auto, &mut rng)
        .unwrap_err();
    assert_eq!(e.reason, DisconnectReason::TooManyTickets);
    d.handle_join(30_001, &a, JoinTarget::Auto, &mut rng)
        .unwrap();
}

#[test]
fn unused_tickets_are_capped_per_address() {
    // One address, a new connection and a new user name each time (auth "none").
    let mut d = directory(&[(1, 0)]);
    let mut rng = StdRng::seed_from_u64(5);
    for client in 0..5 {
        let h = holder_from(100 + client, &format!("u{client}"), [10, 0, 0, 1]);
        d.handle_join(0, &h, JoinTarget::Id(1), &mut rng).unwrap();
    }
    let e = d
        .handle_join(
            0,
            &holder_from(200, "u200", [10, 0, 0, 1]),
            JoinTarget::Id(1),
            &mut rng,
        )
        .unwrap_err();
    assert_eq!(e.reason, DisconnectReason::TooManyTickets, "{}", e.message);
    assert!(e.message.contains("address"), "{}", e.message);
    // Another address is not affected; a used ticket frees its place.
    d.handle_join(
        0,
        &holder_from(201, "u201", [10, 0, 0, 2]),
        JoinTarget::Id(1),
        &mut rng,
    )
    .unwrap();
    assert!(d.handle_player_joined(1, 1, 0, 100));
    d.handle_join(
        1,
        &holder_from(202, "u202", [10, 0, 0, 1]),
        JoinTarget::Id(1),
        &mut rng,
    )
    .unwrap();
}

#[test]
fn only_players_the_master_sent_can_be_transferred() {
    let mut d = directory(&[(1, 0), (2, 0)]);
    let mut rng = StdRng::seed_from_u64(3);
    let t = d
        .handle_join(0, &holder(10, "ann"), JoinTarget::Id(1), &mut rng)
        .unwrap();
    assert_eq!(t.cluster.id, 1);
    // Cluster 2 claims ann: counted in its load, never movable.
    assert!(!d.handle_player_joined(5, 2, 1, 10));
    let e = d
        .handle_transfer(5, 2, 1, 10, 1, b"", &mut rng)
        .unwrap_err();
    assert_eq!(e.reason, DisconnectReason::ProtocolViolation);
    assert_eq!(players(&mut d, 5_000, 2), (1, false));
    // Made-up ids too.
    assert!(!d.handle_player_joined(5, 2, 1, 99));
    assert!(d.handle_transfer(5, 2, 1, 99, 1, b"", &mut rng).is_err());
    // Cluster 1, which got the ticket, may move ann; then cluster 2 may take her.
    assert!(d.handle_player_joined(6, 1, 0, 10));
    let t = d
        .handle_transfer(7, 1, 0, 10, 2, b"state", &mut rng)
        .unwrap();
    assert_eq!((t.cluster.id, t.client_id), (2, 10));
    assert!(d.handle_player_joined(8, 2, 1, 10));
    d.handle_player_left(9, 1, 10);
    assert!(d.handle_transfer(9, 2, 1, 10, 1, b"", &mut rng).is_ok());
    // A claim long after the ticket expired is not believed.
    d.handle_join(10, &holder(30, "cy"), JoinTarget::Id(1), &mut rng)
        .unwrap();
    assert!(!d.handle_player_joined(10 + 60_000, 1, 0, 30));
}

#[test]
fn tickets_that_expire_unused_are_counted_once_by_kind() {
    let mut d = directory(&[(1, 0), (2, 0)]);
    let mut rng = StdRng::seed_from_u64(4);
    let ttl = settings().token_ttl_ms;
    let none = ExpiredTickets::default();
    // ann joins cluster 1 with her ticket; bob never uses his.
    d.handle_join(0, &holder(10, "ann"), JoinTarget::Id(1), &mut rng)
        .unwrap();
    d.handle_join(0, &holder(11, "bob"), JoinTarget::Id(1), &mut rng)
        .unwrap();
    assert!(d.handle_player_joined(1, 1, 0, 10));
    // Cluster 1 asks to move ann to 2 twice (the second replaces the first);
    // she never arrives there. Cluster 1 moves nobody else.
    d.handle_transfer(2, 1, 0, 10, 2, b"", &mut rng).unwrap();
    d.handle_transfer(3, 1, 0, 10, 2, b"", &mut rng).unwrap();
    assert_eq!(d.take_expired_tickets(ttl - 1), none);
    // Pruned at most once a second: bob's ticket is counted after its expiry.
    assert_eq!(
        d.take_expired_tickets(ttl + 1_000),
        ExpiredTickets {
            joins: 1,
            transfers: 1
        }
    );
    assert_eq!(d.take_expired_tickets(ttl + 2_000), none);
    // A used transfer never counts.
    d.handle_transfer(ttl + 2_000, 1, 0, 10, 2, b"", &mut rng)
        .unwrap();
    assert!(d.handle_player_joined(ttl + 2_001, 2, 1, 10));
    assert_eq!(d.take_expired_tickets(3 * ttl + 5_000), none);
}

#[test]
fn made_up_players_count_only_up_to_the_cluster_capacity() {
    let mut d = directory(&[(1, 3), (2, 0)]);
    for client in 100..1_000 {
        assert!(!d.handle_player_joined(1, 1, 0, client));
    }
    assert_eq!(d.unsent_reports(1), 900);
    assert_eq!(players(&mut d, 1, 1), (3, true));
    for client in 0..(REPORTED_MAX as u64 + 10) {
        d.handle_player_joined(1, 2, 1, client);
    }
    assert_eq!(players(&mut d, 1, 2).0, REPORTED_MAX as u32);
}

#[test]
fn a_cluster_loses_its_claim_once_the_player_joined_elsewhere() {
    let mut d = directory(&[(1, 0), (2, 0), (3, 0)]);
    let mut rng = StdRng::seed_from_u64(4);
    d.handle_join(0, &holder(10, "ann"), JoinTarget::Id(1), &mut rng)
        .unwrap();
    assert!(d.handle_player_joined(1, 1, 0, 10));
    // Cluster 1 hands ann to 2 and never says she left.
    d.handle_transfer(2, 1, 0, 10, 2, b"", &mut rng).unwrap();
    assert!(d.handle_player_joined(3, 2, 1, 10));
    let e = d
        .handle_transfer(4, 1, 0, 10, 3, b"forged", &mut rng)
        .unwrap_err();
    assert_eq!(
        e.reason,
        DisconnectReason::ProtocolViolation,
        "{}",
        e.message
    );
    // A cluster that was only issued a ticket for her loses that claim too.
    d.handle_join(5, &holder(20, "bob"), JoinTarget::Id(3), &mut rng)
        .unwrap();
    d.handle_join(5, &holder(20, "bob"), JoinTarget::Id(1), &mut rng)
        .unwrap();
    assert!(d.handle_player_joined(6, 1, 0, 20));
    assert!(!d.handle_player_joined(7, 3, 2, 20));
    assert!(d.handle_transfer(8, 3, 2, 20, 2, b"", &mut rng).is_err());
    // The cluster she is on may still move her.
    assert!(d.handle_transfer(9, 2, 1, 10, 3, b"", &mut rng).is_ok());
}

#[test]
fn clusters_are_capped_per_key_name() {
    let mut d = Directory::new(settings());
    let register = |d: &mut Directory, id: u64, key: &str| {
        d.handle_register(reg(id, 0), Key::from_bytes([1; 32]), key.into(), id)
    };
    for id in 1..=3 {
        register(&mut d, id, KEY_NAME).unwrap();
    }
    assert_eq!(
        register(&mut d, 4, KEY_NAME).unwrap_err(),
        RegisterError::TooManyClustersForKey
    );
    // A listed id re-registers; another key has its own cap.
    assert!(register(&mut d, 2, KEY_NAME).unwrap().is_some());
    register(&mut d, 5, "other").unwrap();
    // Once one leaves, another may come.
    assert!(d.handle_unregister(1, 1));
    register(&mut d, 4, KEY_NAME).unwrap();
}

#[test]
fn a_cluster_id_cannot_be_squatted_by_another_key_while_its_cluster_restarts() {
    let mut d = Directory::new(settings());
    d.handle_register(reg(9, 0), Key::from_bytes([1; 32]), KEY_NAME.into(), 1)
        .unwrap();
    // The cluster's link drops (a restart): its id is not listed now.
    assert!(d.handle_unregister(9, 1));
    let e = d
        .handle_register(reg(9, 0), Key::from_bytes([2; 32]), "squatter".into(), 2)
        .unwrap_err();
    assert_eq!(e, RegisterError::IdTakenByAnotherKey);
    // The cluster itself comes back under its own key.
    d.handle_register(reg(9, 0), Key::from_bytes([1; 32]), KEY_NAME.into(), 3)
        .unwrap();
    // Ids are remembered up to a bound, oldest forgotten first.
    for id in 100..100 + REMEMBERED_CLUSTER_IDS as u64 {
        d.remember_id(id, "many");
    }
    assert!(!d.id_keys.contains_key(&9));
    assert!(d.id_keys.len() <= REMEMBERED_CLUSTER_IDS);
}

#[test]
fn a_re_registration_keeps_what_the_master_sent_and_refuses_other_keys() {
    let mut d = directory(&[(1, 0)]);
    let mut rng = StdRng::seed_from_u64(4);
    d.handle_join(0, &holder(10, "ann"), JoinTarget::Id(1), &mut rng)
        .unwrap();
    assert!(d.handle_player_joined(1, 1, 0, 10));
    let e = d
        .handle_register(reg(1, 0), Key::from_bytes([9; 32]), "other".into(), 7)
        .unwrap_err();
    assert_eq!(e, RegisterError::IdTakenByAnotherKey);
    assert!(
        d.poll_cluster_message().is_none(),
        "a refused key replaces nothing"
    );
    let replaced = d
        .handle_register(reg(1, 0), Key::from_bytes([1; 32]), KEY_NAME.into(), 8)
        .unwrap();
    assert_eq!(replaced, Some(0));
    // The replaced link (connection 0) is told to go, and only it.
    let m = d.poll_cluster_message().unwrap();
    assert_eq!((m.cluster_id, m.conn), (1, 0));
    assert!(matches!(
        m.message,
        MasterToCluster::Disconnect(Goodbye {
            reason: DisconnectReason::Requested,
            ..
        })
    ));
    assert!(d.poll_cluster_message().is_none());
    // The old link's updates are ignored; the new one's snapshot is believed.
    assert!(!d.handle_player_joined(2, 1, 0, 10));
    assert!(d.handle_player_joined(2, 1, 8, 10));
    assert!(d.handle_transfer(3, 1, 8, 10, 1, b"", &mut rng).is_err()); // own cluster
    assert!(d.handle_unregister(1, 8));
    assert_eq!(d.len(), 0);
}

/// The directory on a fake clock, driven as the master's connection tasks
/// drive it: clusters register (again) on new links, clients log in and ask
/// for tickets, clusters report who joined and left and ask for transfers.
/// Keeps what happened (the model) to check the directory against.
struct Master {
    d: Directory,
    now: u64,
    rng: StdRng,
    /// The link (connection number) of each registered cluster.
    links: HashMap<u64, u64>,
    next_conn: u64,
    /// Tickets each client was given and has not used: (cluster, expiry).
    wallet: HashMap<u64, Vec<(u64, u64)>>,
    /// Every (client, cluster) the master issued a ticket for.
    issued: HashSet<(u64, u64)>,
    /// Where each client plays, as far as the clusters said.
    at: HashMap<u64, u64>,
}

/// Clients 1 to 6: two user names, three source addresses.
fn client(id: u64) -> Holder {
    holder_from(
        id,
        ["ann", "bob"][(id % 2) as usize],
        [10, 0, 0, (id % 3) as u8],
    )
}

impl Master {
    fn new(seed: u64) -> Self {
        Self {
            d: Directory::new(settings()),
            now: 1_000_000,
            rng: StdRng::seed_from_u64(seed),
            links: HashMap::new(),
            next_conn: 1,
            wallet: HashMap::new(),
            issued: HashSet::new(),
            at: HashMap::new(),
        }
    }

    /// Cluster `id` registers on a new link (replacing its old one).
    fn register(&mut self, id: u64, capacity: u32) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let key = Key::from_bytes([id as u8; 32]);
        let r = self
            .d
            .handle_register(reg(id, capacity), key, KEY_NAME.into(), conn);
        let old = self.links.insert(id, conn);
        assert_eq!(r, Ok(old), "the same key may always register again");
        // Only the replaced link is told to go.
        while let Some(m) = self.d.poll_cluster_message() {
            assert_eq!((m.cluster_id, Some(m.conn)), (id, old));
        }
    }

    fn conn(&self, id: u64) -> u64 {
        self.links.get(&id).copied().unwrap_or(0)
    }

    /// Cluster `id`'s link ends.
    fn unregister(&mut self, id: u64) {
        let conn = self.conn(id);
        self.d.handle_unregister(id, conn);
        self.links.remove(&id);
    }

    fn join(&mut self, c: u64, target: JoinTarget) {
        if let Ok(t) = self
            .d
            .handle_join(self.now, &client(c), target, &mut self.rng)
        {
            self.issued.insert((c, t.cluster.id));
            self.wallet
                .entry(c)
                .or_default()
                .push((t.cluster.id, t.expires_at_ms));
        }
    }

    /// The client uses its oldest unexpired ticket: that cluster reports it.
    fn arrive(&mut self, c: u64) {
        let now = self.now;
        let w = self.wallet.entry(c).or_default();
        w.retain(|(_, exp)| *exp > now);
        if w.is_empty() {
            return;
        }
        let (cluster, _) = w.remove(0);
        if let Some(old) = self.at.get(&c).copied() {
            let conn = self.conn(old);
            self.d.handle_player_left(old, conn, c);
        }
        let conn = self.conn(cluster);
        if self.d.handle_player_joined(now, cluster, conn, c) {
            self.at.insert(c, cluster);
        }
    }

    fn leave(&mut self, c: u64) {
        if let Some(cluster) = self.at.remove(&c) {
            let conn = self.conn(cluster);
            self.d.handle_player_left(cluster, conn, c);
        }
    }

    /// The cluster the client plays on asks to move it to `target`.
    fn transfer(&mut self, c: u64, target: u64) {
        let Some(source) = self.at.get(&c).copied() else {
            return;
        };
        let conn = self.conn(source);
        let r = self
            .d
            .handle_transfer(self.now, source, conn, c, target, b"state", &mut self.rng);
        if let Ok(t) = r {
            self.issued.insert((c, t.cluster.id));
            self.wallet
                .entry(c)
                .or_default()
                .insert(0, (t.cluster.id, t.expires_at_ms));
        }
    }

    /// A cluster reports a player the master never sent it.
    fn forge(&mut self, cluster: u64, c: u64) {
        let conn = self.conn(cluster);
        let now = self.now;
        self.d.handle_player_joined(now, cluster, conn, c);
    }

    /// What must hold at every moment.
    fn check(&mut self) -> Result<(), TestCaseError> {
        let now = self.now;
        let s = settings();
        for c in 1..=6u64 {
            let places: Vec<u64> = self
                .d
                .clusters
                .iter()
                .filter(|(_, e)| e.sent.contains(&c))
                .map(|(id, _)| *id)
                .collect();
            prop_assert!(places.len() <= 1, "player {c} sent to {places:?}");
            for id in places {
                prop_assert!(
                    self.issued.contains(&(c, id)),
                    "player {c} counted as sent to {id} without a ticket for it"
                );
            }
        }
        let book = &self.d.tickets;
        for (client_id, (_, _, list)) in &book.by_client {
            let n = TicketBook::count(Some(list), now);
            prop_assert!(n <= s.max_tickets_per_connection, "client {client_id}: {n}");
        }
        for (user, list) in &book.by_user {
            let n = TicketBook::count(Some(list), now);
            prop_assert!(n <= s.max_tickets_per_user, "user {user}: {n}");
        }
        for (source, list) in &book.by_source {
            let n = TicketBook::count(Some(list), now);
            prop_assert!(n <= s.max_tickets_per_address, "{source}: {n}");
        }
        for (id, e) in &self.d.clusters {
            prop_assert!(
                e.held.values().all(|u| *u <= now + s.ticket_hold_ms),
                "{id}"
            );
            prop_assert!(
                e.expected.values().all(|u| *u <= now + 2 * s.token_ttl_ms),
                "{id}"
            );
        }
        Ok(())
    }

    /// Once every ticket has expired, nothing of them is left: no seat
    /// held, no ticket expected, no list in the book; each load is the
    /// players the clusters hold.
    fn check_drained(&mut self) -> Result<(), TestCaseError> {
        let s = settings();
        self.now += 2 * s.token_ttl_ms + s.ticket_hold_ms + 1_000;
        let now = self.now;
        let list = self.d.cluster_list(now);
        self.d.tickets.prune(now);
        for (id, e) in &self.d.clusters {
            prop_assert!(e.held.is_empty(), "cluster {id} holds seats: {:?}", e.held);
            prop_assert!(
                e.expected.is_empty(),
                "cluster {id} expects: {:?}",
                e.expected
            );
            let load = list.iter().find(|c| c.id == *id).map_or(0, |c| c.players);
            prop_assert_eq!(load as usize, e.sent.len() + e.reported.len());
        }
        let book = &self.d.tickets;
        prop_assert!(
            book.by_client.is_empty() && book.by_user.is_empty() && book.by_source.is_empty()
        );
        Ok(())
    }
}

/// What can happen around a master with clusters 1 to 3 and clients 1 to 6.
#[derive(Debug, Clone)]
enum Step {
    Register(u64, u32),
    Unregister(u64),
    Join(u64, Option<u64>),
    Arrive(u64),
    Leave(u64),
    Transfer(u64, u64),
    Forge(u64, u64),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    let cluster = 1..=3u64;
    let c = 1..=6u64;
    prop_oneof![
        (cluster.clone(), 0..4u32).prop_map(|(id, cap)| Step::Register(id, cap)),
        cluster.clone().prop_map(Step::Unregister),
        (c.clone(), proptest::option::of(cluster.clone())).prop_map(|(c, t)| Step::Join(c, t)),
        c.clone().prop_map(Step::Arrive),
        c.clone().prop_map(Step::Arrive),
        c.clone().prop_map(Step::Leave),
        (c.clone(), cluster.clone()).prop_map(|(c, t)| Step::Transfer(c, t)),
        (cluster, c).prop_map(|(id, c)| Step::Forge(id, c)),
        (0..40_000u64).prop_map(Step::Wait),
    ]
}

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// Whatever clusters, clients and time do: a player is counted as sent
    /// to one cluster at most, and only to one the master gave it a ticket
    /// for; no login, user or address holds more unused tickets than its
    /// cap; and once every ticket has expired, none of them holds a seat,
    /// is expected or is left in the book.
    #[test]
    fn tickets_never_leak_and_no_player_is_in_two_places(
        seed in any::<u64>(),
        steps in proptest::collection::vec(step(), 1..80),
    ) {
        let mut m = Master::new(seed);
        for id in 1..=3 {
            m.register(id, 0);
        }
        for s in steps {
            match s {
                Step::Register(id, cap) => m.register(id, cap),
                Step::Unregister(id) => m.unregister(id),
                Step::Join(c, t) => m.join(c, t.map_or(JoinTarget::Auto, JoinTarget::Id)),
                Step::Arrive(c) => m.arrive(c),
                Step::Leave(c) => m.leave(c),
                Step::Transfer(c, t) => m.transfer(c, t),
                Step::Forge(id, c) => m.forge(id, c),
                Step::Wait(ms) => m.now += ms,
            }
            m.check()?;
        }
        m.check_drained()?;
    }
}

#[test]
fn a_transfer_moves_the_player_and_the_source_loses_its_claim() {
    let mut m = Master::new(1);
    for id in 1..=2 {
        m.register(id, 0);
    }
    m.join(1, JoinTarget::Id(1));
    m.arrive(1);
    assert_eq!(m.at.get(&1), Some(&1));
    m.transfer(1, 2);
    m.arrive(1);
    assert_eq!(m.at.get(&1), Some(&2));
    assert!(!m.d.clusters[&1].sent.contains(&1));
    assert!(m.d.clusters[&2].sent.contains(&1));
    // The old cluster cannot move the player any more.
    let conn = m.conn(1);
    let e =
        m.d.handle_transfer(m.now, 1, conn, 1, 2, b"", &mut m.rng)
            .unwrap_err();
    assert_eq!(e.reason, DisconnectReason::ProtocolViolation);
}
