//! `sustenet up`: a master and clusters in one process with dev keys
//! generated on first run. Zero configuration, for development.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use serde::{Deserialize, Serialize};
use sustenet_proto::{DEFAULT_MASTER_PORT, Key};
use sustenet_server::bind::{bind_cluster_for, bind_tcp};
use sustenet_server::cluster::{self, ClusterConfig};
use sustenet_server::config::default_port;
use sustenet_server::fragments::GridConfig;
use sustenet_server::keys;
use sustenet_server::master::{self, MasterConfig, MasterKeys};
use sustenet_server::metrics::admin::Admin;
use sustenet_server::metrics::dashboard::Dashboard;
use sustenet_server::metrics::{ClusterMetrics, MasterMetrics};
use sustenet_server::prometheus_client::registry::Registry;
use sustenet_server::web::{DevCertificate, TlsIdentity, WebSocketConfig, ensure_dev_certificate};
use sustenet_server::{AllowAll, World};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::servers::shutdown_signal;
use crate::supervise::Servers;

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
    /// Most players per cluster (0 = the default bound, 1,000 players). The
    /// master also allows this many unused tickets from one address (at
    /// least 256), since local clients all come from one.
    #[arg(long, default_value_t = 0)]
    pub max_connections: u32,
    /// Edge of a fragment (grid cell), in world units.
    #[arg(long, default_value_t = 40.0)]
    pub cell_size: f32,
    /// How far players see: position updates of players within it reach them.
    #[arg(long, default_value_t = 40.0)]
    pub interest_radius: f32,
    /// How long a player's states may wait to share a datagram, in ms, 0 to
    /// 1000 (the clusters' `[cluster] state_window_ms`): 0 sends each
    /// input's states at its end; larger sends fewer datagrams, each state later.
    #[arg(long, default_value_t = ClusterConfig::DEFAULT_STATE_WINDOW_MS,
          value_parser = clap::value_parser!(u64).range(0..=sustenet_server::config::MAX_STATE_WINDOW_MS))]
    pub state_window_ms: u64,
    /// The master's WebSocket port for web clients (0 = master port + 1000);
    /// cluster N's is this + N.
    #[arg(long, default_value_t = 0)]
    pub websocket_port: u16,
    /// No WebSocket listeners.
    #[arg(long)]
    pub no_websocket: bool,
    /// Serve plain `ws://` instead of `wss://` with the development
    /// certificate (only on a loopback address, only for loopback pages).
    #[arg(long)]
    pub plain_websocket: bool,
    /// An origin whose pages may connect over WebSocket (repeatable; `*`
    /// for any); without one, only pages from loopback hosts.
    #[arg(long = "allowed-origin")]
    pub allowed_origins: Vec<String>,
    /// Address of `/metrics` and the dashboard (default: 127.0.0.1:9100, or
    /// a free port when that one is taken).
    #[arg(long)]
    pub metrics_bind: Option<SocketAddr>,
    /// Token of the metrics and dashboard endpoint; made up and printed in
    /// the URLs when the address is beyond loopback and none is given.
    #[arg(long, env = "SUSTENET_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// The demo's headless export, offered by the agent as the template
    /// `dungeon` (default: build/cluster/cluster.x86_64 when it exists).
    #[arg(long)]
    pub dungeon_export: Option<PathBuf>,
    /// A program that runs the dungeon export: the template's command becomes
    /// `RUNNER EXPORT -- ...` instead of `EXPORT -- ...` (a wrapper such as
    /// scripts/godot-run-export.sh, or a sandbox).
    #[arg(long)]
    pub dungeon_runner: Option<PathBuf>,
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
    /// The master's WebSocket URL for web clients, when `up` serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Option<String>,
    /// The development certificate of the `wss://` listeners (PEM file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    /// Base64 SHA-256 of that certificate's public key (for Chromium's
    /// `--ignore-certificate-errors-spki-list`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_spki: Option<String>,
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
    ClusterConfig::check_receive_threads(ClusterConfig::receive_threads_from_env()?)?;
    ClusterConfig::check_seal_threads(ClusterConfig::seal_threads_from_env()?)?;
    let key_dir = args.dir.join("keys");
    let keypair = keys::ensure_master_keypair(&key_dir)?;
    let names = ensure_cluster_keys(&key_dir, args.clusters)?;
    let cluster_keys = keys::load_key_dir(&key_dir)?;
    let master_port = default_port(args.port, DEFAULT_MASTER_PORT);
    let listener = bind_tcp(&args.bind, master_port)
        .await
        .map_err(|e| anyhow::anyhow!("{e}; pass --port to use other ports"))?;
    let public = keypair.public();
    let client_host = if args.bind == "0.0.0.0" {
        "127.0.0.1"
    } else {
        args.bind.as_str()
    };
    let web = web_settings(&args, client_host, master_port)?;
    let dev = web.as_ref().and_then(|w| w.dev.as_ref());
    let file = ClientFile::new(
        format!("{client_host}:{master_port}"),
        &public,
        web.as_ref(),
    );
    let client_path = file.write(&args.dir)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Servers::new();
    let admin_listener = bind_admin(args.metrics_bind).await?;
    let token = admin_token(args.metrics_token.as_deref(), admin_listener.local_addr()?);
    let master_metrics = MasterMetrics::default();
    let mut registry = Registry::default();
    master_metrics.register(&mut registry);
    let mut local_clusters = Vec::new();
    let dungeon = crate::up_agent::find_demo_export(
        args.dungeon_export.as_deref(),
        args.dungeon_runner.as_deref(),
    )?;
    let agent = crate::up_agent::DevAgent::prepare(
        &args.dir,
        &args.bind,
        client_host,
        master_port,
        dungeon.as_ref(),
    )?;
    let mut mkeys = MasterKeys::new(keypair, cluster_keys.clone());
    mkeys.agent_keys = agent.agent_keys.clone();
    mkeys.admin_keys = agent.admin_keys.clone();
    let site = Site {
        args: &args,
        client_host,
        master: &file.master,
        master_port,
        web: web.as_ref(),
        stop_rx: stop_rx.clone(),
    };
    // Every port is bound before any server starts: a port taken stops
    // `up` here, with that error alone.
    let (master_web, cluster_sockets) = site.bind_all(names.len()).await?;
    site.start_master(
        (listener, master_web),
        mkeys,
        master_metrics.clone(),
        &mut tasks,
    );

    let agent_ports = spawn_agent(agent.section, agent.key, &stop_rx, &mut tasks);
    print_up(&file, agent_ports, &key_dir, dungeon.as_ref());
    for (name, sockets) in names.iter().zip(cluster_sockets) {
        let key = cluster_keys
            .get(name)
            .cloned()
            .with_context(|| format!("key {name} is missing from {}", key_dir.display()))?;
        let metrics = site.start_cluster(name, key, sockets, &mut registry, &mut tasks);
        local_clusters.push((name.clone(), metrics));
    }
    if let Some(dev) = dev {
        print_trust(dev);
    }
    let admin = admin_for(registry, &token, master_metrics, local_clusters);
    serve_admin(admin_listener, &token, admin, stop_rx, &mut tasks)?;
    println!(
        "Clients need the master address and public key; both are in {}.",
        client_path.display()
    );
    println!("Try it from this folder: sustenet probe      Stop: Ctrl-C");

    let stopped = tasks.run_until(shutdown_signal(), stop_tx).await;
    println!("Sustenet stopped.");
    stopped
}

/// The admin endpoint of `up`: its metrics, the dashboard of the master and
/// the local clusters, and a watch on each cluster's core.
fn admin_for(
    registry: Registry,
    token: &str,
    master_metrics: MasterMetrics,
    local_clusters: Vec<(String, ClusterMetrics)>,
) -> Admin {
    let cores: Vec<_> = local_clusters
        .iter()
        .map(|(name, m)| (name.clone(), m.heartbeat().clone()))
        .collect();
    let dashboard = Dashboard::new(master_metrics, local_clusters);
    cores.into_iter().fold(
        Admin::new(registry, Some(token.to_owned()), Some(dashboard)),
        |admin, (name, heartbeat)| admin.watch_core(name, heartbeat),
    )
}

/// Starts `up`'s dev agent (named `agent <name>` among the servers); its
/// port range.
fn spawn_agent(
    section: sustenet_server::instances_config::AgentSection,
    key: Key,
    stop_rx: &watch::Receiver<bool>,
    tasks: &mut Servers<sustenet_server::ServerError>,
) -> (u16, u16) {
    let ports = (section.port_first, section.port_last);
    tasks.spawn(
        format!("agent {}", section.name),
        sustenet_server::agent::run(
            section,
            key,
            sustenet_server::Limits::default(),
            stopped(stop_rx.clone()),
        ),
    );
    ports
}

/// `cluster-1` to `cluster-<n>`, each with a key in `key_dir` (made when missing).
fn ensure_cluster_keys(key_dir: &Path, n: u16) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for i in 1..=n {
        let name = format!("cluster-{i}");
        keys::ensure_cluster_key(key_dir, &name)?;
        names.push(name);
    }
    Ok(names)
}

impl ClientFile {
    /// What clients need of a master at `master` with key `public` (and the
    /// WebSocket listeners, when `up` serves them).
    fn new(master: String, public: &sustenet_proto::PublicKey, web: Option<&WebSettings>) -> Self {
        let dev = web.and_then(|w| w.dev.as_ref());
        ClientFile {
            master,
            public_key: public.to_base64(),
            websocket: web.map(|w| w.url.clone()),
            certificate: dev.map(|d| d.cert.display().to_string()),
            certificate_spki: dev.map(|d| d.spki_sha256.clone()),
        }
    }

    /// Writes the file into `dir`; returns its path.
    fn write(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join(CLIENT_FILE);
        std::fs::write(&path, toml::to_string(self)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    }
}

/// The first lines `up` prints: the master, its key, the agent, the demo
/// export it offers and the web address.
fn print_up(
    file: &ClientFile,
    agent_ports: (u16, u16),
    key_dir: &Path,
    dungeon: Option<&crate::up_agent::DungeonExport>,
) {
    println!("Sustenet is up.");
    println!("  master       {}  (tcp)", file.master);
    println!("  public key   {}", file.public_key);
    println!(
        "  agent        template room, ports {}-{}  (sustenet instances --key-dir {} spawn room)",
        agent_ports.0,
        agent_ports.1,
        key_dir.display()
    );
    if let Some(d) = dungeon {
        let runner = d
            .runner
            .as_ref()
            .map(|r| format!("{} ", r.display()))
            .unwrap_or_default();
        println!(
            "  dungeon      template dungeon: {runner}{} --dungeon={{scene}}",
            d.path.display()
        );
    }
    if let Some(url) = &file.websocket {
        println!("  web clients  {url}");
    }
}

/// Completes once `rx` says stop.
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Serves the metrics and the dashboard on `listener` until stop; prints
/// their addresses.
fn serve_admin(
    listener: TcpListener,
    token: &str,
    admin: Admin,
    stop_rx: watch::Receiver<bool>,
    tasks: &mut Servers<sustenet_server::ServerError>,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    println!(
        "  metrics      {}",
        crate::admin::url(addr, "/metrics", token)
    );
    println!("  dashboard    {}", crate::admin::url(addr, "/", token));
    tasks.spawn(format!("admin endpoint ({addr})"), async move {
        let stopped = stopped(stop_rx);
        sustenet_server::metrics::admin::serve(listener, Arc::new(admin), stopped).await;
        Ok(())
    });
    Ok(())
}

/// The admin endpoint's token: the one given, else a random one when it
/// listens beyond loopback, else none.
fn admin_token(given: Option<&str>, admin_addr: SocketAddr) -> String {
    match given {
        Some(t) => t.to_owned(),
        None if !admin_addr.ip().is_loopback() => crate::admin::random_token(),
        None => String::new(),
    }
}

/// What every cluster `up` runs shares.
struct Site<'a> {
    args: &'a UpArgs,
    /// The host clients reach the servers on.
    client_host: &'a str,
    /// The master's `host:port`.
    master: &'a str,
    master_port: u16,
    web: Option<&'a WebSettings>,
    stop_rx: watch::Receiver<bool>,
}

/// A WebSocket listener's settings and its listener, bound with them.
type WebListener = (WebSocketConfig, TcpListener);

/// A cluster's bound sockets: its TCP listener and UDP socket on `port`,
/// and its WebSocket listener when `up` serves them.
struct ClusterSockets {
    port: u16,
    tcp: TcpListener,
    udp: tokio::net::UdpSocket,
    web: Option<WebListener>,
}

impl Site<'_> {
    /// Binds the master's WebSocket listener (when `up` serves them) and the
    /// sockets of `clusters` clusters, in that order; the first port that
    /// cannot be bound is the error.
    async fn bind_all(
        &self,
        clusters: usize,
    ) -> anyhow::Result<(Option<WebListener>, Vec<ClusterSockets>)> {
        let master_web = match self.web {
            Some(w) => Some(w.bind(w.master_port).await?),
            None => None,
        };
        let mut sockets = Vec::with_capacity(clusters);
        for i in 0..clusters {
            sockets.push(self.bind_cluster(i).await?);
        }
        Ok((master_web, sockets))
    }

    /// Binds the sockets of cluster number `i` (from 0): TCP and UDP on the
    /// port after the master's plus `i`, WebSocket on the WebSocket port
    /// after the master's plus `i`.
    async fn bind_cluster(&self, i: usize) -> anyhow::Result<ClusterSockets> {
        let port = self
            .master_port
            .checked_add(u16::try_from(i + 1).unwrap_or(u16::MAX))
            .context("cluster ports run past 65535: pass a lower --port")?;
        let receivers = ClusterConfig::default_receive_threads();
        let (tcp, udp) = bind_cluster_for(&self.args.bind, port, port, receivers).await?;
        let web = match self.web {
            Some(w) => Some(w.bind(w.cluster_port(i)?).await?),
            None => None,
        };
        Ok(ClusterSockets {
            port,
            tcp,
            udp,
            web,
        })
    }

    /// Starts the master on `listener` and `web` (its WebSocket listener,
    /// when `up` serves them).
    fn start_master(
        &self,
        (listener, web): (TcpListener, Option<WebListener>),
        keys: MasterKeys,
        metrics: MasterMetrics,
        tasks: &mut Servers<sustenet_server::ServerError>,
    ) {
        let defaults = MasterConfig::default();
        let (websocket, web_listener) = web.unzip();
        let config = MasterConfig {
            name: "Sustenet Master (dev)".into(),
            websocket,
            metrics,
            // Every local client comes from one address: as many unused
            // tickets from it as the clusters hold players.
            max_tickets_per_address: defaults
                .max_tickets_per_address
                .max(self.args.max_connections),
            ..defaults
        };
        let stop = stopped(self.stop_rx.clone());
        let name = format!("master (port {})", self.master_port);
        tasks.spawn(
            name,
            master::run_with_web(
                listener,
                web_listener,
                config,
                keys,
                Arc::new(AllowAll),
                stop,
            ),
        );
    }

    /// Starts a cluster as `name` on `sockets` ([`Site::bind_cluster`]),
    /// its metrics registered in `registry`; prints its line. Returns its
    /// metrics.
    fn start_cluster(
        &self,
        name: &str,
        key: sustenet_proto::Key,
        sockets: ClusterSockets,
        registry: &mut Registry,
        tasks: &mut Servers<sustenet_server::ServerError>,
    ) -> ClusterMetrics {
        let (args, client_host) = (self.args, self.client_host);
        let ClusterSockets {
            port,
            tcp,
            udp,
            web,
        } = sockets;
        let web_url = match (self.web, &web) {
            (Some(w), Some((c, _))) => {
                format!(", {}://{client_host}:{}", w.scheme(), c.bind.port())
            }
            _ => String::new(),
        };
        let (websocket, web) = web.unzip();
        let cfg = ClusterConfig {
            name: name.to_owned(),
            public_address: client_host.to_owned(),
            max_connections: args.max_connections,
            master_addr: self.master.to_owned(),
            key_name: name.to_owned(),
            grid: GridConfig {
                cell_size: args.cell_size,
                default_interest_radius: args.interest_radius,
                ..GridConfig::default()
            },
            websocket,
            state_window: std::time::Duration::from_millis(args.state_window_ms),
            ..ClusterConfig::default()
        };
        let label = ("cluster".into(), name.to_owned().into());
        cfg.metrics
            .register(registry.sub_registry_with_label(label));
        let metrics = cfg.metrics.clone();
        let stop = stopped(self.stop_rx.clone());
        tasks.spawn(
            format!("{name} (port {port})"),
            cluster::run_with_web(tcp, udp, web, cfg, key, World, stop),
        );
        println!("  {name:<12} {client_host}:{port}  (tcp + udp){web_url}");
        metrics
    }
}

/// The WebSocket listeners `up` runs: a `wss://` one with the development
/// certificate unless `--plain-websocket`.
struct WebSettings {
    bind: std::net::IpAddr,
    master_port: u16,
    url: String,
    dev: Option<DevCertificate>,
    tls: Option<TlsIdentity>,
    origins: Vec<String>,
}

impl WebSettings {
    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "wss" } else { "ws" }
    }

    fn cluster_port(&self, index: usize) -> anyhow::Result<u16> {
        self.master_port
            .checked_add(u16::try_from(index + 1).unwrap_or(u16::MAX))
            .context("WebSocket ports run past 65535: pass a lower --websocket-port")
    }

    fn listener(&self, port: u16) -> WebSocketConfig {
        let mut c = WebSocketConfig::new((self.bind, port).into());
        c.tls = self.tls.clone();
        c.allowed_origins = self.origins.clone();
        c
    }

    /// The settings of a listener on `port`, and that listener, bound.
    async fn bind(&self, port: u16) -> anyhow::Result<WebListener> {
        let c = self.listener(port);
        let listener = c.bind_listener().await?;
        Ok((c, listener))
    }
}

fn web_settings(
    args: &UpArgs,
    client_host: &str,
    master_port: u16,
) -> anyhow::Result<Option<WebSettings>> {
    if args.no_websocket {
        return Ok(None);
    }
    let bind: std::net::IpAddr = args
        .bind
        .parse()
        .with_context(|| format!("--bind {} is not an IP address", args.bind))?;
    let port = if args.websocket_port == 0 {
        master_port
            .checked_add(1000)
            .context("no room for WebSocket ports above the master port: pass --websocket-port")?
    } else {
        args.websocket_port
    };
    let (dev, tls) = if args.plain_websocket {
        (None, None)
    } else {
        let mut hosts = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        if !hosts.iter().any(|h| h == client_host) {
            hosts.push(client_host.to_owned());
        }
        let dev = ensure_dev_certificate(&args.dir, &hosts)?;
        let tls = TlsIdentity::from_pem_files(&dev.cert, &dev.key)?;
        (Some(dev), Some(tls))
    };
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    let settings = WebSettings {
        bind,
        master_port: port,
        url: format!("{scheme}://{client_host}:{port}"),
        dev,
        tls,
        origins: args.allowed_origins.clone(),
    };
    settings.listener(port).check()?;
    Ok(Some(settings))
}

/// How to make a browser or Godot trust the development certificate.
fn print_trust(dev: &DevCertificate) {
    println!(
        "The wss:// listeners use a development certificate: {}",
        dev.cert.display()
    );
    println!("  No browser trusts it until told to (docs/web.md):");
    println!(
        "  - Chromium: --ignore-certificate-errors-spki-list={}",
        dev.spki_sha256
    );
    println!("  - Godot: TLSOptions.client(X509Certificate loaded from that file)");
    println!("  - a browser of your own: import that file as a trusted certificate");
}
