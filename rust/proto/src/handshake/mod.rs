//! The three handshakes, as state machines that take and return frame bodies.
//!
//! Every TCP connection starts with a plaintext *hello* frame from the side
//! that connected: `"SNET" | version u16 | kind u8 | body`. The answer is a
//! plaintext frame of the same shape (a challenge, a Noise reply, a join
//! accept, or a refusal); a resumed client-cluster link goes on directly with
//! the first sealed frame.
//! A sealed frame starts with its sequence number, which is 0 for the first
//! one, so it can never be mistaken for the `"SNET"` magic.

mod client_cluster;
mod client_master;
mod cluster_master;

pub use client_cluster::{
    ClusterAccept, JoinInitiator, ResumeClaim, accept_client, accept_resume, client_cluster_hello,
    client_resume_hello, finish_join, open_join,
};
pub use client_master::{ClientMasterInitiator, parse_noise_reply, respond_client_master};
pub use cluster_master::{ClusterInitiator, KeyRole, respond_cluster, respond_key_proof};

use crate::error::{DecodeError, EncodeError, HandshakeError};
use crate::message::{TEXT_MAX, TOKEN_MAX};
use crate::reason::DisconnectReason;
use crate::wire::{Reader, Writer};
use crate::{MAGIC, PROTOCOL_VERSION};

/// The Noise pattern of the client-master link.
pub const NOISE_PATTERN: &str = "Noise_NK_25519_AESGCM_SHA256";
/// The Noise prologue of the client-master link: names the protocol version,
/// so peers of two versions never complete a handshake.
pub const NOISE_PROLOGUE: &[u8] = b"sustenet client-master v3";
/// Longest Noise handshake message accepted.
const NOISE_MSG_MAX: usize = 1024;
/// Longest key name, in bytes.
pub const KEY_NAME_MAX: usize = 64;

pub(crate) fn noise_params() -> snow::params::NoiseParams {
    // The pattern is a constant that snow parses; the fallback is never used
    // but keeps this free of panics.
    NOISE_PATTERN.parse().unwrap_or_else(|_| {
        snow::params::NoiseParams::new(
            NOISE_PATTERN.to_owned(),
            snow::params::BaseChoice::Noise,
            snow::params::HandshakeChoice {
                pattern: snow::params::HandshakePattern::NK,
                modifiers: snow::params::HandshakeModifierList { list: vec![] },
            },
            snow::params::DHChoice::Curve25519,
            snow::params::CipherChoice::AESGCM,
            snow::params::HashChoice::SHA256,
        )
    })
}

/// Kind byte of a hello frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum HelloKind {
    /// Cluster → master: key name and nonce.
    ClusterHello = 0x01,
    /// Client → master: first Noise message.
    ClientMasterHello = 0x02,
    /// Client → cluster: token and key proof.
    ClientClusterHello = 0x03,
    /// Client → cluster: reconnect to a session whose connection dropped.
    ClientResume = 0x04,
    /// Agent → master: key name and nonce, as a cluster's hello (an agent key).
    AgentHello = 0x05,
    /// Admin tool → master: key name and nonce, as a cluster's hello (an admin key).
    AdminHello = 0x06,
    /// Master → cluster: the master's nonce.
    Challenge = 0x11,
    /// Master → client: second Noise message.
    NoiseReply = 0x12,
    /// Cluster → client: the cluster's nonce for the session keys of a join.
    JoinAccept = 0x13,
    /// Any server → initiator: the connection is refused, with a reason.
    Reject = 0x7F,
}

/// A hello as a server receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A cluster registering with the master.
    Cluster {
        /// Name of the key the cluster claims to hold.
        key_name: String,
        /// The cluster's fresh nonce.
        nonce: [u8; 32],
    },
    /// An agent (starts instances on its machine) proving its agent key.
    Agent {
        /// Name of the agent key it claims to hold.
        key_name: String,
        /// The agent's fresh nonce.
        nonce: [u8; 32],
    },
    /// An operator's tool proving the master's admin key.
    Admin {
        /// Name of the admin key it claims to hold.
        key_name: String,
        /// The tool's fresh nonce.
        nonce: [u8; 32],
    },
    /// A client opening the Noise handshake with the master.
    ClientMaster {
        /// The first Noise message.
        noise: Vec<u8>,
    },
    /// A client presenting a connect token to a cluster.
    ClientCluster {
        /// The sealed token.
        token: Vec<u8>,
        /// A sealed frame proving the client holds the session keys.
        proof: Vec<u8>,
    },
    /// A client reconnecting to a session whose connection dropped.
    ClientResume {
        /// The session, as the Welcome named it.
        session_id: u64,
        /// The client's fresh nonce; the reconnect's keys derive from it.
        nonce: [u8; 32],
        /// A sealed frame proving the client holds the session keys, with
        /// how many messages it has received.
        proof: Vec<u8>,
    },
}

/// Builds a handshake frame with an explicit version. Servers and clients
/// use [`PROTOCOL_VERSION`]; other versions are for tests and tools.
pub fn encode_handshake_frame(version: u16, kind: HelloKind, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(7 + body.len());
    out.put_slice(&MAGIC);
    out.put_u16(version);
    out.put_u8(kind as u8);
    out.put_slice(body);
    out
}

fn frame(kind: HelloKind, body: &[u8]) -> Vec<u8> {
    encode_handshake_frame(PROTOCOL_VERSION, kind, body)
}

/// Whether a frame is a plaintext handshake frame (starts with the magic).
pub fn is_handshake_frame(frame: &[u8]) -> bool {
    frame.starts_with(&MAGIC)
}

/// Splits magic, version and kind off a handshake frame.
pub(crate) fn split(frame: &[u8]) -> Result<(u8, Reader<'_>), HandshakeError> {
    let mut r = Reader::new(frame);
    if r.take(4).map_err(HandshakeError::Malformed)? != MAGIC {
        return Err(HandshakeError::BadMagic);
    }
    let version = r.u16()?;
    let kind = r.u8()?;
    if version != PROTOCOL_VERSION {
        return Err(HandshakeError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: version,
        });
    }
    Ok((kind, r))
}

/// Parses the first frame of a connection on the server side.
pub fn parse_hello(frame: &[u8]) -> Result<Hello, HandshakeError> {
    let (kind, mut r) = split(frame)?;
    let hello = match kind {
        k if k == HelloKind::ClusterHello as u8 => Hello::Cluster {
            key_name: r.str16(KEY_NAME_MAX)?,
            nonce: r.array()?,
        },
        k if k == HelloKind::AgentHello as u8 => Hello::Agent {
            key_name: r.str16(KEY_NAME_MAX)?,
            nonce: r.array()?,
        },
        k if k == HelloKind::AdminHello as u8 => Hello::Admin {
            key_name: r.str16(KEY_NAME_MAX)?,
            nonce: r.array()?,
        },
        k if k == HelloKind::ClientMasterHello as u8 => Hello::ClientMaster {
            noise: r.bytes16(NOISE_MSG_MAX)?.to_vec(),
        },
        k if k == HelloKind::ClientClusterHello as u8 => Hello::ClientCluster {
            token: r.bytes16(TOKEN_MAX)?.to_vec(),
            proof: r.bytes16(NOISE_MSG_MAX)?.to_vec(),
        },
        k if k == HelloKind::ClientResume as u8 => Hello::ClientResume {
            session_id: r.u64()?,
            nonce: r.array()?,
            proof: r.bytes16(NOISE_MSG_MAX)?.to_vec(),
        },
        other => return Err(HandshakeError::UnexpectedKind(other)),
    };
    r.finish()?;
    Ok(hello)
}

/// A refusal frame: sent in clear before a session exists.
pub fn reject_frame(reason: DisconnectReason, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.put_u8(reason.code());
    let text = truncate_utf8(message, TEXT_MAX);
    // `text` is within TEXT_MAX, so this cannot fail.
    let _ = body.put_str16(text, TEXT_MAX);
    frame(HelloKind::Reject, &body)
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Parses a server's plaintext answer of the expected `kind`; a refusal
/// becomes [`HandshakeError::Rejected`].
pub(crate) fn parse_reply(frame: &[u8], kind: HelloKind) -> Result<Reader<'_>, HandshakeError> {
    let (k, mut r) = split(frame)?;
    if k == HelloKind::Reject as u8 {
        return Err(parse_reject_body(&mut r)?);
    }
    if k != kind as u8 {
        return Err(HandshakeError::UnexpectedKind(k));
    }
    Ok(r)
}

fn parse_reject_body(r: &mut Reader<'_>) -> Result<HandshakeError, DecodeError> {
    let reason = DisconnectReason::from_code(r.u8()?);
    let message = r.str16(TEXT_MAX)?;
    Ok(HandshakeError::Rejected { reason, message })
}

/// If `frame` is a plaintext refusal (or a frame from another protocol
/// version), the error it means; `None` for a sealed frame.
pub fn check_refusal(frame: &[u8]) -> Option<HandshakeError> {
    if !is_handshake_frame(frame) {
        return None;
    }
    Some(match split(frame) {
        Err(e) => e,
        Ok((k, mut r)) if k == HelloKind::Reject as u8 => {
            parse_reject_body(&mut r).unwrap_or_else(HandshakeError::Malformed)
        }
        Ok((k, _)) => HandshakeError::UnexpectedKind(k),
    })
}

pub(crate) fn encode_err(e: EncodeError) -> HandshakeError {
    match e {
        EncodeError::TooLong { len, max } => {
            HandshakeError::Malformed(DecodeError::TooLong { len, max })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_noise_prologue_names_the_protocol_version() {
        let text = std::str::from_utf8(NOISE_PROLOGUE).unwrap();
        assert!(text.ends_with(&format!(" v{PROTOCOL_VERSION}")), "{text}");
    }

    #[test]
    fn version_mismatch_is_named() {
        let f = encode_handshake_frame(PROTOCOL_VERSION + 1, HelloKind::ClientMasterHello, &[0, 0]);
        assert_eq!(
            parse_hello(&f),
            Err(HandshakeError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: PROTOCOL_VERSION + 1
            })
        );
        assert_eq!(
            check_refusal(&f),
            Some(HandshakeError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: PROTOCOL_VERSION + 1
            })
        );
    }

    #[test]
    fn reject_round_trip() {
        let f = reject_frame(DisconnectReason::ServerFull, "cluster is full");
        assert_eq!(
            check_refusal(&f),
            Some(HandshakeError::Rejected {
                reason: DisconnectReason::ServerFull,
                message: "cluster is full".into()
            })
        );
        let long = "é".repeat(400);
        assert!(check_refusal(&reject_frame(DisconnectReason::Kicked, &long)).is_some());
    }

    #[test]
    fn garbage_is_not_a_hello() {
        assert_eq!(
            parse_hello(b"GET / HTTP/1.1"),
            Err(HandshakeError::BadMagic)
        );
        assert!(matches!(
            parse_hello(b"SN"),
            Err(HandshakeError::Malformed(_))
        ));
        assert_eq!(check_refusal(&[0u8; 40]), None);
    }
}
