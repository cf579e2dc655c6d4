//! The agent `sustenet up` runs beside its master (docs/instances.md): an
//! agent key and an admin key made on first run, the template `room`, a
//! `sustenet cluster` (this very binary) with its key on stdin, and the
//! template `dungeon`, the headless export of the demo, when it is built.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sustenet_proto::Key;
use sustenet_server::instances_config::{AgentSection, KeyHandover, TemplateSection};
use sustenet_server::keys;

/// The agent key's and the admin key's name in `up`'s key folder.
pub const NAME: &str = "up";
/// The admin key's name (`sustenet instances --key-dir .sustenet/keys`).
pub const ADMIN_KEY: &str = "admin_key";
/// How many ports above the master's the agent's range starts, and its size.
const PORT_OFFSET: u16 = 100;
const PORTS: u16 = 100;
/// Where the demo's headless export is built (`demo_project/export_presets.cfg`),
/// relative to the folder `up` runs in (the repository's root).
pub const DEMO_EXPORT: &str = "build/cluster/cluster.x86_64";

/// The dev agent: its settings, its key, and the key tables the master needs.
pub struct DevAgent {
    pub section: AgentSection,
    pub key: Key,
    pub agent_keys: HashMap<String, Key>,
    pub admin_keys: HashMap<String, Key>,
}

impl DevAgent {
    /// Makes the keys on first run and the agent's settings: ports
    /// `master_port + 100` to `+ 199`, the template `room`, and the template
    /// `dungeon` when `dungeon` (the demo's headless export) is given.
    pub fn prepare(
        dev_dir: &Path,
        bind: &str,
        client_host: &str,
        master_port: u16,
        dungeon: Option<&DungeonExport>,
    ) -> anyhow::Result<Self> {
        let key_dir = dev_dir.join("keys");
        let agents = key_dir.join(keys::AGENT_KEY_DIR);
        let admins = key_dir.join(keys::ADMIN_KEY_DIR);
        keys::ensure_cluster_key(&agents, NAME)?;
        keys::ensure_cluster_key(&admins, ADMIN_KEY)?;
        let agent_keys = keys::load_key_dir(&agents)?;
        let admin_keys = keys::load_key_dir(&admins)?;
        let key = agent_keys
            .get(NAME)
            .cloned()
            .with_context(|| format!("{} is missing", agents.join(NAME).display()))?;
        let first = master_port
            .checked_add(PORT_OFFSET)
            .and_then(|p| p.checked_add(PORTS - 1).map(|last| (p, last)))
            .context("the agent's ports run past 65535: pass a lower --port")?;
        let exe = std::env::current_exe().context("cannot find the sustenet binary")?;
        let room = TemplateSection {
            command: exe,
            args: [
                "cluster",
                "--no-config",
                "--key-stdin",
                "--key-name",
                "{key_name}",
                "--name",
                "room-{instance_id}",
                "--port",
                "{port}",
                "--bind",
                bind,
                "--public-address",
                "{public_address}",
                "--master-ip",
                client_host,
                "--master-port",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .chain([master_port.to_string()])
            .collect(),
            max: 20,
            key: KeyHandover::Stdin,
            restart: Default::default(),
            max_restarts: 3,
            restart_backoff_ms: 1_000,
            restart_backoff_max_ms: 30_000,
            dir: None,
        };
        let mut templates = BTreeMap::from([("room".to_owned(), room)]);
        if let Some(export) = dungeon {
            templates.insert(
                "dungeon".to_owned(),
                demo_dungeon(export, bind, client_host, master_port)?,
            );
        }
        let section = AgentSection {
            name: NAME.into(),
            key_name: NAME.into(),
            master: format!("{client_host}:{master_port}"),
            capacity: 20,
            port_first: first.0,
            port_last: first.1,
            public_address: client_host.into(),
            run_dir: dev_dir.join("agent"),
            templates,
            ..AgentSection::default()
        };
        Ok(Self {
            section,
            key,
            agent_keys,
            admin_keys,
        })
    }
}

/// The demo's headless export `up` offers as the template `dungeon`, and
/// the program that runs it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DungeonExport {
    /// The exported binary.
    pub path: PathBuf,
    /// A program run as `RUNNER EXPORT -- ...` (`--dungeon-runner`).
    pub runner: Option<PathBuf>,
}

/// The demo's export as a dungeon instance (docs/instances.md §8): its
/// `--dungeon={scene}` (`crypt` or `cave`), its key in a file, and
/// `--quit-on-stdin-eof` so it never outlives the agent; through its runner
/// when it has one.
pub fn demo_dungeon(
    export: &DungeonExport,
    bind: &str,
    client_host: &str,
    master_port: u16,
) -> anyhow::Result<TemplateSection> {
    let absolute = |p: &Path| {
        std::path::absolute(p).with_context(|| format!("cannot resolve {}", p.display()))
    };
    let binary = absolute(&export.path)?;
    let dir = binary.parent().map(Path::to_path_buf);
    let mut args = Vec::new();
    let command = match &export.runner {
        Some(runner) => {
            args.push(binary.display().to_string());
            absolute(runner)?
        }
        None => binary,
    };
    args.extend([
        "--".to_owned(),
        "--dungeon={scene}".to_owned(),
        "--key-name={key_name}".to_owned(),
        "--key-path={key_path}".to_owned(),
        "--port={port}".to_owned(),
        format!("--bind={bind}"),
        "--public-address={public_address}".to_owned(),
        format!("--master-address={client_host}"),
        format!("--master-port={master_port}"),
        "--quit-on-stdin-eof".to_owned(),
    ]);
    Ok(TemplateSection {
        command,
        args,
        max: 20,
        key: KeyHandover::File,
        restart: Default::default(),
        max_restarts: 3,
        restart_backoff_ms: 1_000,
        restart_backoff_max_ms: 30_000,
        dir,
    })
}

/// The export `up` offers as the template `dungeon`: `flag` when given (it
/// must exist), otherwise [`DEMO_EXPORT`] when it is there; run by `runner`
/// (which must exist, and needs an export).
pub fn find_demo_export(
    flag: Option<&Path>,
    runner: Option<&Path>,
) -> anyhow::Result<Option<DungeonExport>> {
    let path = match flag {
        Some(p) if p.is_file() => Some(p.to_path_buf()),
        Some(p) => anyhow::bail!(
            "--dungeon-export {}: no such file (export the demo with the \"Linux Cluster (headless)\" preset)",
            p.display()
        ),
        None => Some(PathBuf::from(DEMO_EXPORT)).filter(|p| p.is_file()),
    };
    match (path, runner) {
        (_, Some(r)) if !r.is_file() => {
            anyhow::bail!("--dungeon-runner {}: no such file", r.display())
        }
        (None, Some(_)) => anyhow::bail!(
            "--dungeon-runner needs an export: pass --dungeon-export or build {DEMO_EXPORT}"
        ),
        (path, runner) => Ok(path.map(|path| DungeonExport {
            path,
            runner: runner.map(Path::to_path_buf),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dungeon_template_runs_the_export_with_its_placeholders() -> anyhow::Result<()> {
        let export = DungeonExport {
            path: PathBuf::from("build/cluster/cluster.x86_64"),
            runner: None,
        };
        let t = demo_dungeon(&export, "127.0.0.1", "127.0.0.1", 7000)?;
        assert!(t.command.is_absolute());
        assert!(t.command.ends_with("build/cluster/cluster.x86_64"));
        assert_eq!(t.dir.as_deref(), t.command.parent());
        assert_eq!(t.key, KeyHandover::File);
        for want in [
            "--dungeon={scene}",
            "--key-path={key_path}",
            "--port={port}",
            "--master-port=7000",
            "--quit-on-stdin-eof",
        ] {
            assert!(
                t.args.iter().any(|a| a == want),
                "{want} missing from {:?}",
                t.args
            );
        }
        assert_eq!(t.args.first().map(String::as_str), Some("--"));
        Ok(())
    }

    #[test]
    fn a_runner_runs_the_export_with_the_same_arguments() -> anyhow::Result<()> {
        let export = DungeonExport {
            path: PathBuf::from("build/cluster/cluster.x86_64"),
            runner: Some(PathBuf::from("scripts/godot-run-export.sh")),
        };
        let t = demo_dungeon(&export, "127.0.0.1", "127.0.0.1", 7000)?;
        assert!(t.command.is_absolute());
        assert!(t.command.ends_with("scripts/godot-run-export.sh"));
        let first = t.args.first().map(PathBuf::from).unwrap_or_default();
        assert!(first.is_absolute() && first.ends_with("build/cluster/cluster.x86_64"));
        assert_eq!(t.args.get(1).map(String::as_str), Some("--"));
        assert_eq!(t.dir.as_deref(), first.parent());
        Ok(())
    }

    #[test]
    fn a_missing_export_or_runner_named_by_a_flag_is_an_error() {
        let error = |flag: Option<&str>, runner: Option<&str>| {
            find_demo_export(flag.map(Path::new), runner.map(Path::new))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let err = error(Some("/nonexistent/cluster.x86_64"), None);
        assert!(err.contains("no such file"), "{err}");
        let err = error(Some("Cargo.toml"), Some("/nonexistent/runner"));
        assert!(
            err.contains("--dungeon-runner") && err.contains("no such file"),
            "{err}"
        );
        if !Path::new(DEMO_EXPORT).exists() {
            let err = error(None, Some("Cargo.toml"));
            assert!(err.contains("needs an export"), "{err}");
        }
    }
}
