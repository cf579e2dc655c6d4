//! The Sustenet GDExtension: Godot nodes over the Sustenet crates.
//!
//! [`client::SustenetClient`] wraps the client driver, [`cluster::SustenetCluster`]
//! runs a full cluster inside Godot (the game's GDScript handles players and
//! packets), and [`master::SustenetMaster`] runs a master.
//! [`multiplayer_peer::SustenetMultiplayerPeer`] carries Godot's own high-level
//! multiplayer (`@rpc`, spawners, synchronizers) over the first two. This crate is thin on
//! purpose: every protocol and network decision lives in the crates below; here
//! are only Godot classes, conversions, and the per-frame draining of events.

use godot::prelude::*;

mod client;
mod cluster;
mod cluster_stats;
mod error;
mod first_import;
mod master;
mod multiplayer_peer;
mod pending;
mod runtime;

pub(crate) use error::Error;

/// The extension's entry point. gdext's entry trait is `unsafe` by design;
/// this module is the only place the crate allows it.
mod entry {
    #![allow(unsafe_code)]

    use godot::prelude::*;

    struct SustenetExtension;

    #[gdextension]
    unsafe impl ExtensionLibrary for SustenetExtension {
        fn on_stage_init(stage: InitStage) {
            if stage == InitStage::Scene {
                super::first_import::note_load();
            }
        }

        fn on_stage_deinit(stage: InitStage) {
            // Runs after Godot's own teardown checks; touches no Godot object.
            if stage == InitStage::Scene {
                super::runtime::shutdown();
            }
        }
    }
}

/// Prints waiting Rust log lines to Godot's output (info → print,
/// warn → push_warning, error → push_error). Called by every node each frame.
pub(crate) fn flush_logs() {
    for (sev, line) in runtime::take_logs(256) {
        match sev {
            runtime::Severity::Info => godot_print!("{line}"),
            runtime::Severity::Warn => godot_warn!("{line}"),
            runtime::Severity::Error => godot_error!("{line}"),
        }
    }
}

/// Ids travel as u64 and stay below 2^63, so GDScript sees them positive.
pub(crate) fn id_to_gd(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// A GDScript int as an id; negative values are no id at all.
pub(crate) fn id_from_gd(id: i64) -> Option<u64> {
    u64::try_from(id).ok()
}

/// A GDScript int as a command number.
pub(crate) fn command_from_gd(command: i64) -> Option<u16> {
    u16::try_from(command).ok()
}

/// A port property: 0 means `default`; out of range is an error.
pub(crate) fn port_from_gd(port: i64, default: u16) -> Option<u16> {
    match u16::try_from(port) {
        Ok(0) => Some(default),
        Ok(p) => Some(p),
        Err(_) => None,
    }
}

/// Turns a `res://` or `user://` path into a file system path.
pub(crate) fn globalize(path: &str) -> String {
    if path.starts_with("res://") || path.starts_with("user://") {
        godot::classes::ProjectSettings::singleton()
            .globalize_path(path)
            .to_string()
    } else {
        path.to_owned()
    }
}

/// How long draining events took, per frame and in all.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DrainStats {
    pub last_usec: i64,
    pub max_usec: i64,
    pub total: i64,
}

impl DrainStats {
    /// Hands events from `rx` to `handle` until the queue is empty, `max_events`
    /// were handled, `budget_usec` microseconds passed, or `handle` returns
    /// false; returns what to record with [`DrainStats::record`]. The budget is
    /// what keeps a flood of packets from freezing a frame.
    pub fn run<T>(
        rx: &flume::Receiver<T>,
        max_events: i64,
        budget_usec: i64,
        mut handle: impl FnMut(T) -> bool,
    ) -> (usize, i64) {
        let start = std::time::Instant::now();
        let max_events = usize::try_from(max_events.max(1)).unwrap_or(usize::MAX);
        let budget = u128::try_from(budget_usec.max(1)).unwrap_or(u128::MAX);
        let mut n = 0usize;
        while n < max_events && start.elapsed().as_micros() < budget {
            let Ok(ev) = rx.try_recv() else { break };
            n += 1;
            if !handle(ev) {
                break;
            }
        }
        (
            n,
            i64::try_from(start.elapsed().as_micros()).unwrap_or(i64::MAX),
        )
    }

    /// Records one frame's drain.
    pub fn record(&mut self, (n, used): (usize, i64)) {
        self.last_usec = used;
        self.max_usec = self.max_usec.max(used);
        self.total += i64::try_from(n).unwrap_or(i64::MAX);
    }
}
