//! `sustenet agent`: starts instances on this machine when the master asks.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use sustenet_server::config::{ConfigError, ConfigFile};
use sustenet_server::keys;

use crate::servers::shutdown_signal;

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The configuration file (`[agent]` and `[agent.templates.<name>]`).
    #[arg(long, short, default_value = "Config.toml", env = "SUSTENET_CONFIG")]
    pub config: PathBuf,
    /// Run with defaults when the configuration file does not exist.
    #[arg(long)]
    pub no_config: bool,
    /// Overrides `[all] key_dir` (the agent key is `<key_dir>/agents/<key_name>`).
    #[arg(long, env = "SUSTENET_KEY_DIR")]
    pub key_dir: Option<PathBuf>,
    /// Overrides `[agent] name`.
    #[arg(long, env = "SUSTENET_AGENT_NAME")]
    pub name: Option<String>,
    /// Overrides `[agent] key_name`.
    #[arg(long, env = "SUSTENET_AGENT_KEY_NAME")]
    pub key_name: Option<String>,
    /// Overrides `[agent] master` (`host:port`).
    #[arg(long, env = "SUSTENET_MASTER")]
    pub master: Option<String>,
    /// Overrides `[agent] port_first`.
    #[arg(long)]
    pub port_first: Option<u16>,
    /// Overrides `[agent] port_last`.
    #[arg(long)]
    pub port_last: Option<u16>,
    /// Overrides `[agent] run_dir`.
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
}

fn load(args: &AgentArgs) -> anyhow::Result<ConfigFile> {
    let mut cfg = if args.no_config && !args.config.exists() {
        ConfigFile::default()
    } else {
        ConfigFile::load(&args.config).map_err(|e| match e {
            ConfigError::Read { path, error } if error.kind() == std::io::ErrorKind::NotFound => {
                anyhow::anyhow!(
                    "{} not found: write one (see docs/instances.md), pass --config, or pass --no-config for defaults",
                    path.display()
                )
            }
            other => anyhow::Error::new(other),
        })?
    };
    if let Some(v) = &args.key_dir {
        cfg.all.key_dir = v.clone();
    }
    let a = &mut cfg.agent;
    if let Some(v) = &args.name {
        a.name = v.clone();
    }
    if let Some(v) = &args.key_name {
        a.key_name = v.clone();
    }
    if let Some(v) = &args.master {
        a.master = v.clone();
    }
    if let Some(v) = args.port_first {
        a.port_first = v;
    }
    if let Some(v) = args.port_last {
        a.port_last = v;
    }
    if let Some(v) = &args.run_dir {
        a.run_dir = v.clone();
    }
    cfg.validate(std::path::Path::new("<file, environment and flags>"))?;
    Ok(cfg)
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let cfg = load(&args)?;
    let path = cfg
        .all
        .key_dir
        .join(keys::AGENT_KEY_DIR)
        .join(&cfg.agent.key_name);
    let key = keys::load_key(&path).with_context(|| {
        format!(
            "create it with `sustenet keygen --agent --dir {} --name {}` and give the master the same file",
            cfg.all.key_dir.display(),
            cfg.agent.key_name
        )
    })?;
    if cfg.agent.templates.is_empty() {
        tracing::warn!("no [agent.templates.<name>] configured: this agent can start nothing");
    }
    sustenet_server::agent::run(cfg.agent, key, cfg.limits, shutdown_signal()).await?;
    Ok(())
}
