//! The handle the game holds: commands into the client task.

use std::sync::Arc;

use sustenet_proto::JoinTarget;
use sustenet_proto::datagram::MAX_UNRELIABLE_PAYLOAD;

use crate::task::Task;
use crate::{ClientConfig, ClientError, ClientEvent, Rtt};

/// What the handle asks of the client task.
#[derive(Debug)]
pub(crate) enum Command {
    Connect,
    Login { username: String, secret: Vec<u8> },
    ListClusters,
    Join(JoinTarget),
    JoinBest,
    Send { command: u16, payload: Vec<u8> },
    SendUnreliable { command: u16, payload: Vec<u8> },
    Leave,
    Disconnect,
}

/// The handle: sends commands to the client task. Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct Client {
    tx: flume::Sender<Command>,
    rtt: Arc<Rtt>,
    max_reliable: usize,
}

impl Client {
    /// Starts a client task on `runtime`; returns the handle and the events.
    /// The task ends when every handle is dropped.
    pub fn spawn(
        runtime: &tokio::runtime::Handle,
        config: ClientConfig,
    ) -> (Client, flume::Receiver<ClientEvent>) {
        let (tx, rx) = flume::bounded(config.command_queue.max(1));
        let (ev_tx, ev_rx) = flume::bounded(config.event_queue.max(1));
        let rtt = Arc::new(Rtt::default());
        let max_reliable = config
            .max_frame
            .saturating_sub(sustenet_proto::message::RELIABLE_OVERHEAD);
        let task = Task::new(config, ev_tx, rtt.clone());
        runtime.spawn(task.run(rx));
        (
            Client {
                tx,
                rtt,
                max_reliable,
            },
            ev_rx,
        )
    }

    fn push(&self, c: Command) -> Result<(), ClientError> {
        self.tx.try_send(c).map_err(|_| ClientError::Stopped)
    }

    /// Connects to the master (login does this too).
    pub fn connect(&self) -> Result<(), ClientError> {
        self.push(Command::Connect)
    }
    /// Logs in (connecting first if needed). The credentials are kept so the
    /// client can reconnect to the master on its own later.
    pub fn login(
        &self,
        username: impl Into<String>,
        secret: impl Into<Vec<u8>>,
    ) -> Result<(), ClientError> {
        self.push(Command::Login {
            username: username.into(),
            secret: secret.into(),
        })
    }
    /// Asks for the cluster list; answered with [`ClientEvent::Clusters`].
    pub fn list_clusters(&self) -> Result<(), ClientError> {
        self.push(Command::ListClusters)
    }
    /// Joins the best cluster by round trip and load: lists the clusters,
    /// pings each over UDP and picks by [`pick_best`]'s rule.
    pub fn join_best(&self) -> Result<(), ClientError> {
        self.push(Command::JoinBest)
    }
    /// Joins a cluster: `JoinTarget::Auto` lets the master pick.
    pub fn join(&self, target: JoinTarget) -> Result<(), ClientError> {
        self.push(Command::Join(target))
    }
    /// Sends a reliable, ordered message to the cluster.
    pub fn send(&self, command: u16, payload: Vec<u8>) -> Result<(), ClientError> {
        if payload.len() > self.max_reliable {
            return Err(ClientError::TooLarge {
                len: payload.len(),
                max: self.max_reliable,
            });
        }
        self.push(Command::Send { command, payload })
    }
    /// Sends an unreliable message (at most [`MAX_UNRELIABLE_PAYLOAD`] bytes).
    pub fn send_unreliable(&self, command: u16, payload: Vec<u8>) -> Result<(), ClientError> {
        if payload.len() > MAX_UNRELIABLE_PAYLOAD {
            return Err(ClientError::TooLarge {
                len: payload.len(),
                max: MAX_UNRELIABLE_PAYLOAD,
            });
        }
        self.push(Command::SendUnreliable { command, payload })
    }
    /// Leaves the cluster (the master login is kept).
    pub fn leave(&self) -> Result<(), ClientError> {
        self.push(Command::Leave)
    }
    /// Closes every connection.
    pub fn disconnect(&self) -> Result<(), ClientError> {
        self.push(Command::Disconnect)
    }
    /// Round-trip times measured by the heartbeats.
    pub fn rtt(&self) -> &Rtt {
        &self.rtt
    }
}
