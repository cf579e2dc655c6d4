//! The WebSocket link for browser players (docs/protocol.md §17), sans-IO.
//!
//! A browser has neither TCP nor UDP sockets, and a Godot web export has no
//! AES-GCM or X25519 in GDScript. On a WebSocket the transport security is
//! TLS (`wss://`): every WebSocket binary message is one *web frame*, in
//! clear inside TLS. The connect token stays what it is (sealed with the
//! cluster's token key, opaque to the client); the client proves it holds
//! the ticket's session secret with HMAC-SHA256 instead of an AES-GCM proof.
//!
//! Web frames:
//! - the client's first message is a hello: `"SNET" | version u16 | kind u8 | body`
//!   with a kind of this module ([`WebHello`]); a refusal is the ordinary
//!   `Reject` handshake frame;
//! - after it, every message starts with a channel byte:
//!   [`CHANNEL_RELIABLE`] followed by one message of the link (the same
//!   encoding as on TCP, §11), or [`CHANNEL_UNRELIABLE`] followed by the
//!   records of one datagram's plaintext (§10.2), only between a client and
//!   a cluster.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{DecodeError, EncodeError, HandshakeError};
use crate::message::{Message, TOKEN_MAX};
use crate::token::ConnectToken;
use crate::wire::Writer;
use crate::{Key, MAGIC, PROTOCOL_VERSION};

/// The WebSocket subprotocol a client must offer (`Sec-WebSocket-Protocol`).
pub const SUBPROTOCOL: &str = "sustenet.v3";
/// Channel byte of a reliable message.
pub const CHANNEL_RELIABLE: u8 = 0x00;
/// Channel byte of unreliable records.
pub const CHANNEL_UNRELIABLE: u8 = 0x01;
/// Hello kind: client → master over a WebSocket (empty body).
pub const KIND_WEB_MASTER_HELLO: u8 = 0x08;
/// Hello kind: client → cluster, a join with a connect token.
pub const KIND_WEB_JOIN: u8 = 0x09;
/// Hello kind: client → cluster, a reconnect to a session.
pub const KIND_WEB_RESUME: u8 = 0x0A;
/// What the join proof's HMAC covers.
pub const JOIN_LABEL: &[u8] = b"sustenet v3 web join";
/// What the resume proof's HMAC covers, before the session id, the count of
/// received messages and the attempt number (each u64 LE).
pub const RESUME_LABEL: &[u8] = b"sustenet v3 web resume";
/// Length of a proof (an HMAC-SHA256 tag).
pub const PROOF_LEN: usize = 32;

/// A web client's first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebHello {
    /// To a master: the client speaks this protocol version.
    Master,
    /// To a cluster: a join with the ticket's token and the join proof.
    Join {
        /// The sealed connect token, as the ticket carried it.
        token: Vec<u8>,
        /// [`join_proof`] of the ticket's session secret.
        proof: [u8; PROOF_LEN],
    },
    /// To a cluster: a reconnect to a session whose connection dropped.
    Resume {
        /// The session, as the `Welcome` named it.
        session_id: u64,
        /// Data messages the client has received in the session.
        received: u64,
        /// Grows with every attempt in the session (the first is 1).
        attempt: u64,
        /// [`resume_proof`] of the above under the session secret.
        proof: [u8; PROOF_LEN],
    },
}

impl WebHello {
    /// The hello as a web frame.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(64);
        out.put_slice(&MAGIC);
        out.put_u16(PROTOCOL_VERSION);
        match self {
            WebHello::Master => out.put_u8(KIND_WEB_MASTER_HELLO),
            WebHello::Join { token, proof } => {
                out.put_u8(KIND_WEB_JOIN);
                out.put_bytes16(token, TOKEN_MAX)?;
                out.put_slice(proof);
            }
            WebHello::Resume {
                session_id,
                received,
                attempt,
                proof,
            } => {
                out.put_u8(KIND_WEB_RESUME);
                out.put_u64(*session_id);
                out.put_u64(*received);
                out.put_u64(*attempt);
                out.put_slice(proof);
            }
        }
        Ok(out)
    }

    /// Parses a web client's first message: the magic, the version (else
    /// `VersionMismatch`), the kind (else `UnexpectedKind`), the body.
    pub fn parse(frame: &[u8]) -> Result<Self, HandshakeError> {
        let (kind, mut r) = crate::handshake::split(frame)?;
        let hello = match kind {
            KIND_WEB_MASTER_HELLO => WebHello::Master,
            KIND_WEB_JOIN => WebHello::Join {
                token: r.bytes16(TOKEN_MAX)?.to_vec(),
                proof: r.array()?,
            },
            KIND_WEB_RESUME => WebHello::Resume {
                session_id: r.u64()?,
                received: r.u64()?,
                attempt: r.u64()?,
                proof: r.array()?,
            },
            other => return Err(HandshakeError::UnexpectedKind(other)),
        };
        r.finish()?;
        Ok(hello)
    }
}

fn mac(secret: &[u8; 32]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this never fails; the fallback
    // keeps it free of panics.
    <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()))
}

fn resume_mac(secret: &[u8; 32], session_id: u64, received: u64, attempt: u64) -> Hmac<Sha256> {
    let mut m = mac(secret);
    m.update(RESUME_LABEL);
    m.update(&session_id.to_le_bytes());
    m.update(&received.to_le_bytes());
    m.update(&attempt.to_le_bytes());
    m
}

/// The join proof: HMAC-SHA256 keyed with the session secret over [`JOIN_LABEL`].
pub fn join_proof(secret: &[u8; 32]) -> [u8; PROOF_LEN] {
    let mut m = mac(secret);
    m.update(JOIN_LABEL);
    m.finalize().into_bytes().into()
}

/// The resume proof: HMAC-SHA256 keyed with the session secret over
/// [`RESUME_LABEL`] ‖ session id ‖ received ‖ attempt (u64 LE each).
pub fn resume_proof(
    secret: &[u8; 32],
    session_id: u64,
    received: u64,
    attempt: u64,
) -> [u8; PROOF_LEN] {
    resume_mac(secret, session_id, received, attempt)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks a resume proof in constant time.
pub fn check_resume_proof(
    secret: &[u8; 32],
    session_id: u64,
    received: u64,
    attempt: u64,
    proof: &[u8; PROOF_LEN],
) -> bool {
    resume_mac(secret, session_id, received, attempt)
        .verify_slice(proof)
        .is_ok()
}

/// The cluster's check of a web join: opens the token (forged, expired,
/// wrong-cluster tokens are refused as on TCP) and checks the join proof in
/// constant time. The caller then records the token as used.
pub fn open_web_join(
    token: &[u8],
    proof: &[u8; PROOF_LEN],
    cluster_key: &Key,
    cluster_id: u64,
    now_ms: u64,
) -> Result<ConnectToken, HandshakeError> {
    let token = ConnectToken::open(token, cluster_key, cluster_id, now_ms)?;
    let mut m = mac(&token.session_secret);
    m.update(JOIN_LABEL);
    m.verify_slice(proof)
        .map_err(|_| HandshakeError::AuthenticationFailed)?;
    Ok(token)
}

/// One web frame after the hello, split at its channel byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel<'a> {
    /// One message of the link.
    Reliable(&'a [u8]),
    /// The records of one datagram's plaintext.
    Unreliable(&'a [u8]),
}

impl<'a> Channel<'a> {
    /// Splits a web frame; an empty frame or an unknown channel byte is an error.
    pub fn split(frame: &'a [u8]) -> Result<Self, DecodeError> {
        match frame.split_first() {
            Some((&CHANNEL_RELIABLE, rest)) => Ok(Channel::Reliable(rest)),
            Some((&CHANNEL_UNRELIABLE, rest)) => Ok(Channel::Unreliable(rest)),
            Some((&other, _)) => Err(DecodeError::UnknownType(other)),
            None => Err(DecodeError::Truncated),
        }
    }
}

/// A reliable message as a web frame.
pub fn reliable_frame<M: Message>(m: &M) -> Result<Vec<u8>, EncodeError> {
    let mut out = vec![CHANNEL_RELIABLE];
    m.encode(&mut out)?;
    Ok(out)
}

/// Unreliable records (a datagram's plaintext) as a web frame.
pub fn unreliable_frame(records: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + records.len());
    out.push(CHANNEL_UNRELIABLE);
    out.extend_from_slice(records);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::ClusterToClient;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn hellos_round_trip_and_refuse_garbage() {
        let hellos = [
            WebHello::Master,
            WebHello::Join {
                token: vec![7; 106],
                proof: [1; 32],
            },
            WebHello::Resume {
                session_id: 9,
                received: 5,
                attempt: 1,
                proof: [2; 32],
            },
        ];
        for h in hellos {
            let f = h.encode().unwrap();
            assert_eq!(WebHello::parse(&f).unwrap(), h);
            for cut in 0..f.len() {
                assert!(WebHello::parse(&f[..cut]).is_err(), "cut at {cut}");
            }
            let mut long = f.clone();
            long.push(0);
            assert!(WebHello::parse(&long).is_err(), "trailing byte");
        }
        assert_eq!(
            WebHello::parse(b"GET / HTTP/1.1"),
            Err(HandshakeError::BadMagic)
        );
        let mut native = WebHello::Master.encode().unwrap();
        native[6] = 0x03;
        assert_eq!(
            WebHello::parse(&native),
            Err(HandshakeError::UnexpectedKind(3))
        );
        native[4] = 2;
        assert!(matches!(
            WebHello::parse(&native),
            Err(HandshakeError::VersionMismatch { theirs: 2, .. })
        ));
    }

    #[test]
    fn the_join_proof_needs_the_session_secret() {
        let mut rng = StdRng::seed_from_u64(3);
        let key = Key::generate(&mut rng);
        let t = ConnectToken {
            client_id: 1,
            cluster_id: 2,
            token_id: [9; 16],
            expires_at_ms: 1000,
            session_secret: [4; 32].into(),
            user_data: vec![],
        };
        let sealed = t.seal(&key, &mut rng).unwrap();
        let good = join_proof(&[4; 32]);
        assert!(open_web_join(&sealed, &good, &key, 2, 10).is_ok());
        let thief = join_proof(&[5; 32]);
        assert_eq!(
            open_web_join(&sealed, &thief, &key, 2, 10).unwrap_err(),
            HandshakeError::AuthenticationFailed
        );
        assert!(
            open_web_join(&sealed, &good, &key, 3, 10).is_err(),
            "wrong cluster"
        );
        assert!(
            open_web_join(&sealed, &good, &key, 2, 1000).is_err(),
            "expired"
        );
    }

    #[test]
    fn the_documented_proofs() {
        // docs/protocol.md §17.6 (also recomputed with Python's hmac module).
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(&join_proof(&[0x11; 32])),
            "56069a615942a573c61314943bde66b28b3175b271ef1038b94f3da2a339e336"
        );
        assert_eq!(
            hex(&resume_proof(&[0x11; 32], 9, 5, 1)),
            "7d89a8e2e2cd49eb8249ad027b25788032162da026f229178eab49046a388ecc"
        );
    }

    #[test]
    fn the_resume_proof_binds_every_field() {
        let p = resume_proof(&[4; 32], 9, 5, 1);
        assert!(check_resume_proof(&[4; 32], 9, 5, 1, &p));
        assert!(!check_resume_proof(&[4; 32], 9, 5, 2, &p));
        assert!(!check_resume_proof(&[4; 32], 9, 6, 1, &p));
        assert!(!check_resume_proof(&[4; 32], 8, 5, 1, &p));
        assert!(!check_resume_proof(&[3; 32], 9, 5, 1, &p));
    }

    #[test]
    fn channels_split() {
        let f = reliable_frame(&ClusterToClient::Ack(3)).unwrap();
        assert_eq!(f[0], CHANNEL_RELIABLE);
        let Channel::Reliable(m) = Channel::split(&f).unwrap() else {
            panic!()
        };
        assert_eq!(ClusterToClient::decode(m).unwrap(), ClusterToClient::Ack(3));
        let u = unreliable_frame(&[1, 2]);
        assert_eq!(Channel::split(&u).unwrap(), Channel::Unreliable(&[1, 2]));
        assert!(Channel::split(&[]).is_err());
        assert!(Channel::split(&[0x53]).is_err());
    }
}
