//! The agent `sustenet up` runs beside its master (docs/instances.md): an
//! agent key and an admin key made on first run, and one template, `room`,
//! a `sustenet cluster` (this very binary) with its key on stdin.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

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

/// The dev agent: its settings, its key, and the key tables the master needs.
pub struct DevAgent {
    pub section: AgentSection,
    pub key: Key,
    pub agent_keys: HashMap<String, Key>,
    pub admin_keys: HashMap<String, Key>,
}

impl DevAgent {
    /// Makes the keys on first run and the agent's settings: ports
    /// `master_port + 100` to `+ 199`, the template `room`.
    pub fn prepare(
        dev_dir: &Path,
        bind: &str,
        client_host: &str,
        master_port: u16,
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
        let section = AgentSection {
            name: NAME.into(),
            key_name: NAME.into(),
            master: format!("{client_host}:{master_port}"),
            capacity: 20,
            port_first: first.0,
            port_last: first.1,
            public_address: client_host.into(),
            run_dir: dev_dir.join("agent"),
            templates: BTreeMap::from([("room".to_owned(), room)]),
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
