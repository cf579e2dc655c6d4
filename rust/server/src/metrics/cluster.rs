//! A cluster's metrics: what its connections, core and UDP task count.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sustenet_proto::DisconnectReason;

use super::{
    AWAY_BUCKETS, Handshakes, LabeledCounter, TICK_BUCKETS, TRANSFER_BUCKETS, reason_label,
};

/// A counter per UDP receiver, labelled with its number.
type ReceiverCounter =
    prometheus_client::metrics::family::Family<[(&'static str, String); 1], Counter>;

/// Most recent disconnects kept for the dashboard.
pub const RECENT_DISCONNECTS: usize = 32;
/// Most fragments kept in the dashboard's heat map (the most populated).
pub const HEAT_MAP_CELLS: usize = 1_024;

/// One occupied fragment and its players, for the dashboard's heat map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentCell {
    /// The fragment's grid coordinates (z is 0 on a 2D grid).
    pub coords: [i32; 3],
    /// Players in it.
    pub players: u32,
}

/// What the dashboard shows of a cluster besides counters.
#[derive(Debug, Default)]
struct View {
    cells: Vec<FragmentCell>,
    recent: VecDeque<(u64, DisconnectReason)>,
}

/// Every metric of one cluster. Cheap to clone (the clones count into the
/// same metrics); the default is a fresh set that nothing exports until it
/// is [registered](Self::register).
#[derive(Debug, Clone)]
pub struct ClusterMetrics {
    handshakes: Handshakes,
    players: Gauge,
    capacity: Gauge,
    joins: Counter,
    disconnects: LabeledCounter,
    transfers: LabeledCounter,
    transfer_pause: Histogram,
    reconnects: Counter,
    reconnect_away: Histogram,
    messages_in: LabeledCounter,
    bytes_in: LabeledCounter,
    messages_out: LabeledCounter,
    bytes_out: LabeledCounter,
    datagrams_dropped: LabeledCounter,
    udp_received: ReceiverCounter,
    send_queue_depth: Gauge,
    send_queue_kicks: Counter,
    fragments: Gauge,
    over_cap: Counter,
    tick: Histogram,
    master_link_up: Gauge,
    heartbeat: super::CoreHeartbeat,
    /// Totals over every label (not exported: the families sum to them).
    disconnects_all: Counter,
    dropped_all: Counter,
    ticks: Counter,
    tick_nanos: Counter,
    view: Arc<Mutex<View>>,
}

impl Default for ClusterMetrics {
    fn default() -> Self {
        Self {
            handshakes: Handshakes::default(),
            players: Gauge::default(),
            capacity: Gauge::default(),
            joins: Counter::default(),
            disconnects: LabeledCounter::default(),
            transfers: LabeledCounter::default(),
            transfer_pause: Histogram::new(TRANSFER_BUCKETS),
            reconnects: Counter::default(),
            reconnect_away: Histogram::new(AWAY_BUCKETS),
            messages_in: LabeledCounter::default(),
            bytes_in: LabeledCounter::default(),
            messages_out: LabeledCounter::default(),
            bytes_out: LabeledCounter::default(),
            datagrams_dropped: LabeledCounter::default(),
            udp_received: ReceiverCounter::default(),
            send_queue_depth: Gauge::default(),
            send_queue_kicks: Counter::default(),
            fragments: Gauge::default(),
            over_cap: Counter::default(),
            tick: Histogram::new(TICK_BUCKETS),
            master_link_up: Gauge::default(),
            heartbeat: super::CoreHeartbeat::default(),
            disconnects_all: Counter::default(),
            dropped_all: Counter::default(),
            ticks: Counter::default(),
            tick_nanos: Counter::default(),
            view: Arc::default(),
        }
    }
}

/// The channel label of a message: `reliable` (TCP) or `unreliable` (UDP).
fn channel(reliable: bool) -> [(&'static str, &'static str); 1] {
    [("channel", if reliable { "reliable" } else { "unreliable" })]
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl ClusterMetrics {
    /// Registers every metric under `sustenet_cluster_` in `registry`
    /// (give it a sub-registry labelled with the cluster's name when one
    /// process runs several).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("sustenet_cluster");
        self.handshakes.register(r, "Player handshakes");
        r.register(
            "players",
            "Players on the cluster (connected or away)",
            self.players.clone(),
        );
        r.register(
            "capacity_players",
            "The player limit in force (max_connections, or its default bound when 0)",
            self.capacity.clone(),
        );
        r.register(
            "joins",
            "Players that joined with a ticket",
            self.joins.clone(),
        );
        r.register(
            "disconnects",
            "Players removed, by reason",
            self.disconnects.clone(),
        );
        r.register(
            "transfers",
            "Transfers to another cluster by result (redirected, failed)",
            self.transfers.clone(),
        );
        r.register(
            "transfer_pause_seconds",
            "From a transfer request to the redirect sent to the player",
            self.transfer_pause.clone(),
        );
        r.register(
            "reconnects",
            "Players that resumed their session",
            self.reconnects.clone(),
        );
        r.register(
            "reconnect_away_seconds",
            "How long a resumed player was away",
            self.reconnect_away.clone(),
        );
        r.register(
            "messages_received",
            "Messages from players, by channel",
            self.messages_in.clone(),
        );
        r.register(
            "received_bytes",
            "Payload bytes from players, by channel",
            self.bytes_in.clone(),
        );
        r.register(
            "messages_sent",
            "Messages to players, by channel",
            self.messages_out.clone(),
        );
        r.register(
            "sent_bytes",
            "Bytes sent to players, by channel",
            self.bytes_out.clone(),
        );
        r.register(
            "datagrams_dropped",
            "Datagrams dropped, by reason (replay, auth, size, rate, unknown_session, malformed, busy, send_full, send_error, seal_busy)",
            self.datagrams_dropped.clone(),
        );
        self.register_receivers(r);
        r.register(
            "send_queue_depth_messages",
            "Deepest player send queue at the last heartbeat",
            self.send_queue_depth.clone(),
        );
        r.register(
            "send_queue_full_kicks",
            "Players disconnected because their send queue was full",
            self.send_queue_kicks.clone(),
        );
        r.register("fragments", "Occupied fragments", self.fragments.clone());
        r.register(
            "fragment_over_cap",
            "Fragments that went over their player cap",
            self.over_cap.clone(),
        );
        r.register(
            "core_tick_seconds",
            "Duration of one core update tick",
            self.tick.clone(),
        );
        r.register(
            "master_link_up",
            "1 while registered with the master",
            self.master_link_up.clone(),
        );
        self.heartbeat.register(r);
    }

    /// Registers the UDP receivers' counter in `r`.
    fn register_receivers(&self, r: &mut Registry) {
        r.register(
            "udp_datagrams_received",
            "Datagrams read from the UDP sockets, by receiver (`[cluster] receive_threads`)",
            self.udp_received.clone(),
        );
    }

    /// A TCP connection was accepted.
    pub fn connection(&self) {
        self.handshakes.connection();
    }
    /// A player handshake ended: `Ok` or the reason it was refused.
    pub fn handshake(&self, result: Result<(), DisconnectReason>) {
        self.handshakes.handshake(result);
    }
    /// The player count and the player limit in force.
    pub fn set_players(&self, players: usize, capacity: u32) {
        self.players.set(to_i64(players));
        self.capacity.set(i64::from(capacity));
    }
    /// A player joined.
    pub fn join(&self) {
        self.joins.inc();
    }
    /// A player was removed for `reason` at wall-clock `now_ms`.
    pub fn disconnect(&self, reason: DisconnectReason, now_ms: u64) {
        let label = reason_label(reason);
        self.disconnects.get_or_create(&[("reason", label)]).inc();
        self.disconnects_all.inc();
        if reason == DisconnectReason::SendQueueFull {
            self.send_queue_kicks.inc();
        }
        let mut v = self.view();
        if v.recent.len() == RECENT_DISCONNECTS {
            v.recent.pop_front();
        }
        v.recent.push_back((now_ms, reason));
    }
    /// A transfer's redirect was sent `pause_secs` after it was asked for.
    pub fn transfer_redirected(&self, pause_secs: f64) {
        self.transfers
            .get_or_create(&[("result", "redirected")])
            .inc();
        self.transfer_pause.observe(pause_secs);
    }
    /// A transfer failed.
    pub fn transfer_failed(&self) {
        self.transfers.get_or_create(&[("result", "failed")]).inc();
    }
    /// A player resumed after `away_secs` away.
    pub fn reconnect(&self, away_secs: f64) {
        self.reconnects.inc();
        self.reconnect_away.observe(away_secs);
    }
    /// A message of `bytes` bytes came from a player.
    pub fn received(&self, reliable: bool, bytes: usize) {
        self.messages_in.get_or_create(&channel(reliable)).inc();
        self.bytes_in
            .get_or_create(&channel(reliable))
            .inc_by(bytes as u64);
    }
    /// `messages` messages in `bytes` bytes went to players.
    pub fn sent(&self, reliable: bool, messages: u64, bytes: usize) {
        self.messages_out
            .get_or_create(&channel(reliable))
            .inc_by(messages);
        self.bytes_out
            .get_or_create(&channel(reliable))
            .inc_by(bytes as u64);
    }
    /// A datagram was dropped; `reason` is one of the names in the help text.
    pub fn datagram_dropped(&self, reason: &'static str) {
        self.datagrams_dropped
            .get_or_create(&[("reason", reason)])
            .inc();
        self.dropped_all.inc();
    }
    /// The counter of the datagrams UDP receiver number `receiver` reads
    /// (`udp_datagrams_received_total{receiver}`).
    pub(crate) fn udp_receiver(&self, receiver: usize) -> Counter {
        self.udp_received
            .get_or_create(&[("receiver", receiver.to_string())])
            .clone()
    }
    /// Datagrams UDP receiver number `receiver` (from 0) has read, of
    /// every kind (pings and refused ones included).
    pub fn udp_received_by(&self, receiver: usize) -> u64 {
        self.udp_receiver(receiver).get()
    }
    /// The deepest send queue, in messages.
    pub fn set_send_queue_depth(&self, messages: usize) {
        self.send_queue_depth.set(to_i64(messages));
    }
    /// A fragment went over its cap.
    pub fn over_cap(&self) {
        self.over_cap.inc();
    }
    /// One core update took `secs`.
    pub fn tick(&self, secs: f64) {
        self.tick.observe(secs);
        self.ticks.inc();
        self.tick_nanos.inc_by((secs * 1e9) as u64);
    }
    /// The core's heartbeat clock (what `/health` judges).
    pub fn heartbeat(&self) -> &super::CoreHeartbeat {
        &self.heartbeat
    }
    /// Registered with the master, or not.
    pub fn set_master_link(&self, up: bool) {
        self.master_link_up.set(i64::from(up));
    }
    /// The occupied fragments and their players (kept: the
    /// [`HEAT_MAP_CELLS`] most populated).
    pub fn set_fragments(&self, mut cells: Vec<FragmentCell>) {
        self.fragments.set(to_i64(cells.len()));
        if cells.len() > HEAT_MAP_CELLS {
            cells.sort_unstable_by_key(|c| std::cmp::Reverse(c.players));
            cells.truncate(HEAT_MAP_CELLS);
        }
        self.view().cells = cells;
    }

    /// The dashboard report of this cluster at `now_ms`, in at most
    /// `max_bytes` bytes of message body: the latest disconnects, newest
    /// first (at most an hour old), and the most populated occupied
    /// fragments (at most
    /// [`REPORT_CELLS_MAX`](sustenet_proto::report::REPORT_CELLS_MAX), fewer
    /// when `max_bytes` is smaller than a full report).
    pub fn report(&self, now_ms: u64, max_bytes: usize) -> sustenet_proto::report::ClusterReport {
        use sustenet_proto::report::{
            REPORT_AGE_MAX_MS, REPORT_CELLS_MAX, REPORT_DISCONNECTS_MAX, RecentDisconnect,
            ReportCell,
        };
        let v = self.view();
        let disconnects: Vec<RecentDisconnect> = v
            .recent
            .iter()
            .rev()
            .take(REPORT_DISCONNECTS_MAX)
            .filter_map(|(at, reason)| {
                let age = u32::try_from(now_ms.saturating_sub(*at)).ok()?;
                (age <= REPORT_AGE_MAX_MS).then_some(RecentDisconnect {
                    age_ms: age,
                    reason: *reason,
                })
            })
            .collect();
        // Type byte and two counts, then 5 bytes a disconnect, 16 a fragment.
        let room = max_bytes.saturating_sub(4 + 5 * disconnects.len()) / 16;
        let mut cells: Vec<&FragmentCell> = v.cells.iter().filter(|c| c.players > 0).collect();
        cells.sort_unstable_by_key(|c| std::cmp::Reverse(c.players));
        let cells = cells
            .into_iter()
            .take(REPORT_CELLS_MAX.min(room))
            .map(|c| ReportCell {
                coords: c.coords,
                players: c.players,
            })
            .collect();
        sustenet_proto::report::ClusterReport { cells, disconnects }
    }

    fn view(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The numbers as they are now.
    pub fn stats(&self) -> ClusterStats {
        let by =
            |f: &LabeledCounter, k: &'static str, v: &'static str| f.get_or_create(&[(k, v)]).get();
        let v = self.view();
        ClusterStats {
            players: u64::try_from(self.players.get()).unwrap_or(0),
            capacity: u64::try_from(self.capacity.get()).unwrap_or(0),
            connections: self.handshakes.connections(),
            joins: self.joins.get(),
            disconnects: self.disconnects_all.get(),
            transfers_redirected: by(&self.transfers, "result", "redirected"),
            transfers_failed: by(&self.transfers, "result", "failed"),
            reconnects: self.reconnects.get(),
            reliable_in: by(&self.messages_in, "channel", "reliable"),
            unreliable_in: by(&self.messages_in, "channel", "unreliable"),
            reliable_out: by(&self.messages_out, "channel", "reliable"),
            unreliable_out: by(&self.messages_out, "channel", "unreliable"),
            bytes_in: by(&self.bytes_in, "channel", "reliable")
                + by(&self.bytes_in, "channel", "unreliable"),
            bytes_out: by(&self.bytes_out, "channel", "reliable")
                + by(&self.bytes_out, "channel", "unreliable"),
            datagrams_dropped: self.dropped_all.get(),
            send_queue_depth: u64::try_from(self.send_queue_depth.get()).unwrap_or(0),
            send_queue_full_kicks: self.send_queue_kicks.get(),
            fragments: u64::try_from(self.fragments.get()).unwrap_or(0),
            fragment_over_cap: self.over_cap.get(),
            ticks: self.ticks.get(),
            tick_seconds_sum: self.tick_nanos.get() as f64 / 1e9,
            master_link_up: self.master_link_up.get() == 1,
            cells: v.cells.clone(),
            recent_disconnects: v
                .recent
                .iter()
                .map(|(at, r)| (*at, reason_label(*r)))
                .collect(),
        }
    }
}

/// A cluster's numbers at one moment (see [`ClusterMetrics::stats`]); the
/// counters count since the cluster started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterStats {
    /// Players on the cluster.
    pub players: u64,
    /// The player limit in force.
    pub capacity: u64,
    /// TCP connections accepted.
    pub connections: u64,
    /// Players that joined.
    pub joins: u64,
    /// Players removed, for any reason.
    pub disconnects: u64,
    /// Transfers that ended in a redirect.
    pub transfers_redirected: u64,
    /// Transfers that failed.
    pub transfers_failed: u64,
    /// Players that resumed their session.
    pub reconnects: u64,
    /// Reliable messages received.
    pub reliable_in: u64,
    /// Unreliable records received.
    pub unreliable_in: u64,
    /// Reliable messages sent.
    pub reliable_out: u64,
    /// Datagrams sent.
    pub unreliable_out: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Datagrams dropped, for any reason.
    pub datagrams_dropped: u64,
    /// Deepest send queue at the last heartbeat, in messages.
    pub send_queue_depth: u64,
    /// Players disconnected for a full send queue.
    pub send_queue_full_kicks: u64,
    /// Occupied fragments.
    pub fragments: u64,
    /// Fragments that went over their cap.
    pub fragment_over_cap: u64,
    /// Core update ticks run.
    pub ticks: u64,
    /// Seconds spent in them.
    pub tick_seconds_sum: f64,
    /// Registered with the master.
    pub master_link_up: bool,
    /// Occupied fragments and their players.
    pub cells: Vec<FragmentCell>,
    /// The latest disconnects: wall-clock ms and reason, oldest first.
    pub recent_disconnects: Vec<(u64, &'static str)>,
}
