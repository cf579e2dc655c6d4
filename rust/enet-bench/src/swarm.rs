//! The simulated clients: ENet peers packed into a few hosts (one UDP socket each, up to
//! `--clients-per-socket` peers), all driven by one thread that waits on the sockets with
//! epoll (mio) between sends.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use mio::{Events, Interest, Poll, Token};
use rusty_enet::{EventNoRef, Host, HostSettings, Packet, PeerID};

use crate::stats::Window;
use crate::wire::{self, Stamp};

/// Channels each client opens: Godot's reliable and unreliable system channels.
const CHANNELS: usize = 2;
/// Receive and send buffer asked for each socket (capped by the kernel's maximum).
const SOCKET_BUFFER: usize = 4 << 20;

/// What a received packet was, for the caller's counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// A relayed position from another client.
    Position(Stamp),
    /// One of our own echoes, back.
    Echo(Stamp),
}

/// Counts of peer life-cycle events and bad packets.
#[derive(Debug, Default, Clone, Copy)]
pub struct PeerCounts {
    /// Peers that completed the ENet connect.
    pub connected: usize,
    /// Peers that were disconnected (refused, timed out, or closed by the server).
    pub disconnected: usize,
    /// Packets that were neither a position nor an echo.
    pub malformed: u64,
}

/// All the clients' hosts and the clock they share.
pub struct Swarm {
    hosts: Vec<Host<UdpSocket>>,
    /// The same sockets, registered with `poll` for readiness only.
    _watched: Vec<mio::net::UdpSocket>,
    poll: Poll,
    events: Events,
    /// (host, peer) of each client.
    peers: Vec<(usize, PeerID)>,
    /// Per host, the client index of each peer slot.
    owner: Vec<Vec<Option<u32>>>,
    epoch: Instant,
    /// Peer events and bad packets so far.
    pub counts: PeerCounts,
}

impl std::fmt::Debug for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swarm")
            .field("hosts", &self.hosts.len())
            .field("clients", &self.peers.len())
            .finish()
    }
}

impl Swarm {
    /// Opens `ceil(clients / per_socket)` hosts bound to the loopback or any address of
    /// `server`'s family; nothing is sent yet.
    pub fn open(server: SocketAddr, clients: usize, per_socket: usize) -> Result<Swarm> {
        let poll = Poll::new().context("epoll")?;
        let (mut hosts, mut watched, mut owner) = (Vec::new(), Vec::new(), Vec::new());
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()?;
        for h in 0..clients.div_ceil(per_socket) {
            let limit = per_socket.min(clients - h * per_socket);
            let socket = UdpSocket::bind(bind).context("bind a client socket")?;
            let sock = socket2::SockRef::from(&socket);
            sock.set_recv_buffer_size(SOCKET_BUFFER)?;
            sock.set_send_buffer_size(SOCKET_BUFFER)?;
            socket.set_nonblocking(true)?;
            let mut watch = mio::net::UdpSocket::from_std(socket.try_clone()?);
            poll.registry()
                .register(&mut watch, Token(h), Interest::READABLE)?;
            let settings = HostSettings {
                peer_limit: limit,
                channel_limit: CHANNELS,
                ..Default::default()
            };
            hosts.push(
                Host::new(socket, settings).map_err(|e| anyhow::anyhow!("ENet host: {e:?}"))?,
            );
            watched.push(watch);
            owner.push(vec![None; limit]);
        }
        Ok(Swarm {
            hosts,
            _watched: watched,
            poll,
            events: Events::with_capacity(64),
            peers: Vec::with_capacity(clients),
            owner,
            epoch: Instant::now(),
            counts: PeerCounts::default(),
        })
    }

    /// Clients whose connect has been started.
    pub fn started(&self) -> usize {
        self.peers.len()
    }

    /// µs since this swarm's epoch (the clock of every send time and latency).
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Starts client `i`'s ENet connect; its connect data is `i + 2`, the peer id
    /// ENetMultiplayerPeer gives it (ids 0 and 1 are reserved there).
    pub fn connect(&mut self, server: SocketAddr, per_socket: usize) -> Result<()> {
        let i = self.peers.len();
        let h = i / per_socket;
        let data = u32::try_from(i + 2)?;
        let Some(host) = self.hosts.get_mut(h) else {
            bail!("client {i} has no host")
        };
        let peer = host
            .connect(server, CHANNELS, data)
            .map_err(|_| anyhow::anyhow!("no free ENet peer slot"))?
            .id();
        if let Some(slot) = self.owner.get_mut(h).and_then(|o| o.get_mut(peer.0)) {
            *slot = Some(u32::try_from(i)?);
        }
        self.peers.push((h, peer));
        Ok(())
    }

    /// Queues `packet` from client `i` on `channel` (sent at the next flush); `false` if
    /// the client's peer refused it (not connected any more), which counts as not sent.
    pub fn send(&mut self, i: usize, channel: u8, packet: &Packet) -> bool {
        let Some(&(h, peer)) = self.peers.get(i) else {
            return false;
        };
        self.hosts
            .get_mut(h)
            .and_then(|host| host.get_peer_mut(peer))
            .is_some_and(|p| p.send(channel, packet).is_ok())
    }

    /// Sends everything queued on every host.
    pub fn flush(&mut self) {
        for host in &mut self.hosts {
            host.flush();
        }
    }

    /// Services every host until none has an event left; `on` gets each packet that parsed.
    pub fn service(&mut self, on: &mut impl FnMut(u32, Arrival)) -> Result<()> {
        for h in 0..self.hosts.len() {
            while let Some(host) = self.hosts.get_mut(h) {
                let Some(event) = host.service().context("ENet service")?.map(|e| e.no_ref())
                else {
                    break;
                };
                match event {
                    EventNoRef::Connect { .. } => self.counts.connected += 1,
                    EventNoRef::Disconnect { .. } => self.counts.disconnected += 1,
                    EventNoRef::Receive { peer, packet, .. } => {
                        let client = self
                            .owner
                            .get(h)
                            .and_then(|o| o.get(peer.0))
                            .copied()
                            .flatten();
                        match (client, wire::decode(packet.data())) {
                            (Some(c), Some((wire::KIND_POSITION, s))) => {
                                on(c, Arrival::Position(s))
                            }
                            (Some(c), Some((wire::KIND_ECHO, s))) => on(c, Arrival::Echo(s)),
                            _ => self.counts.malformed += 1,
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits until a socket is readable or `timeout` has passed.
    pub fn wait(&mut self, timeout: Duration) -> Result<()> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Err(e) if e.kind() != std::io::ErrorKind::Interrupted => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Disconnects every client and services until the server has confirmed them all or
    /// `timeout` has passed; returns how many were confirmed.
    pub fn disconnect_all(&mut self, timeout: Duration) -> Result<usize> {
        let before = self.counts.disconnected;
        let mut live = 0;
        for host in &mut self.hosts {
            for peer in host.connected_peers_mut() {
                peer.disconnect(0);
                live += 1;
            }
        }
        let until = Instant::now() + timeout;
        while self.counts.disconnected - before < live && Instant::now() < until {
            self.flush();
            self.service(&mut |_, _| ())?;
            self.wait(Duration::from_millis(5))?;
        }
        Ok(self.counts.disconnected - before)
    }

    /// Adds the arrival to the window's counts if it was sent inside `[from, to)` µs.
    pub fn tally(window: &mut Window, arrival: Arrival, now_us: u64, from: u64, to: u64) {
        let (stamp, is_position) = match arrival {
            Arrival::Position(s) => (s, true),
            Arrival::Echo(s) => (s, false),
        };
        if stamp.sent_us < from || stamp.sent_us >= to {
            return;
        }
        let latency = now_us.saturating_sub(stamp.sent_us);
        if is_position {
            window.delivered += 1;
            window.state_latency.push(latency);
        } else {
            window.echoes_back += 1;
            window.echo_rtt.push(latency);
        }
    }
}
