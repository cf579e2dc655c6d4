//! The key-proof handshake of agent and admin links (the cluster's, with
//! the role's own key table and salt), up to the first sealed message.

use sustenet_net::{FrameReader, NetError, SealedReader, SealedWriter, write_frame};
use sustenet_proto::handshake::{self, KeyRole};
use sustenet_proto::{DisconnectReason, Key, Message};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tracing::warn;

use super::{KeyHello, Shared, refuse};

/// A link whose peer proved its key: its reader, its writer and the first message.
pub(super) struct ProvenLink<M> {
    pub reader: SealedReader<OwnedReadHalf>,
    pub writer: SealedWriter<OwnedWriteHalf>,
    pub first: M,
}

/// Answers a key-proof hello of `role` and reads the first sealed message
/// within the handshake timeout. A peer without the key (wrong or unknown
/// name: the answer looks the same) is refused with `AuthFailed`.
pub(super) async fn prove<M: Message + std::fmt::Debug>(
    shared: &Shared,
    frames: FrameReader<OwnedReadHalf>,
    mut wr: OwnedWriteHalf,
    role: KeyRole,
    key: Option<&Key>,
    hello: &KeyHello,
) -> Option<ProvenLink<M>> {
    let limits = shared.config.limits;
    let key_name = hello.key_name.as_str();
    let answer = handshake::respond_key_proof(role, key, key_name, &hello.nonce, &mut rand::rng());
    let (session, challenge) = match answer {
        Ok(x) => x,
        Err(e) => {
            warn!(key_name, ?role, "refused: {e}");
            refuse(&mut wr, e.reason(), &e.to_string()).await;
            return None;
        }
    };
    write_frame(&mut wr, &challenge, limits.max_frame)
        .await
        .ok()?;
    let mut reader = SealedReader::new(frames, session.opener, 0);
    let first = tokio::time::timeout(limits.handshake_timeout(), reader.recv::<M>()).await;
    let first = match first {
        Ok(Ok(Some(m))) if key.is_some() => m,
        Ok(Err(NetError::TooManyAuthFailures(_))) | Ok(Ok(Some(_))) => {
            warn!(
                key_name,
                ?role,
                "refused: authentication failed (wrong or unknown key)"
            );
            refuse(
                &mut wr,
                DisconnectReason::AuthFailed,
                "authentication failed",
            )
            .await;
            return None;
        }
        Ok(Ok(None)) => return None,
        Ok(Err(e)) => {
            warn!(key_name, ?role, "refused: {e}");
            return None;
        }
        Err(_) => {
            warn!(
                key_name,
                ?role,
                "refused: no first message within the handshake timeout"
            );
            return None;
        }
    };
    let writer = SealedWriter::new(wr, session.sealer, limits.max_frame)
        .with_write_timeout(limits.timeout());
    Some(ProvenLink {
        reader,
        writer,
        first,
    })
}
