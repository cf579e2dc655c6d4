//! The master's directory, sans-IO: the registered clusters, their loads,
//! the tickets the master issued and the players it sent where.
//!
//! Nothing here reads the clock, touches a socket or holds a channel: the
//! calls that need the time take `now` (milliseconds since the Unix epoch,
//! the clock tokens expire on), inputs are `handle_*` calls, and what the
//! directory wants told to a cluster comes out of
//! [`Directory::poll_cluster_message`], addressed to the cluster's link (its
//! connection number), for the driver (`master/cluster_link.rs`, which owns
//! the links' queues) to deliver. The connection tasks of `master` drive it
//! under one lock. What it enforces:
//!
//! - A ticket the master issues for a client counts toward its cluster's
//!   load (and full flag) only for `ticket_hold_ms` after it is issued, so
//!   balancing sees a burst of joins, but unused tickets never lock a cluster
//!   for the token's whole lifetime.
//! - A login connection (one client id), a user name and a source address
//!   (IPv6 by /64) may hold at most `max_tickets_per_connection` /
//!   `max_tickets_per_user` / `max_tickets_per_address` tickets that are
//!   neither used nor expired (the address cap binds an attacker who opens
//!   many connections with free user names, `auth = "none"`).
//! - A cluster's `PlayerJoined` makes a player *sent* there only if the
//!   master issued that cluster a ticket for the id (a join or a transfer)
//!   that is not long expired, or the id was sent there on the cluster's
//!   previous link with the same key. Other ids the cluster reports (after a
//!   master restart, or made up) count toward its load but can never be
//!   transferred, so a cluster key cannot claim another cluster's player.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use rand::CryptoRng;
use sustenet_proto::crypto::NOISE_MAX_PLAINTEXT;
use sustenet_proto::message::CLUSTER_LIST_MAX;
use sustenet_proto::{
    ClusterInfo, ConnectToken, DisconnectReason, Goodbye, JoinTarget, Key, MasterToCluster,
    Register, SessionSecret, Status, Ticket,
};

/// The directory's own limits, from the master's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirectorySettings {
    /// How long a connect token stays valid, in ms.
    pub token_ttl_ms: u64,
    /// How long an unused ticket counts toward its cluster's load, in ms.
    pub ticket_hold_ms: u64,
    /// Most unused, unexpired tickets one login connection may hold.
    pub max_tickets_per_connection: usize,
    /// Most unused, unexpired tickets one user name may hold, over all its connections.
    pub max_tickets_per_user: usize,
    /// Most unused, unexpired tickets the connections from one address may hold.
    pub max_tickets_per_address: usize,
    /// Most clusters listed at once under one key name.
    pub max_clusters_per_key: usize,
}

/// Cluster ids remembered with the key name they were listed under, after
/// they left the list, so another key cannot take one over while its cluster
/// restarts (the oldest is forgotten first).
pub(crate) const REMEMBERED_CLUSTER_IDS: usize = 4_096;

/// Who asks for a ticket: the login of one client connection.
#[derive(Debug, Clone)]
pub(crate) struct Holder {
    /// The client id the login was given.
    pub client_id: u64,
    /// The user name it logged in with.
    pub user: Arc<str>,
    /// The user data the auth hook returned, carried in every token.
    pub user_data: Vec<u8>,
    /// The connection's source address as the per-address cap counts it
    /// (`handshake_gate::address_key`: IPv6 by /64).
    pub source: IpAddr,
}

/// One registered cluster.
pub(crate) struct ClusterEntry {
    /// What the cluster registered with.
    pub reg: Register,
    /// The cluster key (tokens are sealed with the token key derived from it).
    key: Key,
    /// The key name the cluster proved; only that key may take its id over.
    pub key_name: String,
    /// The cluster's last status report.
    pub status: Status,
    /// Players the master sent here (a ticket it issued for this cluster, used).
    sent: HashSet<u64>,
    /// Players the cluster reports that the master did not send here:
    /// counted in the load, never transferred; at most [`reported_cap`] of them.
    reported: HashSet<u64>,
    /// How many such reports the cluster made on this link (for the log).
    unsent_reports: u64,
    /// Tickets for this cluster: client id → until when a `PlayerJoined` for
    /// it is believed (expiry plus one token lifetime of clock slack), ms.
    expected: HashMap<u64, u64>,
    /// Tickets still holding a seat: client id → until when, ms.
    held: HashMap<u64, u64>,
    /// Players sent here on this cluster's previous link (same key), believed
    /// again when the cluster reports them after re-registering.
    inherited: HashSet<u64>,
    /// The cluster says it is reserved (`ClusterToMaster::Reserved`, an
    /// allocated Agones GameServer): left out of automatic joins, still
    /// joined by id. A new registration starts unreserved.
    pub reserved: bool,
    /// The connection the entry belongs to; a replaced link's updates are ignored.
    pub conn: u64,
}

impl ClusterEntry {
    fn load(&mut self, now: u64) -> u32 {
        self.held.retain(|_, until| *until > now);
        self.expected.retain(|_, until| *until > now);
        let n = self.sent.len() + self.reported.len() + self.held.len();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn info(&mut self, now: u64) -> ClusterInfo {
        let players = self.load(now);
        let capacity = self.reg.capacity;
        ClusterInfo {
            id: self.reg.cluster_id,
            name: self.reg.name.clone(),
            address: self.reg.address.clone(),
            tcp_port: self.reg.tcp_port,
            udp_port: self.reg.udp_port,
            players,
            capacity,
            locked: capacity > 0 && players >= capacity,
        }
    }
}

/// Most reported players (not sent by the master) a cluster's load counts: its
/// capacity, or [`REPORTED_MAX`] for a cluster without one. A cluster cannot
/// really hold more, so made-up ids past that cost the master nothing.
fn reported_cap(capacity: u32) -> usize {
    if capacity > 0 {
        usize::try_from(capacity).unwrap_or(REPORTED_MAX)
    } else {
        REPORTED_MAX
    }
}

/// [`reported_cap`] for a cluster that registered no capacity.
const REPORTED_MAX: usize = 65_536;

/// A ticket issued for a client and not used yet.
#[derive(Debug, Clone)]
struct Outstanding {
    cluster_id: u64,
    client_id: u64,
    expires_at_ms: u64,
}

/// Tickets that expired unused since the last [`Directory::take_expired_tickets`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ExpiredTickets {
    /// Join tickets (issued to a logged-in client) that expired unused.
    pub joins: u64,
    /// Transfer tickets (issued for a cluster's handoff) that expired unused.
    pub transfers: u64,
}

/// The unused tickets of every login and user, for the caps, and the
/// unused transfer tickets, to count the tickets that expire unused.
#[derive(Debug, Default)]
struct TicketBook {
    /// Per client id: its user name and source (to find its other lists) and its tickets.
    by_client: HashMap<u64, (Arc<str>, IpAddr, Vec<Outstanding>)>,
    by_user: HashMap<Arc<str>, Vec<Outstanding>>,
    by_source: HashMap<IpAddr, Vec<Outstanding>>,
    /// Unused transfer tickets: (client id, target cluster id) → expiry, ms.
    /// A new ticket for the same pair replaces the older one, so this holds
    /// at most one per player and cluster.
    transfers: HashMap<(u64, u64), u64>,
    /// Counted since the last take.
    expired: ExpiredTickets,
    next_prune_ms: u64,
}

impl TicketBook {
    fn prune(&mut self, now: u64) {
        if now < self.next_prune_ms {
            return;
        }
        self.next_prune_ms = now.saturating_add(1_000);
        let mut joins = 0u64;
        self.by_client.retain(|_, (_, _, v)| {
            v.retain(|t| {
                let live = t.expires_at_ms > now;
                joins += u64::from(!live);
                live
            });
            !v.is_empty()
        });
        let mut transfers = 0u64;
        self.transfers.retain(|_, expires_at_ms| {
            let live = *expires_at_ms > now;
            transfers += u64::from(!live);
            live
        });
        self.expired.joins += joins;
        self.expired.transfers += transfers;
        self.by_user.retain(|_, v| {
            v.retain(|t| t.expires_at_ms > now);
            !v.is_empty()
        });
        self.by_source.retain(|_, v| {
            v.retain(|t| t.expires_at_ms > now);
            !v.is_empty()
        });
    }

    fn count(list: Option<&Vec<Outstanding>>, now: u64) -> usize {
        list.map_or(0, |v| v.iter().filter(|t| t.expires_at_ms > now).count())
    }

    fn check(
        &self,
        holder: &Holder,
        settings: &DirectorySettings,
        now: u64,
    ) -> Result<(), Goodbye> {
        let on_conn = Self::count(
            self.by_client.get(&holder.client_id).map(|(_, _, v)| v),
            now,
        );
        if on_conn >= settings.max_tickets_per_connection {
            return Err(Goodbye {
                reason: DisconnectReason::TooManyTickets,
                message: format!(
                    "this connection holds {on_conn} unused tickets (the limit): use one or wait for them to expire"
                ),
            });
        }
        let of_user = Self::count(self.by_user.get(&holder.user), now);
        if of_user >= settings.max_tickets_per_user {
            return Err(Goodbye {
                reason: DisconnectReason::TooManyTickets,
                message: format!(
                    "user '{}' holds {of_user} unused tickets (the limit): use one or wait for them to expire",
                    holder.user
                ),
            });
        }
        let from_source = Self::count(self.by_source.get(&holder.source), now);
        if from_source >= settings.max_tickets_per_address {
            return Err(Goodbye {
                reason: DisconnectReason::TooManyTickets,
                message: format!(
                    "connections from this address hold {from_source} unused tickets (the limit): use one or wait for them to expire"
                ),
            });
        }
        Ok(())
    }

    fn record(&mut self, holder: &Holder, t: Outstanding) {
        self.by_client
            .entry(holder.client_id)
            .or_insert_with(|| (holder.user.clone(), holder.source, Vec::new()))
            .2
            .push(t.clone());
        self.by_user
            .entry(holder.user.clone())
            .or_default()
            .push(t.clone());
        self.by_source.entry(holder.source).or_default().push(t);
    }

    /// A transfer ticket for `client_id` to `cluster_id` was issued.
    fn record_transfer(&mut self, client_id: u64, cluster_id: u64, expires_at_ms: u64) {
        self.transfers
            .insert((client_id, cluster_id), expires_at_ms);
    }

    /// The client's tickets for `cluster_id` are used.
    fn used(&mut self, client_id: u64, cluster_id: u64) {
        self.transfers.remove(&(client_id, cluster_id));
        let Some((user, source, list)) = self.by_client.get_mut(&client_id) else {
            return;
        };
        list.retain(|t| t.cluster_id != cluster_id);
        let (user, source) = (user.clone(), *source);
        if list.is_empty() {
            self.by_client.remove(&client_id);
        }
        let is_used = |t: &Outstanding| t.client_id == client_id && t.cluster_id == cluster_id;
        forget(&mut self.by_user, &user, is_used);
        forget(&mut self.by_source, &source, is_used);
    }
}

/// Drops the tickets `is_used` picks from `key`'s list, and the list once it is empty.
fn forget<K: std::hash::Hash + Eq>(
    lists: &mut HashMap<K, Vec<Outstanding>>,
    key: &K,
    is_used: impl Fn(&Outstanding) -> bool,
) {
    if let Some(v) = lists.get_mut(key) {
        v.retain(|t| !is_used(t));
        if v.is_empty() {
            lists.remove(key);
        }
    }
}

/// Why a registration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegisterError {
    /// The id is registered with another key, or was until recently
    /// ([`REMEMBERED_CLUSTER_IDS`]).
    IdTakenByAnotherKey,
    /// The key name already has `max_clusters_per_key` clusters listed.
    TooManyClustersForKey,
}

/// A message the directory wants sent to a cluster, on the link (connection
/// number) it is for: a replaced link's goodbye goes to the old connection.
#[derive(Debug)]
pub(crate) struct ClusterMessage {
    /// The cluster.
    pub cluster_id: u64,
    /// The link's connection number.
    pub conn: u64,
    /// What to send.
    pub message: MasterToCluster,
}

/// What the master knows about clusters, players and tickets.
pub(crate) struct Directory {
    settings: DirectorySettings,
    clusters: HashMap<u64, ClusterEntry>,
    tickets: TicketBook,
    /// The key name each recently listed cluster id was listed under.
    id_keys: HashMap<u64, String>,
    /// Those ids, oldest first, to forget the oldest past the bound.
    id_order: VecDeque<u64>,
    /// Messages for cluster links, oldest first; the driver takes them out
    /// after every call that may add one.
    to_clusters: VecDeque<ClusterMessage>,
}

impl Directory {
    /// An empty directory.
    pub fn new(settings: DirectorySettings) -> Self {
        Self {
            settings,
            clusters: HashMap::new(),
            tickets: TicketBook::default(),
            id_keys: HashMap::new(),
            id_order: VecDeque::new(),
            to_clusters: VecDeque::new(),
        }
    }

    /// Whether `id` may be listed under `key_name`: not taken (or recently
    /// held) by another key, and the key under its cluster cap.
    fn may_register(&self, id: u64, key_name: &str) -> Result<(), RegisterError> {
        if self.id_keys.get(&id).is_some_and(|k| k != key_name) {
            return Err(RegisterError::IdTakenByAnotherKey);
        }
        let listed = self.clusters.contains_key(&id);
        let same_key = self
            .clusters
            .values()
            .filter(|e| e.key_name == key_name)
            .count();
        if !listed && same_key >= self.settings.max_clusters_per_key {
            return Err(RegisterError::TooManyClustersForKey);
        }
        Ok(())
    }

    /// Remembers that `id` is listed under `key_name`.
    fn remember_id(&mut self, id: u64, key_name: &str) {
        if self.id_keys.insert(id, key_name.to_owned()).is_none() {
            self.id_order.push_back(id);
            while self.id_order.len() > REMEMBERED_CLUSTER_IDS {
                if let Some(old) = self.id_order.pop_front() {
                    self.id_keys.remove(&old);
                }
            }
        }
    }

    /// Lists cluster `reg.cluster_id` on connection `conn`. A cluster
    /// re-registering (its old link may not have timed out yet) replaces its
    /// entry, but only with the key it registered with; the replaced link is
    /// told to go (a [`ClusterMessage`] to its connection) and its
    /// connection number returned.
    pub fn handle_register(
        &mut self,
        reg: Register,
        key: Key,
        key_name: String,
        conn: u64,
    ) -> Result<Option<u64>, RegisterError> {
        let id = reg.cluster_id;
        self.may_register(id, &key_name)?;
        self.remember_id(id, &key_name);
        let old = self.clusters.remove(&id);
        let (expected, held, inherited, replaced) = match old {
            Some(old) => (old.expected, old.held, old.sent, Some(old.conn)),
            None => (HashMap::new(), HashMap::new(), HashSet::new(), None),
        };
        if let Some(old_conn) = replaced {
            self.to_clusters.push_back(ClusterMessage {
                cluster_id: id,
                conn: old_conn,
                message: MasterToCluster::Disconnect(Goodbye {
                    reason: DisconnectReason::Requested,
                    message: "replaced by a new registration".into(),
                }),
            });
        }
        let entry = ClusterEntry {
            status: Status {
                players: 0,
                capacity: reg.capacity,
                fragments: 0,
            },
            reg,
            key,
            key_name,
            sent: HashSet::new(),
            reported: HashSet::new(),
            unsent_reports: 0,
            expected,
            held,
            inherited,
            reserved: false,
            conn,
        };
        self.clusters.insert(id, entry);
        Ok(replaced)
    }

    fn entry(&mut self, id: u64, conn: u64) -> Option<&mut ClusterEntry> {
        self.clusters.get_mut(&id).filter(|e| e.conn == conn)
    }

    /// The cluster's link on `conn` ended; returns whether it was listed.
    pub fn handle_unregister(&mut self, id: u64, conn: u64) -> bool {
        if self.clusters.get(&id).is_some_and(|e| e.conn == conn) {
            self.clusters.remove(&id);
            true
        } else {
            false
        }
    }

    /// A status report.
    pub fn handle_status(&mut self, id: u64, conn: u64, status: Status) {
        if let Some(e) = self.entry(id, conn) {
            e.status = status;
        }
    }

    /// The cluster says whether it is reserved: a reserved cluster is not
    /// chosen for automatic joins (a join by its id still reaches it).
    /// Returns whether that changed the cluster's flag.
    pub fn handle_reserved(&mut self, id: u64, conn: u64, reserved: bool) -> bool {
        match self.entry(id, conn) {
            Some(e) if e.reserved != reserved => {
                e.reserved = reserved;
                true
            }
            _ => false,
        }
    }

    /// Whether cluster `id` is listed and reserved.
    #[cfg(test)]
    pub fn is_reserved(&self, id: u64) -> bool {
        self.clusters.get(&id).is_some_and(|e| e.reserved)
    }

    /// The ids of the registered clusters that are reserved now.
    pub fn reserved_ids(&self) -> std::collections::HashSet<u64> {
        self.clusters
            .iter()
            .filter(|(_, e)| e.reserved)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The cluster says `client_id` joined it. Returns whether the master
    /// sent that player there (a ticket it issued); if not, the id only
    /// counts toward the cluster's load.
    pub fn handle_player_joined(&mut self, now: u64, id: u64, conn: u64, client_id: u64) -> bool {
        let Some(e) = self.entry(id, conn) else {
            return false;
        };
        let ticket = e.expected.get(&client_id).is_some_and(|until| *until > now);
        let sent = ticket || e.inherited.remove(&client_id);
        if sent {
            e.expected.remove(&client_id);
            e.held.remove(&client_id);
            e.reported.remove(&client_id);
            e.sent.insert(client_id);
            self.tickets.used(client_id, id);
            self.forget_elsewhere(id, client_id);
        } else if !e.sent.contains(&client_id) {
            e.unsent_reports += 1;
            if e.reported.len() < reported_cap(e.reg.capacity) {
                e.reported.insert(client_id);
            }
        }
        sent
    }

    /// How many players the cluster `id` reported that the master did not send there.
    pub fn unsent_reports(&self, id: u64) -> u64 {
        self.clusters.get(&id).map_or(0, |e| e.unsent_reports)
    }

    /// The player is where the master sent it last: every other cluster loses
    /// its claim on it (sent there before, a ticket it was issued, inherited),
    /// so a cluster that never reports the player leaving cannot move it later.
    fn forget_elsewhere(&mut self, here: u64, client_id: u64) {
        for (id, e) in &mut self.clusters {
            if *id != here {
                e.sent.remove(&client_id);
                e.expected.remove(&client_id);
                e.inherited.remove(&client_id);
            }
        }
    }

    /// The cluster says `client_id` left it.
    pub fn handle_player_left(&mut self, id: u64, conn: u64, client_id: u64) {
        if let Some(e) = self.entry(id, conn) {
            e.sent.remove(&client_id);
            e.reported.remove(&client_id);
            e.inherited.remove(&client_id);
        }
    }

    /// Queues `message` for the current link of cluster `id` (the instance
    /// table's answers and goodbyes); dropped when `id` is not listed.
    pub fn send_to_cluster(&mut self, id: u64, message: MasterToCluster) {
        if let Some(e) = self.clusters.get(&id) {
            self.to_clusters.push_back(ClusterMessage {
                cluster_id: id,
                conn: e.conn,
                message,
            });
        }
    }

    /// The oldest message for a cluster link the driver has not delivered yet.
    pub fn poll_cluster_message(&mut self) -> Option<ClusterMessage> {
        self.to_clusters.pop_front()
    }

    /// The load of cluster `id` as the list shows it (players and seats held).
    pub fn cluster_players(&mut self, now: u64, id: u64) -> Option<u32> {
        self.clusters.get_mut(&id).map(|e| e.info(now).players)
    }

    /// The cluster list as a client sees it, least loaded first, cut to what
    /// fits in one message.
    pub fn cluster_list(&mut self, now: u64) -> Vec<ClusterInfo> {
        let mut list: Vec<ClusterInfo> = self.clusters.values_mut().map(|e| e.info(now)).collect();
        list.sort_by_key(|c| (c.locked, c.players, c.id));
        let mut size = 3;
        let mut keep = 0;
        for c in &list {
            size += 40 + c.name.len() + c.address.len();
            if size > NOISE_MAX_PLAINTEXT || keep >= CLUSTER_LIST_MAX {
                break;
            }
            keep += 1;
        }
        list.truncate(keep);
        list
    }

    /// How many clusters are listed.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.clusters.len()
    }

    /// A ticket for a logged-in client, within the caps on unused tickets.
    pub fn handle_join(
        &mut self,
        now: u64,
        holder: &Holder,
        target: JoinTarget,
        rng: &mut impl CryptoRng,
    ) -> Result<Ticket, Goodbye> {
        self.tickets.prune(now);
        self.tickets.check(holder, &self.settings, now)?;
        let id = self.pick(now, target)?;
        let ticket = self.issue(now, id, holder.client_id, &holder.user_data, rng)?;
        self.tickets.record(
            holder,
            Outstanding {
                cluster_id: id,
                client_id: holder.client_id,
                expires_at_ms: ticket.expires_at_ms,
            },
        );
        Ok(ticket)
    }

    /// A handoff: a ticket to `target` for one of `source`'s players that
    /// the master sent there. A cluster can only move players the master
    /// gave it, so a cluster key cannot be used to mint tickets for anyone else.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_transfer(
        &mut self,
        now: u64,
        source: u64,
        conn: u64,
        client_id: u64,
        target: u64,
        user_data: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Ticket, Goodbye> {
        let owns = self
            .clusters
            .get(&source)
            .is_some_and(|e| e.conn == conn && e.sent.contains(&client_id));
        if !owns {
            return Err(Goodbye {
                reason: DisconnectReason::ProtocolViolation,
                message: format!("player {client_id} was not sent to this cluster by the master"),
            });
        }
        if target == source {
            return Err(Goodbye {
                reason: DisconnectReason::NoCluster,
                message: "the target is the player's own cluster".into(),
            });
        }
        let id = self.pick(now, JoinTarget::Id(target))?;
        let ticket = self.issue(now, id, client_id, user_data, rng)?;
        self.tickets
            .record_transfer(client_id, id, ticket.expires_at_ms);
        Ok(ticket)
    }

    /// The tickets that expired unused since the last call (each ticket is
    /// counted once, at most a second after its expiry if this is called
    /// every second). A used ticket never counts, nor do a player's other
    /// tickets for the cluster it joined (dropped when one is used); a
    /// ticket whose cluster left the list counts when it expires.
    pub fn take_expired_tickets(&mut self, now: u64) -> ExpiredTickets {
        self.tickets.prune(now);
        std::mem::take(&mut self.tickets.expired)
    }

    fn pick(&mut self, now: u64, target: JoinTarget) -> Result<u64, Goodbye> {
        match target {
            JoinTarget::Id(id) => {
                let Some(e) = self.clusters.get_mut(&id) else {
                    return Err(Goodbye {
                        reason: DisconnectReason::NoCluster,
                        message: format!("no cluster with id {id}"),
                    });
                };
                if e.info(now).locked {
                    return Err(Goodbye {
                        reason: DisconnectReason::ServerFull,
                        message: format!("cluster {} is full", e.reg.name),
                    });
                }
                Ok(id)
            }
            JoinTarget::Auto => {
                let mut reserved = 0usize;
                let best = self
                    .clusters
                    .values_mut()
                    .filter(|e| {
                        reserved += usize::from(e.reserved);
                        !e.reserved
                    })
                    .map(|e| e.info(now))
                    .filter(|i| !i.locked)
                    .min_by_key(|i| (i.players, i.id));
                match best {
                    Some(i) => Ok(i.id),
                    None if self.clusters.is_empty() => Err(Goodbye {
                        reason: DisconnectReason::NoCluster,
                        message: "no cluster is registered".into(),
                    }),
                    None if reserved > 0 => Err(Goodbye {
                        reason: DisconnectReason::ServerFull,
                        message: format!(
                            "every cluster is full or reserved ({reserved} reserved: join one by its id)"
                        ),
                    }),
                    None => Err(Goodbye {
                        reason: DisconnectReason::ServerFull,
                        message: "every cluster is full".into(),
                    }),
                }
            }
        }
    }

    fn issue(
        &mut self,
        now: u64,
        id: u64,
        client_id: u64,
        user_data: &[u8],
        rng: &mut impl CryptoRng,
    ) -> Result<Ticket, Goodbye> {
        let settings = self.settings;
        let Some(entry) = self.clusters.get_mut(&id) else {
            return Err(Goodbye::new(DisconnectReason::NoCluster));
        };
        let mut token_id = [0u8; 16];
        rng.fill_bytes(&mut token_id);
        let mut session_secret = SessionSecret([0u8; 32]);
        rng.fill_bytes(&mut session_secret.0);
        let expires_at_ms = now.saturating_add(settings.token_ttl_ms);
        let token = ConnectToken {
            client_id,
            cluster_id: id,
            token_id,
            expires_at_ms,
            session_secret: session_secret.clone(),
            user_data: user_data.to_vec(),
        };
        let sealed = token.seal(&entry.key, rng).map_err(|e| Goodbye {
            reason: DisconnectReason::ProtocolViolation,
            message: format!("cannot issue a token: {e}"),
        })?;
        drop(token);
        let believe_until = expires_at_ms.saturating_add(settings.token_ttl_ms);
        entry.expected.insert(client_id, believe_until);
        let hold_until = now.saturating_add(settings.ticket_hold_ms.min(settings.token_ttl_ms));
        if hold_until > now {
            entry.held.insert(client_id, hold_until);
        }
        let cluster = entry.info(now);
        Ok(Ticket {
            cluster,
            client_id,
            expires_at_ms,
            session_secret,
            token: sealed,
        })
    }
}

#[cfg(test)]
#[path = "directory_tests.rs"]
mod tests;
