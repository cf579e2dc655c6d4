//! Client ↔ cluster: the client presents its connect token and proves it
//! holds the session secret the master gave it with the token; the cluster
//! answers with a fresh nonce, and the session keys derive from both.
//!
//! The proof is one sealed frame (sequence 0) with a fixed plaintext, under
//! a key from the session secret alone. Someone who copied a token off the
//! wire has no secret, cannot make the proof, and so cannot burn the token
//! either. The cluster's nonce (a plaintext `JoinAccept` frame) goes into
//! every session key, so a replayed hello, even to a cluster restarted with
//! the same id and key that no longer remembers the token, gets keys no
//! other session had: nothing is ever sealed twice under one key and nonce.

use rand::CryptoRng;

use super::{HelloKind, NOISE_MSG_MAX, frame, parse_reply};
use crate::crypto::{ClientSessionKeys, Key, SessionSecret, Side, StreamSession};
use crate::error::{HandshakeError, TokenError};
use crate::message::TOKEN_MAX;
use crate::token::{ConnectToken, UsedTokens};
use crate::wire::Writer;

const PROOF: &[u8] = b"sustenet connect v3";
const RESUME_PROOF: &[u8] = b"sustenet resume v3";

/// The client's side of a join, between its hello and the cluster's answer.
#[derive(Debug)]
pub struct JoinInitiator {
    secret: SessionSecret,
}

/// The client's hello to a cluster: the token and the proof.
pub fn client_cluster_hello(
    token: &[u8],
    secret: &[u8; 32],
) -> Result<(Vec<u8>, JoinInitiator), HandshakeError> {
    let mut proof_session = ClientSessionKeys::join_proof(secret)?;
    let proof = proof_session.sealer.seal(PROOF)?;
    let mut body = Vec::with_capacity(4 + token.len() + proof.len());
    body.put_bytes16(token, TOKEN_MAX)
        .map_err(super::encode_err)?;
    body.put_bytes16(&proof, NOISE_MSG_MAX)
        .map_err(super::encode_err)?;
    let init = JoinInitiator {
        secret: SessionSecret(*secret),
    };
    Ok((frame(HelloKind::ClientClusterHello, &body), init))
}

impl JoinInitiator {
    /// Takes the cluster's first answer: a `JoinAccept` gives the session
    /// keys and the TCP session (whose first frame is the `Welcome`); a
    /// refusal becomes [`HandshakeError::Rejected`].
    pub fn handle_accept(
        self,
        frame: &[u8],
    ) -> Result<(ClientSessionKeys, StreamSession), HandshakeError> {
        let mut r = parse_reply(frame, HelloKind::JoinAccept)?;
        let nonce: [u8; 32] = r.array()?;
        r.finish()?;
        let keys = ClientSessionKeys::derive(&self.secret, &nonce)?;
        let session = keys.stream(Side::Initiator);
        Ok((keys, session))
    }
}

/// A client the cluster accepted.
#[derive(Debug)]
pub struct ClusterAccept {
    /// What the token said.
    pub token: ConnectToken,
    /// The session keys (for the UDP session and reconnects).
    pub keys: ClientSessionKeys,
    /// The TCP session; its first sealed frame is the `Welcome`.
    pub session: StreamSession,
    /// The plaintext `JoinAccept` frame with the cluster's nonce: send it
    /// right before the `Welcome`.
    pub accept_frame: Vec<u8>,
}

/// The cluster's first step: opens the token and checks the proof, without
/// recording the token as used (so a caller can take its used-token lock
/// only to record it).
pub fn open_join(
    token: &[u8],
    proof: &[u8],
    cluster_key: &Key,
    cluster_id: u64,
    now_ms: u64,
) -> Result<ConnectToken, HandshakeError> {
    let token = ConnectToken::open(token, cluster_key, cluster_id, now_ms)?;
    let mut proof_session = ClientSessionKeys::join_proof(&token.session_secret)?;
    match proof_session.opener.open(proof) {
        Ok(p) if p == PROOF => Ok(token),
        _ => Err(HandshakeError::AuthenticationFailed),
    }
}

/// The cluster's last step, once the token is recorded as used: a fresh
/// nonce, the session keys and the `JoinAccept` frame.
pub fn finish_join(
    token: ConnectToken,
    rng: &mut impl CryptoRng,
) -> Result<ClusterAccept, HandshakeError> {
    let mut nonce = [0u8; 32];
    rng.fill_bytes(&mut nonce);
    let keys = ClientSessionKeys::derive(&token.session_secret, &nonce)?;
    let session = keys.stream(Side::Responder);
    Ok(ClusterAccept {
        token,
        keys,
        session,
        accept_frame: frame(HelloKind::JoinAccept, &nonce),
    })
}

/// The cluster's side in one call: [`open_join`], the single-use check in
/// `used`, then [`finish_join`]. Refusals map to a
/// [`crate::DisconnectReason`] through [`HandshakeError::reason`].
pub fn accept_client(
    token: &[u8],
    proof: &[u8],
    cluster_key: &Key,
    cluster_id: u64,
    now_ms: u64,
    used: &mut UsedTokens,
    rng: &mut impl CryptoRng,
) -> Result<ClusterAccept, HandshakeError> {
    let token = open_join(token, proof, cluster_key, cluster_id, now_ms)?;
    used.use_token(&token, now_ms)
        .map_err(|e: TokenError| HandshakeError::Token(e))?;
    finish_join(token, rng)
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
    let mut session = keys.resume_stream(nonce, Side::Initiator)?;
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
    let mut session = keys.resume_stream(nonce, Side::Responder)?;
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

    fn token() -> ConnectToken {
        ConnectToken {
            client_id: 1,
            cluster_id: 2,
            token_id: [9; 16],
            expires_at_ms: 1000,
            session_secret: [4; 32].into(),
            user_data: vec![],
        }
    }

    #[test]
    fn accept_then_refuse_reuse_and_bad_proof() {
        let mut rng = StdRng::seed_from_u64(5);
        let key = Key::generate(&mut rng);
        let t = token();
        let sealed = t.seal(&key, &mut rng).unwrap();
        let (hello, init) = client_cluster_hello(&sealed, &t.session_secret).unwrap();
        let Hello::ClientCluster { token, proof } = parse_hello(&hello).unwrap() else {
            unreachable!()
        };
        let mut used = UsedTokens::new();
        // A thief with the token but another secret cannot use or burn it.
        let (thief_hello, _) = client_cluster_hello(&sealed, &[0; 32]).unwrap();
        let Hello::ClientCluster {
            proof: bad_proof, ..
        } = parse_hello(&thief_hello).unwrap()
        else {
            unreachable!()
        };
        let e = accept_client(&token, &bad_proof, &key, 2, 10, &mut used, &mut rng).unwrap_err();
        assert_eq!(e.reason(), DisconnectReason::AuthFailed);
        let mut ok = accept_client(&token, &proof, &key, 2, 10, &mut used, &mut rng).unwrap();
        assert_eq!(ok.token.client_id, 1);
        let e = accept_client(&token, &proof, &key, 2, 11, &mut used, &mut rng).unwrap_err();
        assert_eq!(e.reason(), DisconnectReason::TokenUsed);
        // The client derives the same keys from the cluster's nonce.
        let (_, mut client) = init.handle_accept(&ok.accept_frame).unwrap();
        let welcome = ok.session.sealer.seal(b"welcome").unwrap();
        assert_eq!(client.opener.open(&welcome).unwrap(), b"welcome");
        let up = client.sealer.seal(b"up").unwrap();
        assert_eq!(ok.session.opener.open(&up).unwrap(), b"up");
    }

    #[test]
    fn a_replayed_join_never_gets_the_same_keys() {
        // A cluster restarted with the same id and key forgets used tokens:
        // the recorded hello is accepted again, but with a new nonce.
        let mut rng = StdRng::seed_from_u64(6);
        let key = Key::generate(&mut rng);
        let sealed = token().seal(&key, &mut rng).unwrap();
        let (hello, _) = client_cluster_hello(&sealed, &[4; 32]).unwrap();
        let Hello::ClientCluster { token, proof } = parse_hello(&hello).unwrap() else {
            unreachable!()
        };
        let mut first = accept_client(
            &token,
            &proof,
            &key,
            2,
            10,
            &mut UsedTokens::new(),
            &mut rng,
        )
        .unwrap();
        let mut again = accept_client(
            &token,
            &proof,
            &key,
            2,
            10,
            &mut UsedTokens::new(),
            &mut rng,
        )
        .unwrap();
        assert_ne!(first.accept_frame, again.accept_frame);
        let w1 = first.session.sealer.seal(b"welcome").unwrap();
        let w2 = again.session.sealer.seal(b"welcome").unwrap();
        assert_eq!(w1[..8], w2[..8], "both at sequence 0");
        assert_ne!(w1, w2, "same plaintext, same sequence: the keys differ");
        assert!(
            first
                .session
                .opener
                .open(&again.session.sealer.seal(b"x").unwrap())
                .is_err()
        );
    }

    #[test]
    fn a_join_answer_must_be_an_accept_or_a_refusal() {
        let (_, init) = client_cluster_hello(b"t", &[1; 32]).unwrap();
        let e = init
            .handle_accept(&crate::handshake::reject_frame(
                DisconnectReason::ServerFull,
                "full",
            ))
            .unwrap_err();
        assert_eq!(e.reason(), DisconnectReason::ServerFull);
        let (_, init) = client_cluster_hello(b"t", &[1; 32]).unwrap();
        assert!(init.handle_accept(&[0u8; 40]).is_err());
    }

    #[test]
    fn resume_proof_carries_the_count_and_needs_the_keys() {
        let keys = ClientSessionKeys::derive(&[7; 32], &[1; 32]).unwrap();
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
        let other = ClientSessionKeys::derive(&[8; 32], &[1; 32]).unwrap();
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
