//! What the client tells the game: events, errors and measured round trips.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sustenet_proto::{ClusterInfo, DisconnectReason, HandshakeError};
use thiserror::Error;

use crate::ClusterPing;

/// What went wrong, as the game sees it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClientError {
    /// The master could not be reached.
    #[error("cannot reach the master at {addr}: {message}")]
    MasterUnreachable {
        /// The address tried.
        addr: String,
        /// The system's message.
        message: String,
    },
    /// The cluster could not be reached.
    #[error("cannot reach the cluster at {addr}: {message}")]
    ClusterUnreachable {
        /// The address tried.
        addr: String,
        /// The system's message.
        message: String,
    },
    /// The handshake failed in another way (timeout, malformed answer).
    #[error("{0}")]
    Handshake(String),
    /// The server refused the connection before any session, with a reason
    /// code (for example `ServerFull` or `TooManyHandshakes`).
    #[error("the server refused the connection: {reason} ({message})")]
    Refused {
        /// Why.
        reason: DisconnectReason,
        /// The server's explanation.
        message: String,
    },
    /// The master public key the client has does not match the master.
    #[error("the master rejected the handshake: the master public key this client uses is wrong")]
    WrongMasterKey,
    /// The other side speaks another protocol version.
    #[error("protocol version mismatch: this client speaks {ours}, the server speaks {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u16,
        /// The server's version.
        theirs: u16,
    },
    /// The command needs a cluster connection and there is none.
    #[error("not connected to a cluster: join one first")]
    NotInCluster,
    /// The command needs a login first.
    #[error("not logged in: call login first")]
    NotLoggedIn,
    /// The payload is over the channel's limit (the datagram limit for
    /// unreliable messages, the frame limit for reliable ones).
    #[error("payload of {len} bytes is over the limit of {max} for this channel")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The command queue is full or the client task stopped.
    #[error("the client is not running or its command queue is full")]
    Stopped,
    /// Anything else on the connection.
    #[error("{0}")]
    Connection(String),
}

impl From<HandshakeError> for ClientError {
    fn from(e: HandshakeError) -> Self {
        match e {
            HandshakeError::WrongMasterKey => ClientError::WrongMasterKey,
            HandshakeError::VersionMismatch { ours, theirs } => {
                ClientError::VersionMismatch { ours, theirs }
            }
            HandshakeError::Rejected { reason, message } => {
                ClientError::Refused { reason, message }
            }
            other => ClientError::Handshake(other.to_string()),
        }
    }
}

/// What the client tells the game.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Connected to the master (handshake done).
    MasterConnected,
    /// The login was accepted.
    LoginSucceeded {
        /// The client's id; it is also the player id on clusters.
        client_id: u64,
    },
    /// The login was refused.
    LoginFailed {
        /// Why, as the master put it.
        message: String,
    },
    /// The cluster list.
    Clusters(Vec<ClusterInfo>),
    /// Round trips to the listed clusters, measured right after the list.
    ClusterPings(Vec<ClusterPing>),
    /// A join did not work (the master or the cluster refused).
    JoinFailed {
        /// Why.
        reason: DisconnectReason,
        /// Details.
        message: String,
    },
    /// Connected to a cluster and ready to play.
    Joined {
        /// The cluster.
        cluster: ClusterInfo,
        /// The player id on it.
        player_id: u64,
    },
    /// A packet from the cluster.
    Packet {
        /// The game's command number.
        command: u16,
        /// The payload.
        payload: Vec<u8>,
        /// True if it came on the reliable channel.
        reliable: bool,
    },
    /// The cluster moved this player to another cluster; a `Joined` follows.
    Redirected {
        /// The new cluster.
        cluster: ClusterInfo,
        /// From the redirect's arrival to the new cluster's welcome.
        pause: Duration,
    },
    /// The cluster connection dropped; the client is reconnecting to the
    /// same cluster, with the same player id. Reliable messages sent
    /// meanwhile are kept and delivered after the reconnect. `Reconnected`
    /// or `Disconnected` follows.
    Reconnecting {
        /// Why the connection dropped.
        reason: DisconnectReason,
        /// Details.
        message: String,
    },
    /// Back on the cluster after a dropped connection: the same player, and
    /// no reliable message lost or repeated in either direction.
    Reconnected {
        /// The cluster.
        cluster: ClusterInfo,
        /// From the drop to the reconnect.
        away: Duration,
    },
    /// The cluster connection ended.
    Disconnected {
        /// Why.
        reason: DisconnectReason,
        /// Details.
        message: String,
    },
    /// The master connection ended while it was still needed.
    MasterDisconnected {
        /// Why.
        reason: DisconnectReason,
        /// Details.
        message: String,
    },
    /// Something failed; the message says what to do.
    Error(ClientError),
}

/// Round-trip times measured by the heartbeats, in microseconds (0 = not yet).
#[derive(Debug, Default)]
pub struct Rtt {
    reliable_us: AtomicU64,
    unreliable_us: AtomicU64,
}

impl Rtt {
    /// Last round trip on the reliable channel.
    pub fn reliable(&self) -> Duration {
        Duration::from_micros(self.reliable_us.load(Ordering::Relaxed))
    }
    /// Last round trip on the unreliable channel.
    pub fn unreliable(&self) -> Duration {
        Duration::from_micros(self.unreliable_us.load(Ordering::Relaxed))
    }
    pub(crate) fn set_reliable(&self, us: u64) {
        self.reliable_us.store(us, Ordering::Relaxed);
    }
    pub(crate) fn set_unreliable(&self, us: u64) {
        self.unreliable_us.store(us, Ordering::Relaxed);
    }
}
