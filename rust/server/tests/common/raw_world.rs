//! A master and one cluster running EchoChat for raw players (tokens
//! crafted by hand, datagrams sealed by hand), with the cluster's handle.

use sustenet_proto::Key;
use sustenet_server::cluster::ClusterConfig;
use sustenet_server::{ClusterHandle, EchoChat, Limits};

use super::*;

/// The master, the cluster, its key (to craft tokens) and its handle (to
/// place players, stream states, broadcast).
pub struct RawWorld {
    pub master: RunningMaster,
    pub key: Key,
    pub cluster: RunningCluster,
    pub handle: ClusterHandle,
    /// The cluster's metrics.
    pub metrics: sustenet_server::metrics::ClusterMetrics,
}

impl RawWorld {
    /// Starts both; `tune` changes the cluster's configuration first. Raw
    /// players answer TCP pings only now and then, so the cluster waits
    /// 20 s for them.
    pub async fn start(tune: impl FnOnce(&mut ClusterConfig)) -> RawWorld {
        let keys = keys(&["c"]);
        let key = keys["c"].clone();
        let master = start_master(&keys).await;
        let mut config = cluster_config(master.addr, "c", "c", 0);
        config.limits = Limits {
            timeout_ms: 20_000,
            ..fast_limits()
        };
        tune(&mut config);
        // Bound for the configuration's UDP receivers (one: a plain socket).
        let bind =
            sustenet_server::bind::bind_cluster_for("127.0.0.1", 0, 0, config.receive_threads);
        let (tcp, udp) = bind.await.unwrap();
        let metrics = config.metrics.clone();
        let (cluster, handle) = spawn_cluster(tcp, udp, config, key.clone(), EchoChat, 4096);
        wait_for_clusters(&master, 1).await;
        RawWorld {
            master,
            key,
            cluster,
            handle,
            metrics,
        }
    }

    /// Stops the cluster (its run must end cleanly), then the master.
    pub async fn stop(self) {
        self.cluster.stop_cleanly().await;
        self.master.stop().await;
    }

    /// A player joined by hand with a crafted token.
    pub async fn raw_player(&self, client_id: u64) -> RawPlayer {
        let (t, s) = craft_token(&self.key, self.cluster.id, client_id, now_ms() + 30_000);
        RawPlayer::connect(self.cluster.tcp, &t, &s).await.unwrap()
    }
}
