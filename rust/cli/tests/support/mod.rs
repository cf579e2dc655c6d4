//! Real `sustenet master` and `sustenet cluster` processes on loopback for the
//! attack, fault and crash tests: a key folder, config files, start, kill -9,
//! restart on the same ports.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sustenet_proto::{Key, PublicKey};

pub const BIN: &str = env!("CARGO_BIN_EXE_sustenet");

/// A port free for both TCP and UDP right now.
pub fn free_port() -> u16 {
    loop {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A server process, killed on drop so a failing test leaves nothing behind.
pub struct Proc {
    child: Child,
    what: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn start(dir: &Path, what: &str, args: &[&str]) -> Proc {
        let log = std::fs::File::create(dir.join(format!("{what}.log"))).unwrap();
        let child = Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Proc {
            child,
            what: what.into(),
        }
    }

    /// Panics if the process already exited (a crash under attack).
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited during the test: {status}", self.what);
        }
    }

    /// `kill -9`: no goodbyes, sockets closed by the kernel.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit; panics unless it is clean.
    pub fn terminate(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                assert!(s.success(), "{} exited with {s}", self.what);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop after SIGTERM",
                self.what
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A key folder, the master's keypair and one cluster key, and config files.
pub struct Deployment {
    pub dir: tempfile::TempDir,
    pub master_port: u16,
    pub master_public: PublicKey,
    /// The cluster key `alpha`, as the clusters and the master hold it.
    pub cluster_key: Key,
}

/// One cluster's ports and config file.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub name: String,
    pub tcp: u16,
    pub udp: u16,
    pub config: PathBuf,
}

impl ClusterSpec {
    pub fn udp_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.udp))
    }
    pub fn tcp_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.tcp))
    }
}

impl Deployment {
    /// Makes the keys (`sustenet keygen`) and writes `master.toml` with
    /// `extra` appended (more sections, e.g. `[limits]`).
    pub fn new(master_extra: &str) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let out = Command::new(BIN)
            .args(["keygen", "--master"])
            .current_dir(d)
            .output()
            .unwrap();
        assert!(out.status.success());
        let public = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("master public key (give this to clients): "))
            .unwrap()
            .trim()
            .to_owned();
        let status = Command::new(BIN)
            .args(["keygen", "--name", "alpha"])
            .current_dir(d)
            .status()
            .unwrap();
        assert!(status.success());
        let keys = sustenet_server::keys::load_key_dir(&d.join("keys")).unwrap();
        let master_port = free_port();
        std::fs::write(
            d.join("master.toml"),
            format!(
                "[all]\nserver_name = \"Master\"\nport = {master_port}\nbind = \"127.0.0.1\"\n{master_extra}\n"
            ),
        )
        .unwrap();
        Deployment {
            master_port,
            master_public: PublicKey::from_base64(&public).unwrap(),
            cluster_key: keys["alpha"].clone(),
            dir,
        }
    }

    pub fn master_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.master_port))
    }

    /// Writes a cluster config (key `alpha`, fresh ports); `all_extra` goes
    /// into `[all]`, `cluster_extra` into `[cluster]`, `rest` after them.
    pub fn cluster_spec(
        &self,
        name: &str,
        all_extra: &str,
        cluster_extra: &str,
        rest: &str,
    ) -> ClusterSpec {
        let (tcp, udp) = (free_port(), free_port());
        let config = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[all]\nserver_name = \"{name}\"\nport = {tcp}\nbind = \"127.0.0.1\"\n{all_extra}\n\
                 [cluster]\nkey_name = \"alpha\"\nmaster_ip = \"127.0.0.1\"\nmaster_port = {}\n\
                 udp_port = {udp}\npublic_address = \"127.0.0.1\"\n{cluster_extra}\n{rest}\n",
                self.master_port
            ),
        )
        .unwrap();
        ClusterSpec {
            name: name.into(),
            tcp,
            udp,
            config,
        }
    }

    pub fn start_master(&self) -> Proc {
        Proc::start(
            self.dir.path(),
            "master",
            &["master", "--config", "master.toml"],
        )
    }

    pub fn start_cluster(&self, spec: &ClusterSpec) -> Proc {
        self.start_cluster_with(spec, &[])
    }

    /// `start_cluster` with more flags (`--world`, ...).
    pub fn start_cluster_with(&self, spec: &ClusterSpec, flags: &[&str]) -> Proc {
        let mut args = vec!["cluster", "--config", spec.config.to_str().unwrap()];
        args.extend_from_slice(flags);
        Proc::start(self.dir.path(), &spec.name, &args)
    }

    /// The log a process wrote so far (for failure messages).
    pub fn log(&self, what: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{what}.log"))).unwrap_or_default()
    }
}

/// Waits until something accepts TCP connections at `addr` (a process just
/// started); panics after 30 s.
pub async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens at {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
pub mod proxy;
