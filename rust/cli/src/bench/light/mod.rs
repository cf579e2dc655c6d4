//! The light generator (the default; `--full-clients` runs a full client
//! driver per simulated client instead). Simulated clients share UDP
//! sockets and tasks in groups of `--clients-per-socket`: a group's task
//! sends its members' position updates and unreliable echoes in batches
//! and reads what arrives many datagrams per system call, decoding records
//! where they lie (`group.rs`). Each client keeps a task of its own only
//! for its join and its TCP link, which carries a few messages a second
//! (`client.rs`).

mod client;
mod group;
mod records;

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::player::MIN_DRAIN;
use super::stats::bump;
use super::worker::Shared;

/// Starts the clients `indices` on `set`, in groups of `per_socket`.
pub(super) fn spawn(
    set: &mut JoinSet<()>,
    shared: &Arc<Shared>,
    indices: &[u32],
    per_socket: usize,
    joins: &Arc<Semaphore>,
) {
    let (plan, clock) = (&shared.plan, shared.clock);
    let end_at = clock.at(plan.end_us());
    for (g, members) in indices.chunks(per_socket.max(1)).enumerate() {
        let (tx, rx) = mpsc::unbounded_channel();
        let group = group::Group::new(shared.clone(), u32::try_from(g).unwrap_or(u32::MAX));
        set.spawn(group.run(rx, end_at, end_at + MIN_DRAIN));
        for &i in members {
            bump(&shared.stats.c.target);
            set.spawn(client::run(i, shared.clone(), joins.clone(), tx.clone()));
        }
    }
}
