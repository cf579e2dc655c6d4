//! What the generator's clients send through the ENet relay (bench/enet_relay/relay.gd),
//! little endian. The relay reads byte 0 only and passes the rest on as it came.
//!
//! - position, 32 bytes: kind 1, 3 bytes zero, sequence (u32), send time (u64, µs since
//!   the generator's epoch), sender index (u32), x, y, z (f32);
//! - echo, 64 bytes: kind 2, 3 bytes zero, sequence (u32), send time (u64), sender index
//!   (u32), zeros up to 64 bytes (the size of `sustenet bench`'s echoes).

/// Byte 0 of a position.
pub const KIND_POSITION: u8 = 1;
/// Byte 0 of an echo.
pub const KIND_ECHO: u8 = 2;
/// Length of a position.
pub const POSITION_LEN: usize = 32;
/// Length of an echo.
pub const ECHO_LEN: usize = 64;
/// The channel Godot's ENetMultiplayerPeer uses for reliable packets.
pub const CHANNEL_RELIABLE: u8 = 0;
/// The channel Godot's ENetMultiplayerPeer uses for unreliable packets.
pub const CHANNEL_UNRELIABLE: u8 = 1;

/// The fields every packet carries after its kind byte.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stamp {
    /// Per-sender sequence number.
    pub seq: u32,
    /// Send time, µs since the generator's epoch.
    pub sent_us: u64,
    /// Index of the sending client.
    pub sender: u32,
}

/// Writes a packet of `kind` and `len` bytes; a position's coordinates follow the stamp.
pub fn encode(kind: u8, len: usize, stamp: Stamp, xyz: [f32; 3]) -> Vec<u8> {
    let mut out = vec![0u8; len];
    out[0] = kind;
    out[4..8].copy_from_slice(&stamp.seq.to_le_bytes());
    out[8..16].copy_from_slice(&stamp.sent_us.to_le_bytes());
    out[16..20].copy_from_slice(&stamp.sender.to_le_bytes());
    if kind == KIND_POSITION && len >= POSITION_LEN {
        for (i, v) in xyz.iter().enumerate() {
            out[20 + 4 * i..24 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Reads the kind and stamp of a packet; `None` if it is too short or of no known kind.
pub fn decode(packet: &[u8]) -> Option<(u8, Stamp)> {
    let kind = *packet.first()?;
    let want = match kind {
        KIND_POSITION => POSITION_LEN,
        KIND_ECHO => ECHO_LEN,
        _ => return None,
    };
    if packet.len() != want {
        return None;
    }
    let u32_at = |at: usize| {
        packet
            .get(at..at + 4)?
            .try_into()
            .ok()
            .map(u32::from_le_bytes)
    };
    let sent_us = packet.get(8..16)?.try_into().ok().map(u64::from_le_bytes)?;
    Some((
        kind,
        Stamp {
            seq: u32_at(4)?,
            sent_us,
            sender: u32_at(16)?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let s = Stamp {
            seq: 7,
            sent_us: 123_456_789,
            sender: 42,
        };
        let p = encode(KIND_POSITION, POSITION_LEN, s, [1.0, 2.0, 3.0]);
        assert_eq!(decode(&p), Some((KIND_POSITION, s)));
        assert_eq!(&p[20..24], &1.0f32.to_le_bytes());
        let e = encode(KIND_ECHO, ECHO_LEN, s, [0.0; 3]);
        assert_eq!(decode(&e), Some((KIND_ECHO, s)));
        assert_eq!(decode(&p[..31]), None);
        assert_eq!(decode(&[9u8; 32]), None);
        assert_eq!(decode(&[]), None);
    }
}
