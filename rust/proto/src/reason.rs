//! Why a connection ended: one code that travels on the wire and reaches the game.

use std::fmt;

/// Why a connection was closed. Sent on the wire as one byte, delivered to the
/// game (the `disconnected` signal in Godot), and logged by servers.
///
/// Codes are stable: new reasons get new numbers, and a code this version
/// does not know decodes as [`DisconnectReason::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DisconnectReason {
    /// The peer closed the connection on purpose (a player leaving, a client calling disconnect).
    Requested = 1,
    /// The server's game logic removed the player.
    Kicked = 2,
    /// Nothing was received from the peer within its timeout.
    Timeout = 3,
    /// The server is shutting down.
    ServerShutdown = 4,
    /// The server has reached its connection limit.
    ServerFull = 5,
    /// The peer sent bytes that break the protocol (garbage, oversized or unknown messages).
    ProtocolViolation = 6,
    /// The peer failed to prove its identity (wrong cluster key, wrong master key, bad login).
    AuthFailed = 7,
    /// The two sides speak different protocol versions.
    VersionMismatch = 8,
    /// The peer did not read its data fast enough and its send queue filled up.
    SendQueueFull = 9,
    /// The peer did not finish its handshake in time.
    HandshakeTimeout = 10,
    /// The connect token is forged, tampered, or sealed for a cluster with another key.
    TokenInvalid = 11,
    /// The connect token has expired.
    TokenExpired = 12,
    /// The connect token was already used.
    TokenUsed = 13,
    /// The connect token was issued for another cluster.
    TokenWrongCluster = 14,
    /// The player is being moved to another cluster (the client follows on its own).
    Redirected = 15,
    /// The connection dropped without a goodbye (process killed, network down). Set locally, never sent.
    ConnectionLost = 16,
    /// Too many packets failed authentication (tampering or a broken peer).
    Tampered = 17,
    /// The server is at its limit of connections that have not finished their handshake.
    TooManyHandshakes = 18,
    /// The master has no cluster to offer (none registered, all full, or the chosen one is unknown).
    NoCluster = 19,
    /// The connection dropped and the player did not reconnect within the
    /// cluster's reconnect window, so its session ended.
    ReconnectTimeout = 20,
    /// A reconnect was refused: the session it names has ended (or never
    /// existed), or the messages to replay are no longer kept.
    ResumeRefused = 21,
    /// The master refused a ticket: the connection or the user already holds
    /// as many unused tickets as the master allows.
    TooManyTickets = 22,
    /// A reason code this version does not know.
    Unknown = 255,
}

impl DisconnectReason {
    /// Every known reason, in code order.
    pub const ALL: [DisconnectReason; 23] = [
        Self::Requested,
        Self::Kicked,
        Self::Timeout,
        Self::ServerShutdown,
        Self::ServerFull,
        Self::ProtocolViolation,
        Self::AuthFailed,
        Self::VersionMismatch,
        Self::SendQueueFull,
        Self::HandshakeTimeout,
        Self::TokenInvalid,
        Self::TokenExpired,
        Self::TokenUsed,
        Self::TokenWrongCluster,
        Self::Redirected,
        Self::ConnectionLost,
        Self::Tampered,
        Self::TooManyHandshakes,
        Self::NoCluster,
        Self::ReconnectTimeout,
        Self::ResumeRefused,
        Self::TooManyTickets,
        Self::Unknown,
    ];

    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The reason for a wire code; unknown codes map to [`DisconnectReason::Unknown`].
    pub fn from_code(code: u8) -> Self {
        Self::ALL
            .iter()
            .copied()
            .find(|r| r.code() == code)
            .unwrap_or(Self::Unknown)
    }

    /// A short English description, fit to show a player or write in a log.
    pub fn description(self) -> &'static str {
        match self {
            Self::Requested => "the connection was closed on request",
            Self::Kicked => "kicked by the server",
            Self::Timeout => "the peer stopped responding (timeout)",
            Self::ServerShutdown => "the server is shutting down",
            Self::ServerFull => "the server is full",
            Self::ProtocolViolation => "protocol violation (malformed or unexpected data)",
            Self::AuthFailed => "authentication failed",
            Self::VersionMismatch => "protocol version mismatch",
            Self::SendQueueFull => "too slow to keep up (send queue full)",
            Self::HandshakeTimeout => "the handshake did not finish in time",
            Self::TokenInvalid => "the connect token is invalid",
            Self::TokenExpired => "the connect token has expired",
            Self::TokenUsed => "the connect token was already used",
            Self::TokenWrongCluster => "the connect token is for another cluster",
            Self::Redirected => "moved to another cluster",
            Self::ConnectionLost => "the connection was lost",
            Self::Tampered => "too many packets failed authentication",
            Self::TooManyHandshakes => "the server has too many pending handshakes",
            Self::NoCluster => "no cluster is available",
            Self::ReconnectTimeout => "the player did not reconnect in time",
            Self::ResumeRefused => "the session could not be resumed",
            Self::TooManyTickets => "too many unused tickets",
            Self::Unknown => "unknown reason",
        }
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        for r in DisconnectReason::ALL {
            assert_eq!(DisconnectReason::from_code(r.code()), r);
        }
        let mut codes: Vec<u8> = DisconnectReason::ALL.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), DisconnectReason::ALL.len());
        assert_eq!(DisconnectReason::from_code(0), DisconnectReason::Unknown);
        assert_eq!(DisconnectReason::from_code(200), DisconnectReason::Unknown);
    }
}
