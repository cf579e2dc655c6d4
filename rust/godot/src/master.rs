//! `SustenetMaster`: the master server inside Godot.

use std::path::PathBuf;
use std::sync::Arc;

use godot::classes::{INode, Node};
use godot::global::Error as GdError;
use godot::prelude::*;
use sustenet_proto::DEFAULT_MASTER_PORT;
use sustenet_server::AllowAll;
use sustenet_server::bind::bind_tcp;
use sustenet_server::keys;
use sustenet_server::master::{self, MasterConfig, MasterKeys};
use tokio::sync::oneshot;

use crate::{Error, flush_logs, globalize, port_from_gd, runtime};

/// Runs the same master as [code]sustenet master[/code] inside Godot, for a
/// small game that hosts everything in one process, or for tests. Logins are
/// accepted for any non-empty user name.
///
/// [codeblock]
/// var master := SustenetMaster.new()
/// master.key_dir = "user://keys"
/// master.create_missing_keys = true
/// add_child(master)
/// master.start()
/// print("clients need this key: ", master.get_public_key())
/// [/codeblock]
#[derive(GodotClass)]
#[class(base=Node)]
pub struct SustenetMaster {
    /// The local address to listen on.
    #[export]
    bind_address: GString,
    /// The TCP port; 0 means the default, 6256.
    #[export]
    port: i64,
    /// The folder of cluster key files (one file per cluster key, named as the cluster's key_name).
    #[export]
    key_dir: GString,
    /// The master's private key file; empty means [code]<key_dir>/master.key[/code].
    #[export]
    master_key_path: GString,
    /// Create the master key file when it does not exist.
    #[export]
    create_missing_keys: bool,
    /// Most client connections at once; 0 means the default bound, 5,000
    /// clients (the master is never unbounded).
    #[export]
    max_connections: i64,
    /// Start when the node enters the tree.
    #[export]
    autostart: bool,
    running: Option<(oneshot::Sender<()>, u16, oneshot::Receiver<()>)>,
    /// The last run after `stop()`: it says goodbye to its connections and
    /// holds its port until it has ended (at most seconds).
    winding_down: Option<oneshot::Receiver<()>>,
    public_key: String,
    base: Base<Node>,
}

#[godot_api]
impl INode for SustenetMaster {
    fn init(base: Base<Node>) -> Self {
        Self {
            bind_address: "0.0.0.0".into(),
            port: 0,
            key_dir: "keys".into(),
            master_key_path: GString::new(),
            create_missing_keys: false,
            max_connections: 0,
            autostart: false,
            running: None,
            winding_down: None,
            public_key: String::new(),
            base,
        }
    }

    fn ready(&mut self) {
        // start() reports its own error; autostart has no caller to tell.
        if self.autostart
            && let Err(e) = self.start()
        {
            e.report();
        }
    }

    fn process(&mut self, _delta: f64) {
        flush_logs();
    }

    fn exit_tree(&mut self) {
        let _ = self.stop();
    }
}

#[godot_api]
impl SustenetMaster {
    /// The master is listening on [param port].
    #[signal]
    fn started(port: i64);
    /// The master stopped.
    #[signal]
    fn stopped();

    /// Starts the master: loads the keys and binds the port now (errors are returned right away).
    #[func]
    fn start(&mut self) -> Result<(), Error> {
        if self.running.is_some() {
            return Err(Error::new(
                GdError::ERR_ALREADY_IN_USE,
                "SustenetMaster.start: already running",
            ));
        }
        let port = port_from_gd(self.port, DEFAULT_MASTER_PORT).ok_or_else(|| {
            Error::invalid(format!("SustenetMaster: port {} is not a port", self.port))
        })?;
        let dir = PathBuf::from(globalize(&self.key_dir.to_string()));
        let key_path = if self.master_key_path.is_empty() {
            dir.join(keys::MASTER_KEY_FILE)
        } else {
            PathBuf::from(globalize(&self.master_key_path.to_string()))
        };
        let keypair = if self.create_missing_keys && !key_path.exists() {
            keys::create_master_keypair_at(&key_path, false)
        } else {
            keys::load_master_keypair(&key_path)
        };
        let cant_open = |e| Error::new(GdError::ERR_FILE_CANT_OPEN, format!("SustenetMaster: {e}"));
        let keypair = keypair.map_err(cant_open)?;
        let cluster_keys = keys::load_key_dir(&dir).map_err(cant_open)?;
        let handle = runtime::handle()
            .map_err(|e| Error::new(GdError::ERR_CANT_CREATE, format!("SustenetMaster: {e}")))?;
        runtime::wait_for_last_run(&handle, self.winding_down.take());
        let bind = self.bind_address.to_string();
        let listener = runtime::block_on(&handle, bind_tcp(&bind, port))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| Error::new(GdError::ERR_ALREADY_IN_USE, format!("SustenetMaster: {e}")))?;
        let bound = listener.local_addr().map_or(port, |a| a.port());
        self.public_key = keypair.public().to_base64();
        let config = MasterConfig {
            max_connections: u32::try_from(self.max_connections.max(0)).unwrap_or(u32::MAX),
            ..MasterConfig::default()
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (finished_tx, finished) = oneshot::channel::<()>();
        handle.spawn(async move {
            let keys = MasterKeys::new(keypair, cluster_keys);
            if let Err(e) = master::run(listener, config, keys, Arc::new(AllowAll), async {
                let _ = stop_rx.await;
            })
            .await
            {
                tracing::error!("the master stopped: {e}");
            }
            drop(finished_tx);
        });
        self.running = Some((stop_tx, bound, finished));
        self.signals().started().emit(i64::from(bound));
        Ok(())
    }

    /// Stops the master; connected clients and clusters are told it is shutting down.
    #[func]
    fn stop(&mut self) -> Result<(), Error> {
        if let Some((stop, _, finished)) = self.running.take() {
            let _ = stop.send(());
            self.winding_down = Some(finished);
            self.signals().stopped().emit();
        }
        Ok(())
    }

    /// Whether the master is running.
    #[func]
    fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The port it listens on (0 when stopped).
    #[func]
    fn get_bound_port(&self) -> i64 {
        self.running.as_ref().map_or(0, |(_, p, _)| i64::from(*p))
    }

    /// The master's public key in base64: clients need it (SustenetClient.master_public_key).
    #[func]
    fn get_public_key(&self) -> GString {
        self.public_key.as_str().into()
    }
}
