//! What the instance tests share: processes marked in their environment (so
//! a test can find every process it started, children included, and leave
//! none behind), waiting for a condition, and a player logged in to a master.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The environment variable whose value marks a test's processes.
pub const MARK_VAR: &str = "SUSTENET_TEST_MARK";

/// Processes whose environment carries `mark` (zombies excepted): pid and
/// command line.
pub fn marked(mark: &str) -> Vec<(u32, String)> {
    let needle = format!("{MARK_VAR}={mark}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|v| v == needle.as_bytes()) {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // A zombie has exited; its parent has not reaped it yet.
            if stat.split_whitespace().nth(2) == Some("Z") {
                continue;
            }
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    found
}

/// Fails the test if a process marked `mark` is still there 10 s from now
/// (killing what is left first).
pub fn assert_none_left(mark: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = marked(mark);
        if left.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            for (pid, _) in &left {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            panic!("processes left behind: {left:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `check` holds (bounded: a condition that never comes within
/// 40 s fails the test).
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while !check() {
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `sig` (`-TERM`, ...) to `child`.
pub fn signal(child: &Child, sig: &str) {
    Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
}

/// Text without its terminal colour codes (`ESC [ ... m`).
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A server process with its log file; on drop it gets SIGTERM (an agent
/// stops its instances), then SIGKILL if it has not exited within 10 s.
pub struct LoggedProc {
    pub child: Child,
    pub log: PathBuf,
}

impl LoggedProc {
    /// Its log so far, without colour codes.
    pub fn log(&self) -> String {
        plain(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// SIGKILL, as a machine or process dying would.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LoggedProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        signal(&self.child, "-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A player named "player" logging in to the master at `master` whose
/// public key is in the file `master_pub`.
pub fn login_player(
    rt: &tokio::runtime::Handle,
    master: String,
    master_pub: &Path,
) -> (
    sustenet_client::Client,
    flume::Receiver<sustenet_client::ClientEvent>,
) {
    let public = std::fs::read_to_string(master_pub).unwrap();
    let key = sustenet_proto::PublicKey::from_base64(public.trim()).unwrap();
    let (client, events) =
        sustenet_client::Client::spawn(rt, sustenet_client::ClientConfig::new(master, key));
    client.login("player", Vec::new()).unwrap();
    (client, events)
}

/// The next `Joined` (after a join or a redirect): the cluster's id and
/// name. A refused join, a disconnect or a failed portal fails the test.
pub fn joined(events: &flume::Receiver<sustenet_client::ClientEvent>) -> (u64, String) {
    loop {
        match events.recv_timeout(Duration::from_secs(30)).unwrap() {
            sustenet_client::ClientEvent::Joined { cluster, .. } => {
                return (cluster.id, cluster.name);
            }
            sustenet_client::ClientEvent::JoinFailed { reason, message }
            | sustenet_client::ClientEvent::Disconnected { reason, message } => {
                panic!("{reason} {message}")
            }
            sustenet_client::ClientEvent::Packet {
                command, payload, ..
            } if command == sustenet_server::Portal::<()>::FAILED => {
                panic!("portal failed: {}", String::from_utf8_lossy(&payload))
            }
            _ => {}
        }
    }
}
