//! `SustenetCluster` as an Agones GameServer: with the crate's cargo feature
//! `agones` and [member agones_enabled] on, the node runs its cluster through
//! `sustenet_server::agones` as `sustenet cluster --agones` does (Ready after
//! registration, health pings, player tracking, Shutdown when it stops, the
//! reserved watch), with one difference: the health pings also need Godot's
//! main loop to run (the node beats every frame), since the game's scripts
//! run there and not on the cluster's core.

use std::time::Duration;

use sustenet_server::cluster::{self, ClusterCommands, ClusterConfig};
use tokio::sync::oneshot;

use super::forward::Forward;

/// How the node's cluster talks to the Agones SDK sidecar (read by the
/// `agones` build only: without it, `start()` refuses `agones_enabled`).
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "agones"), allow(dead_code))]
pub(super) struct AgonesRun {
    /// The sidecar's gRPC port; `None`: `AGONES_SDK_GRPC_PORT`, else 9357.
    pub(super) port: Option<u16>,
    /// How long Godot's main loop may not run before the health pings stop.
    pub(super) stuck_after: Duration,
    #[cfg(feature = "agones")]
    pub(super) beat: sustenet_server::agones::GameLoopBeat,
}

impl AgonesRun {
    /// Godot's main loop runs now (called every frame).
    pub(super) fn beat(&self) {
        #[cfg(feature = "agones")]
        self.beat.beat();
    }
}

/// Whether this build of the addon has the Agones integration.
pub(super) const BUILT_WITH_AGONES: bool = cfg!(feature = "agones");

/// Runs the cluster until `stop` fires (or its sender is dropped), as an
/// Agones GameServer when `agones` is set.
pub(super) async fn run(
    (tcp, udp): (tokio::net::TcpListener, tokio::net::UdpSocket),
    config: ClusterConfig,
    key: sustenet_proto::Key,
    plugin: Forward,
    commands: ClusterCommands,
    stop: oneshot::Receiver<()>,
    agones: Option<AgonesRun>,
) -> Result<(), String> {
    match agones {
        None => cluster::run_with_handle(tcp, udp, config, key, plugin, commands, async {
            let _ = stop.await;
        })
        .await
        .map_err(|e| e.to_string()),
        #[cfg(feature = "agones")]
        Some(a) => run_agones((tcp, udp), config, key, plugin, commands, stop, a).await,
        #[cfg(not(feature = "agones"))]
        Some(_) => Err("agones_enabled needs the addon built with the `agones` feature".into()),
    }
}

/// Connects to the sidecar (given up when `stop` fires first), takes the
/// GameServer's address and port, runs the cluster, then sends `Shutdown()`.
#[cfg(feature = "agones")]
async fn run_agones(
    (tcp, udp): (tokio::net::TcpListener, tokio::net::UdpSocket),
    mut config: ClusterConfig,
    key: sustenet_proto::Key,
    plugin: Forward,
    commands: ClusterCommands,
    mut stop: oneshot::Receiver<()>,
    a: AgonesRun,
) -> Result<(), String> {
    use sustenet_server::agones::Agones;
    let sdk = tokio::select! {
        sdk = Agones::connect(a.port) => sdk.map_err(|e| e.to_string())?,
        _ = &mut stop => return Ok(()),
    };
    sdk.configure(&mut config);
    let plugin = sdk.wrap_game_loop(plugin, &config, a.beat, a.stuck_after);
    let r = cluster::run_with_handle(tcp, udp, config, key, plugin, commands, async {
        let _ = stop.await;
    })
    .await;
    sdk.shutdown().await;
    r.map_err(|e| e.to_string())
}
