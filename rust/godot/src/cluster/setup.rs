//! Starting a cluster from the node's inspector properties: its settings,
//! its key, its sockets, and its task.

use std::sync::Arc;
use std::time::Duration;

use godot::global::Error as GdError;
use rand::RngCore;
use sustenet_proto::{DEFAULT_CLUSTER_PORT, DEFAULT_MASTER_PORT};
use sustenet_server::cluster::{self, ClusterConfig};
use sustenet_server::config::MAX_STATE_WINDOW_MS;
use sustenet_server::fragments::{Dims, FragmentSettings, GridConfig};
use sustenet_server::keys;
use sustenet_server::web::{TlsIdentity, WebSocketConfig};
use tokio::sync::oneshot;

use super::agones::{AgonesRun, BUILT_WITH_AGONES};
use super::forward::{Forward, InstanceIds, NodeEvent};
use super::{COMMAND_QUEUE, Running, SustenetCluster, secs_to_duration};
use crate::pending::{PendingQuota, QuotaLimits};
use crate::{Error, globalize, port_from_gd};

impl SustenetCluster {
    /// The cluster's settings from the inspector properties, and the TCP and
    /// UDP ports to bind.
    pub(super) fn cluster_config(&self) -> Result<(ClusterConfig, u16, u16), Error> {
        let not_a_port = |name: &str, v: i64| {
            Error::invalid(format!("SustenetCluster: {name} {v} is not a port"))
        };
        let port = port_from_gd(self.port, DEFAULT_CLUSTER_PORT)
            .ok_or_else(|| not_a_port("port", self.port))?;
        let public_port = match self.public_port {
            0 => None,
            p => Some(u16::try_from(p).map_err(|_| not_a_port("public_port", p))?),
        };
        let udp_port = port_from_gd(self.udp_port, port)
            .ok_or_else(|| not_a_port("udp_port", self.udp_port))?;
        let master_port = port_from_gd(self.master_port, DEFAULT_MASTER_PORT)
            .ok_or_else(|| not_a_port("master_port", self.master_port))?;
        let mut config = ClusterConfig {
            name: self.server_name.to_string(),
            public_address: self.public_address.to_string(),
            public_tcp_port: public_port,
            max_connections: u32::try_from(self.max_connections.max(0)).unwrap_or(u32::MAX),
            master_addr: format!("{}:{master_port}", self.master_address),
            key_name: self.key_name.to_string(),
            cluster_id: Some(rand::rng().next_u64() >> 1),
            resume_grace: secs_to_duration(self.reconnect_grace_sec, "reconnect_grace_sec"),
            grid: self.grid_config(),
            state_window: self.state_window()?,
            ..ClusterConfig::default()
        };
        config.limits.send_queue = usize::try_from(self.send_queue.max(1)).unwrap_or(usize::MAX);
        config.websocket = self.websocket_config()?;
        config
            .grid
            .validate()
            .map_err(|e| Error::invalid(format!("SustenetCluster: fragment settings: {e}")))?;
        Ok((config, port, udp_port))
    }

    /// The state window `state_window_ms` asks for: 0 to
    /// [`MAX_STATE_WINDOW_MS`], as `[cluster] state_window_ms` in a server's
    /// configuration file.
    fn state_window(&self) -> Result<Duration, Error> {
        u64::try_from(self.state_window_ms)
            .ok()
            .filter(|ms| *ms <= MAX_STATE_WINDOW_MS)
            .map(Duration::from_millis)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "SustenetCluster: state_window_ms {} must be between 0 and {MAX_STATE_WINDOW_MS} \
                     (a state older than that is stale)",
                    self.state_window_ms
                ))
            })
    }

    /// The WebSocket listener `websocket_port` asks for (none for 0).
    fn websocket_config(&self) -> Result<Option<WebSocketConfig>, Error> {
        if self.websocket_port == 0 {
            return Ok(None);
        }
        let port = u16::try_from(self.websocket_port).map_err(|_| {
            Error::invalid(format!(
                "SustenetCluster: websocket_port {} is not a port",
                self.websocket_port
            ))
        })?;
        let bind: std::net::IpAddr = self.bind_address.to_string().parse().map_err(|_| {
            Error::invalid(format!(
                "SustenetCluster: bind_address '{}' must be an IP address to listen for WebSockets",
                self.bind_address
            ))
        })?;
        let mut ws = WebSocketConfig::new((bind, port).into());
        let (cert, key) = (
            self.websocket_cert_file.to_string(),
            self.websocket_key_file.to_string(),
        );
        ws.tls = match (cert.is_empty(), key.is_empty()) {
            (true, true) => None,
            (false, false) => Some(
                TlsIdentity::from_pem_files(globalize(&cert).as_ref(), globalize(&key).as_ref())
                    .map_err(|e| Error::invalid(format!("SustenetCluster: {e}")))?,
            ),
            _ => {
                return Err(Error::invalid(
                    "SustenetCluster: websocket_cert_file and websocket_key_file go together",
                ));
            }
        };
        ws.allowed_origins = self
            .websocket_allowed_origins
            .as_slice()
            .iter()
            .map(|o| o.to_string())
            .collect();
        ws.check()
            .map_err(|e| Error::invalid(format!("SustenetCluster: {e}")))?;
        Ok(Some(ws))
    }

    /// The cluster key `key_name` (from `key_path`, or `keys/<key_name>`).
    pub(super) fn load_key(&self, key_name: &str) -> Result<sustenet_proto::Key, Error> {
        let path = if self.key_path.is_empty() {
            keys::cluster_key_path(std::path::Path::new("keys"), key_name)
        } else {
            globalize(&self.key_path.to_string()).into()
        };
        keys::load_key(&path).map_err(|e| {
            Error::new(
                GdError::ERR_FILE_CANT_OPEN,
                format!(
                    "SustenetCluster: {e}; create it with `sustenet keygen --name {key_name}` and give the master the same file"
                ),
            )
        })
    }

    /// Runs the cluster on the bound sockets in the runtime; its events come
    /// to this node through the returned [`Running`].
    pub(super) fn spawn_cluster(
        &self,
        handle: &tokio::runtime::Handle,
        (tcp, udp): (tokio::net::TcpListener, tokio::net::UdpSocket),
        config: ClusterConfig,
        key: sustenet_proto::Key,
        agones: Option<AgonesRun>,
    ) -> Result<Running, Error> {
        let (Ok(tcp_addr), Ok(udp_addr)) = (tcp.local_addr(), udp.local_addr()) else {
            return Err(Error::new(
                GdError::ERR_CANT_CREATE,
                "SustenetCluster: cannot read the bound ports",
            ));
        };
        let cluster_id = config.cluster_id.unwrap_or(0);
        let quota = Arc::new(PendingQuota::new(self.quota_limits()));
        let (tx, rx) = flume::unbounded();
        let (cmd_handle, commands) = cluster::command_channel(COMMAND_QUEUE);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (finished_tx, finished) = oneshot::channel::<()>();
        let done = tx.clone();
        let events_tx = tx.clone();
        let instances = InstanceIds::default();
        let plugin_instances = instances.clone();
        let (plugin_quota, dropped) = (quota.clone(), self.dropped_packets.clone());
        let with_agones = agones.clone();
        let task = handle.spawn(async move {
            let plugin = Forward {
                tx,
                instances: plugin_instances,
                quota: plugin_quota,
                dropped,
            };
            let sockets = (tcp, udp);
            let r =
                super::agones::run(sockets, config, key, plugin, commands, stop_rx, with_agones);
            let r = r.await;
            // The run has let go of its sockets: a new start may bind them.
            drop(finished_tx);
            let _ = done.try_send(NodeEvent::Stopped(r.err()));
        });
        if agones.is_some() {
            // Its Shutdown() must reach the sidecar when the game quits.
            crate::runtime::finish_before_shutdown(task);
        }
        Ok(Running {
            handle: cmd_handle,
            events: rx,
            events_tx,
            instances,
            quota,
            stop: Some(stop_tx),
            finished,
            tcp_port: tcp_addr.port(),
            udp_port: udp_addr.port(),
            cluster_id,
            metrics_port: 0,
            _metrics_stop: None,
            agones,
        })
    }

    /// How the cluster talks to Agones ([member agones_enabled]), if at all.
    pub(super) fn agones_run(&self) -> Result<Option<AgonesRun>, Error> {
        if !self.agones_enabled {
            return Ok(None);
        }
        if !BUILT_WITH_AGONES {
            return Err(Error::new(
                GdError::ERR_UNAVAILABLE,
                "SustenetCluster: agones_enabled needs the addon built with the `agones` feature \
                 (cargo build -p sustenet-godot --features agones; docs/godot.md)",
            ));
        }
        let port = match self.agones_sdk_port {
            0 => None,
            p => Some(u16::try_from(p).map_err(|_| {
                Error::invalid(format!(
                    "SustenetCluster: agones_sdk_port {p} is not a port"
                ))
            })?),
        };
        if !(self.agones_stuck_after_sec > 0.0 && self.agones_stuck_after_sec.is_finite()) {
            return Err(Error::invalid(format!(
                "SustenetCluster: agones_stuck_after_sec {} must be above 0",
                self.agones_stuck_after_sec
            )));
        }
        Ok(Some(AgonesRun {
            port,
            stuck_after: secs_to_duration(self.agones_stuck_after_sec, "agones_stuck_after_sec"),
            #[cfg(feature = "agones")]
            beat: Default::default(),
        }))
    }

    /// Serves the cluster's metrics at `metrics_bind` when it is set: the
    /// port it listens on (0: no endpoint), and the sender whose drop stops it.
    pub(super) fn serve_metrics(
        &self,
        handle: &tokio::runtime::Handle,
    ) -> Result<(u16, Option<oneshot::Sender<()>>), Error> {
        if self.metrics_bind.is_empty() {
            return Ok((0, None));
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        let addr = crate::cluster_stats::serve_metrics(
            handle,
            &self.metrics_bind.to_string(),
            &self.metrics_token.to_string(),
            &self.server_name.to_string(),
            &self.metrics,
            stop_rx,
        )
        .map_err(|e| Error::new(GdError::ERR_CANT_CREATE, format!("SustenetCluster: {e}")))?;
        Ok((addr.port(), Some(stop_tx)))
    }

    /// The pending limits the inspector properties describe (at least 1 packet and 1 KiB).
    pub(super) fn quota_limits(&self) -> QuotaLimits {
        let size = |v: i64, min: i64| usize::try_from(v.max(min)).unwrap_or(usize::MAX);
        QuotaLimits {
            player_packets: size(self.max_pending_packets_per_player, 1),
            player_bytes: size(self.max_pending_bytes_per_player, 1024),
            total_bytes: size(self.max_pending_bytes, 1024),
        }
    }

    /// The fragment grid the inspector properties describe.
    pub(super) fn grid_config(&self) -> GridConfig {
        GridConfig {
            cell_size: self.fragment_size as f32,
            dims: if self.fragment_3d {
                Dims::Three
            } else {
                Dims::Two
            },
            default_settings: FragmentSettings {
                player_cap: u32::try_from(self.fragment_player_cap.max(0)).unwrap_or(u32::MAX),
                update_hz: self.fragment_update_hz as f32,
            },
            default_interest_radius: self.interest_radius as f32,
        }
    }
}
