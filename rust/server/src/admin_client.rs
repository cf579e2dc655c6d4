//! The operator's side of the admin link (`sustenet instances`): proves the
//! admin key, then lists, spawns and stops instances.

use std::time::Duration;

use sustenet_net::{FrameReader, SealedReader, SealedWriter, write_frame};
use sustenet_proto::handshake::{ClusterInitiator, KeyRole};
use sustenet_proto::instance::{AdminToMaster, InstanceInfo, MasterToAdmin, Params};
use sustenet_proto::{DisconnectReason, Goodbye, Key};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// An admin link that failed or was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AdminError {
    /// The master's reason, when it gave one.
    pub reason: Option<DisconnectReason>,
    /// What happened.
    pub message: String,
}

fn err(message: impl std::fmt::Display) -> AdminError {
    AdminError {
        reason: None,
        message: message.to_string(),
    }
}

fn refused(g: Goodbye) -> AdminError {
    AdminError {
        reason: Some(g.reason),
        message: format!("{}: {}", g.reason, g.message),
    }
}

/// How a spawn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spawned {
    /// The instance.
    pub instance_id: u64,
    /// The agent it runs on.
    pub agent: String,
    /// Its cluster id once ready.
    pub cluster_id: u64,
}

/// A connected, authenticated admin link.
#[derive(Debug)]
pub struct AdminClient {
    reader: SealedReader<OwnedReadHalf>,
    writer: SealedWriter<OwnedWriteHalf>,
    next_request: u64,
}

impl AdminClient {
    /// Connects to `master` and proves admin key `key_name`. A wrong or
    /// unknown key shows at the first request (`AuthFailed`).
    pub async fn connect(master: &str, key_name: &str, key: Key) -> Result<Self, AdminError> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(master))
            .await
            .map_err(|_| err(format!("connecting to {master} timed out")))?
            .map_err(|e| err(format!("cannot connect to {master}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let (rd, mut wr) = stream.into_split();
        let max = sustenet_proto::DEFAULT_MAX_FRAME;
        let mut frames = FrameReader::new(rd, max);
        let (init, hello) =
            ClusterInitiator::start_as(KeyRole::Admin, key_name, key, &mut rand::rng())
                .map_err(err)?;
        write_frame(&mut wr, &hello, max).await.map_err(err)?;
        let challenge = frames
            .next_within(Duration::from_secs(5))
            .await
            .map_err(err)?
            .ok_or_else(|| err("the master closed the connection during the handshake"))?;
        let session = init.handle_challenge(&challenge).map_err(|e| AdminError {
            reason: Some(e.reason()),
            message: e.to_string(),
        })?;
        Ok(Self {
            reader: SealedReader::new(frames, session.opener, 0),
            writer: SealedWriter::new(wr, session.sealer, max),
            next_request: 1,
        })
    }

    /// The next answer, skipping keep-alives; a refusal frame (the key did
    /// not open) or a goodbye is an error.
    async fn next(&mut self) -> Result<MasterToAdmin, AdminError> {
        loop {
            match self.reader.recv::<MasterToAdmin>().await {
                Ok(Some(MasterToAdmin::Ping(v))) => {
                    self.writer
                        .send(&AdminToMaster::Pong(v))
                        .await
                        .map_err(err)?;
                }
                Ok(Some(MasterToAdmin::Pong(_))) => {}
                Ok(Some(MasterToAdmin::Disconnect(g))) => return Err(refused(g)),
                Ok(Some(m)) => return Ok(m),
                Ok(None) => return Err(err("the master closed the connection")),
                Err(e) => {
                    return Err(match self.reader_refusal(&e) {
                        Some(r) => r,
                        None => err(e),
                    });
                }
            }
        }
    }

    fn reader_refusal(&self, e: &sustenet_net::NetError) -> Option<AdminError> {
        // A refusal arrives as a plaintext frame, which does not open.
        matches!(
            e,
            sustenet_net::NetError::TooManyAuthFailures(_) | sustenet_net::NetError::Crypto(_)
        )
        .then(|| AdminError {
            reason: Some(DisconnectReason::AuthFailed),
            message: "the master refused the admin key (wrong or unknown key)".into(),
        })
    }

    /// Every instance that is not gone.
    pub async fn list(&mut self) -> Result<Vec<InstanceInfo>, AdminError> {
        self.writer.send(&AdminToMaster::List).await.map_err(err)?;
        match self.next().await? {
            MasterToAdmin::List(l) => Ok(l),
            other => Err(err(format!("unexpected answer: {other:?}"))),
        }
    }

    /// Asks for an instance and waits until it is ready or has failed.
    pub async fn spawn(
        &mut self,
        template: &str,
        params: Params,
        stop_when_empty_sec: u32,
    ) -> Result<Spawned, AdminError> {
        let request_id = self.next_request;
        self.next_request += 1;
        self.writer
            .send(&AdminToMaster::Spawn {
                request_id,
                template: template.to_owned(),
                params,
                stop_when_empty_sec,
            })
            .await
            .map_err(err)?;
        let (instance_id, agent) = match self.next().await? {
            MasterToAdmin::SpawnAccepted {
                instance_id, agent, ..
            } => (instance_id, agent),
            MasterToAdmin::Failed { reason, .. } => return Err(refused(reason)),
            other => return Err(err(format!("unexpected answer: {other:?}"))),
        };
        loop {
            match self.next().await? {
                MasterToAdmin::Ready {
                    request_id: r,
                    cluster_id,
                    ..
                } if r == request_id => {
                    return Ok(Spawned {
                        instance_id,
                        agent,
                        cluster_id,
                    });
                }
                MasterToAdmin::Failed {
                    request_id: r,
                    reason,
                } if r == request_id => return Err(refused(reason)),
                _ => {}
            }
        }
    }

    /// Asks for an instance to stop (it drains, then its agent stops it).
    pub async fn stop(&mut self, instance_id: u64) -> Result<(), AdminError> {
        self.writer
            .send(&AdminToMaster::Stop { instance_id })
            .await
            .map_err(err)?;
        loop {
            match self.next().await? {
                MasterToAdmin::Stopping { instance_id: i } if i == instance_id => return Ok(()),
                MasterToAdmin::StopFailed {
                    instance_id: i,
                    reason,
                } if i == instance_id => return Err(refused(reason)),
                _ => {}
            }
        }
    }
}
