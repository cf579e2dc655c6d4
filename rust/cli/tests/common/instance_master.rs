//! The base of the instance tests' fixtures: a key folder, a real `sustenet
//! master` started there, and the `sustenet` commands of a test, every
//! process marked ([`super::marked`]) so that none is left behind.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use super::BIN;
use super::marked::{LoggedProc, MARK_VAR, assert_none_left, eventually};

/// A row of `instances list`: id, template, agent, state, port, cluster.
pub type ListRow = (u64, String, String, String, u16, u64);

/// A test's folder (keys `master`, `admin_key` and the cluster key `hub`),
/// its process mark, and its master once [`InstanceMaster::start_master`]
/// ran. On drop the master gets SIGTERM and no marked process may be left:
/// a fixture built on it drops its own processes first.
pub struct InstanceMaster {
    pub dir: tempfile::TempDir,
    pub mark: String,
    pub master_port: u16,
    pub master: Option<LoggedProc>,
}

impl InstanceMaster {
    /// The folder and its keys; no process runs yet.
    pub fn new() -> InstanceMaster {
        let dir = tempfile::tempdir().unwrap();
        let mark = format!(
            "{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let m = InstanceMaster {
            dir,
            mark,
            master_port: super::free_port(),
            master: None,
        };
        m.keygen(&["--master"]);
        m.keygen(&["--admin", "--name", "admin_key"]);
        m.keygen(&["--name", "hub"]);
        m
    }

    /// `sustenet keygen <args>`, which must succeed.
    pub fn keygen(&self, args: &[&str]) {
        let mut all = vec!["keygen"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "keygen {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the master on `master_port` with `instances` (its
    /// `[instances]` sections) in its file; returns once it listens.
    pub fn start_master(&mut self, instances: &str) {
        std::fs::write(
            self.path("master.toml"),
            format!(
                "[all]\nport = {}\nbind = \"127.0.0.1\"\n[master]\ncluster_timeout_secs = 3\n{instances}\n",
                self.master_port
            ),
        )
        .unwrap();
        let master = self.start("master", &["master", "-c", "master.toml"]);
        eventually("the master listens", || {
            master.log().contains("master listening")
        });
        self.master = Some(master);
    }

    /// The master's log so far.
    pub fn master_log(&self) -> String {
        self.master
            .as_ref()
            .map(LoggedProc::log)
            .unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn master_addr(&self) -> String {
        format!("127.0.0.1:{}", self.master_port)
    }

    /// `sustenet <args>` in the folder, marked, logging at info level without colours.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.dir.path())
            .env(MARK_VAR, &self.mark)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        c
    }

    /// Runs `sustenet <args>` to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Starts `sustenet <args>`, its log in `<name>.log`.
    pub fn start(&self, name: &str, args: &[&str]) -> LoggedProc {
        self.start_env(name, args, &[])
    }

    /// [`InstanceMaster::start`] with `env` added to its environment.
    pub fn start_env(&self, name: &str, args: &[&str], env: &[(&str, String)]) -> LoggedProc {
        let log = self.path(&format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        LoggedProc { child, log }
    }

    /// `sustenet instances --master <the master> <args>`.
    pub fn instances(&self, args: &[&str]) -> Output {
        let master = self.master_addr();
        let mut all = vec!["instances", "--master", master.as_str()];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// `instances spawn`: Ok((instance id, agent, cluster id)) or Err(stderr).
    pub fn spawn(&self, args: &[&str]) -> Result<(u64, String, u64), String> {
        let mut all = vec!["spawn"];
        all.extend_from_slice(args);
        let out = self.instances(&all);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        // "instance 1 ready on agent a as cluster 123"
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let w: Vec<&str> = text.split_whitespace().collect();
        Ok((
            w[1].parse().unwrap(),
            w[5].to_owned(),
            w[8].parse().unwrap(),
        ))
    }

    /// The rows of `instances list`.
    pub fn list(&self) -> Vec<ListRow> {
        let out = self.instances(&["list"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (
                    w[0].parse().unwrap(),
                    w[1].to_owned(),
                    w[2].to_owned(),
                    w[3].to_owned(),
                    w[4].parse().unwrap(),
                    w[5].parse().unwrap(),
                )
            })
            .collect()
    }
}

impl Drop for InstanceMaster {
    fn drop(&mut self) {
        self.master = None;
        if !std::thread::panicking() {
            assert_none_left(&self.mark);
        }
    }
}
