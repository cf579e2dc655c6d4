//! `sustenet`: runs Sustenet masters and clusters, makes keys, and probes servers.
//!
//! `sustenet up` starts a master and two clusters in one process with dev
//! keys it generates on first run: zero configuration, for development.
//! `sustenet master` and `sustenet cluster` run one server from
//! `Config.toml`; `sustenet keygen` makes key files; `sustenet probe` is a
//! command-line client that logs in, joins and measures round trips.

mod admin;
mod agent;
mod bench;
mod bench_web;
mod instance_key;
mod instances;
mod logging;
mod probe;
mod servers;
mod supervise;
mod up;
mod up_agent;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Networking for MMOs and large multiplayer games.
#[derive(Debug, Parser)]
#[command(name = "sustenet", version = version_line(), about, long_about = None)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text, env = "SUSTENET_LOG_FORMAT")]
    log_format: logging::LogFormat,
    /// Log level or filter (e.g. `debug`, `sustenet_server=trace`); overrides RUST_LOG.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a local master and clusters with generated dev keys (zero config).
    Up(up::UpArgs),
    /// Run a master server from Config.toml.
    Master(ServerArgs),
    /// Run a cluster server from Config.toml.
    Cluster(ServerArgs),
    /// Create a cluster, agent or admin key file, or the master keypair.
    Keygen(KeygenArgs),
    /// Log in, join a cluster, round-trip messages and print timings.
    Probe(probe::ProbeArgs),
    /// Load-test servers: many simulated clients join and send traffic; prints RTT and rates.
    Bench(bench::BenchArgs),
    /// Start and stop instances on this machine when the master asks (docs/instances.md).
    Agent(agent::AgentArgs),
    /// List, start and stop the master's instances (needs its admin key).
    Instances(instances::InstancesArgs),
    /// Load-test the WebSocket listeners: web clients (wss) join through `sustenet up` and send traffic.
    BenchWeb(bench_web::BenchWebArgs),
}

/// Settings of `master` and `cluster`: the file, then environment
/// variables, then flags (each later one wins).
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The configuration file.
    #[arg(long, short, default_value = "Config.toml", env = "SUSTENET_CONFIG")]
    pub config: PathBuf,
    /// Run with defaults when the configuration file does not exist.
    #[arg(long)]
    pub no_config: bool,
    /// Overrides `[all] server_name`.
    #[arg(long, env = "SUSTENET_SERVER_NAME")]
    pub name: Option<String>,
    /// Overrides `[all] port` (0 = default port).
    #[arg(long, env = "SUSTENET_PORT")]
    pub port: Option<u16>,
    /// Overrides `[all] bind`.
    #[arg(long, env = "SUSTENET_BIND")]
    pub bind: Option<String>,
    /// Overrides `[all] max_connections` (0 = the default bound: 1000 players
    /// on a cluster, 5000 clients on the master).
    #[arg(long, env = "SUSTENET_MAX_CONNECTIONS")]
    pub max_connections: Option<u32>,
    /// Overrides `[all] key_dir`.
    #[arg(long, env = "SUSTENET_KEY_DIR")]
    pub key_dir: Option<PathBuf>,
    /// Overrides `[cluster] key_name`.
    #[arg(long, env = "SUSTENET_KEY_NAME")]
    pub key_name: Option<String>,
    /// Overrides `[cluster] master_ip`.
    #[arg(long, env = "SUSTENET_MASTER_IP")]
    pub master_ip: Option<String>,
    /// Overrides `[cluster] master_port` (0 = 6256).
    #[arg(long, env = "SUSTENET_MASTER_PORT")]
    pub master_port: Option<u16>,
    /// Overrides `[cluster] public_address`.
    #[arg(long, env = "SUSTENET_PUBLIC_ADDRESS")]
    pub public_address: Option<String>,
    /// Overrides `[cluster] udp_port` (0 = the TCP port).
    #[arg(long, env = "SUSTENET_UDP_PORT")]
    pub udp_port: Option<u16>,
    /// Overrides `[master] key_file`.
    #[arg(long, env = "SUSTENET_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Cluster: read the cluster key from this file instead of `<key_dir>/<key_name>`.
    #[arg(long, conflicts_with = "key_stdin")]
    pub key_file: Option<PathBuf>,
    /// Cluster: read the cluster key (one base64 line) from standard input, and
    /// shut down when standard input closes (how an agent starts instances).
    #[arg(long)]
    pub key_stdin: bool,
    /// Cluster: shut down when standard input closes, with the key from a file
    /// (an agent's instance then never outlives its agent, docs/instances.md §3).
    #[arg(long, conflicts_with = "key_stdin")]
    pub quit_on_stdin_eof: bool,
    /// Overrides `[metrics] bind` (`host:port` of `/metrics`; empty: off).
    #[arg(long, env = "SUSTENET_METRICS_BIND")]
    pub metrics_bind: Option<String>,
    /// Sets `[agones] enabled = true`: run the cluster as an Agones GameServer.
    #[arg(long, env = "SUSTENET_AGONES")]
    pub agones: bool,
    /// Sets `[agones] enabled = true` and `instance = true`: the cluster is an
    /// instance on demand from an Agones Fleet (docs/instances.md §7).
    #[arg(long, env = "SUSTENET_AGONES_INSTANCE")]
    pub agones_instance: bool,
    /// Cluster: run the demo world of `sustenet up` (command 10 carries a
    /// player's position and places it in the fragment grid; players near it
    /// receive it) instead of the echo game alone.
    #[arg(long)]
    pub world: bool,
    /// Overrides `[metrics] token`.
    #[arg(long, env = "SUSTENET_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// Folder to write keys into.
    #[arg(long, default_value = "keys")]
    dir: PathBuf,
    /// Name of the key file to create (a cluster key, or with `--agent` / `--admin` that key).
    #[arg(long, default_value = "cluster_key")]
    name: String,
    /// Create the master keypair (master.key, master.pub) instead of a cluster key.
    #[arg(long, conflicts_with_all = ["agent", "admin"])]
    master: bool,
    /// Create an agent key in `<dir>/agents/` (copy it to the master's key folder too).
    #[arg(long, conflicts_with = "admin")]
    agent: bool,
    /// Create an admin key in `<dir>/admin/` for `sustenet instances` (copy it to the master's key folder too).
    #[arg(long)]
    admin: bool,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    if args.master {
        let kp = sustenet_server::keys::create_master_keypair(&args.dir, args.force)?;
        println!(
            "master keypair written to {} (private, mode 0600) and {}",
            args.dir
                .join(sustenet_server::keys::MASTER_KEY_FILE)
                .display(),
            args.dir
                .join(sustenet_server::keys::MASTER_PUB_FILE)
                .display()
        );
        println!(
            "master public key (give this to clients): {}",
            kp.public().to_base64()
        );
    } else if args.agent || args.admin {
        let sub = if args.agent {
            sustenet_server::keys::AGENT_KEY_DIR
        } else {
            sustenet_server::keys::ADMIN_KEY_DIR
        };
        let dir = args.dir.join(sub);
        sustenet_server::keys::create_cluster_key(&dir, &args.name, args.force)?;
        println!(
            "{} key written to {} (mode 0600); the master needs the same file in its {sub}/ key folder",
            if args.agent { "agent" } else { "admin" },
            dir.join(&args.name).display()
        );
    } else {
        let path = sustenet_server::keys::cluster_key_path(&args.dir, &args.name);
        sustenet_server::keys::create_cluster_key(&args.dir, &args.name, args.force)?;
        println!(
            "cluster key written to {} (mode 0600); copy it into the master's key folder too",
            path.display()
        );
    }
    Ok(())
}

/// What `sustenet --version` prints after the name: the release and the protocol version
/// it speaks, e.g. `0.1.0 (protocol 2)`.
fn version_line() -> &'static str {
    static LINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LINE.get_or_init(|| {
        format!(
            "{} (protocol {})",
            env!("CARGO_PKG_VERSION"),
            sustenet_proto::PROTOCOL_VERSION
        )
    })
}

/// How long the runtime waits, once a command is done, for tasks that are
/// still running (each command ends its own before it returns).
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(1);

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format, cli.log_level.as_deref()) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Keygen(a) => keygen(&a),
        other => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => {
                let result = rt.block_on(async move {
                    match other {
                        Command::Up(a) => up::run(a).await,
                        Command::Master(a) => servers::master(a).await,
                        Command::Cluster(a) => servers::cluster(a).await,
                        Command::Probe(a) => probe::run(a).await,
                        Command::Bench(a) => bench::run(a).await,
                        Command::Agent(a) => agent::run(a).await,
                        Command::Instances(a) => instances::run(a).await,
                        Command::BenchWeb(a) => bench_web::run(a).await,
                        Command::Keygen(_) => Ok(()),
                    }
                });
                // A task still running now (a server that did not stop within
                // `up`'s stop deadline) does not keep the process from exiting.
                rt.shutdown_timeout(RUNTIME_SHUTDOWN);
                result
            }
            Err(e) => Err(anyhow::anyhow!("cannot start the runtime: {e}")),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
