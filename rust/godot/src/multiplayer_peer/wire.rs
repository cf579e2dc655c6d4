//! What `SustenetMultiplayerPeer` puts on the wire, sans-IO.
//!
//! The peer rides on Sustenet's command-number + bytes messages and needs no
//! protocol change: it owns the command numbers [`FIRST_COMMAND`]..=`0xFFFF`.
//! A game that also uses the plain signal API must keep its own command
//! numbers below [`FIRST_COMMAND`] while a peer is attached (packets in the
//! range then go to the peer, not to `packet_received`).
//!
//! | Command | Name | Direction | Payload |
//! |---|---|---|---|
//! | `0xFF00` | Data | both | `mode: u8`, `channel: u8`, `seq: u32 LE` (only when mode is 1), packet |
//! | `0xFF01` | Hello | client → cluster | `version: u8` (1) |
//! | `0xFF02` | Welcome | cluster → client | `version: u8`, `peer_id: i32 LE`, `flags: u8` (bit 0: relay) |
//! | `0xFF03` | Refused | cluster → client | empty: the cluster refuses new Godot peers |
//! | `0xFF04` | Bye | both | empty: this side's Godot peer closed |
//! | `0xFF05` | Move | cluster → client | empty: a move to another cluster is coming |
//! | `0xFF06` | MoveReady | client → cluster | empty: the client stopped sending for the move |
//!
//! `mode` is Godot's `TransferMode` value: 0 unreliable, 1 unreliable
//! ordered, 2 reliable. Data in mode 2 travels on the reliable channel,
//! modes 0 and 1 in datagrams (a datagram too large for one is sent on the
//! reliable channel instead, still marked with its mode).

/// First command number of the peer's range; the range ends at `0xFFFF`.
pub const FIRST_COMMAND: u16 = 0xFF00;
/// A SceneMultiplayer packet with its transfer mode and channel.
pub const DATA: u16 = 0xFF00;
/// A client's Godot peer asks to join the cluster's Godot peer.
pub const HELLO: u16 = 0xFF01;
/// The cluster's answer to [`HELLO`]: the client's Godot peer id.
pub const WELCOME: u16 = 0xFF02;
/// The cluster refuses new Godot peers.
pub const REFUSED: u16 = 0xFF03;
/// The sender's Godot peer closed.
pub const BYE: u16 = 0xFF04;
/// The cluster is about to move the player to another cluster.
pub const MOVE: u16 = 0xFF05;
/// The client stopped sending and is ready to move.
pub const MOVE_READY: u16 = 0xFF06;

/// Version byte of [`HELLO`] and [`WELCOME`].
pub const VERSION: u8 = 1;
/// Bytes of a [`DATA`] header at most (mode, channel, seq).
pub const MAX_HEADER: usize = 6;
/// Welcome flag: the cluster relays packets between clients.
pub const FLAG_RELAY: u8 = 1;

/// Godot's `TransferMode`, as carried in a [`DATA`] header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Datagram; may be lost or come late.
    Unreliable,
    /// Datagram; one older than the newest seen on its channel is dropped.
    UnreliableOrdered,
    /// Reliable channel: every packet, in order.
    Reliable,
}

impl Mode {
    /// The byte on the wire (Godot's enum value).
    pub fn to_byte(self) -> u8 {
        match self {
            Mode::Unreliable => 0,
            Mode::UnreliableOrdered => 1,
            Mode::Reliable => 2,
        }
    }

    /// The mode of a wire byte; none for an unknown one.
    pub fn from_byte(b: u8) -> Option<Mode> {
        match b {
            0 => Some(Mode::Unreliable),
            1 => Some(Mode::UnreliableOrdered),
            2 => Some(Mode::Reliable),
            _ => None,
        }
    }
}

/// A decoded [`DATA`] payload; `packet` borrows the received bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data<'a> {
    pub mode: Mode,
    pub channel: u8,
    /// Sequence number of an ordered datagram (0 otherwise).
    pub seq: u32,
    pub packet: &'a [u8],
}

/// Why a payload from the other side is not a valid message of the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than its header.
    Truncated,
    /// A mode byte other than 0, 1, 2.
    UnknownMode(u8),
    /// A version this build does not speak.
    Version(u8),
    /// An empty SceneMultiplayer packet (Godot never sends one).
    EmptyPacket,
    /// Bytes where the message has none, or a peer id out of range.
    Malformed,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Truncated => write!(f, "a peer message shorter than its header"),
            WireError::UnknownMode(m) => write!(f, "unknown transfer mode {m}"),
            WireError::Version(v) => {
                write!(f, "peer protocol version {v} (this build speaks {VERSION})")
            }
            WireError::EmptyPacket => write!(f, "an empty SceneMultiplayer packet"),
            WireError::Malformed => write!(f, "a malformed peer control message"),
        }
    }
}

/// Encodes a [`DATA`] payload.
pub fn encode_data(mode: Mode, channel: u8, seq: u32, packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_HEADER + packet.len());
    out.push(mode.to_byte());
    out.push(channel);
    if mode == Mode::UnreliableOrdered {
        out.extend_from_slice(&seq.to_le_bytes());
    }
    out.extend_from_slice(packet);
    out
}

/// Decodes a [`DATA`] payload.
pub fn decode_data(payload: &[u8]) -> Result<Data<'_>, WireError> {
    let [mode, channel, rest @ ..] = payload else {
        return Err(WireError::Truncated);
    };
    let mode = Mode::from_byte(*mode).ok_or(WireError::UnknownMode(*mode))?;
    let (seq, packet) = if mode == Mode::UnreliableOrdered {
        let (Some(s), Some(p)) = (rest.get(..4), rest.get(4..)) else {
            return Err(WireError::Truncated);
        };
        let mut b = [0u8; 4];
        b.copy_from_slice(s);
        (u32::from_le_bytes(b), p)
    } else {
        (0, rest)
    };
    if packet.is_empty() {
        return Err(WireError::EmptyPacket);
    }
    Ok(Data {
        mode,
        channel: *channel,
        seq,
        packet,
    })
}

/// The [`HELLO`] payload.
pub fn encode_hello() -> Vec<u8> {
    vec![VERSION]
}

/// Checks a [`HELLO`] payload.
pub fn decode_hello(payload: &[u8]) -> Result<(), WireError> {
    match payload {
        [VERSION] => Ok(()),
        [v] => Err(WireError::Version(*v)),
        [] => Err(WireError::Truncated),
        _ => Err(WireError::Malformed),
    }
}

/// A decoded [`WELCOME`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome {
    /// The client's Godot peer id, 2..=2^31-1.
    pub peer_id: i32,
    /// Whether the cluster relays packets between clients.
    pub relay: bool,
}

/// The [`WELCOME`] payload.
pub fn encode_welcome(w: Welcome) -> Vec<u8> {
    let mut out = vec![VERSION];
    out.extend_from_slice(&w.peer_id.to_le_bytes());
    out.push(if w.relay { FLAG_RELAY } else { 0 });
    out
}

/// Decodes a [`WELCOME`] payload.
pub fn decode_welcome(payload: &[u8]) -> Result<Welcome, WireError> {
    let [v, a, b, c, d, flags] = payload else {
        return match payload.first() {
            Some(v) if *v != VERSION => Err(WireError::Version(*v)),
            _ => Err(WireError::Malformed),
        };
    };
    if *v != VERSION {
        return Err(WireError::Version(*v));
    }
    let peer_id = i32::from_le_bytes([*a, *b, *c, *d]);
    if peer_id < 2 {
        return Err(WireError::Malformed);
    }
    Ok(Welcome {
        peer_id,
        relay: flags & FLAG_RELAY != 0,
    })
}

/// Whether `seq` is newer than `newest` (wrapping: within 2^31 ahead).
pub fn seq_newer(seq: u32, newest: u32) -> bool {
    let d = seq.wrapping_sub(newest);
    d != 0 && d < 0x8000_0000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trips_in_every_mode() {
        for mode in [Mode::Unreliable, Mode::UnreliableOrdered, Mode::Reliable] {
            let wire = encode_data(mode, 7, 0xDEAD_BEEF, b"\x01abc");
            let d = decode_data(&wire).unwrap();
            assert_eq!(d.mode, mode);
            assert_eq!(d.channel, 7);
            assert_eq!(d.packet, b"\x01abc");
            let header = if mode == Mode::UnreliableOrdered {
                6
            } else {
                2
            };
            assert_eq!(wire.len(), header + 4);
            assert_eq!(
                d.seq,
                if mode == Mode::UnreliableOrdered {
                    0xDEAD_BEEF
                } else {
                    0
                }
            );
        }
    }

    #[test]
    fn bad_data_is_refused() {
        assert_eq!(decode_data(&[]), Err(WireError::Truncated));
        assert_eq!(decode_data(&[2]), Err(WireError::Truncated));
        assert_eq!(decode_data(&[2, 0]), Err(WireError::EmptyPacket));
        assert_eq!(decode_data(&[3, 0, 1]), Err(WireError::UnknownMode(3)));
        assert_eq!(decode_data(&[1, 0, 1, 2, 3]), Err(WireError::Truncated));
        assert_eq!(
            decode_data(&[1, 0, 1, 2, 3, 4]),
            Err(WireError::EmptyPacket)
        );
    }

    #[test]
    fn control_messages_round_trip_and_check_their_version() {
        assert_eq!(decode_hello(&encode_hello()), Ok(()));
        assert_eq!(decode_hello(&[9]), Err(WireError::Version(9)));
        assert_eq!(decode_hello(&[1, 0]), Err(WireError::Malformed));
        let w = Welcome {
            peer_id: 0x7FFF_FFFF,
            relay: true,
        };
        assert_eq!(decode_welcome(&encode_welcome(w)), Ok(w));
        let w = Welcome {
            peer_id: 2,
            relay: false,
        };
        assert_eq!(decode_welcome(&encode_welcome(w)), Ok(w));
        assert_eq!(
            decode_welcome(&[1, 1, 0, 0, 0, 0]),
            Err(WireError::Malformed)
        );
        assert_eq!(
            decode_welcome(&[2, 5, 0, 0, 0, 0]),
            Err(WireError::Version(2))
        );
        assert_eq!(decode_welcome(&[1, 5]), Err(WireError::Malformed));
    }

    #[test]
    fn sequence_numbers_compare_across_the_wrap() {
        assert!(seq_newer(1, 0));
        assert!(!seq_newer(0, 0));
        assert!(!seq_newer(0, 1));
        assert!(seq_newer(0, u32::MAX));
        assert!(!seq_newer(u32::MAX, 0));
    }
}
