// Long file: one fixture (a master, its agents) shared by every instances-on-demand scenario.
//! Instances on demand with real processes: a `sustenet master`, one or two
//! `sustenet agent`s on loopback with their own port ranges, and instances
//! that are real `sustenet cluster` processes (or small shell programs for
//! the failure cases). Every process a test starts carries a mark in its
//! environment, which its children inherit; after each test the process
//! table must hold no process with that mark.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use common::instance_master::InstanceMaster;
use common::marked::{LoggedProc as Proc, eventually, joined, login_player, marked};
use common::{BIN, free_port, run};

/// A range of `n` ports free right now (TCP and UDP).
fn free_range(n: u16) -> (u16, u16) {
    'outer: loop {
        let first = free_port();
        if first > 65_000 {
            continue;
        }
        for p in first..first + n {
            if TcpListener::bind(("0.0.0.0", p)).is_err()
                || UdpSocket::bind(("0.0.0.0", p)).is_err()
            {
                continue 'outer;
            }
        }
        return (first, first + n - 1);
    }
}

/// A master, its key folder and the agents of one test.
struct Fixture {
    base: InstanceMaster,
    agents: Vec<Proc>,
}

impl std::ops::Deref for Fixture {
    type Target = InstanceMaster;

    fn deref(&self) -> &InstanceMaster {
        &self.base
    }
}

impl Fixture {
    /// A master with `instances_section` in its file, knowing the agent keys `agents`.
    fn new(instances_section: &str, agents: &[&str]) -> Fixture {
        let mut base = InstanceMaster::new();
        for name in agents {
            base.keygen(&["--agent", "--name", name]);
        }
        base.start_master(instances_section);
        Fixture {
            base,
            agents: Vec::new(),
        }
    }

    /// The `[agent.templates.<name>]` of a real `sustenet cluster` instance.
    fn cluster_template(&self, name: &str, max: u32) -> String {
        format!(
            r#"[agent.templates.{name}]
command = "{BIN}"
args = ["cluster", "--no-config", "--key-stdin", "--key-name", "{{key_name}}", "--port", "{{port}}", "--master-ip", "127.0.0.1", "--master-port", "{mp}", "--bind", "127.0.0.1", "--name", "{name}-{{instance_id}}"]
key = "stdin"
max = {max}
"#,
            mp = self.master_port
        )
    }

    /// Starts agent `name` with `templates`; returns its index once registered.
    fn agent(&mut self, name: &str, range: (u16, u16), templates: &str) -> usize {
        let file = format!("agent-{name}.toml");
        std::fs::write(
            self.path(&file),
            format!(
                "[agent]\nname = \"{name}\"\nkey_name = \"{name}\"\nmaster = \"{}\"\nport_first = {}\nport_last = {}\nrun_dir = \"run-{name}\"\nstop_grace_ms = 3000\n{templates}",
                self.master_addr(),
                range.0,
                range.1
            ),
        )
        .unwrap();
        let p = self.start(&format!("agent-{name}"), &["agent", "-c", &file]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !p.log().contains("agent registered") {
            assert!(
                Instant::now() < deadline,
                "the agent did not register:\n{}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.agents.push(p);
        self.agents.len() - 1
    }

    fn instance_processes(&self) -> Vec<(u32, String)> {
        marked(&self.mark)
            .into_iter()
            .filter(|(_, cmd)| !cmd.contains(" agent -c ") && !cmd.contains(" master -c "))
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // The agents stop their instances; then the base stops the master
        // and checks that no process is left.
        self.agents.clear();
    }
}

fn in_range(port: u16, range: (u16, u16)) -> bool {
    (range.0..=range.1).contains(&port)
}

#[test]
fn spawn_ready_list_stop_leaves_nothing_behind() {
    let mut f = Fixture::new("", &["a"]);
    let range = free_range(4);
    let t = f.cluster_template("dungeon", 4);
    f.agent("a", range, &t);
    let (id, agent, cluster) = f.spawn(&["dungeon", "--param", "scene=crypt"]).unwrap();
    assert_eq!(agent, "a");
    let list = f.list();
    assert_eq!(list.len(), 1);
    let (lid, template, lagent, state, port, lcluster) = &list[0];
    assert_eq!(
        (*lid, template.as_str(), lagent.as_str()),
        (id, "dungeon", "a")
    );
    assert_eq!((state.as_str(), *lcluster), ("ready", cluster));
    assert!(in_range(*port, range), "port {port} outside {range:?}");
    // The instance is a real cluster process whose key was never on its command line.
    let procs = f.instance_processes();
    assert_eq!(procs.len(), 1, "{procs:?}");
    assert!(procs[0].1.contains(&format!("instance-{id}")), "{procs:?}");
    assert!(!procs[0].1.contains("--key-file"), "{procs:?}");
    let out = f.instances(&["stop", &id.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("the instance is gone", || f.list().is_empty());
    eventually("its process exited", || f.instance_processes().is_empty());
    let log = f.agents[0].log();
    assert!(log.contains("stop requested"), "{log}");
    // Stopping it again is refused with a reason.
    let out = f.instances(&["stop", &id.to_string()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("no instance {id}")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn placement_prefers_the_less_loaded_agent_and_limits_hold() {
    let mut f = Fixture::new("[instances.template_limits]\narena = 1\n", &["a", "b"]);
    let (ra, rb) = (free_range(3), free_range(3));
    let ta = format!(
        "{}{}",
        f.cluster_template("dungeon", 2),
        f.cluster_template("arena", 2)
    );
    let tb = f.cluster_template("dungeon", 1);
    f.agent("a", ra, &ta);
    f.agent("b", rb, &tb);
    let (_, first, _) = f.spawn(&["dungeon"]).unwrap();
    let (_, second, _) = f.spawn(&["dungeon"]).unwrap();
    let mut both = [first.clone(), second.clone()];
    both.sort();
    assert_eq!(both, ["a", "b"], "one on each agent");
    // b is at its dungeon max (1); a has one dungeon and room for one more.
    let (_, third, _) = f.spawn(&["dungeon"]).unwrap();
    assert_eq!(third, "a");
    let err = f.spawn(&["dungeon"]).unwrap_err();
    assert!(err.contains("at its limit"), "{err}");
    // The master-wide template limit.
    f.spawn(&["arena"]).unwrap();
    let err = f.spawn(&["arena"]).unwrap_err();
    assert!(err.contains("its limit"), "{err}");
    let err = f.spawn(&["raid"]).unwrap_err();
    assert!(
        err.contains("no connected agent offers template 'raid'"),
        "{err}"
    );
    for (_, _, agent, _, port, _) in f.list() {
        let range = if agent == "a" { ra } else { rb };
        assert!(in_range(port, range), "{agent}: {port} outside {range:?}");
    }
    assert_eq!(f.instance_processes().len(), 4);
}

/// An agent link named `name` with `key` under `key_name` is refused (`AuthFailed`).
fn assert_agent_refused(f: &Fixture, name: &str, key_name: &str, key: &sustenet_proto::Key) {
    let section = sustenet_server::instances_config::AgentSection {
        name: name.into(),
        key_name: key_name.into(),
        master: f.master_addr(),
        ..Default::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let limits = sustenet_server::Limits::default();
    let err = rt
        .block_on(sustenet_server::agent::connect(&section, key, &limits))
        .unwrap_err();
    assert_eq!(
        err.reason,
        Some(sustenet_proto::DisconnectReason::AuthFailed),
        "{err}"
    );
}

#[test]
fn forged_agent_and_forged_admin_are_refused() {
    let f = Fixture::new("", &["a"]);
    // An agent key the master does not have (made in another folder).
    let other = tempfile::tempdir().unwrap();
    let keygen = |args: &[&str]| run(other.path(), &[&["keygen", "--dir", "."], args].concat());
    assert!(keygen(&["--agent", "--name", "a"]).status.success());
    let key = sustenet_server::keys::load_key(&other.path().join("agents/a")).unwrap();
    assert_agent_refused(&f, "a", "a", &key);
    // The same forged agent as a process: refused, never registered.
    std::fs::create_dir_all(f.path("forged/agents")).unwrap();
    std::fs::copy(other.path().join("agents/a"), f.path("forged/agents/a")).unwrap();
    let forged = f.start(
        "forged",
        &[
            "agent",
            "--no-config",
            "--key-dir",
            "forged",
            "--name",
            "a",
            "--key-name",
            "a",
            "--master",
            &f.master_addr(),
        ],
    );
    eventually("the forged agent is refused", || {
        forged.log().contains("authentication failed")
    });
    assert!(!forged.log().contains("agent registered"));
    drop(forged);
    // An admin key the master does not have.
    assert!(keygen(&["--admin", "--name", "admin_key"]).status.success());
    let out = f.run(&[
        "instances",
        "--master",
        &f.master_addr(),
        "--key-dir",
        other.path().to_str().unwrap(),
        "list",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the admin key"), "{err}");
    // A cluster key name of the instance kind that the master never issued.
    std::fs::create_dir_all(f.path("stolen")).unwrap();
    std::fs::copy(other.path().join("agents/a"), f.path("stolen/instance-1")).unwrap();
    let cluster = key_cluster(&f, "stolen", "stolen", "instance-1");
    eventually("the made-up instance cluster is refused", || {
        cluster.log().contains("refused this cluster")
    });
}

#[test]
fn an_agent_key_added_while_the_master_runs_works_and_a_removed_one_stops_new_links() {
    let mut f = Fixture::new("", &[]);
    // Made after the master started: no restart needed.
    assert!(
        f.run(&["keygen", "--agent", "--name", "late"])
            .status
            .success()
    );
    let t = f.cluster_template("room", 1);
    f.agent("late", free_range(2), &t);
    let (_, agent, _) = f.spawn(&["room"]).unwrap();
    assert_eq!(agent, "late");
    // Removed from the folder: the link that is up stays, a new one is refused.
    let key = sustenet_server::keys::load_key(&f.path("keys/agents/late")).unwrap();
    std::fs::remove_file(f.path("keys/agents/late")).unwrap();
    assert_agent_refused(&f, "late-2", "late", &key);
    assert_eq!(
        f.list().len(),
        1,
        "the running agent's instance is still listed"
    );
}

/// A `sustenet cluster` process registering with key `key_name` from folder `key_dir`.
fn key_cluster(f: &Fixture, name: &str, key_dir: &str, key_name: &str) -> Proc {
    let (tcp, _) = free_range(1);
    f.start(
        name,
        &[
            "cluster",
            "--no-config",
            "--key-dir",
            key_dir,
            "--key-name",
            key_name,
            "--port",
            &tcp.to_string(),
            "--bind",
            "127.0.0.1",
            "--master-port",
            &f.master_port.to_string(),
        ],
    )
}

#[test]
fn a_cluster_key_added_or_replaced_while_the_master_runs_is_used_at_the_next_registration() {
    let f = Fixture::new("", &[]);
    // Made after the master started: no restart needed.
    assert!(f.run(&["keygen", "--name", "late"]).status.success());
    let first = key_cluster(&f, "late-1", "keys", "late");
    eventually("the cluster with the new key registers", || {
        first.log().contains("registered with the master")
    });
    // Replaced on the master's side: the old key no longer registers, the new one does,
    // and the cluster already registered with the old key stays.
    std::fs::create_dir_all(f.path("old")).unwrap();
    std::fs::copy(f.path("keys/late"), f.path("old/late")).unwrap();
    assert!(
        f.run(&["keygen", "--name", "late", "--force"])
            .status
            .success()
    );
    let stale = key_cluster(&f, "late-old", "old", "late");
    eventually("the old key is refused", || {
        stale.log().contains("refused this cluster")
    });
    assert!(!stale.log().contains("registered with the master"));
    let renewed = key_cluster(&f, "late-2", "keys", "late");
    eventually("the replaced key registers", || {
        renewed.log().contains("registered with the master")
    });
    // Removed: refused like an unknown key name.
    std::fs::create_dir_all(f.path("new")).unwrap();
    std::fs::copy(f.path("keys/late"), f.path("new/late")).unwrap();
    std::fs::remove_file(f.path("keys/late")).unwrap();
    let removed = key_cluster(&f, "late-3", "new", "late");
    eventually("a removed key is refused", || {
        removed.log().contains("refused this cluster")
    });
    assert!(!first.log().contains("refused"), "{}", first.log());
}

#[test]
fn a_key_file_instance_finds_its_key_from_its_own_folder_and_dies_with_its_agent() {
    // run_dir is relative ("run-a"); the template runs in another folder, so {key_path} must
    // be absolute for the instance to read its key. With --quit-on-stdin-eof it exits when its
    // agent is killed with -9 (the agent's pipe on its stdin closes).
    let mut f = Fixture::new("", &["a"]);
    std::fs::create_dir_all(f.path("elsewhere")).unwrap();
    let t = format!(
        r#"[agent.templates.filed]
command = "{BIN}"
args = ["cluster", "--no-config", "--key-file", "{{key_path}}", "--quit-on-stdin-eof", "--key-name", "{{key_name}}", "--port", "{{port}}", "--master-ip", "127.0.0.1", "--master-port", "{mp}", "--bind", "127.0.0.1"]
key = "file"
dir = "elsewhere"
"#,
        mp = f.master_port
    );
    f.agent("a", free_range(2), &t);
    let (id, agent, _) = f.spawn(&["filed"]).unwrap();
    assert_eq!(agent, "a");
    assert!(f.instances(&["stop", &id.to_string()]).status.success());
    eventually("the instance is gone", || f.list().is_empty());
    eventually("its process exited", || f.instance_processes().is_empty());
    f.spawn(&["filed"]).unwrap();
    assert_eq!(f.instance_processes().len(), 1);
    f.agents[0].kill_hard();
    eventually("the instance exited with its agent", || {
        f.instance_processes().is_empty()
    });
}

#[test]
fn an_instance_that_never_registers_times_out_and_is_stopped() {
    let mut f = Fixture::new("[instances]\nregister_timeout_secs = 1\n", &["a"]);
    let t = "[agent.templates.mute]\ncommand = \"sleep\"\nargs = [\"600\"]\n";
    f.agent("a", free_range(2), t);
    let err = f.spawn(&["mute"]).unwrap_err();
    assert!(err.contains("did not register within 1000 ms"), "{err}");
    eventually("the process is stopped", || {
        f.instance_processes().is_empty()
    });
    eventually("the instance is gone", || f.list().is_empty());
}

#[test]
fn a_crash_is_reported_with_its_stderr_and_restarted_with_backoff() {
    let mut f = Fixture::new("", &["a"]);
    let starts = f.path("starts");
    let t = format!(
        "[agent.templates.crashy]\ncommand = \"sh\"\nargs = [\"-c\", \"echo start >> {}; echo 'loading {{scene}}' >&2; echo 'fatal: no such scene' >&2; exit 3\"]\nrestart = \"on_failure\"\nmax_restarts = 2\nrestart_backoff_ms = 100\n",
        starts.display()
    );
    f.agent("a", free_range(2), &t);
    let err = f.spawn(&["crashy", "-p", "scene=crypt"]).unwrap_err();
    assert!(err.contains("code 3"), "{err}");
    assert!(err.contains("fatal: no such scene"), "{err}");
    // One start and two restarts.
    let n = std::fs::read_to_string(&starts).unwrap().lines().count();
    assert_eq!(n, 3);
    let log = f.agents[0].log();
    assert!(log.contains("restarting after the backoff"), "{log}");
    assert!(
        log.contains("backoff_ms=100") && log.contains("backoff_ms=200"),
        "{log}"
    );
    // A template without a restart policy is reported at the first exit.
    eventually("the instance is gone", || f.list().is_empty());
}

#[test]
fn an_empty_instance_stops_itself() {
    let mut f = Fixture::new("", &["a"]);
    let t = f.cluster_template("room", 2);
    f.agent("a", free_range(2), &t);
    let (id, _, _) = f.spawn(&["room", "--stop-when-empty-sec", "1"]).unwrap();
    assert_eq!(f.list()[0].0, id);
    eventually("the empty instance is stopped", || f.list().is_empty());
    eventually("its process exited", || f.instance_processes().is_empty());
}

#[test]
fn a_killed_agent_takes_its_instances_and_their_players_are_told() {
    let mut f = Fixture::new("", &["a"]);
    let t = f.cluster_template("dungeon", 2);
    f.agent("a", free_range(2), &t);
    let (_, _, cluster) = f.spawn(&["dungeon"]).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (client, events) = client(&f, &rt);
    client
        .join(sustenet_proto::JoinTarget::Id(cluster))
        .unwrap();
    assert_eq!(joined(&events).0, cluster);
    f.agents[0].kill_hard();
    let reason = loop {
        let event = events.recv_timeout(Duration::from_secs(20)).unwrap();
        if let sustenet_client::ClientEvent::Disconnected { reason, .. } = event {
            break reason;
        }
    };
    assert_eq!(reason, sustenet_proto::DisconnectReason::ServerShutdown);
    eventually("the instance is gone", || f.list().is_empty());
    eventually("its process exited", || f.instance_processes().is_empty());
    drop(client);
}

/// A client logged in to the fixture's master.
fn client(
    f: &Fixture,
    rt: &tokio::runtime::Runtime,
) -> (
    sustenet_client::Client,
    flume::Receiver<sustenet_client::ClientEvent>,
) {
    login_player(rt.handle(), f.master_addr(), &f.path("keys/master.pub"))
}

#[test]
fn a_player_walks_into_a_fresh_instance_and_back_and_it_stops_once_empty() {
    let mut f = Fixture::new("", &["a"]);
    let t = f.cluster_template("dungeon", 2);
    f.agent("a", free_range(2), &t);
    let (hub_port, _) = free_range(1);
    let mp = f.master_port.to_string();
    let hp = hub_port.to_string();
    let hub = f.start(
        "hub",
        &[
            "cluster",
            "--no-config",
            "--key-name",
            "hub",
            "--name",
            "hub",
            "--port",
            &hp,
            "--bind",
            "127.0.0.1",
            "--master-port",
            &mp,
        ],
    );
    eventually("the hub registers", || {
        hub.log().contains("registered with the master")
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (client, events) = client(&f, &rt);
    client.join(sustenet_proto::JoinTarget::Auto).unwrap();
    let (hub_id, name) = joined(&events);
    assert_eq!(name, "hub");
    // Walk in: an instance of "dungeon" that stops once empty for 1 s.
    let mut enter = 1u32.to_le_bytes().to_vec();
    enter.extend_from_slice(b"dungeon");
    client
        .send(sustenet_server::Portal::<()>::ENTER, enter)
        .unwrap();
    let (instance_id, name) = joined(&events);
    assert!(name.starts_with("dungeon-"), "{name}");
    assert_ne!(instance_id, hub_id);
    let list = f.list();
    assert_eq!(
        (list.len(), list[0].3.as_str(), list[0].5),
        (1, "ready", instance_id)
    );
    // Walk out: back to the hub.
    let mut out = hub_id.to_le_bytes().to_vec();
    out.extend_from_slice(b"back");
    client
        .send(sustenet_server::EchoChat::MOVE_ME, out)
        .unwrap();
    let (back, _) = joined(&events);
    assert_eq!(back, hub_id);
    eventually("the empty instance is stopped", || f.list().is_empty());
    eventually("its process exited", || {
        f.instance_processes()
            .iter()
            .all(|(_, cmd)| !cmd.contains("--key-stdin"))
    });
    drop(client);
    drop(hub);
}
