//! `Config.toml` sections of instances on demand: `[instances]` (the
//! master's limits and timeouts) and `[agent]` with its templates
//! (`[agent.templates.<name>]`). docs/instances.md describes every key.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sustenet_proto::instance::{TEMPLATE_NAME_MAX, TEMPLATES_MAX};

use crate::config::ConfigError;
use crate::master::instances::InstanceSettings;

/// `[instances]`: the master's instance table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InstancesSection {
    /// An instance whose cluster has not registered this long after it was
    /// asked for is stopped and reported failed, in seconds.
    pub register_timeout_secs: u64,
    /// An instance asked to stop is forgotten this long after if its agent
    /// never reports the exit, in seconds.
    pub stop_timeout_secs: u64,
    /// Most instances at once over every agent.
    pub max_instances: u32,
    /// Most agents registered at once.
    pub max_agents: u32,
    /// Most instances of a template at once over every agent, by template name.
    pub template_limits: HashMap<String, u32>,
    /// `[instances.agones]`: templates whose instances are Agones GameServers.
    pub agones: Option<AgonesBackendSection>,
}

/// `[instances.agones]`: the templates started as Agones GameServers, each
/// from its Fleet, through the Kubernetes API (docs/instances.md §7).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgonesBackendSection {
    /// The Kubernetes API server, `https://host[:port]`.
    pub api_server: String,
    /// The namespace of the Fleets and their GameServers.
    pub namespace: String,
    /// The service account token (read at every request).
    pub token_path: PathBuf,
    /// The CA certificate(s) of the API server, PEM.
    pub ca_path: PathBuf,
    /// Longest wait for one API request, in milliseconds.
    pub request_timeout_ms: u64,
    /// Template name → Fleet name.
    pub fleets: BTreeMap<String, String>,
}

/// Where a pod finds its service account's files.
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

impl Default for AgonesBackendSection {
    fn default() -> Self {
        Self {
            api_server: "https://kubernetes.default.svc".into(),
            namespace: "default".into(),
            token_path: PathBuf::from(SERVICE_ACCOUNT).join("token"),
            ca_path: PathBuf::from(SERVICE_ACCOUNT).join("ca.crt"),
            request_timeout_ms: 10_000,
            fleets: BTreeMap::new(),
        }
    }
}

/// A Kubernetes object name (DNS-1123 subdomain) or, with `label`, a namespace (DNS-1123 label).
fn k8s_name_ok(n: &str, label: bool) -> bool {
    let max = if label { 63 } else { 253 };
    !n.is_empty()
        && n.len() <= max
        && n.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (b == b'.' && !label)
        })
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && n.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

impl AgonesBackendSection {
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: format!("instances.agones.{key}"),
            message,
        };
        crate::master::kube_api::parse_api_server(&self.api_server)
            .map_err(|e| bad("api_server", e))?;
        if !k8s_name_ok(&self.namespace, true) {
            return Err(bad(
                "namespace",
                "must be a Kubernetes namespace name (a-z, 0-9, -; at most 63)".into(),
            ));
        }
        if self.request_timeout_ms == 0 || self.request_timeout_ms > 300_000 {
            return Err(bad("request_timeout_ms", "must be 1 to 300000".into()));
        }
        if self.fleets.is_empty() || self.fleets.len() > TEMPLATES_MAX {
            return Err(bad(
                "fleets",
                format!("must name 1 to {TEMPLATES_MAX} templates"),
            ));
        }
        for (template, fleet) in &self.fleets {
            if !template_name_ok(template) {
                return Err(bad(
                    "fleets",
                    format!(
                        "'{template}': a template name must be 1 to 64 characters of A-Z, a-z, 0-9, _, - and ."
                    ),
                ));
            }
            if !k8s_name_ok(fleet, false) {
                return Err(bad(
                    &format!("fleets.{template}"),
                    format!("'{fleet}' is not a Kubernetes object name (a-z, 0-9, - and .)"),
                ));
            }
        }
        Ok(())
    }
}

fn template_name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= TEMPLATE_NAME_MAX
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

impl Default for InstancesSection {
    fn default() -> Self {
        let d = InstanceSettings::default();
        Self {
            register_timeout_secs: d.register_timeout_ms / 1000,
            stop_timeout_secs: d.stop_timeout_ms / 1000,
            max_instances: u32::try_from(d.max_instances).unwrap_or(u32::MAX),
            max_agents: u32::try_from(d.max_agents).unwrap_or(u32::MAX),
            template_limits: HashMap::new(),
            agones: None,
        }
    }
}

impl InstancesSection {
    /// The instance table's settings.
    pub fn settings(&self) -> InstanceSettings {
        InstanceSettings {
            register_timeout_ms: self.register_timeout_secs.saturating_mul(1000),
            stop_timeout_ms: self.stop_timeout_secs.saturating_mul(1000),
            max_instances: self.max_instances as usize,
            template_limits: self.template_limits.clone(),
            max_agents: self.max_agents as usize,
        }
    }

    pub(crate) fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, message: &str| ConfigError::Invalid {
            path: path.to_owned(),
            key: format!("instances.{key}"),
            message: message.to_owned(),
        };
        if self.register_timeout_secs == 0 {
            return Err(bad("register_timeout_secs", "must be at least 1"));
        }
        if self.stop_timeout_secs == 0 {
            return Err(bad("stop_timeout_secs", "must be at least 1"));
        }
        if self.max_instances > 100_000 || self.max_agents > 10_000 {
            return Err(bad(
                "max_instances",
                "at most 100000 instances and 10000 agents",
            ));
        }
        if let Some(agones) = &self.agones {
            agones.validate(path)?;
        }
        Ok(())
    }
}

/// How an instance gets its cluster key.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyHandover {
    /// A file of mode 0600 in the agent's run folder, named by `{key_path}`;
    /// removed when the process exits.
    #[default]
    File,
    /// One line of base64 on the process's standard input, which then stays
    /// open: the process sees end-of-file when the agent is gone.
    Stdin,
}

/// When the agent starts an exited instance again.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Never: the exit is reported and the instance is gone.
    #[default]
    Never,
    /// When it exits with a non-zero code or by a signal without being asked
    /// to stop, up to `max_restarts` times, after a backoff.
    OnFailure,
}

/// `[agent.templates.<name>]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TemplateSection {
    /// The program to run (a path, or a name looked up in `PATH`).
    pub command: PathBuf,
    /// Its arguments; `{placeholders}` are filled in (docs/instances.md).
    #[serde(default)]
    pub args: Vec<String>,
    /// Most instances of this template on this agent at once.
    #[serde(default = "default_template_max")]
    pub max: u32,
    /// How the instance gets its key.
    #[serde(default)]
    pub key: KeyHandover,
    /// When an exited instance is started again.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Most restarts of one instance.
    #[serde(default = "default_max_restarts")]
    pub max_restarts: u32,
    /// The first restart's delay in milliseconds; it doubles on each
    /// restart up to `restart_backoff_max_ms`.
    #[serde(default = "default_backoff")]
    pub restart_backoff_ms: u64,
    /// The longest delay before a restart, in milliseconds.
    #[serde(default = "default_backoff_max")]
    pub restart_backoff_max_ms: u64,
    /// The working folder of the process (default: the agent's).
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

fn default_template_max() -> u32 {
    10
}
fn default_max_restarts() -> u32 {
    3
}
fn default_backoff() -> u64 {
    1_000
}
fn default_backoff_max() -> u64 {
    30_000
}

/// `[agent]`: `sustenet agent`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSection {
    /// The agent's name, unique among the master's agents.
    pub name: String,
    /// Its key's file name in `<key_dir>/agents/` (the master has the same file there).
    pub key_name: String,
    /// The master's `host:port`.
    pub master: String,
    /// Most instances at once, over all templates.
    pub capacity: u32,
    /// First port given to instances (TCP and UDP).
    pub port_first: u16,
    /// Last port given to instances.
    pub port_last: u16,
    /// The address instances tell clients to connect to (`{public_address}`).
    pub public_address: String,
    /// Folder for per-instance key files (created with mode 0700).
    pub run_dir: PathBuf,
    /// After asking an instance to stop (SIGTERM, or closing its stdin), how
    /// long to wait before killing it, in milliseconds.
    pub stop_grace_ms: u64,
    /// How many of an instance's last stderr lines an exit report carries.
    pub stderr_lines: usize,
    /// The templates, by name.
    pub templates: BTreeMap<String, TemplateSection>,
}

impl Default for AgentSection {
    fn default() -> Self {
        Self {
            name: "agent".into(),
            key_name: "agent_key".into(),
            master: format!("127.0.0.1:{}", sustenet_proto::DEFAULT_MASTER_PORT),
            capacity: 20,
            port_first: 7000,
            port_last: 7099,
            public_address: "127.0.0.1".into(),
            run_dir: ".sustenet-agent".into(),
            stop_grace_ms: 5_000,
            stderr_lines: 20,
            templates: BTreeMap::new(),
        }
    }
}

impl AgentSection {
    pub(crate) fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: format!("agent.{key}"),
            message,
        };
        let name_ok = template_name_ok;
        if !name_ok(&self.name) {
            return Err(bad(
                "name",
                "must be 1 to 64 characters of A-Z, a-z, 0-9, _, - and .".into(),
            ));
        }
        if self.port_first == 0 || self.port_first > self.port_last {
            return Err(bad(
                "port_first",
                "must be above 0 and at most port_last".into(),
            ));
        }
        if self.templates.len() > TEMPLATES_MAX {
            return Err(bad(
                "templates",
                format!("at most {TEMPLATES_MAX} templates"),
            ));
        }
        if self.stderr_lines > 200 {
            return Err(bad("stderr_lines", "at most 200".into()));
        }
        for (name, t) in &self.templates {
            if !name_ok(name) {
                return Err(bad(
                    &format!("templates.{name}"),
                    "a template name must be 1 to 64 characters of A-Z, a-z, 0-9, _, - and ."
                        .into(),
                ));
            }
            if t.command.as_os_str().is_empty() {
                return Err(bad(
                    &format!("templates.{name}.command"),
                    "must not be empty".into(),
                ));
            }
            if let Err(e) = crate::agent::template::check_args(&t.args) {
                return Err(bad(&format!("templates.{name}.args"), e));
            }
        }
        Ok(())
    }
}
