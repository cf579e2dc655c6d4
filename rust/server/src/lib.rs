//! Sustenet's servers on tokio: the master and the cluster.
//!
//! [`master::run`] and [`cluster::run`] each take already-bound sockets, a
//! configuration and a shutdown future, so a binary, a test or a game engine
//! binding decides where they listen and when they stop. The protocol itself
//! lives in `sustenet-proto`; this crate only drives it: sockets, tasks,
//! timeouts, queues and the plugin that holds a game's server logic.

pub mod admin_client;
pub mod agent;
#[cfg(feature = "agones")]
pub mod agones;
pub mod auth;
pub mod bind;
pub mod cluster;
pub mod config;
pub mod error;
pub mod fragments;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod handshake_gate;
pub mod ids;
pub mod instance_seal;
pub mod instances_config;
pub mod keys;
mod listen;
pub mod master;
pub mod metrics;
pub mod time;
pub mod web;

pub use cluster::plugin;
/// The Prometheus client the metrics are kept in (for registries).
pub use prometheus_client;

pub use auth::{AllowAll, AuthHook, SharedSecret};
pub use cluster::{ClusterConfig, ClusterHandle, Context, MasterLinkStatus, Portal, SendError};
pub use config::{ConfigError, ConfigFile, Limits};
pub use error::ServerError;
pub use fragments::{
    Dims, FragmentError, FragmentEvent, FragmentEvents, FragmentId, FragmentSettings, Fragments,
    GridConfig, TickStats,
};
pub use master::{MasterConfig, MasterKeys};
pub use plugin::{Channel, EchoChat, NoPlugin, PlayerId, Plugin, World};
