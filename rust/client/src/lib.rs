//! The Sustenet client driver: commands in, events out.
//!
//! [`Client::spawn`] starts one tokio task that talks to the master and then
//! to a cluster. The game (or the Godot node wrapping it) sends commands
//! through the [`Client`] handle, which never blocks, and drains
//! [`ClientEvent`]s from a `flume` receiver whenever it likes, for example
//! once per frame. No engine object ever enters the task.
//!
//! The files, by concern:
//! - `config.rs`: [`ClientConfig`];
//! - `events.rs`: [`ClientEvent`], [`ClientError`], [`Rtt`];
//! - `handle.rs`: the [`Client`] handle and the commands it sends;
//! - `choice.rs`: cluster choice ([`pick_best`]) and the UDP pings behind it;
//! - `connect.rs`: connections and their handshakes (master, cluster);
//! - `session.rs`: the same steps for tools that drive sessions themselves;
//! - `resume.rs`: one reconnect attempt and sending again what was missed;
//! - `reconnect.rs`: the reconnect policy (backoff, jitter, giving up);
//! - `task/`: the task that owns the connections (`mod.rs` its loop,
//!   `master.rs`, `cluster.rs`, `away.rs` while reconnecting).

mod choice;
mod config;
mod connect;
mod events;
mod handle;
mod reconnect;
mod resume;
pub mod session;
mod task;

pub use choice::{ClusterPing, LOAD_WEIGHT, NO_ANSWER_RTT, pick_best};
pub use config::ClientConfig;
pub use events::{ClientError, ClientEvent, Rtt};
pub use handle::Client;
pub use sustenet_proto::datagram::MAX_UNRELIABLE_PAYLOAD as UNRELIABLE_LIMIT;
