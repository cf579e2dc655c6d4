//! `sustenet master` and `sustenet cluster`: one server from Config.toml.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sustenet_server::bind::{self, bind_tcp};
use sustenet_server::cluster::{self, ClusterConfig};
use sustenet_server::config::{AuthMode, ConfigError, ConfigFile};
use sustenet_server::keys;
use sustenet_server::master::{self, MasterConfig, MasterKeys};
use sustenet_server::metrics::MasterMetrics;
use sustenet_server::metrics::admin::Admin;
use sustenet_server::metrics::dashboard::Dashboard;
use sustenet_server::prometheus_client::registry::Registry;
use sustenet_server::{AllowAll, AuthHook, EchoChat, Plugin, Portal, SharedSecret, World};
use tokio::net::{TcpListener, UdpSocket};

use crate::ServerArgs;

/// Resolves when the process gets Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}

/// The file (or defaults), with environment variables and flags applied.
pub fn load_config(args: &ServerArgs) -> anyhow::Result<ConfigFile> {
    let mut cfg = if args.no_config && !args.config.exists() {
        ConfigFile::default()
    } else {
        ConfigFile::load(&args.config).map_err(|e| match e {
            ConfigError::Read { path, error } if error.kind() == std::io::ErrorKind::NotFound => anyhow::anyhow!(
                "{} not found: write one (see the README), pass --config, or pass --no-config for defaults",
                path.display()
            ),
            other => anyhow::Error::new(other),
        })?
    };
    if let Some(v) = &args.name {
        cfg.all.server_name = v.clone();
    }
    if let Some(v) = args.port {
        cfg.all.port = v;
    }
    if let Some(v) = &args.bind {
        cfg.all.bind = v.clone();
    }
    if let Some(v) = args.max_connections {
        cfg.all.max_connections = v;
    }
    if let Some(v) = &args.key_dir {
        cfg.all.key_dir = v.clone();
    }
    if let Some(v) = &args.key_name {
        cfg.cluster.key_name = v.clone();
    }
    if let Some(v) = &args.master_ip {
        cfg.cluster.master_ip = v.clone();
    }
    if let Some(v) = args.master_port {
        cfg.cluster.master_port = v;
    }
    if let Some(v) = &args.public_address {
        cfg.cluster.public_address = v.clone();
    }
    if let Some(v) = args.udp_port {
        cfg.cluster.udp_port = v;
    }
    if let Some(v) = &args.master_key_file {
        cfg.master.key_file = v.clone();
    }
    if let Some(v) = &args.metrics_bind {
        cfg.metrics.bind = v.clone();
    }
    if args.agones {
        cfg.agones.enabled = true;
    }
    if args.agones_instance {
        cfg.agones.enabled = true;
        cfg.agones.instance = true;
    }
    if let Some(v) = &args.metrics_token {
        cfg.metrics.token = v.clone();
    }
    cfg.validate(Path::new("<file, environment and flags>"))?;
    if let Some(k) = cfg.cluster.domain_pub_key.as_deref() {
        if cfg.master_public_key().is_none() {
            tracing::warn!(
                "[cluster] domain_pub_key '{k}' is not a base64 public key; it is ignored (URLs are not fetched)"
            );
        }
    }
    Ok(cfg)
}

/// Builds the master's settings from the file.
pub fn master_config(cfg: &ConfigFile) -> MasterConfig {
    MasterConfig {
        name: cfg.all.server_name.clone(),
        max_connections: cfg.all.max_connections,
        token_ttl: Duration::from_secs(cfg.master.token_ttl_secs),
        ticket_hold: Duration::from_millis(cfg.master.ticket_hold_ms),
        max_tickets_per_connection: cfg.master.max_tickets_per_connection,
        max_tickets_per_user: cfg.master.max_tickets_per_user,
        max_tickets_per_address: cfg.master.max_tickets_per_address,
        cluster_timeout: Duration::from_secs(cfg.master.cluster_timeout_secs),
        max_login_attempts: cfg.master.max_login_attempts.max(1),
        max_clusters_per_key: cfg.master.max_clusters_per_key.max(1),
        limits: cfg.limits,
        instances: cfg.instances.settings(),
        agones: cfg.instances.agones.clone(),
        websocket: None,
        metrics: MasterMetrics::default(),
    }
}

pub async fn master(args: ServerArgs) -> anyhow::Result<()> {
    let cfg = load_config(&args)?;
    let keypair = keys::load_master_keypair(&cfg.master.key_file)?;
    let cluster_keys = keys::load_key_dir(&cfg.all.key_dir)?;
    if cluster_keys.is_empty() {
        tracing::warn!(
            dir = %cfg.all.key_dir.display(),
            "no cluster keys found yet: a cluster registers once its key is in the key folder (create one with `sustenet keygen --name <key_name>`; no restart needed)"
        );
    }
    let auth: Arc<dyn AuthHook> = match cfg.master.auth {
        AuthMode::None => Arc::new(AllowAll),
        AuthMode::SharedSecret => Arc::new(SharedSecret::new(cfg.master.shared_secret.clone())),
    };
    let listener = bind_tcp(&cfg.all.bind, cfg.master_port()).await?;
    println!("master public key: {}", keypair.public().to_base64());
    let mut config = master_config(&cfg);
    config.websocket = cfg.websocket_config(cfg.master.websocket_port)?;
    if let Some(addr) = cfg.metrics.address(Path::new("<config>"))? {
        let mut registry = Registry::default();
        config.metrics.register(&mut registry);
        let dashboard = cfg
            .metrics
            .dashboard
            .then(|| Dashboard::new(config.metrics.clone(), Vec::new()));
        let listener = crate::admin::bind(addr).await?;
        let token = &cfg.metrics.token;
        println!("metrics: {}", crate::admin::url(addr, "/metrics", token));
        if dashboard.is_some() {
            println!("dashboard: {}", crate::admin::url(addr, "/", token));
        }
        crate::admin::spawn(
            listener,
            Admin::new(registry, Some(token.clone()), dashboard),
        );
    }
    master::run(
        listener,
        config,
        MasterKeys {
            keypair,
            cluster_keys,
            agent_keys: keys::load_optional_key_dir(&cfg.all.key_dir.join(keys::AGENT_KEY_DIR))?,
            admin_keys: keys::load_optional_key_dir(&cfg.all.key_dir.join(keys::ADMIN_KEY_DIR))?,
            cluster_key_dir: Some(cfg.all.key_dir.clone()),
            agent_key_dir: Some(cfg.all.key_dir.join(keys::AGENT_KEY_DIR)),
            admin_key_dir: Some(cfg.all.key_dir.join(keys::ADMIN_KEY_DIR)),
        },
        auth,
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

/// Builds a cluster's settings from the file.
pub fn cluster_config(cfg: &ConfigFile) -> ClusterConfig {
    ClusterConfig {
        name: cfg.all.server_name.clone(),
        public_address: cfg.cluster.public_address.clone(),
        max_connections: cfg.all.max_connections,
        master_addr: cfg.master_address(),
        key_name: cfg.cluster.key_name.clone(),
        public_tcp_port: (cfg.cluster.public_port != 0).then_some(cfg.cluster.public_port),
        public_udp_port: (cfg.cluster.public_udp_port != 0).then_some(cfg.cluster.public_udp_port),
        udp_silence: Duration::from_millis(cfg.cluster.udp_silence_ms),
        state_window: Duration::from_millis(cfg.cluster.state_window_ms),
        send_queue_bytes: cfg.cluster.send_queue_bytes,
        event_queue_bytes: cfg.cluster.event_queue_bytes,
        ping_rate_per_source: cfg.cluster.ping_rate_per_source,
        resume_grace: Duration::from_millis(cfg.cluster.resume_grace_ms),
        resume_buffer: cfg.cluster.resume_buffer,
        seal_threads: cfg
            .cluster
            .seal_threads
            .unwrap_or_else(ClusterConfig::default_seal_threads),
        seal_queue_bytes: cfg.cluster.seal_queue_bytes,
        receive_threads: cfg
            .cluster
            .receive_threads
            .unwrap_or_else(ClusterConfig::default_receive_threads),
        limits: cfg.limits,
        ..ClusterConfig::default()
    }
}

pub async fn cluster(args: ServerArgs) -> anyhow::Result<()> {
    let cfg = load_config(&args)?;
    let receivers = cfg
        .cluster
        .receive_threads
        .map_or_else(ClusterConfig::receive_threads_from_env, Ok)?;
    ClusterConfig::check_receive_threads(receivers)?;
    if cfg.cluster.seal_threads.is_none() {
        ClusterConfig::check_seal_threads(ClusterConfig::seal_threads_from_env()?)?;
    }
    let (key, stdin_closed) = if cfg.agones.enabled && cfg.agones.instance {
        // An instance on Agones gets its key from its GameServer (run_agones).
        (None, None)
    } else if args.key_stdin {
        let (key, eof) = crate::instance_key::read_stdin_key().await?;
        (Some(key), Some(eof))
    } else {
        let key_path = args
            .key_file
            .clone()
            .unwrap_or_else(|| keys::cluster_key_path(&cfg.all.key_dir, &cfg.cluster.key_name));
        let key = keys::load_key(&key_path).with_context(|| {
            format!(
                "create it with `sustenet keygen --dir {} --name {}` and give the master the same file",
                cfg.all.key_dir.display(),
                cfg.cluster.key_name
            )
        })?;
        let eof = if args.quit_on_stdin_eof {
            Some(crate::instance_key::watch_stdin_eof()?)
        } else {
            None
        };
        (Some(key), eof)
    };
    let (tcp, udp) = bind::bind_cluster_for(
        &cfg.all.bind,
        cfg.cluster_port(),
        cfg.cluster_udp_port(),
        receivers,
    )
    .await?;
    let shutdown = async move {
        let closed = async {
            match stdin_closed {
                Some(eof) => {
                    let _ = eof.await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = closed => {
                tracing::info!("standard input closed (the agent is gone or stopped this instance); shutting down");
            }
        }
    };
    let mut config = cluster_config(&cfg);
    config.websocket = cfg.websocket_config(cfg.cluster.websocket_port)?;
    if let Some(addr) = cfg.metrics.address(Path::new("<config>"))? {
        anyhow::ensure!(
            !cfg.metrics.dashboard,
            "[metrics] dashboard is served by the master; a cluster serves /metrics only"
        );
        let mut registry = Registry::default();
        let labelled =
            registry.sub_registry_with_label(("cluster".into(), config.name.clone().into()));
        config.metrics.register(labelled);
        let listener = crate::admin::bind(addr).await?;
        println!(
            "metrics: {}",
            crate::admin::url(addr, "/metrics", &cfg.metrics.token)
        );
        crate::admin::spawn(
            listener,
            Admin::new(registry, Some(cfg.metrics.token.clone()), None)
                .watch_core(config.name.clone(), config.metrics.heartbeat().clone()),
        );
    }
    if args.world {
        play(&cfg, (tcp, udp), config, key, World, shutdown).await
    } else {
        play(&cfg, (tcp, udp), config, key, EchoChat, shutdown).await
    }
}

/// Runs the cluster's game `plugin`: in a [`Portal`], or under Agones when
/// `[agones]` is on.
async fn play<P: Plugin>(
    cfg: &ConfigFile,
    (tcp, udp): (TcpListener, UdpSocket),
    config: ClusterConfig,
    key: Option<sustenet_proto::Key>,
    plugin: P,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if cfg.agones.enabled {
        return run_agones(tcp, udp, config, key, &cfg.agones, plugin).await;
    }
    let key = key.context("no cluster key")?;
    cluster::run(tcp, udp, config, key, Portal::new(plugin), shutdown).await?;
    Ok(())
}

/// The cluster as an Agones GameServer (docs/operations.md), or as an
/// instance on demand from a Fleet with `[agones] instance` (docs/instances.md §7).
#[cfg(feature = "agones")]
async fn run_agones(
    tcp: TcpListener,
    udp: UdpSocket,
    mut config: ClusterConfig,
    key: Option<sustenet_proto::Key>,
    section: &sustenet_server::config::AgonesSection,
    game: impl Plugin,
) -> anyhow::Result<()> {
    use sustenet_server::agones::Agones;
    let port = (section.sdk_port != 0).then_some(section.sdk_port);
    let (agones, key) = if section.instance {
        let (agones, identity) = tokio::select! {
            r = Agones::connect_instance(port) => r?,
            _ = shutdown_signal() => return Ok(()),
        };
        config.key_name = identity.key_name.clone();
        (agones, identity.key)
    } else {
        let key = key.context("no cluster key")?;
        (Agones::connect(port).await?, key)
    };
    agones.configure(&mut config);
    let plugin = agones.wrap(game, &config);
    let result = cluster::run(tcp, udp, config, key, plugin, shutdown_signal()).await;
    agones.shutdown().await;
    result?;
    Ok(())
}

#[cfg(not(feature = "agones"))]
async fn run_agones(
    _: TcpListener,
    _: UdpSocket,
    _: ClusterConfig,
    _: Option<sustenet_proto::Key>,
    _: &sustenet_server::config::AgonesSection,
    _: impl Plugin,
) -> anyhow::Result<()> {
    anyhow::bail!(
        "[agones] enabled = true, but this sustenet was built without Agones support: build it with `cargo build --features agones`"
    )
}
