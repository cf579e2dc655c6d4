//! What goes inside a sealed datagram: one or more records.
//!
//! A datagram is at most [`MAX_DATAGRAM`] bytes on the wire, so it fits a
//! safe path MTU with room for IP and UDP headers. Inside the sealed part are
//! records: `type u8 | fields`. A payload that does not fit is refused with
//! [`DatagramError::TooLarge`]; nothing is ever cut short.

use thiserror::Error;

use crate::crypto::DATAGRAM_OVERHEAD;
use crate::error::DecodeError;
use crate::wire::{Reader, Writer};

/// Most bytes of one UDP payload Sustenet sends.
pub const MAX_DATAGRAM: usize = 1200;
/// Most plaintext bytes inside one datagram.
pub const MAX_DATAGRAM_PLAINTEXT: usize = MAX_DATAGRAM - DATAGRAM_OVERHEAD;
/// Bytes a data record adds to its payload.
pub const DATA_RECORD_OVERHEAD: usize = 1 + 2 + 2;
/// Largest payload of one unreliable message.
pub const MAX_UNRELIABLE_PAYLOAD: usize = MAX_DATAGRAM_PLAINTEXT - DATA_RECORD_OVERHEAD;

const DATA: u8 = 0x01;
const PING: u8 = 0x02;
const PONG: u8 = 0x03;
const PATH_CHALLENGE: u8 = 0x04;
const PATH_RESPONSE: u8 = 0x05;

/// A datagram payload could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DatagramError {
    /// The payload is over [`MAX_UNRELIABLE_PAYLOAD`]; send it reliably instead.
    #[error("unreliable payload of {len} bytes is over the limit of {max}; send it reliably")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// One record inside a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Game data.
    Data {
        /// The game's command number.
        command: u16,
        /// The payload, at most [`MAX_UNRELIABLE_PAYLOAD`] bytes.
        payload: Vec<u8>,
    },
    /// Keep-alive and round-trip probe; answered with `Pong`.
    Ping(u64),
    /// Answer to `Ping` with the same value.
    Pong(u64),
    /// Cluster to client: proves the client receives at the address this
    /// datagram was sent to. Only the player can open it; it answers with
    /// [`Record::PathResponse`] carrying the same value. Until then the
    /// cluster sends that address no more than it received from it.
    PathChallenge(u64),
    /// Client to cluster: the value of a [`Record::PathChallenge`], echoed.
    PathResponse(u64),
}

impl Record {
    /// Bytes this record takes inside a datagram.
    pub fn encoded_len(&self) -> usize {
        match self {
            Record::Data { payload, .. } => DATA_RECORD_OVERHEAD + payload.len(),
            Record::Ping(_)
            | Record::Pong(_)
            | Record::PathChallenge(_)
            | Record::PathResponse(_) => 9,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Data { command, payload } => {
                out.put_u8(DATA);
                out.put_u16(*command);
                // Callers go through `Batch`, which checks the size first.
                out.put_u16(u16::try_from(payload.len()).unwrap_or(u16::MAX));
                out.put_slice(payload);
            }
            Record::Ping(v) => {
                out.put_u8(PING);
                out.put_u64(*v);
            }
            Record::Pong(v) => {
                out.put_u8(PONG);
                out.put_u64(*v);
            }
            Record::PathChallenge(v) => {
                out.put_u8(PATH_CHALLENGE);
                out.put_u64(*v);
            }
            Record::PathResponse(v) => {
                out.put_u8(PATH_RESPONSE);
                out.put_u64(*v);
            }
        }
    }
}

/// Packs records into datagram plaintexts of at most [`MAX_DATAGRAM_PLAINTEXT`] bytes.
#[derive(Debug, Default)]
pub struct Batch {
    buf: Vec<u8>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes still free in this datagram.
    pub fn room(&self) -> usize {
        MAX_DATAGRAM_PLAINTEXT - self.buf.len()
    }

    /// Adds a record if it fits; returns `Ok(false)` if this batch is too
    /// full (flush it and try again) and an error if it can never fit.
    pub fn push(&mut self, record: &Record) -> Result<bool, DatagramError> {
        let len = record.encoded_len();
        if len > MAX_DATAGRAM_PLAINTEXT {
            return Err(DatagramError::TooLarge {
                len: len - DATA_RECORD_OVERHEAD,
                max: MAX_UNRELIABLE_PAYLOAD,
            });
        }
        if len > self.room() {
            return Ok(false);
        }
        record.encode(&mut self.buf);
        Ok(true)
    }

    /// Adds a data record whose payload is the concatenation of `parts`,
    /// without building the payload first (the cluster's per-tick state
    /// fan-out writes thousands of these). Same answers as [`Batch::push`].
    pub fn push_data(&mut self, command: u16, parts: &[&[u8]]) -> Result<bool, DatagramError> {
        let payload: usize = parts.iter().map(|p| p.len()).sum();
        if payload > MAX_UNRELIABLE_PAYLOAD {
            return Err(DatagramError::TooLarge {
                len: payload,
                max: MAX_UNRELIABLE_PAYLOAD,
            });
        }
        if DATA_RECORD_OVERHEAD + payload > self.room() {
            return Ok(false);
        }
        self.buf.put_u8(DATA);
        self.buf.put_u16(command);
        // Within MAX_UNRELIABLE_PAYLOAD, so it fits a u16.
        self.buf.put_u16(u16::try_from(payload).unwrap_or(u16::MAX));
        for p in parts {
            self.buf.put_slice(p);
        }
        Ok(true)
    }

    /// Adds a data record encoded before (see [`DataRecord`]) if it fits;
    /// returns `false` if this batch is too full (flush it and try again).
    /// An empty [`DataRecord`] is never added.
    pub fn push_record(&mut self, record: &DataRecord) -> bool {
        if record.bytes.is_empty() || record.bytes.len() > self.room() {
            return false;
        }
        self.buf.extend_from_slice(&record.bytes);
        true
    }

    /// Takes the plaintext out, leaving the batch empty.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// The plaintext so far; with [`Batch::clear`], a batch that is reused
    /// keeps its allocation instead of growing a new one for every datagram.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Empties the batch, keeping its capacity.
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

/// A data record encoded once, to be added to many batches with
/// [`Batch::push_record`]: a state sent to each player that hears it is
/// encoded when it is set, not once per recipient. The same bytes as
/// [`Batch::push_data`] writes. Reusing one keeps its allocation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DataRecord {
    /// The whole record, header included; empty until set.
    bytes: Vec<u8>,
}

impl DataRecord {
    /// Encodes a data record of `command` whose payload is the
    /// concatenation of `parts`, replacing what this held. A payload over
    /// [`MAX_UNRELIABLE_PAYLOAD`] is refused and leaves it empty.
    pub fn set(&mut self, command: u16, parts: &[&[u8]]) -> Result<(), DatagramError> {
        self.bytes.clear();
        let payload: usize = parts.iter().map(|p| p.len()).sum();
        if payload > MAX_UNRELIABLE_PAYLOAD {
            return Err(DatagramError::TooLarge {
                len: payload,
                max: MAX_UNRELIABLE_PAYLOAD,
            });
        }
        self.bytes.reserve(DATA_RECORD_OVERHEAD + payload);
        self.bytes.put_u8(DATA);
        self.bytes.put_u16(command);
        // Within MAX_UNRELIABLE_PAYLOAD, so it fits a u16.
        self.bytes
            .put_u16(u16::try_from(payload).unwrap_or(u16::MAX));
        for p in parts {
            self.bytes.put_slice(p);
        }
        Ok(())
    }

    /// Bytes it takes inside a datagram (0 while empty).
    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing was set.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// Encodes a single record as a datagram plaintext.
pub fn single(record: &Record) -> Result<Vec<u8>, DatagramError> {
    let mut b = Batch::new();
    b.push(record)?;
    Ok(b.take())
}

/// First byte of a ping request: unauthenticated, answered by a cluster
/// without a token so a client can measure its round trip before joining.
pub const PING_REQUEST: u8 = 0x02;
/// First byte of a ping response.
pub const PING_RESPONSE: u8 = 0x03;
/// Size of a ping request. A cluster answers only requests of at least this
/// size, and the answer ([`PING_RESPONSE_LEN`] bytes) is smaller: a spoofed
/// request can never make a cluster send more bytes than it received.
pub const PING_REQUEST_LEN: usize = 64;
/// Size of a ping response.
pub const PING_RESPONSE_LEN: usize = 1 + 8 + 4 + 4;

/// A ping request: kind, the client's nonce, zero padding.
pub fn ping_request(nonce: u64) -> Vec<u8> {
    let mut out = vec![0u8; PING_REQUEST_LEN];
    out[0] = PING_REQUEST;
    out[1..9].copy_from_slice(&nonce.to_le_bytes());
    out
}

/// The nonce of a ping request, if `d` is one of the right size.
pub fn parse_ping_request(d: &[u8]) -> Option<u64> {
    if d.len() != PING_REQUEST_LEN || d[0] != PING_REQUEST {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[1..9]);
    Some(u64::from_le_bytes(b))
}

/// A ping response: kind, the request's nonce, players, capacity.
pub fn ping_response(nonce: u64, players: u32, capacity: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(PING_RESPONSE_LEN);
    out.push(PING_RESPONSE);
    out.put_u64(nonce);
    out.put_u32(players);
    out.put_u32(capacity);
    out
}

/// Nonce, players and capacity of a ping response.
pub fn parse_ping_response(d: &[u8]) -> Option<(u64, u32, u32)> {
    if d.len() != PING_RESPONSE_LEN || d[0] != PING_RESPONSE {
        return None;
    }
    let mut r = Reader::new(&d[1..]);
    Some((r.u64().ok()?, r.u32().ok()?, r.u32().ok()?))
}

/// Decodes every record of a datagram plaintext.
pub fn decode_records(plain: &[u8]) -> Result<Vec<Record>, DecodeError> {
    let mut r = Reader::new(plain);
    let mut out = Vec::new();
    while r.remaining() > 0 {
        out.push(match r.u8()? {
            DATA => Record::Data {
                command: r.u16()?,
                payload: r.bytes16(MAX_UNRELIABLE_PAYLOAD)?.to_vec(),
            },
            PING => Record::Ping(r.u64()?),
            PONG => Record::Pong(r.u64()?),
            PATH_CHALLENGE => Record::PathChallenge(r.u64()?),
            PATH_RESPONSE => Record::PathResponse(r.u64()?),
            other => return Err(DecodeError::UnknownType(other)),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_data_matches_push() {
        let mut a = Batch::new();
        let mut b = Batch::new();
        for i in 0..200u64 {
            let state = vec![i as u8; (i % 40) as usize];
            let mut payload = i.to_le_bytes().to_vec();
            payload.extend_from_slice(&state);
            let ra = a.push(&Record::Data {
                command: 11,
                payload,
            });
            let rb = b.push_data(11, &[&i.to_le_bytes(), &state]);
            assert_eq!(ra, rb);
            if ra == Ok(false) {
                assert_eq!(a.take(), b.take());
            }
        }
        assert_eq!(a.take(), b.take());
        assert!(matches!(
            b.push_data(1, &[&[0; 1000], &[0; 200]]),
            Err(DatagramError::TooLarge { len: 1200, .. })
        ));
    }

    #[test]
    fn a_record_encoded_once_matches_push_data() {
        let mut a = Batch::new();
        let mut b = Batch::new();
        let mut r = DataRecord::default();
        assert!(!b.push_record(&r), "an empty record is never added");
        for i in 0..200u64 {
            let state = vec![i as u8; (i % 40) as usize];
            r.set(11, &[&i.to_le_bytes(), &state]).unwrap();
            assert_eq!(r.encoded_len(), DATA_RECORD_OVERHEAD + 8 + state.len());
            let ra = a.push_data(11, &[&i.to_le_bytes(), &state]);
            let rb = b.push_record(&r);
            assert_eq!(ra, Ok(rb));
            if !rb {
                assert_eq!(a.take(), b.take());
            }
        }
        assert_eq!(a.take(), b.take());
        assert_eq!(
            r.set(1, &[&[0; 1000], &[0; 200]]),
            Err(DatagramError::TooLarge {
                len: 1200,
                max: MAX_UNRELIABLE_PAYLOAD
            })
        );
        assert!(r.is_empty(), "a refused payload leaves it empty");
        r.set(1, &[&[7; MAX_UNRELIABLE_PAYLOAD]]).unwrap();
        assert!(b.push_record(&r), "the largest record fits an empty batch");
        assert!(!b.push_record(&r));
    }

    #[test]
    fn ping_never_amplifies() {
        let req = ping_request(42);
        assert_eq!(parse_ping_request(&req), Some(42));
        let resp = ping_response(42, 3, 10);
        assert!(resp.len() < req.len());
        assert_eq!(parse_ping_response(&resp), Some((42, 3, 10)));
        // Short or long requests are not requests.
        assert_eq!(parse_ping_request(&req[..req.len() - 1]), None);
        assert_eq!(parse_ping_request(&[req.clone(), vec![0]].concat()), None);
        assert_eq!(parse_ping_request(&resp), None);
    }

    #[test]
    fn batch_fills_to_mtu_and_refuses_oversize() {
        let mut b = Batch::new();
        let rec = Record::Data {
            command: 1,
            payload: vec![7; 100],
        };
        let mut n = 0;
        while b.push(&rec).unwrap() {
            n += 1;
        }
        assert_eq!(n, MAX_DATAGRAM_PLAINTEXT / 105);
        let plain = b.take();
        assert!(plain.len() <= MAX_DATAGRAM_PLAINTEXT);
        assert_eq!(decode_records(&plain).unwrap().len(), n);
        let big = Record::Data {
            command: 1,
            payload: vec![0; MAX_UNRELIABLE_PAYLOAD + 1],
        };
        assert!(matches!(b.push(&big), Err(DatagramError::TooLarge { .. })));
        let max = Record::Data {
            command: 1,
            payload: vec![0; MAX_UNRELIABLE_PAYLOAD],
        };
        assert_eq!(b.push(&max), Ok(true));
    }
}
