//! Scale on loopback: a master, two clusters and 200 clients at once — the load is balanced, reliable echoes all come back once and in order, unreliable ones arrive, chat reaches a whole cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use sustenet_client::ClientEvent;
use sustenet_proto::{JoinTarget, MasterKeypair};
use sustenet_server::{EchoChat, Limits, MasterConfig};

const CLIENTS: usize = 200;
const RELIABLE: u32 = 50;
const UNRELIABLE: u32 = 50;

/// Sends `RELIABLE` numbered echoes and checks each comes back once, in order.
async fn reliable_echoes(p: &Player) {
    for i in 0..RELIABLE {
        p.client
            .send(EchoChat::ECHO, format!("r{i}").into_bytes())
            .unwrap();
    }
    let mut next = 0u32;
    while next < RELIABLE {
        let payload = expect(&p.events, "reliable echoes", |e| match e {
            ClientEvent::Packet {
                command: EchoChat::ECHO,
                payload,
                reliable: true,
            } => Some(payload.clone()),
            ClientEvent::Disconnected { reason, message } => {
                panic!("player {} disconnected: {reason} {message}", p.id)
            }
            _ => None,
        })
        .await;
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            format!("r{next}"),
            "player {}: echoes out of order, duplicated or lost",
            p.id
        );
        next += 1;
    }
}

/// Sends `UNRELIABLE` numbered datagrams; returns how many distinct ones came
/// back (each may come back at most once).
async fn unreliable_echoes(p: &Player) -> u32 {
    p.udp_up().await;
    for i in 0..UNRELIABLE {
        p.client
            .send_unreliable(EchoChat::ECHO, format!("u{i}").into_bytes())
            .unwrap();
        if i % 10 == 9 {
            tokio::task::yield_now().await;
        }
    }
    let mut seen = vec![false; UNRELIABLE as usize];
    let mut got = 0;
    // Collect until all are back or nothing came for a while (a guard, not
    // an assertion: loss is allowed on the unreliable channel).
    while got < UNRELIABLE {
        match tokio::time::timeout(Duration::from_millis(1_500), p.events.recv_async()).await {
            Ok(Ok(ClientEvent::Packet {
                command: EchoChat::ECHO,
                payload,
                reliable: false,
            })) => {
                let s = String::from_utf8(payload).unwrap();
                if let Some(n) = s.strip_prefix('u') {
                    let n: usize = n.parse().unwrap();
                    assert!(!seen[n], "player {}: datagram {n} delivered twice", p.id);
                    seen[n] = true;
                    got += 1;
                }
            }
            Ok(Ok(ClientEvent::Disconnected { reason, message })) => {
                panic!("player {} disconnected: {reason} {message}", p.id)
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) => panic!("client stopped"),
            Err(_) => break,
        }
    }
    got
}

// Long: one scenario: setup, load, then every count checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_on_two_clusters() {
    init_tracing();
    count_panics();
    let keys = keys(&["alpha", "beta"]);
    // 200 Noise handshakes at once take seconds of CPU in an unoptimised
    // build, starving every task meanwhile: this test is about balance and
    // delivery, so its timeouts are generous (they only end a hung peer).
    let limits = Limits {
        handshake_timeout_ms: 30_000,
        timeout_ms: 30_000,
        ..fast_limits()
    };
    let master = start_master_on(
        "127.0.0.1:0",
        MasterKeypair::generate().unwrap(),
        keys.clone(),
        MasterConfig {
            cluster_timeout: Duration::from_secs(30),
            limits,
            ..master_config()
        },
    )
    .await;
    let cluster = |name: &str, key_name: &str| {
        let mut c = cluster_config(master.addr, name, key_name, 0);
        c.limits = limits;
        start_cluster_with(c, keys[key_name].clone())
    };
    let a = cluster("Alpha", "alpha").await;
    let b = cluster("Beta", "beta").await;
    wait_for_clusters(&master, 2).await;
    let mut client_cfg = client_config(&master);
    client_cfg.handshake_timeout = Duration::from_secs(30);
    client_cfg.timeout = Duration::from_secs(30);

    // Everyone logs in and joins Auto at once.
    let started = std::time::Instant::now();
    let mut joins = Vec::new();
    for i in 0..CLIENTS {
        let cfg = client_cfg.clone();
        joins.push(tokio::spawn(async move {
            match try_join_with(cfg, &format!("player{i}"), JoinTarget::Auto).await {
                Ok(p) => p,
                Err((reason, message, ..)) => panic!("join failed: {reason} {message}"),
            }
        }));
    }
    let mut players = Vec::new();
    for j in joins {
        players.push(j.await.unwrap());
    }

    eprintln!("{CLIENTS} clients joined in {:?}", started.elapsed());

    // Balanced, as the clients saw it...
    let mut per_cluster: HashMap<u64, usize> = HashMap::new();
    for p in &players {
        *per_cluster.entry(p.cluster.id).or_default() += 1;
    }
    assert_eq!(per_cluster.len(), 2, "{per_cluster:?}");
    let (na, nb) = (per_cluster[&a.id], per_cluster[&b.id]);
    assert_eq!(na + nb, CLIENTS);
    assert!(na.abs_diff(nb) <= 1, "unbalanced: {na} vs {nb}");
    // ...and as the master lists it, once every PlayerJoined is in.
    let list = wait_for_list(&master, "every player on its cluster", |l| {
        l.len() == 2 && l.iter().map(|c| c.players as usize).sum::<usize>() == CLIENTS
    })
    .await;
    for c in &list {
        assert_eq!(c.players as usize, per_cluster[&c.id], "{list:?}");
        assert!(!c.locked);
    }

    // Reliable: every client, 50 numbered echoes, at once.
    let players: Vec<Player> = run_all(players, |p| async move {
        reliable_echoes(&p).await;
        p
    })
    .await;

    eprintln!(
        "{} reliable echoes done after {:?}",
        RELIABLE as usize * CLIENTS,
        started.elapsed()
    );

    // Unreliable: count what came back.
    let counted: Vec<(Player, u32)> = run_all(players, |p| async move {
        let n = unreliable_echoes(&p).await;
        (p, n)
    })
    .await;
    let back: u32 = counted.iter().map(|(_, n)| n).sum();
    let sent = UNRELIABLE * CLIENTS as u32;
    eprintln!(
        "unreliable echoes: {back} of {sent} came back ({:.1}%)",
        f64::from(back) * 100.0 / f64::from(sent)
    );
    assert!(back > 0, "no unreliable echo came back at all");
    let players: Vec<Player> = counted.into_iter().map(|(p, _)| p).collect();
    eprintln!("unreliable phase done after {:?}", started.elapsed());

    // Chat: one message from one player on each cluster reaches every
    // player of that cluster, and only of that cluster.
    let from_a = players.iter().find(|p| p.cluster.id == a.id).unwrap();
    let from_b = players.iter().find(|p| p.cluster.id == b.id).unwrap();
    from_a
        .client
        .send(EchoChat::CHAT, b"hello alpha".to_vec())
        .unwrap();
    from_b
        .client
        .send(EchoChat::CHAT, b"hello beta".to_vec())
        .unwrap();
    let (a_id, b_id) = (a.id, b.id);
    run_all(players, move |p| async move {
        let (mine, other): (&[u8], &[u8]) = if p.cluster.id == a_id {
            (b"hello alpha", b"hello beta")
        } else {
            assert_eq!(p.cluster.id, b_id);
            (b"hello beta", b"hello alpha")
        };
        expect(&p.events, "chat", |e| match e {
            ClientEvent::Packet {
                command: EchoChat::CHAT,
                payload,
                reliable: true,
            } => {
                assert_ne!(payload.as_slice(), other, "chat crossed clusters");
                (payload.as_slice() == mine).then_some(())
            }
            _ => None,
        })
        .await;
        // Nothing else chat-like came before our own echo.
        p.echo(b"fence").await;
        assert!(p.events.drain().all(|e| !matches!(
            e,
            ClientEvent::Packet {
                command: EchoChat::CHAT,
                ..
            }
        )));
        p.client.disconnect().unwrap();
    })
    .await;

    assert_eq!(panics(), 0, "something panicked");
    assert!(!a.task.is_finished() && !b.task.is_finished() && !master.task.is_finished());
    a.stop().await;
    b.stop().await;
    master.stop().await;
}

/// Runs `f` on every item at once (one task each) and returns the results
/// in order.
async fn run_all<T, R, F, Fut>(items: Vec<T>, f: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    let handles: Vec<_> = items.into_iter().map(|t| tokio::spawn(f(t))).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
