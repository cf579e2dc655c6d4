//! One instance's process: its port, its key handed over, its stderr tail,
//! its stop (SIGTERM or closing stdin, then a kill after the grace), its
//! restarts with backoff, and the reports the master hears.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sustenet_proto::Key;
use sustenet_proto::instance::{Params, STDERR_TAIL_MAX};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::template;
use crate::instances_config::{KeyHandover, RestartPolicy, TemplateSection};

/// Longest stderr line kept, in bytes (longer ones are cut).
const LINE_MAX: usize = 512;

/// What the agent tells the master about an instance's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// It started on `port`.
    Started {
        /// The instance.
        instance_id: u64,
        /// Its port.
        port: u16,
    },
    /// It exited.
    Exited {
        /// The instance.
        instance_id: u64,
        /// Exit code, -1 for a signal or a process that could not start.
        code: i32,
        /// It will be started again.
        restarting: bool,
        /// The last lines of its stderr.
        stderr_tail: String,
    },
}

/// The agent's port range and the ports its instances hold.
#[derive(Debug)]
pub struct Ports {
    first: u16,
    last: u16,
    used: Mutex<BTreeSet<u16>>,
}

impl Ports {
    /// The range `first..=last`, all free.
    pub fn new(first: u16, last: u16) -> Arc<Self> {
        Arc::new(Self {
            first,
            last,
            used: Mutex::new(BTreeSet::new()),
        })
    }

    /// The first port of the range no instance holds and nothing else
    /// listens on (TCP and UDP, every interface); held until the lease drops.
    fn lease(self: &Arc<Self>) -> Option<PortLease> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        for port in self.first..=self.last {
            if used.contains(&port) {
                continue;
            }
            let free = std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
                && std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok();
            if free {
                used.insert(port);
                return Some(PortLease {
                    ports: self.clone(),
                    port,
                });
            }
        }
        None
    }
}

struct PortLease {
    ports: Arc<Ports>,
    port: u16,
}

impl Drop for PortLease {
    fn drop(&mut self) {
        let mut used = self.ports.used.lock().unwrap_or_else(|p| p.into_inner());
        used.remove(&self.port);
    }
}

/// Everything needed to start (and restart) one instance.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The instance.
    pub instance_id: u64,
    /// Its template.
    pub template: TemplateSection,
    /// The spawn request's parameters.
    pub params: Params,
    /// The key name it registers with.
    pub key_name: String,
    /// Its cluster key.
    pub key: Key,
    /// The master's `host:port` (`{master}`).
    pub master: String,
    /// `{public_address}`.
    pub public_address: String,
    /// Where key files go.
    pub run_dir: PathBuf,
    /// Grace between the stop request and the kill.
    pub stop_grace: Duration,
    /// Stderr lines an exit report carries.
    pub stderr_lines: usize,
}

/// How one run of the process ended.
struct Outcome {
    code: i32,
    tail: String,
    stopped: bool,
    /// The process could not be started at all (no restart helps).
    unstartable: bool,
}

/// Runs the instance until it exits for good or `stop` is set, restarting
/// it as its template says; every start and exit goes to `reports`.
pub async fn supervise(
    launch: Launch,
    ports: Arc<Ports>,
    reports: mpsc::Sender<Report>,
    mut stop: watch::Receiver<bool>,
) {
    let id = launch.instance_id;
    let t = &launch.template;
    let mut restarts = 0u32;
    let mut backoff = t.restart_backoff_ms;
    loop {
        let out = run_once(&launch, &ports, &reports, &mut stop).await;
        let restarting = !out.stopped
            && !out.unstartable
            && out.code != 0
            && t.restart == RestartPolicy::OnFailure
            && restarts < t.max_restarts;
        info!(
            instance_id = id,
            code = out.code,
            stopped = out.stopped,
            "instance process exited"
        );
        let _ = reports
            .send(Report::Exited {
                instance_id: id,
                code: out.code,
                restarting,
                stderr_tail: out.tail,
            })
            .await;
        if !restarting {
            return;
        }
        restarts += 1;
        info!(
            instance_id = id,
            restarts,
            backoff_ms = backoff,
            "instance exited; restarting after the backoff"
        );
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(backoff)) => {}
            _ = crate::time::stopped(&mut stop) => {
                let _ = reports.send(Report::Exited {
                    instance_id: id,
                    code: out.code,
                    restarting: false,
                    stderr_tail: "stopped while waiting to restart".into(),
                }).await;
                return;
            }
        }
        backoff = backoff.saturating_mul(2).min(t.restart_backoff_max_ms);
    }
}

fn failed(message: String) -> Outcome {
    Outcome {
        code: -1,
        tail: message,
        stopped: false,
        unstartable: true,
    }
}

async fn run_once(
    launch: &Launch,
    ports: &Arc<Ports>,
    reports: &mpsc::Sender<Report>,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let id = launch.instance_id;
    let Some(lease) = ports.lease() else {
        return failed("no free port left in the agent's range".into());
    };
    let key_path = launch.run_dir.join(format!("{}.key", launch.key_name));
    let key_file = (launch.template.key == KeyHandover::File).then(|| key_path.clone());
    if let Some(path) = &key_file {
        if let Err(e) = crate::keys::write_secret_file(path, &launch.key.to_base64(), true) {
            return failed(format!("cannot write the instance's key: {e}"));
        }
    }
    let log = launch.run_dir.join(format!("{}.log", launch.key_name));
    let out = match start(launch, lease.port, &key_path, &log) {
        Ok(child) => {
            info!(
                instance_id = id,
                port = lease.port,
                "instance process started"
            );
            let _ = reports
                .send(Report::Started {
                    instance_id: id,
                    port: lease.port,
                })
                .await;
            wait(launch, child, &log, stop).await
        }
        Err(message) => failed(message),
    };
    if let Some(path) = key_file {
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(&log);
    drop(lease);
    out
}

/// Starts the process with its arguments filled in and its key handed over;
/// its stderr goes to `log` (so it outlives the agent: a pipe to a dead agent
/// would break the instance's own logging).
fn start(
    launch: &Launch,
    port: u16,
    key_path: &std::path::Path,
    log: &std::path::Path,
) -> Result<Started, String> {
    let mut values: HashMap<String, String> = launch.params.iter().cloned().collect();
    for (k, v) in [
        ("port", port.to_string()),
        ("key_path", key_path.display().to_string()),
        ("key_name", launch.key_name.clone()),
        ("master", launch.master.clone()),
        ("instance_id", launch.instance_id.to_string()),
        ("public_address", launch.public_address.clone()),
    ] {
        values.insert(k.to_owned(), v);
    }
    let args = template::fill(&launch.template.args, &values)?;
    let t = &launch.template;
    let stderr = open_log(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let mut cmd = Command::new(&t.command);
    cmd.args(&args)
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true);
    // Always a pipe, kept open while the agent runs the instance: with `key = "stdin"` the key
    // comes through it; either way it reaches end-of-file when the agent stops the instance or
    // dies (even by `kill -9`), so an instance that watches it never outlives its agent.
    cmd.stdin(Stdio::piped());
    if let Some(dir) = &t.dir {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", t.command.display()))?;
    let stdin = child.stdin.take();
    Ok(Started {
        child,
        stdin,
        key: (t.key == KeyHandover::Stdin).then(|| launch.key.to_base64()),
    })
}

/// The instance's stderr file, new at every start, readable by the owner only.
fn open_log(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

/// The last `keep` lines of a file (read from its last 64 KiB), each cut to [`LINE_MAX`].
fn tail_of(path: &std::path::Path, keep: usize) -> VecDeque<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut lines = VecDeque::new();
    let Ok(mut f) = std::fs::File::open(path) else {
        return lines;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(64 * 1024);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.take(64 * 1024).read_to_end(&mut buf).is_err() {
        return lines;
    }
    let text = String::from_utf8_lossy(&buf);
    let mut all: Vec<&str> = text.lines().collect();
    if from > 0 && !all.is_empty() {
        // The first line read may be the end of a longer one.
        all.remove(0);
    }
    for l in all.iter().rev().take(keep).rev() {
        let mut line = (*l).to_owned();
        if line.len() > LINE_MAX {
            let mut end = LINE_MAX;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
        }
        lines.push_back(line);
    }
    lines
}

struct Started {
    child: Child,
    stdin: Option<tokio::process::ChildStdin>,
    key: Option<String>,
}

/// Waits for the process to exit, or stops it when asked.
async fn wait(
    launch: &Launch,
    started: Started,
    log: &std::path::Path,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let Started {
        mut child,
        mut stdin,
        key,
    } = started;
    let id = launch.instance_id;
    if let (Some(pipe), Some(key)) = (stdin.as_mut(), key) {
        if let Err(e) = pipe.write_all(format!("{key}\n").as_bytes()).await {
            warn!(instance_id = id, "cannot hand the key over on stdin: {e}");
        }
    }
    let mut stopped = false;
    let status = tokio::select! {
        s = child.wait() => s,
        _ = crate::time::stopped(stop) => {
            stopped = true;
            // Closing stdin is the stop request of a process that reads its key there.
            drop(stdin.take());
            terminate(&child);
            match tokio::time::timeout(launch.stop_grace, child.wait()).await {
                Ok(s) => s,
                Err(_) => {
                    warn!(instance_id = id, "instance did not stop within the grace; killing it");
                    let _ = child.kill().await;
                    child.wait().await
                }
            }
        }
    };
    drop(stdin);
    let code = match status {
        Ok(s) => s.code().unwrap_or(-1),
        Err(e) => {
            warn!(instance_id = id, "cannot wait for the instance: {e}");
            -1
        }
    };
    let lines = tail_of(log, launch.stderr_lines);
    for l in &lines {
        debug!(instance_id = id, "stderr: {l}");
    }
    Outcome {
        code,
        tail: join_tail(&lines),
        stopped,
        unstartable: false,
    }
}

/// Asks the process to stop: SIGTERM on Unix, a kill elsewhere.
fn terminate(child: &Child) {
    #[cfg(unix)]
    if let Some(pid) = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    #[cfg(not(unix))]
    let _ = child;
}

/// The last lines, newest last, within [`STDERR_TAIL_MAX`] bytes.
fn join_tail(lines: &VecDeque<String>) -> String {
    let mut kept: Vec<&str> = Vec::new();
    let mut size = 0;
    for l in lines.iter().rev() {
        if size + l.len() + 1 > STDERR_TAIL_MAX {
            break;
        }
        size += l.len() + 1;
        kept.push(l);
    }
    kept.reverse();
    let mut out = kept.join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_newest_lines_within_the_cap() {
        let lines: VecDeque<String> = (0..100).map(|i| format!("{i:0>100}")).collect();
        let tail = join_tail(&lines);
        assert!(tail.len() <= STDERR_TAIL_MAX);
        assert!(tail.ends_with(&format!("{:0>100}\n", 99)));
        assert!(!tail.contains(&format!("{:0>100}", 0)));
        assert_eq!(join_tail(&VecDeque::new()), "");
    }

    #[test]
    fn the_tail_of_a_file_is_its_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut text = String::new();
        for i in 0..10_000 {
            text.push_str(&format!("line {i}\n"));
        }
        text.push_str(&"x".repeat(2 * LINE_MAX));
        std::fs::write(&path, text).unwrap();
        let tail = tail_of(&path, 3);
        assert_eq!(tail[0], "line 9998");
        assert_eq!(tail[1], "line 9999");
        assert_eq!(tail[2].len(), LINE_MAX);
        assert!(tail_of(&dir.path().join("none"), 3).is_empty());
    }

    #[test]
    fn ports_are_leased_once_and_freed_on_drop() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        let ports = Ports::new(base, base);
        let a = ports.lease();
        if a.is_none() {
            // Another process took the port meanwhile; nothing to check.
            return;
        }
        assert!(ports.lease().is_none());
        drop(a);
        assert!(ports.lease().is_some());
    }
}
