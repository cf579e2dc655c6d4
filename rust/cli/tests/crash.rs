//! `kill -9` under load: a cluster, the master, then the master and a
//! cluster together, each restarted on the same ports while players send.
//! Every player either keeps playing or is told why (a `Disconnected` with
//! its reason) and logs in again; the master's list heals (both clusters,
//! every player counted); nothing hangs (every wait has a guard).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../server/tests/common/mod.rs"]
mod common;
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{GUARD, MasterInfo};
use support::{ClusterSpec, Deployment, Proc};
use sustenet_client::{Client, ClientEvent};
use sustenet_proto::JoinTarget;
use sustenet_server::EchoChat;
use tokio::time::{Instant, sleep, timeout};

const PLAYERS: usize = 6;

/// What a player's task shares with the test.
#[derive(Debug, Default)]
struct Seen {
    /// Reliable echoes received, over all sessions.
    echoes: AtomicU64,
    /// Sessions that ended with a reason (then the player logged in again).
    told: AtomicU64,
    /// The reasons, in order.
    reasons: Mutex<Vec<String>>,
    /// The cluster it plays on now (empty while logging in).
    cluster: Mutex<String>,
}

impl Seen {
    fn cluster(&self) -> String {
        self.cluster.lock().unwrap().clone()
    }
}

/// Logs in and joins once; `None` if anything refuses or the master is down.
async fn log_in(
    info: &MasterInfo,
    name: &str,
) -> Option<(Client, flume::Receiver<ClientEvent>, String)> {
    let mut config = common::client_config(info);
    config.reconnect_window = Duration::from_secs(3);
    let (c, ev) = Client::spawn(&tokio::runtime::Handle::current(), config);
    c.login(name, Vec::new()).ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match timeout(deadline - Instant::now(), ev.recv_async())
            .await
            .ok()?
            .ok()?
        {
            ClientEvent::LoginSucceeded { .. } => c.join(JoinTarget::Auto).ok()?,
            ClientEvent::Joined { cluster, .. } => return Some((c, ev, cluster.name)),
            ClientEvent::LoginFailed { .. }
            | ClientEvent::JoinFailed { .. }
            | ClientEvent::Disconnected { .. }
            | ClientEvent::Error(_) => return None,
            _ => {}
        }
    }
}

/// Plays until `stop`: a reliable echo every 20 ms, checked in order within
/// a session; when told why a session ended, logs in again.
async fn player(info: MasterInfo, name: String, seen: Arc<Seen>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        let Some((client, events, cluster)) = log_in(&info, &name).await else {
            sleep(Duration::from_millis(200)).await;
            continue;
        };
        *seen.cluster.lock().unwrap() = cluster;
        let (mut sent, mut next) = (0u64, 0u64);
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let reason = loop {
            if stop.load(Ordering::SeqCst) {
                let _ = client.disconnect();
                return;
            }
            tokio::select! {
                _ = tick.tick() => {
                    client.send(EchoChat::ECHO, sent.to_le_bytes().to_vec()).unwrap();
                    sent += 1;
                }
                ev = timeout(GUARD, events.recv_async()) => match ev {
                    Err(_) => panic!("{name} hangs: no event for {GUARD:?}"),
                    Ok(Err(_)) => panic!("{name}'s client stopped without a reason"),
                    Ok(Ok(ClientEvent::Packet { reliable: true, payload, .. })) => {
                        let n = u64::from_le_bytes(payload.as_slice().try_into().unwrap());
                        assert_eq!(n, next, "{name}: a reliable echo lost or repeated in a session");
                        next += 1;
                        seen.echoes.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(Ok(ClientEvent::Disconnected { reason, message })) => {
                        break format!("{reason}: {message}")
                    }
                    Ok(Ok(ClientEvent::Error(e))) => break format!("error: {e}"),
                    Ok(Ok(_)) => {}
                },
            }
        };
        assert!(!reason.is_empty());
        seen.cluster.lock().unwrap().clear();
        seen.reasons.lock().unwrap().push(reason);
        seen.told.fetch_add(1, Ordering::SeqCst);
    }
}

/// The servers, restartable.
struct Servers {
    dep: Deployment,
    specs: [ClusterSpec; 2],
    master: Option<Proc>,
    clusters: [Option<Proc>; 2],
    info: MasterInfo,
}

impl Servers {
    /// Starts the master again on its port and waits until it listens.
    async fn restart_master(&mut self) {
        self.master = Some(self.dep.start_master());
        support::wait_listening(self.dep.master_addr()).await;
    }

    /// Waits until the master lists both clusters, holding every player.
    async fn healed(&self) {
        common::wait_for_list(&self.info, "both clusters and every player", |l| {
            l.len() == 2 && l.iter().map(|c| c.players).sum::<u32>() == PLAYERS as u32
        })
        .await;
    }
}

/// Waits until every player plays again and has `more` echoes past `from`.
async fn all_playing(seen: &[Arc<Seen>], from: &[u64], more: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = seen
            .iter()
            .zip(from)
            .all(|(s, f)| !s.cluster().is_empty() && s.echoes.load(Ordering::SeqCst) >= f + more);
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "players did not all play again");
        sleep(Duration::from_millis(100)).await;
    }
}

fn snapshot(seen: &[Arc<Seen>]) -> (Vec<u64>, Vec<u64>, Vec<String>) {
    (
        seen.iter()
            .map(|s| s.echoes.load(Ordering::SeqCst))
            .collect(),
        seen.iter().map(|s| s.told.load(Ordering::SeqCst)).collect(),
        seen.iter().map(|s| s.cluster()).collect(),
    )
}

/// Every player on a killed cluster was told why; every other kept playing.
fn check_told(seen: &[Arc<Seen>], before: &[u64], on: &[String], killed: &[&str], what: &str) {
    let hit = on.iter().filter(|c| killed.contains(&c.as_str())).count();
    assert!(
        killed.is_empty() || (hit > 0 && hit < on.len()),
        "{what}: the players were not spread over both clusters: {on:?}"
    );
    for (i, s) in seen.iter().enumerate() {
        let told = s.told.load(Ordering::SeqCst) - before[i];
        if killed.contains(&on[i].as_str()) {
            assert!(told >= 1, "{what}: player {i} on {} was never told", on[i]);
        } else {
            assert_eq!(
                told, 0,
                "{what}: player {i} on {} lost its session: {:?}",
                on[i], s.reasons
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_under_load() {
    let dep = Deployment::new("[master]\ncluster_timeout_secs = 2\n");
    let specs = [
        dep.cluster_spec("alpha", "", "", ""),
        dep.cluster_spec("beta", "", "", ""),
    ];
    let info = MasterInfo {
        addr: dep.master_addr(),
        public: dep.master_public,
    };
    let mut s = Servers {
        master: Some(dep.start_master()),
        clusters: [
            Some(dep.start_cluster(&specs[0])),
            Some(dep.start_cluster(&specs[1])),
        ],
        dep,
        specs,
        info: info.clone(),
    };
    support::wait_listening(s.dep.master_addr()).await;
    common::wait_for_list(&info, "both clusters", |l| l.len() == 2).await;

    let stop = Arc::new(AtomicBool::new(false));
    let seen: Vec<Arc<Seen>> = (0..PLAYERS).map(|_| Arc::new(Seen::default())).collect();
    let tasks: Vec<_> = seen
        .iter()
        .enumerate()
        .map(|(i, sh)| {
            tokio::spawn(player(
                info.clone(),
                format!("p{i}"),
                sh.clone(),
                stop.clone(),
            ))
        })
        .collect();
    all_playing(&seen, &[0; PLAYERS], 20).await;
    s.healed().await;

    // 1. kill -9 one cluster, restart it.
    let (echoes, told, on) = snapshot(&seen);
    s.clusters[0].take().unwrap().kill9();
    s.clusters[0] = Some(s.dep.start_cluster(&s.specs[0]));
    all_playing(&seen, &echoes, 20).await;
    check_told(&seen, &told, &on, &["alpha"], "cluster alpha killed");
    s.healed().await;

    // 2. kill -9 the master: the players play on while it is down.
    let (echoes, told, on) = snapshot(&seen);
    s.master.take().unwrap().kill9();
    all_playing(&seen, &echoes, 20).await;
    s.restart_master().await;
    s.healed().await;
    check_told(&seen, &told, &on, &[], "master killed");

    // 3. kill -9 the master and a cluster together, restart both.
    let (echoes, told, on) = snapshot(&seen);
    s.master.take().unwrap().kill9();
    s.clusters[1].take().unwrap().kill9();
    sleep(Duration::from_millis(300)).await;
    s.restart_master().await;
    s.clusters[1] = Some(s.dep.start_cluster(&s.specs[1]));
    all_playing(&seen, &echoes, 20).await;
    check_told(
        &seen,
        &told,
        &on,
        &["beta"],
        "master and cluster beta killed",
    );
    s.healed().await;

    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        timeout(GUARD, t)
            .await
            .expect("a player task hangs")
            .unwrap();
    }
    let total_told: u64 = seen.iter().map(|x| x.told.load(Ordering::SeqCst)).sum();
    let total_echoes: u64 = seen.iter().map(|x| x.echoes.load(Ordering::SeqCst)).sum();
    let reasons: Vec<String> = seen
        .iter()
        .flat_map(|x| x.reasons.lock().unwrap().clone())
        .collect();
    eprintln!(
        "{PLAYERS} players, {total_echoes} reliable echoes; sessions ended with a reason and \
         logged in again: {total_told}: {reasons:?}"
    );
    for c in s.clusters.iter_mut().flatten() {
        c.assert_running();
    }
    for c in s.clusters.iter_mut() {
        c.take().unwrap().terminate();
    }
    s.master.take().unwrap().terminate();
}
