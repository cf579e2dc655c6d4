//! Ids shared by the cluster's parts (the core, the plugin API, the
//! fragment grid), in one place so none of them depends on another for them.

/// A player's id on a cluster: the client id the master gave it.
pub type PlayerId = u64;
