//! `sustenet agent`: starts and stops instances (cluster processes made from
//! templates) on this machine when the master asks.
//!
//! The agent proves its agent key to the master (the cluster handshake with
//! its own key kind), registers its name, capacity, port range and templates,
//! then serves `Spawn` and `Stop` and reports starts, exits and its load.
//! When the link drops, every instance it runs is stopped (the master counts
//! them gone) and it reconnects with backoff. docs/instances.md.

mod process;
pub mod template;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sustenet_net::{FrameReader, NetError, SealedReader, SealedWriter, write_frame};
use sustenet_proto::handshake::{self, ClusterInitiator, KeyRole};
use sustenet_proto::instance::{AgentRegister, AgentToMaster, MasterToAgent, TemplateOffer};
use sustenet_proto::{DisconnectReason, Goodbye, Key, Message};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use process::Report;
use process::{Launch, Ports};

use crate::config::Limits;
use crate::error::ServerError;
use crate::instances_config::AgentSection;
use crate::time::now_ms;

type Reader = SealedReader<OwnedReadHalf>;
type Writer = SealedWriter<OwnedWriteHalf>;

/// First and longest wait before reconnecting to the master.
const RECONNECT_FIRST: Duration = Duration::from_millis(250);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// The agent's registered link to the master.
#[derive(Debug)]
pub struct AgentLink {
    reader: Reader,
    writer: Writer,
}

/// Why an agent could not register.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    /// The master's reason when it refused (`AuthFailed` for a wrong or unknown key).
    pub reason: Option<DisconnectReason>,
    /// What happened.
    pub message: String,
}

impl ConnectError {
    fn link(message: impl std::fmt::Display) -> Self {
        Self {
            reason: None,
            message: message.to_string(),
        }
    }

    fn refused(reason: DisconnectReason, message: String) -> Self {
        Self {
            reason: Some(reason),
            message: format!("the master refused this agent ({reason}): {message}"),
        }
    }
}

/// Connects to the master, proves the agent key and registers. A refusal
/// (unknown or wrong key, a name already connected) carries the master's reason.
pub async fn connect(
    section: &AgentSection,
    key: &Key,
    limits: &Limits,
) -> Result<AgentLink, ConnectError> {
    let stream = tokio::time::timeout(limits.timeout(), TcpStream::connect(&section.master))
        .await
        .map_err(|_| ConnectError::link("connecting to the master timed out"))?
        .map_err(|e| ConnectError::link(format!("cannot connect to {}: {e}", section.master)))?;
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.into_split();
    let mut frames = FrameReader::new(rd, limits.max_frame);
    let (init, hello) = ClusterInitiator::start_as(
        KeyRole::Agent,
        &section.key_name,
        key.clone(),
        &mut rand::rng(),
    )
    .map_err(ConnectError::link)?;
    write_frame(&mut wr, &hello, limits.max_frame)
        .await
        .map_err(ConnectError::link)?;
    let challenge = next_frame(&mut frames, limits).await?;
    let session = init
        .handle_challenge(&challenge)
        .map_err(|e| ConnectError::refused(e.reason(), e.to_string()))?;
    let mut writer = SealedWriter::new(wr, session.sealer, limits.max_frame)
        .with_write_timeout(limits.timeout());
    writer
        .send(&AgentToMaster::Register(registration(section)))
        .await
        .map_err(ConnectError::link)?;
    let answer = next_frame(&mut frames, limits).await?;
    if let Some(refusal) = handshake::check_refusal(&answer) {
        return Err(ConnectError::refused(refusal.reason(), refusal.to_string()));
    }
    let mut opener = session.opener;
    let plain = opener.open(&answer).map_err(ConnectError::link)?;
    match MasterToAgent::decode(&plain).map_err(ConnectError::link)? {
        MasterToAgent::Registered => Ok(AgentLink {
            reader: SealedReader::new(frames, opener, limits.max_auth_failures),
            writer,
        }),
        MasterToAgent::Disconnect(g) => Err(ConnectError::refused(g.reason, g.message)),
        other => Err(ConnectError::link(format!(
            "unexpected answer to the registration: {other:?}"
        ))),
    }
}

async fn next_frame(
    frames: &mut FrameReader<OwnedReadHalf>,
    limits: &Limits,
) -> Result<bytes::BytesMut, ConnectError> {
    frames
        .next_within(limits.handshake_timeout())
        .await
        .map_err(ConnectError::link)?
        .ok_or_else(|| ConnectError::link("the master closed the connection during the handshake"))
}

fn registration(section: &AgentSection) -> AgentRegister {
    AgentRegister {
        name: section.name.clone(),
        capacity: section.capacity,
        port_first: section.port_first,
        port_last: section.port_last,
        templates: section
            .templates
            .iter()
            .map(|(name, t)| TemplateOffer {
                name: name.clone(),
                max: t.max,
            })
            .collect(),
    }
}

/// The instances this agent runs: one supervising task each.
struct Instances {
    section: AgentSection,
    ports: Arc<Ports>,
    running: HashMap<u64, (String, watch::Sender<bool>, JoinHandle<()>)>,
    reports_tx: mpsc::Sender<Report>,
    reports: mpsc::Receiver<Report>,
}

impl Instances {
    fn new(section: AgentSection) -> Self {
        let (reports_tx, reports) = mpsc::channel(1024);
        Self {
            ports: Ports::new(section.port_first, section.port_last),
            section,
            running: HashMap::new(),
            reports_tx,
            reports,
        }
    }

    /// Starts an instance, or says at once why it cannot.
    fn spawn(&mut self, msg: SpawnOrder) -> Option<Report> {
        let refuse = |why: String| {
            Some(Report::Exited {
                instance_id: msg.instance_id,
                code: -1,
                restarting: false,
                stderr_tail: why,
            })
        };
        if self.running.contains_key(&msg.instance_id) {
            return None;
        }
        let Some(template) = self.section.templates.get(&msg.template).cloned() else {
            return refuse(format!("this agent has no template '{}'", msg.template));
        };
        let of_template = self
            .running
            .values()
            .filter(|r| r.0 == msg.template)
            .count();
        if self.running.len() >= self.section.capacity as usize
            || of_template >= template.max as usize
        {
            return refuse("the agent is at its limit".into());
        }
        let launch = Launch {
            instance_id: msg.instance_id,
            template,
            params: msg.params,
            key_name: msg.key_name,
            key: msg.key,
            master: self.section.master.clone(),
            public_address: self.section.public_address.clone(),
            run_dir: self.section.run_dir.clone(),
            stop_grace: Duration::from_millis(self.section.stop_grace_ms),
            stderr_lines: self.section.stderr_lines,
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(process::supervise(
            launch,
            self.ports.clone(),
            self.reports_tx.clone(),
            stop_rx,
        ));
        self.running
            .insert(msg.instance_id, (msg.template, stop_tx, task));
        None
    }

    fn stop(&mut self, instance_id: u64) {
        if let Some((_, stop, _)) = self.running.get(&instance_id) {
            let _ = stop.send(true);
        }
    }

    /// A report from a supervisor; a final exit forgets the instance.
    fn on_report(&mut self, r: &Report) {
        if let Report::Exited {
            instance_id,
            restarting: false,
            ..
        } = r
        {
            self.running.remove(instance_id);
        }
    }

    /// Stops every instance and waits for them (each within its grace).
    async fn stop_all(&mut self) {
        for (_, stop, _) in self.running.values() {
            let _ = stop.send(true);
        }
        for (id, (_, _, task)) in self.running.drain() {
            if let Err(e) = task.await {
                warn!(instance_id = id, "instance supervisor failed: {e}");
            }
        }
        while self.reports.try_recv().is_ok() {}
    }
}

struct SpawnOrder {
    instance_id: u64,
    template: String,
    params: sustenet_proto::instance::Params,
    key_name: String,
    key: Key,
}

/// Runs the agent until `shutdown` completes: registers, serves the
/// master, reconnects with backoff (stopping its instances while the link
/// is down); on shutdown stops every instance and says goodbye.
pub async fn run(
    section: AgentSection,
    key: Key,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    if let Err(e) = create_run_dir(&section.run_dir) {
        return Err(ServerError::RunFolder {
            path: section.run_dir.clone(),
            message: e,
        });
    }
    // `{key_path}` must name the key from a template's own working folder (`dir`) too.
    let mut section = section;
    section.run_dir =
        std::path::absolute(&section.run_dir).map_err(|e| ServerError::RunFolder {
            path: section.run_dir.clone(),
            message: format!("cannot make it absolute: {e}"),
        })?;
    let mut instances = Instances::new(section.clone());
    let mut backoff = RECONNECT_FIRST;
    tokio::pin!(shutdown);
    loop {
        let link = tokio::select! {
            l = connect(&section, &key, &limits) => l,
            _ = &mut shutdown => return Ok(()),
        };
        match link {
            Ok(link) => {
                info!(
                    agent = section.name,
                    master = section.master,
                    "agent registered"
                );
                backoff = RECONNECT_FIRST;
                let ended = serve(link, &mut instances, &limits, &mut shutdown).await;
                instances.stop_all().await;
                match ended {
                    Ok(true) => return Ok(()),
                    Ok(false) => warn!("the master closed the link; reconnecting"),
                    Err(e) => warn!("the link to the master failed: {e}; reconnecting"),
                }
            }
            Err(e) => warn!("cannot register with the master: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = &mut shutdown => return Ok(()),
        }
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

fn create_run_dir(dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create it: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot set its mode to 0700: {e}"))?;
    }
    Ok(())
}

/// Serves one registered link; `Ok(true)` when the agent is shutting down.
async fn serve(
    link: AgentLink,
    instances: &mut Instances,
    limits: &Limits,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<bool, NetError> {
    let AgentLink {
        mut reader,
        mut writer,
    } = link;
    let mut heartbeat = tokio::time::interval(limits.heartbeat());
    let mut last_seen = Instant::now();
    loop {
        tokio::select! {
            msg = reader.recv::<MasterToAgent>() => {
                let Some(msg) = msg? else { return Ok(false) };
                last_seen = Instant::now();
                match msg {
                    MasterToAgent::Ping(v) => writer.send(&AgentToMaster::Pong(v)).await?,
                    MasterToAgent::Pong(_) | MasterToAgent::Registered => {}
                    MasterToAgent::Disconnect(g) => {
                        warn!("the master said goodbye: {} {}", g.reason, g.message);
                        return Ok(false);
                    }
                    MasterToAgent::Spawn { instance_id, template, params, key_name, key } => {
                        info!(instance_id, template, "spawn requested");
                        let order = SpawnOrder { instance_id, template, params, key_name, key: Key::from_bytes(key) };
                        if let Some(r) = instances.spawn(order) {
                            writer.send(&to_message(r)).await?;
                        }
                    }
                    MasterToAgent::Stop { instance_id } => {
                        info!(instance_id, "stop requested");
                        instances.stop(instance_id);
                    }
                }
            }
            Some(r) = instances.reports.recv() => {
                instances.on_report(&r);
                writer.send(&to_message(r)).await?;
            }
            _ = heartbeat.tick() => {
                if last_seen.elapsed() > limits.timeout() {
                    warn!("the master is silent; reconnecting");
                    return Ok(false);
                }
                let running = u32::try_from(instances.running.len()).unwrap_or(u32::MAX);
                writer.queue(&AgentToMaster::Load { running })?;
                writer.send(&AgentToMaster::Ping(now_ms())).await?;
            }
            _ = shutdown.as_mut() => {
                instances.stop_all().await;
                let _ = writer.send(&AgentToMaster::Disconnect(Goodbye::new(DisconnectReason::ServerShutdown))).await;
                return Ok(true);
            }
        }
    }
}

fn to_message(r: Report) -> AgentToMaster {
    match r {
        Report::Started { instance_id, port } => AgentToMaster::Started { instance_id, port },
        Report::Exited {
            instance_id,
            code,
            restarting,
            stderr_tail,
        } => AgentToMaster::Exited {
            instance_id,
            code,
            restarting,
            stderr_tail,
        },
    }
}
