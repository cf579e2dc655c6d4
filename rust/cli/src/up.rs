//! `sustenet up`: a master and clusters in one process with dev keys
//! generated on first run. Zero configuration, for development.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use serde::{Deserialize, Serialize};
use sustenet_proto::DEFAULT_MASTER_PORT;
use sustenet_server::cluster::{self, ClusterConfig};
use sustenet_server::config::default_port;
use sustenet_server::fragments::GridConfig;
use sustenet_server::keys;
use sustenet_server::master::{self, MasterConfig, MasterKeys};
use sustenet_server::metrics::MasterMetrics;
use sustenet_server::metrics::admin::Admin;
use sustenet_server::metrics::dashboard::Dashboard;
use sustenet_server::prometheus_client::registry::Registry;
use sustenet_server::{AllowAll, World};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::servers::{bind_cluster, shutdown_signal};

/// Where `up` keeps its dev keys and the file `probe` reads.
pub const DEV_DIR: &str = ".sustenet";
/// The file in the dev folder that tells clients where the master is.
pub const CLIENT_FILE: &str = "client.toml";

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Folder for dev keys and client.toml (created on first run).
    #[arg(long, default_value = DEV_DIR)]
    pub dir: PathBuf,
    /// How many clusters to start.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub clusters: u16,
    /// The master's port (0 = 6256); cluster N listens on port + N (TCP and UDP).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Most players per cluster (0 = no limit).
    #[arg(long, default_value_t = 0)]
    pub max_connections: u32,
    /// Edge of a fragment (grid cell), in world units.
    #[arg(long, default_value_t = 40.0)]
    pub cell_size: f32,
    /// How far players see: position updates of players within it reach them.
    #[arg(long, default_value_t = 40.0)]
    pub interest_radius: f32,
    /// Address of `/metrics` and the dashboard (default: 127.0.0.1:9100, or
    /// a free port when that one is taken).
    #[arg(long)]
    pub metrics_bind: Option<SocketAddr>,
    /// Token of the metrics and dashboard endpoint; made up and printed in
    /// the URLs when the address is beyond loopback and none is given.
    #[arg(long, env = "SUSTENET_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
}

/// The default address of `up`'s metrics and dashboard.
pub const DEFAULT_METRICS_BIND: &str = "127.0.0.1:9100";

/// Binds `up`'s admin endpoint: the address given, or the default one, or
/// (when the default is taken) a free port on loopback.
async fn bind_admin(given: Option<SocketAddr>) -> anyhow::Result<TcpListener> {
    if let Some(addr) = given {
        return crate::admin::bind(addr).await;
    }
    match TcpListener::bind(DEFAULT_METRICS_BIND).await {
        Ok(l) => Ok(l),
        Err(_) => crate::admin::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await,
    }
}

/// What `up` tells clients: written to `<dir>/client.toml`, read by `probe`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// The master's `host:port`.
    pub master: String,
    /// The master's public key, base64.
    pub public_key: String,
}

impl ClientFile {
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(CLIENT_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (start `sustenet up` in this folder first, or pass --master and --key)",
                path.display()
            )
        })?;
        toml::from_str(&text)
            .with_context(|| format!("{} is not a valid client file", path.display()))
    }
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let key_dir = args.dir.join("keys");
    let keypair = keys::ensure_master_keypair(&key_dir)?;
    let mut names = Vec::new();
    for i in 1..=args.clusters {
        let name = format!("cluster-{i}");
        keys::ensure_cluster_key(&key_dir, &name)?;
        names.push(name);
    }
    let cluster_keys = keys::load_key_dir(&key_dir)?;
    let master_port = default_port(args.port, DEFAULT_MASTER_PORT);
    let master_addr = format!("{}:{master_port}", args.bind);
    let listener = TcpListener::bind(&master_addr).await.with_context(|| {
        format!("cannot listen on {master_addr} (is another server using it? pass --port)")
    })?;
    let public = keypair.public();
    let client_host = if args.bind == "0.0.0.0" {
        "127.0.0.1"
    } else {
        args.bind.as_str()
    };
    let file = ClientFile {
        master: format!("{client_host}:{master_port}"),
        public_key: public.to_base64(),
    };
    let client_path = args.dir.join(CLIENT_FILE);
    std::fs::write(&client_path, toml::to_string(&file)?)
        .with_context(|| format!("cannot write {}", client_path.display()))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await.map(|_| ());
    };
    let mut tasks = tokio::task::JoinSet::new();
    let admin_listener = bind_admin(args.metrics_bind).await?;
    let admin_addr = admin_listener.local_addr()?;
    let token = match &args.metrics_token {
        Some(t) => t.clone(),
        None if !admin_addr.ip().is_loopback() => crate::admin::random_token(),
        None => String::new(),
    };
    let master_metrics = MasterMetrics::default();
    let mut registry = Registry::default();
    master_metrics.register(&mut registry);
    let mut local_clusters = Vec::new();
    let mkeys = MasterKeys::new(keypair, cluster_keys.clone());
    tasks.spawn(master::run(
        listener,
        MasterConfig {
            name: "Sustenet Master (dev)".into(),
            metrics: master_metrics.clone(),
            ..MasterConfig::default()
        },
        mkeys,
        Arc::new(AllowAll),
        stopped(stop_rx.clone()),
    ));

    println!("Sustenet is up.");
    println!("  master       {}  (tcp)", file.master);
    println!("  public key   {}", public.to_base64());
    for (i, name) in names.iter().enumerate() {
        let port = master_port
            .checked_add(u16::try_from(i + 1).unwrap_or(u16::MAX))
            .context("cluster ports run past 65535: pass a lower --port")?;
        let (tcp, udp) = bind_cluster(&args.bind, port, port).await?;
        let key = cluster_keys
            .get(name)
            .cloned()
            .with_context(|| format!("key {name} is missing from {}", key_dir.display()))?;
        let cfg = ClusterConfig {
            name: name.clone(),
            public_address: client_host.to_owned(),
            max_connections: args.max_connections,
            master_addr: file.master.clone(),
            key_name: name.clone(),
            grid: GridConfig {
                cell_size: args.cell_size,
                default_interest_radius: args.interest_radius,
                ..GridConfig::default()
            },
            ..ClusterConfig::default()
        };
        let labelled = registry.sub_registry_with_label(("cluster".into(), name.clone().into()));
        cfg.metrics.register(labelled);
        local_clusters.push((name.clone(), cfg.metrics.clone()));
        tasks.spawn(cluster::run(
            tcp,
            udp,
            cfg,
            key,
            World,
            stopped(stop_rx.clone()),
        ));
        println!("  {name:<12} {client_host}:{port}  (tcp + udp)");
    }
    let dashboard = Dashboard::new(master_metrics, local_clusters);
    println!(
        "  metrics      {}",
        crate::admin::url(admin_addr, "/metrics", &token)
    );
    println!(
        "  dashboard    {}",
        crate::admin::url(admin_addr, "/", &token)
    );
    tasks.spawn(async move {
        let admin = Admin::new(registry, Some(token), Some(dashboard));
        let stopped = stopped(stop_rx.clone());
        sustenet_server::metrics::admin::serve(admin_listener, Arc::new(admin), stopped).await;
        Ok(())
    });
    println!(
        "Clients need the master address and public key; both are in {}.",
        client_path.display()
    );
    println!("Try it from this folder: sustenet probe      Stop: Ctrl-C");

    tokio::select! {
        _ = shutdown_signal() => {}
        Some(r) = tasks.join_next() => {
            // A server stopped on its own: report why and bring the rest down.
            match r {
                Ok(Err(e)) => tracing::error!("a server stopped: {e}"),
                Err(e) => tracing::error!("a server task failed: {e}"),
                Ok(Ok(())) => {}
            }
        }
    }
    let _ = stop_tx.send(true);
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            tracing::warn!("while stopping: {e}");
        }
    }
    println!("Sustenet stopped.");
    Ok(())
}
