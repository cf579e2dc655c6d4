//! `sustenet instances list | spawn | stop`: the master's instances, with its admin key.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use sustenet_server::admin_client::AdminClient;
use sustenet_server::keys;

#[derive(Debug, Args)]
pub struct InstancesArgs {
    /// The master's `host:port`.
    #[arg(long, default_value = "127.0.0.1:6256", env = "SUSTENET_MASTER")]
    pub master: String,
    /// The key folder; the admin key is `<key_dir>/admin/<key_name>`.
    #[arg(long, default_value = "keys", env = "SUSTENET_KEY_DIR")]
    pub key_dir: PathBuf,
    /// The admin key's name.
    #[arg(long, default_value = "admin_key", env = "SUSTENET_ADMIN_KEY_NAME")]
    pub key_name: String,
    #[command(subcommand)]
    pub command: InstancesCommand,
}

#[derive(Debug, Subcommand)]
pub enum InstancesCommand {
    /// Print every instance that is not gone.
    List,
    /// Start an instance and wait until it is ready; prints its ids.
    Spawn {
        /// The template.
        template: String,
        /// A parameter, `name=value` (repeat for more).
        #[arg(long = "param", short = 'p', value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// Stop it once it has been empty this many seconds (0: never).
        #[arg(long, default_value_t = 0)]
        stop_when_empty_sec: u32,
    },
    /// Stop an instance.
    Stop {
        /// The instance id.
        id: u64,
    },
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not name=value"))?;
    Ok((k.to_owned(), v.to_owned()))
}

pub async fn run(args: InstancesArgs) -> anyhow::Result<()> {
    let path = args.key_dir.join(keys::ADMIN_KEY_DIR).join(&args.key_name);
    let key = keys::load_key(&path).with_context(|| {
        format!(
            "create it with `sustenet keygen --admin --dir {} --name {}` and give the master the same file",
            args.key_dir.display(),
            args.key_name
        )
    })?;
    let mut admin = AdminClient::connect(&args.master, &args.key_name, key).await?;
    match args.command {
        InstancesCommand::List => {
            let list = admin.list().await?;
            println!(
                "{:>8}  {:<16} {:<16} {:<9} {:>6} {:>20} {:>7}",
                "id", "template", "agent", "state", "port", "cluster", "players"
            );
            for i in list {
                println!(
                    "{:>8}  {:<16} {:<16} {:<9} {:>6} {:>20} {:>7}",
                    i.id,
                    i.template,
                    i.agent,
                    i.state.name(),
                    i.port,
                    i.cluster_id,
                    i.players
                );
            }
        }
        InstancesCommand::Spawn {
            template,
            params,
            stop_when_empty_sec,
        } => {
            let s = admin.spawn(&template, params, stop_when_empty_sec).await?;
            println!(
                "instance {} ready on agent {} as cluster {}",
                s.instance_id, s.agent, s.cluster_id
            );
        }
        InstancesCommand::Stop { id } => {
            admin.stop(id).await?;
            println!("instance {id} is stopping");
        }
    }
    Ok(())
}
