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
    let token = ConnectToken::open(token, cluster_key, cluster_id, now_ms)?;
    let keys = ClientSessionKeys::derive(&token.session_secret);
    let mut session = keys.stream(Side::Responder);
    match session.opener.open(proof) {
        Ok(p) if p == PROOF => {}
        _ => return Err(HandshakeError::AuthenticationFailed),
    }
    used.use_token(&token, now_ms)
        .map_err(|e: TokenError| HandshakeError::Token(e))?;
    Ok(ClusterAccept {
        token,
        keys,
        session,
    })
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
}
