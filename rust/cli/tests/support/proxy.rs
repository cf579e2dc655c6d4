//! A faulty network in user space, between clients and a cluster: a UDP
//! proxy that loses, duplicates, reorders and delays datagrams, and a TCP
//! proxy whose connections can be cut at any moment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

/// What the UDP proxy does to each datagram, each direction on its own.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Chance a datagram is dropped.
    pub loss: f64,
    /// Chance a datagram is sent twice.
    pub duplication: f64,
    /// Chance a datagram is held back by `reorder_by`, so later ones overtake it.
    pub reordering: f64,
    /// Every datagram's delay: `delay` plus up to `jitter`, uniformly.
    pub delay: Duration,
    pub jitter: Duration,
    pub reorder_by: Duration,
}

/// What the proxy did, counted.
#[derive(Debug, Default)]
pub struct FaultStats {
    pub datagrams: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub reordered: AtomicU64,
}

impl FaultStats {
    pub fn summary(&self) -> String {
        format!(
            "{} datagrams through the proxy: {} dropped, {} duplicated, {} reordered",
            self.datagrams.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
            self.duplicated.load(Ordering::Relaxed),
            self.reordered.load(Ordering::Relaxed)
        )
    }
}

/// The delays at which copies of one datagram go out (none: dropped).
fn schedule(f: &Faults, stats: &FaultStats) -> Vec<Duration> {
    let mut rng = rand::rng();
    stats.datagrams.fetch_add(1, Ordering::Relaxed);
    if rng.random_bool(f.loss) {
        stats.dropped.fetch_add(1, Ordering::Relaxed);
        return Vec::new();
    }
    let copies = if rng.random_bool(f.duplication) {
        stats.duplicated.fetch_add(1, Ordering::Relaxed);
        2
    } else {
        1
    };
    (0..copies)
        .map(|_| {
            let mut d = f.delay + f.jitter.mul_f64(rng.random::<f64>());
            if rng.random_bool(f.reordering) {
                stats.reordered.fetch_add(1, Ordering::Relaxed);
                d += f.reorder_by;
            }
            d
        })
        .collect()
}

/// Sends `d` to `to` (or to the socket's connected peer) after each delay.
fn send_later(sock: &Arc<UdpSocket>, to: Option<SocketAddr>, d: Vec<u8>, delays: Vec<Duration>) {
    for delay in delays {
        let (sock, d) = (sock.clone(), d.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = match to {
                Some(to) => sock.send_to(&d, to).await,
                None => sock.send(&d).await,
            };
        });
    }
}

/// The UDP proxy: one upstream socket per client address, so the cluster
/// sees each client at one stable address.
pub struct UdpProxy {
    pub stats: Arc<FaultStats>,
    task: JoinHandle<()>,
    upstreams: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.task.abort();
        for t in self.upstreams.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl UdpProxy {
    /// Listens on `front` and forwards to `cluster` with `faults`.
    pub async fn start(front: SocketAddr, cluster: SocketAddr, faults: Faults) -> UdpProxy {
        let sock = Arc::new(UdpSocket::bind(front).await.unwrap());
        let stats = Arc::new(FaultStats::default());
        let upstreams = Arc::new(Mutex::new(Vec::new()));
        let (st, ups) = (stats.clone(), upstreams.clone());
        let task = tokio::spawn(async move {
            let mut by_client: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = sock.recv_from(&mut buf).await {
                let up = match by_client.get(&from) {
                    Some(u) => u.clone(),
                    None => {
                        let u = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                        u.connect(cluster).await.unwrap();
                        ups.lock().unwrap().push(tokio::spawn(back(
                            u.clone(),
                            sock.clone(),
                            from,
                            faults,
                            st.clone(),
                        )));
                        by_client.insert(from, u.clone());
                        u
                    }
                };
                send_later(&up, None, buf[..n].to_vec(), schedule(&faults, &st));
            }
        });
        UdpProxy {
            stats,
            task,
            upstreams,
        }
    }
}

/// Cluster to client, through the faults.
async fn back(
    up: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    faults: Faults,
    stats: Arc<FaultStats>,
) {
    let mut buf = vec![0u8; 65_536];
    while let Ok(n) = up.recv(&mut buf).await {
        send_later(
            &front,
            Some(client),
            buf[..n].to_vec(),
            schedule(&faults, &stats),
        );
    }
}

/// One piped connection: its two copy tasks (aborting both closes it).
type Pipe = (JoinHandle<()>, JoinHandle<()>);

/// The TCP proxy: every accepted connection is piped to the cluster until
/// [`TcpProxy::cut_one`] closes it (both sides at once).
pub struct TcpProxy {
    task: JoinHandle<()>,
    live: Arc<Mutex<Vec<Pipe>>>,
    pub cuts: AtomicU64,
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        for (a, b) in self.live.lock().unwrap().drain(..) {
            a.abort();
            b.abort();
        }
    }
}

impl TcpProxy {
    pub async fn start(front: SocketAddr, cluster: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind(front).await.unwrap();
        let live = Arc::new(Mutex::new(Vec::new()));
        let l = live.clone();
        let task = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                // Connect on its own task, so a slow cluster does not hold
                // up the next client's accept.
                let l = l.clone();
                tokio::spawn(async move {
                    let Ok(up) = TcpStream::connect(cluster).await else {
                        return;
                    };
                    let _ = (down.set_nodelay(true), up.set_nodelay(true));
                    let (mut dr, mut dw) = down.into_split();
                    let (mut ur, mut uw) = up.into_split();
                    let a = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut dr, &mut uw).await;
                    });
                    let b = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut ur, &mut dw).await;
                    });
                    let mut live = l.lock().unwrap();
                    live.retain(|(a, b): &Pipe| !a.is_finished() && !b.is_finished());
                    live.push((a, b));
                });
            }
        });
        TcpProxy {
            task,
            live,
            cuts: AtomicU64::new(0),
        }
    }

    /// Cuts one live connection chosen at random; `false` if none is live.
    pub fn cut_one(&self) -> bool {
        let mut live = self.live.lock().unwrap();
        live.retain(|(a, b)| !a.is_finished() && !b.is_finished());
        if live.is_empty() {
            return false;
        }
        let i = rand::rng().random_range(0..live.len());
        let (a, b) = live.swap_remove(i);
        a.abort();
        b.abort();
        self.cuts.fetch_add(1, Ordering::Relaxed);
        true
    }
}
