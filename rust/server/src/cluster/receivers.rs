//! The cluster's UDP receivers (`[cluster] receive_threads`).
//!
//! One receiver: a task on the cluster's runtime reading the UDP socket the
//! cluster was given, as it always did. N receivers (Linux, the socket
//! bound with `SO_REUSEPORT`, see [`crate::bind::bind_cluster_for`]): the
//! cluster binds N − 1 more sockets to the same address and port; the
//! kernel spreads the datagrams over the N sockets by a hash of their
//! source address and port, so one client's datagrams normally arrive on
//! one socket. Receiver 0 stays a task on the cluster's runtime reading the
//! given socket (which also sends every datagram, so clients see one source
//! port); receivers 1 to N − 1 are threads of their own, each running a
//! single-threaded event loop on its socket, so they run in parallel with
//! the core's driver whatever the runtime's worker count.
//!
//! Every receiver is told every session (`UdpControl`) and shares its opener
//! (`udp::SessionOpener`): a client whose address changes and lands on
//! another socket is still checked against the one replay window. The ping
//! limits are one for all receivers.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{Instrument, info, info_span, warn};

use super::Shared;
use super::udp::{self, SharedPingLimiter, UdpControl};
use crate::error::ServerError;

/// Session changes waiting for one receiver, at most this many.
const CONTROL_QUEUE: usize = 16_384;

/// What the core tells the receivers with: one queue per receiver, each
/// told every change.
pub(crate) struct UdpControls {
    queues: Vec<mpsc::Sender<UdpControl>>,
}

impl UdpControls {
    /// Tells every receiver `c`, waiting for room in their queues.
    pub(crate) async fn send(&self, c: UdpControl) {
        for q in &self.queues {
            let _ = q.send(c.clone()).await;
        }
    }

    /// Tells every receiver `c` if their queues have room.
    pub(crate) fn try_send(&self, c: UdpControl) {
        for q in &self.queues {
            let _ = q.try_send(c.clone());
        }
    }
}

/// The number of receivers the cluster runs: `receive_threads`, or 1 (with
/// a warning) when the platform or the given socket cannot share its port.
fn receivers_for(wanted: usize, udp: &UdpSocket) -> usize {
    if wanted <= 1 {
        return 1;
    }
    if !crate::bind::UDP_REUSE_PORT_SPREADS {
        warn!(
            receive_threads = wanted,
            "this system does not spread UDP datagrams over sockets sharing a port \
             (SO_REUSEPORT); one UDP receiver runs"
        );
        return 1;
    }
    if !crate::bind::shares_its_port(udp) {
        warn!(
            receive_threads = wanted,
            "the cluster's UDP socket was bound without SO_REUSEPORT \
             (sustenet_server::bind::bind_cluster_for binds it so); one UDP receiver runs"
        );
        return 1;
    }
    wanted
}

/// Whether `receive_threads` is within its bounds (see
/// [`super::ClusterConfig::check_receive_threads`]).
pub(crate) fn check(receive_threads: usize) -> Result<(), ServerError> {
    Ok(super::ClusterConfig::check_receive_threads(
        receive_threads,
    )?)
}

/// Starts the receivers on `udp` (and the sockets bound beside it): the
/// task of receiver 0 goes into `tasks`, with one task per receiver thread
/// that ends when its thread does. Returns the queues that tell them
/// sessions.
pub(crate) fn start(
    shared: &Arc<Shared>,
    udp: &Arc<UdpSocket>,
    tasks: &mut JoinSet<()>,
) -> Result<UdpControls, ServerError> {
    let n = receivers_for(shared.config.receive_threads, udp);
    let pings = udp::ping_limiter(&shared.config);
    let mut queues = Vec::with_capacity(n);
    let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
    queues.push(tx);
    let span = info_span!("udp", receiver = 0);
    let first = udp::udp_loop(shared.clone(), udp.clone(), (0, rx), pings.clone());
    tasks.spawn(first.instrument(span));
    if n > 1 {
        let addr = udp.local_addr()?;
        for receiver in 1..n {
            let socket = crate::bind::reuse_port_socket(addr)?;
            let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
            queues.push(tx);
            let done = spawn_thread(shared, socket.into(), (receiver, rx), pings.clone())?;
            tasks.spawn(async move {
                let _ = done.await;
            });
        }
        info!(receivers = n, %addr, "UDP received on sockets sharing the port (SO_REUSEPORT)");
    }
    Ok(UdpControls { queues })
}

/// Receiver number `receiver` on a thread of its own reading `socket`; the
/// returned signal ends (its sender dropped) when the thread does.
fn spawn_thread(
    shared: &Arc<Shared>,
    socket: std::net::UdpSocket,
    (receiver, ctl): (usize, mpsc::Receiver<UdpControl>),
    pings: SharedPingLimiter,
) -> Result<oneshot::Receiver<()>, ServerError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The socket joins the thread's own event loop.
    let udp = {
        let _in_rt = rt.enter();
        Arc::new(UdpSocket::from_std(socket)?)
    };
    udp::widen_receive_buffer(&udp);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let shared = shared.clone();
    std::thread::Builder::new()
        .name(format!("sustenet-udp-{receiver}"))
        .spawn(move || {
            let _done = done_tx;
            let span = info_span!("udp", receiver);
            rt.block_on(udp::udp_loop(shared, udp, (receiver, ctl), pings).instrument(span));
        })?;
    Ok(done_rx)
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn receive_threads_are_bounded() {
        assert!(check(1).is_ok() && check(64).is_ok());
        for n in [0, 65, usize::MAX] {
            let e = check(n).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(
                e.contains("`cluster.receive_threads` must be from 1 to 64"),
                "{n}: {e}"
            );
        }
    }
}
