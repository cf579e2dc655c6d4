//! Cluster ↔ master: the cluster proves it holds its key without sending it.
//!
//! Hello carries the key name and a fresh cluster nonce; the master answers
//! with its own fresh nonce. Both derive the session keys with HKDF-SHA256
//! from the cluster key, salted with both nonces and the key name. The first
//! sealed frame (the registration) only opens if the cluster holds the key,
//! and a recorded registration cannot be replayed: the master's nonce is new
//! on every connection, so the keys are too.

use rand::CryptoRng;

use super::{HelloKind, KEY_NAME_MAX, frame, parse_reply};
use crate::crypto::{
    ADMIN_MASTER_SALT, AGENT_MASTER_SALT, CLUSTER_MASTER_SALT, Key, StreamSession, derive_keys,
};
use crate::error::HandshakeError;
use crate::wire::Writer;

/// Which kind of key a key-proof handshake with the master proves. The same
/// exchange serves clusters, agents (which start instances) and operators'
/// tools; each kind has its own hello kind, its own key table on the master
/// and its own HKDF salt, so a key of one kind never opens a link of another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRole {
    /// A cluster registering (`ClusterHello`).
    Cluster,
    /// An agent that starts and stops instances (`AgentHello`).
    Agent,
    /// An operator's tool holding the master's admin key (`AdminHello`).
    Admin,
}

impl KeyRole {
    fn salt(self) -> &'static [u8] {
        match self {
            Self::Cluster => CLUSTER_MASTER_SALT,
            Self::Agent => AGENT_MASTER_SALT,
            Self::Admin => ADMIN_MASTER_SALT,
        }
    }

    fn hello_kind(self) -> HelloKind {
        match self {
            Self::Cluster => HelloKind::ClusterHello,
            Self::Agent => HelloKind::AgentHello,
            Self::Admin => HelloKind::AdminHello,
        }
    }
}

fn session_keys(
    role: KeyRole,
    key: &Key,
    key_name: &str,
    cluster_nonce: &[u8; 32],
    master_nonce: &[u8; 32],
) -> Result<[Key; 2], HandshakeError> {
    let mut salt = Vec::with_capacity(role.salt().len() + 64 + key_name.len());
    salt.extend_from_slice(role.salt());
    salt.extend_from_slice(cluster_nonce);
    salt.extend_from_slice(master_nonce);
    salt.extend_from_slice(key_name.as_bytes());
    Ok(derive_keys(
        key.as_bytes(),
        &salt,
        ["cluster->master", "master->cluster"],
    )?)
}

/// The cluster's (or agent's, or admin tool's) side of the handshake.
#[derive(Debug)]
pub struct ClusterInitiator {
    role: KeyRole,
    key: Key,
    key_name: String,
    nonce: [u8; 32],
}

impl ClusterInitiator {
    /// Starts a cluster's handshake; returns the state and the hello frame to send.
    pub fn start(
        key_name: &str,
        key: Key,
        rng: &mut impl CryptoRng,
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        Self::start_as(KeyRole::Cluster, key_name, key, rng)
    }

    /// Starts the handshake for a key of `role`; returns the state and the hello frame.
    pub fn start_as(
        role: KeyRole,
        key_name: &str,
        key: Key,
        rng: &mut impl CryptoRng,
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        let mut nonce = [0u8; 32];
        rng.fill_bytes(&mut nonce);
        let mut body = Vec::new();
        body.put_str16(key_name, KEY_NAME_MAX)
            .map_err(super::encode_err)?;
        body.put_slice(&nonce);
        let hello = frame(role.hello_kind(), &body);
        Ok((
            Self {
                role,
                key,
                key_name: key_name.to_owned(),
                nonce,
            },
            hello,
        ))
    }

    /// Takes the master's challenge; returns the session. Whether the master
    /// accepted the key shows in its answer to the first sealed frame.
    pub fn handle_challenge(self, frame: &[u8]) -> Result<StreamSession, HandshakeError> {
        let mut r = parse_reply(frame, HelloKind::Challenge)?;
        let master_nonce: [u8; 32] = r.array()?;
        r.finish()?;
        let [c2m, m2c] = session_keys(
            self.role,
            &self.key,
            &self.key_name,
            &self.nonce,
            &master_nonce,
        )?;
        Ok(StreamSession::aes(&c2m, &m2c))
    }
}

/// The master's side: given the cluster's hello and the key it names (or
/// `None` when the name is unknown), returns the session and the challenge
/// frame. An unknown name gets a random key, so the answer looks the same
/// and the registration simply fails to open: nothing tells a prober which
/// names exist.
pub fn respond_cluster(
    key: Option<&Key>,
    key_name: &str,
    cluster_nonce: &[u8; 32],
    rng: &mut impl CryptoRng,
) -> Result<(StreamSession, Vec<u8>), HandshakeError> {
    respond_key_proof(KeyRole::Cluster, key, key_name, cluster_nonce, rng)
}

/// [`respond_cluster`] for a key of any role: an agent's or an admin tool's
/// hello is answered the same way, with the role's own salt.
pub fn respond_key_proof(
    role: KeyRole,
    key: Option<&Key>,
    key_name: &str,
    cluster_nonce: &[u8; 32],
    rng: &mut impl CryptoRng,
) -> Result<(StreamSession, Vec<u8>), HandshakeError> {
    let mut master_nonce = [0u8; 32];
    rng.fill_bytes(&mut master_nonce);
    let key = match key {
        Some(k) => k.clone(),
        None => Key::generate(rng),
    };
    let [c2m, m2c] = session_keys(role, &key, key_name, cluster_nonce, &master_nonce)?;
    Ok((
        StreamSession::aes(&m2c, &c2m),
        frame(HelloKind::Challenge, &master_nonce),
    ))
}

#[cfg(test)]
mod tests {
    use super::super::{Hello, parse_hello};
    use super::*;
    use crate::error::CryptoError;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn run(
        cluster_key: &Key,
        master_key: Option<&Key>,
        rng: &mut StdRng,
    ) -> Result<Vec<u8>, CryptoError> {
        let (init, hello) = ClusterInitiator::start("alpha", cluster_key.clone(), rng).unwrap();
        let Hello::Cluster { key_name, nonce } = parse_hello(&hello).unwrap() else {
            unreachable!()
        };
        let (mut master, challenge) = respond_cluster(master_key, &key_name, &nonce, rng).unwrap();
        let mut cluster = init.handle_challenge(&challenge).unwrap();
        let reg = cluster.sealer.seal(b"register").unwrap();
        master.opener.open(&reg)
    }

    #[test]
    fn right_key_opens_wrong_or_unknown_does_not() {
        let mut rng = StdRng::seed_from_u64(11);
        let k = Key::generate(&mut rng);
        let wrong = Key::generate(&mut rng);
        assert_eq!(run(&k, Some(&k), &mut rng).unwrap(), b"register");
        assert_eq!(
            run(&k, Some(&wrong), &mut rng),
            Err(CryptoError::Authentication)
        );
        assert_eq!(run(&k, None, &mut rng), Err(CryptoError::Authentication));
    }

    fn first_frame_opens(ours: KeyRole, theirs: KeyRole, rng: &mut StdRng) -> bool {
        let k = Key::generate(rng);
        let (init, hello) = ClusterInitiator::start_as(ours, "a", k.clone(), rng).unwrap();
        let nonce = match parse_hello(&hello).unwrap() {
            Hello::Cluster { nonce, .. }
            | Hello::Agent { nonce, .. }
            | Hello::Admin { nonce, .. } => nonce,
            _ => unreachable!(),
        };
        let (mut master, challenge) =
            respond_key_proof(theirs, Some(&k), "a", &nonce, rng).unwrap();
        let mut sealed = init.handle_challenge(&challenge).unwrap();
        let first = sealed.sealer.seal(b"hello").unwrap();
        master.opener.open(&first).is_ok()
    }

    #[test]
    fn a_key_opens_only_links_of_its_own_role() {
        let mut rng = StdRng::seed_from_u64(13);
        let roles = [KeyRole::Cluster, KeyRole::Agent, KeyRole::Admin];
        for ours in roles {
            for theirs in roles {
                assert_eq!(first_frame_opens(ours, theirs, &mut rng), ours == theirs);
            }
        }
    }

    #[test]
    fn recorded_registration_does_not_replay() {
        let mut rng = StdRng::seed_from_u64(12);
        let k = Key::generate(&mut rng);
        let (init, hello) = ClusterInitiator::start("alpha", k.clone(), &mut rng).unwrap();
        let Hello::Cluster { key_name, nonce } = parse_hello(&hello).unwrap() else {
            unreachable!()
        };
        let (_, challenge) = respond_cluster(Some(&k), &key_name, &nonce, &mut rng).unwrap();
        let mut cluster = init.handle_challenge(&challenge).unwrap();
        let recorded = cluster.sealer.seal(b"register").unwrap();
        // The attacker replays the same hello and registration on a new connection.
        let (mut master2, _) = respond_cluster(Some(&k), &key_name, &nonce, &mut rng).unwrap();
        assert_eq!(
            master2.opener.open(&recorded),
            Err(CryptoError::Authentication)
        );
    }
}
