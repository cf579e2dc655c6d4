//! Client ↔ cluster: the client presents its connect token and proves it
//! holds the session keys the master gave it with the token.
//!
//! The proof is the first sealed client frame (sequence 0) with a fixed
//! plaintext. Someone who copied a token off the wire has no keys, cannot
//! make the proof, and so cannot burn the token either.

use super::{HelloKind, NOISE_MSG_MAX, frame};
use crate::crypto::{ClientSessionKeys, Key, Side, StreamSession};
use crate::error::{HandshakeError, TokenError};
use crate::message::TOKEN_MAX;
use crate::token::{ConnectToken, UsedTokens};
use crate::wire::Writer;

const PROOF: &[u8] = b"sustenet connect v1";
const RESUME_PROOF: &[u8] = b"sustenet resume v1";

/// The client's hello to a cluster and the session that goes with it.
pub fn client_cluster_hello(
    token: &[u8],
    keys: &ClientSessionKeys,
) -> Result<(Vec<u8>, StreamSession), HandshakeError> {
    let mut session = keys.stream(Side::Initiator);
    let proof = session.sealer.seal(PROOF)?;
    let mut body = Vec::with_capacity(4 + token.len() + proof.len());
    body.put_bytes16(token, TOKEN_MAX)
        .map_err(super::encode_err)?;
    body.put_bytes16(&proof, NOISE_MSG_MAX)
        .map_err(super::encode_err)?;
    Ok((frame(HelloKind::ClientClusterHello, &body), session))
}

/// A client the cluster accepted.
#[derive(Debug)]
pub struct ClusterAccept {
    /// What the token said.
    pub token: ConnectToken,
    /// The session keys (for the UDP session).
    pub keys: ClientSessionKeys,
    /// The TCP session, past the proof.
    pub session: StreamSession,
}

/// The cluster's side: opens the token, checks the proof, and marks the
/// token used. Refusals map to a [`crate::DisconnectReason`] through
/// [`HandshakeError::reason`].
pub fn accept_client(
    token: &[u8],
    proof: &[u8],
    cluster_key: &Key,
    cluster_id: u64,
    now_ms: u64,
    used: &mut UsedTokens,
) -> Result<ClusterAccept, HandshakeError> {
    accept_client_with(token, proof, cluster_key, cluster_id, now_ms, |t| {
        used.use_token(t, now_ms)
    })
}

/// [`accept_client`] with the used-token record done by `record`, called
/// once, only after the token opened and the proof checked: a server that
/// shares its used-token set between connections takes its lock inside
/// `record` alone, not while a token (up to 16.6 KiB) is decrypted.
pub fn accept_client_with(
    token: &[u8],
    proof: &[u8],
    cluster_key: &Key,
    cluster_id: u64,
    now_ms: u64,
    record: impl FnOnce(&ConnectToken) -> Result<(), TokenError>,
) -> Result<ClusterAccept, HandshakeError> {
    let token = ConnectToken::open(token, cluster_key, cluster_id, now_ms)?;
    let keys = ClientSessionKeys::derive(&token.session_secret);
    let mut session = keys.stream(Side::Responder);
    match session.opener.open(proof) {
        Ok(p) if p == PROOF => {}
        _ => return Err(HandshakeError::AuthenticationFailed),
    }
    record(&token).map_err(HandshakeError::Token)?;
    Ok(ClusterAccept {
        token,
        keys,
        session,
    })
}

/// What a resume proof says, once the cluster opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeClaim {
    /// Data messages the client has received in the session.
    pub received: u64,
    /// The client's attempt number in the session; the cluster accepts only
    /// a number above every one it accepted before, so a copied hello (even
    /// one that never reached the cluster) is useless once a later attempt
    /// got through.
    pub attempt: u64,
}

/// The client's hello to reconnect to session `session_id`, with what it
/// claims, and the new connection's session. `nonce` must be fresh for
/// every attempt (the keys derive from it) and `claim.attempt` must grow.
pub fn client_resume_hello(
    keys: &ClientSessionKeys,
    session_id: u64,
    nonce: &[u8; 32],
    claim: ResumeClaim,
) -> Result<(Vec<u8>, StreamSession), HandshakeError> {
    let mut session = keys.resume_stream(nonce, Side::Initiator);
    let mut plain = Vec::with_capacity(RESUME_PROOF.len() + 16);
    plain.extend_from_slice(RESUME_PROOF);
    plain.put_u64(claim.received);
    plain.put_u64(claim.attempt);
    let proof = session.sealer.seal(&plain)?;
    let mut body = Vec::with_capacity(8 + 32 + 2 + proof.len());
    body.put_u64(session_id);
    body.put_slice(nonce);
    body.put_bytes16(&proof, NOISE_MSG_MAX)
        .map_err(super::encode_err)?;
    Ok((frame(HelloKind::ClientResume, &body), session))
}

/// The cluster's side of a reconnect, once it found the session's keys:
/// checks the proof and returns the new connection's session (past the
/// proof) and the client's claim. The caller refuses an attempt number that
/// is not above the last one it accepted.
pub fn accept_resume(
    keys: &ClientSessionKeys,
    nonce: &[u8; 32],
    proof: &[u8],
) -> Result<(StreamSession, ResumeClaim), HandshakeError> {
    let mut session = keys.resume_stream(nonce, Side::Responder);
    let plain = session
        .opener
        .open(proof)
        .map_err(|_| HandshakeError::AuthenticationFailed)?;
    let fields = plain
        .strip_prefix(RESUME_PROOF)
        .and_then(|rest| <[u8; 16]>::try_from(rest).ok())
        .ok_or(HandshakeError::AuthenticationFailed)?;
    let (received, attempt) = fields.split_at(8);
    let num = |b: &[u8]| <[u8; 8]>::try_from(b).map(u64::from_le_bytes);
    match (num(received), num(attempt)) {
        (Ok(received), Ok(attempt)) => Ok((session, ResumeClaim { received, attempt })),
        _ => Err(HandshakeError::AuthenticationFailed),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Hello, parse_hello};
    use super::*;
    use crate::reason::DisconnectReason;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn accept_then_refuse_reuse_and_bad_proof() {
        let mut rng = StdRng::seed_from_u64(5);
        let key = Key::generate(&mut rng);
        let t = ConnectToken {
            client_id: 1,
            cluster_id: 2,
            token_id: [9; 16],
            expires_at_ms: 1000,
            session_secret: [4; 32],
            user_data: vec![],
        };
        let sealed = t.seal(&key, &mut rng).unwrap();
        let keys = ClientSessionKeys::derive(&t.session_secret);
        let (hello, _) = client_cluster_hello(&sealed, &keys).unwrap();
        let Hello::ClientCluster { token, proof } = parse_hello(&hello).unwrap() else {
            unreachable!()
        };
        let mut used = UsedTokens::new();
        // A thief with the token but other keys cannot use or burn it.
        let thief = ClientSessionKeys::derive(&[0; 32]);
        let (thief_hello, _) = client_cluster_hello(&sealed, &thief).unwrap();
        let Hello::ClientCluster {
            proof: bad_proof, ..
        } = parse_hello(&thief_hello).unwrap()
        else {
            unreachable!()
        };
        let e = accept_client(&token, &bad_proof, &key, 2, 10, &mut used).unwrap_err();
        assert_eq!(e.reason(), DisconnectReason::AuthFailed);
        let ok = accept_client(&token, &proof, &key, 2, 10, &mut used).unwrap();
        assert_eq!(ok.token.client_id, 1);
        let e = accept_client(&token, &proof, &key, 2, 11, &mut used).unwrap_err();
        assert_eq!(e.reason(), DisconnectReason::TokenUsed);
    }

    #[test]
    fn resume_proof_carries_the_count_and_needs_the_keys() {
        let keys = ClientSessionKeys::derive(&[7; 32]);
        let nonce = [3; 32];
        let claim = ResumeClaim {
            received: 41,
            attempt: 3,
        };
        let (hello, mut client) = client_resume_hello(&keys, 99, &nonce, claim).unwrap();
        let Hello::ClientResume {
            session_id,
            nonce: n,
            proof,
        } = parse_hello(&hello).unwrap()
        else {
            unreachable!()
        };
        assert_eq!((session_id, n), (99, nonce));
        let (mut server, got) = accept_resume(&keys, &n, &proof).unwrap();
        assert_eq!(got, claim);
        // The new session works both ways, past the proof.
        let sealed = server.sealer.seal(b"hi").unwrap();
        assert_eq!(client.opener.open(&sealed).unwrap(), b"hi");
        let sealed = client.sealer.seal(b"yo").unwrap();
        assert_eq!(server.opener.open(&sealed).unwrap(), b"yo");
        // Other keys, or another nonce, fail.
        let other = ClientSessionKeys::derive(&[8; 32]);
        assert_eq!(
            accept_resume(&other, &n, &proof).unwrap_err().reason(),
            DisconnectReason::AuthFailed
        );
        assert!(accept_resume(&keys, &[4; 32], &proof).is_err());
        // A reconnect's keys differ from the first connection's.
        let mut first = keys.stream(Side::Responder);
        let sealed = client.sealer.seal(b"x").unwrap();
        assert!(first.opener.open(&sealed).is_err());
    }
}

#[cfg(test)]
mod vector {
    use super::*;

    /// The resume example of docs/protocol.md §15.4: session secret 11 × 32,
    /// session 9, nonce 22 × 32, 5 messages received, attempt 1.
    #[test]
    fn resume_hello_matches_the_documented_vector() {
        let keys = ClientSessionKeys::derive(&[0x11; 32]);
        let claim = ResumeClaim {
            received: 5,
            attempt: 1,
        };
        let (hello, _) = client_resume_hello(&keys, 9, &[0x22; 32], claim).unwrap();
        let proof = "00 00 00 00 00 00 00 00 1e 31 40 c1 a5 93 21 9d 5b 1a 99 0b b7 cb 2e 80 \
                     3c e7 18 a8 d9 4a 57 f3 fb 19 ae 40 28 76 84 5f 5b 38 9a a9 6d d4 c2 70 \
                     8c e6 2a d5 eb 35 b9 d2 67 e3";
        let mut want = vec![
            0x53, 0x4e, 0x45, 0x54, 0x02, 0x00, 0x04, 9, 0, 0, 0, 0, 0, 0, 0,
        ];
        want.extend([0x22; 32]);
        want.extend([58, 0]);
        want.extend(
            proof
                .split_whitespace()
                .map(|h| u8::from_str_radix(h, 16).unwrap()),
        );
        assert_eq!(hello, want);
    }
}
