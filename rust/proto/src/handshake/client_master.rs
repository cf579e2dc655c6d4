//! Client ↔ master: a Noise NK handshake that authenticates the master.
//!
//! The client knows the master's static public key. If it is the wrong key,
//! the master cannot open the first Noise message and refuses with
//! `AuthFailed`, which the client reports as a wrong master public key.

use super::{HelloKind, NOISE_MSG_MAX, NOISE_PROLOGUE, frame, noise_params, parse_reply};
use crate::crypto::{MasterKeypair, PublicKey, StreamSession};
use crate::error::HandshakeError;
use crate::reason::DisconnectReason;
use crate::wire::Writer;

fn noise_err(e: snow::Error) -> HandshakeError {
    HandshakeError::Noise(e.to_string())
}

/// The client's side of the handshake.
pub struct ClientMasterInitiator {
    hs: snow::HandshakeState,
}

impl std::fmt::Debug for ClientMasterInitiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientMasterInitiator")
            .finish_non_exhaustive()
    }
}

impl ClientMasterInitiator {
    /// Starts the handshake against a master with public key `master`;
    /// returns the state and the hello frame.
    pub fn start(master: &PublicKey) -> Result<(Self, Vec<u8>), HandshakeError> {
        let mut hs = snow::Builder::new(noise_params())
            .prologue(NOISE_PROLOGUE)
            .and_then(|b| b.remote_public_key(&master.0))
            .and_then(|b| b.build_initiator())
            .map_err(noise_err)?;
        let mut msg = [0u8; 256];
        let n = hs.write_message(&[], &mut msg).map_err(noise_err)?;
        let mut body = Vec::with_capacity(2 + n);
        body.put_bytes16(&msg[..n], NOISE_MSG_MAX)
            .map_err(super::encode_err)?;
        Ok((Self { hs }, frame(HelloKind::ClientMasterHello, &body)))
    }

    /// Takes the master's reply; returns the session.
    pub fn handle_reply(mut self, frame: &[u8]) -> Result<StreamSession, HandshakeError> {
        let msg = parse_noise_reply(frame)?;
        let mut payload = [0u8; 256];
        self.hs
            .read_message(msg, &mut payload)
            .map_err(|_| HandshakeError::WrongMasterKey)?;
        let t = self.hs.into_stateless_transport_mode().map_err(noise_err)?;
        Ok(StreamSession::noise(t))
    }
}

/// The Noise message in a master's reply frame: what
/// [`ClientMasterInitiator::handle_reply`] reads before it touches the
/// handshake state, with the same errors (a refusal for `AuthFailed` is
/// [`HandshakeError::WrongMasterKey`], another refusal `Rejected`).
pub fn parse_noise_reply(frame: &[u8]) -> Result<&[u8], HandshakeError> {
    let mut r = match parse_reply(frame, HelloKind::NoiseReply) {
        Err(HandshakeError::Rejected {
            reason: DisconnectReason::AuthFailed,
            ..
        }) => return Err(HandshakeError::WrongMasterKey),
        other => other?,
    };
    let msg = r.bytes16(NOISE_MSG_MAX)?;
    r.finish()?;
    Ok(msg)
}

/// The master's side: opens the client's first Noise message and returns the
/// session and the reply frame. `AuthenticationFailed` means the client used
/// another master public key; answer it with an `AuthFailed` refusal.
pub fn respond_client_master(
    keypair: &MasterKeypair,
    noise: &[u8],
) -> Result<(StreamSession, Vec<u8>), HandshakeError> {
    let mut hs = snow::Builder::new(noise_params())
        .prologue(NOISE_PROLOGUE)
        .and_then(|b| b.local_private_key(keypair.private_bytes()))
        .and_then(|b| b.build_responder())
        .map_err(noise_err)?;
    let mut payload = [0u8; 256];
    hs.read_message(noise, &mut payload)
        .map_err(|_| HandshakeError::AuthenticationFailed)?;
    let mut msg = [0u8; 256];
    let n = hs.write_message(&[], &mut msg).map_err(noise_err)?;
    let mut body = Vec::with_capacity(2 + n);
    body.put_bytes16(&msg[..n], NOISE_MSG_MAX)
        .map_err(super::encode_err)?;
    let t = hs.into_stateless_transport_mode().map_err(noise_err)?;
    Ok((StreamSession::noise(t), frame(HelloKind::NoiseReply, &body)))
}

#[cfg(test)]
mod tests {
    use super::super::{Hello, parse_hello, reject_frame};
    use super::*;

    #[test]
    fn handshake_and_transport() {
        let kp = MasterKeypair::generate().unwrap();
        let (init, hello) = ClientMasterInitiator::start(&kp.public()).unwrap();
        let Hello::ClientMaster { noise } = parse_hello(&hello).unwrap() else {
            unreachable!()
        };
        let (mut master, reply) = respond_client_master(&kp, &noise).unwrap();
        let mut client = init.handle_reply(&reply).unwrap();
        let p = client.sealer.seal(b"login").unwrap();
        assert_eq!(master.opener.open(&p).unwrap(), b"login");
        let q = master.sealer.seal(b"ok").unwrap();
        assert_eq!(client.opener.open(&q).unwrap(), b"ok");
        let mut bad = master.sealer.seal(b"tampered").unwrap();
        bad[9] ^= 1;
        assert!(client.opener.open(&bad).is_err());
    }

    #[test]
    fn wrong_master_key_is_detected_on_both_sides() {
        let real = MasterKeypair::generate().unwrap();
        let other = MasterKeypair::generate().unwrap();
        let (init, hello) = ClientMasterInitiator::start(&other.public()).unwrap();
        let Hello::ClientMaster { noise } = parse_hello(&hello).unwrap() else {
            unreachable!()
        };
        assert_eq!(
            respond_client_master(&real, &noise).err(),
            Some(HandshakeError::AuthenticationFailed)
        );
        let refusal = reject_frame(DisconnectReason::AuthFailed, "check the master public key");
        assert_eq!(
            init.handle_reply(&refusal).err(),
            Some(HandshakeError::WrongMasterKey)
        );
    }

    #[test]
    fn a_reply_parses_to_its_noise_message_and_refusals_to_their_errors() {
        let kp = MasterKeypair::generate().unwrap();
        let (_, hello) = ClientMasterInitiator::start(&kp.public()).unwrap();
        let Hello::ClientMaster { noise } = parse_hello(&hello).unwrap() else {
            unreachable!()
        };
        let (_, reply) = respond_client_master(&kp, &noise).unwrap();
        let msg = parse_noise_reply(&reply).unwrap();
        assert_eq!(&reply[reply.len() - msg.len()..], msg);
        let refusal = reject_frame(DisconnectReason::AuthFailed, "check the master public key");
        assert_eq!(
            parse_noise_reply(&refusal).err(),
            Some(HandshakeError::WrongMasterKey)
        );
        let full = reject_frame(DisconnectReason::ServerFull, "full");
        assert!(matches!(
            parse_noise_reply(&full),
            Err(HandshakeError::Rejected {
                reason: DisconnectReason::ServerFull,
                ..
            })
        ));
        let mut long = reply.clone();
        long.push(0);
        assert!(parse_noise_reply(&long).is_err());
        assert!(parse_noise_reply(&hello).is_err());
    }
}
