//! What a worker counts and reports: counters, histograms, errors, and
//! the JSON lines it writes.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::hist::{AtomicHist, Hist};

/// Example messages kept per kind of error.
const EXAMPLES: usize = 3;

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Cumulative counts of one process (or, added up, of all of them).
        #[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
        pub(super) struct Counters {
            $(pub(super) $name: u64,)*
        }

        impl Counters {
            pub(super) fn add(&mut self, o: &Counters) {
                $(self.$name += o.$name;)*
            }
            pub(super) fn minus(&self, o: &Counters) -> Counters {
                Counters { $($name: self.$name.saturating_sub(o.$name),)* }
            }
        }

        #[derive(Debug, Default)]
        pub(super) struct AtomicCounters {
            $(pub(super) $name: AtomicU64,)*
        }

        impl AtomicCounters {
            /// Adds what a task counted on its own, and empties it.
            pub(super) fn drain_from(&self, local: &mut Counters) {
                $(if local.$name > 0 {
                    self.$name.fetch_add(std::mem::take(&mut local.$name), Ordering::Relaxed);
                })*
            }

            pub(super) fn load(&self) -> Counters {
                Counters { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters!(
    target,
    started,
    joined,
    connected,
    failed,
    disconnected,
    pos_sent,
    rel_sent,
    rel_recv,
    unrel_sent,
    unrel_recv,
    pos_recv,
    other_recv,
    redirects,
    send_errors,
    client_errors,
    rel_missing,
    state_recv,
    state_delivered,
    state_expected,
);

impl Counters {
    pub(super) fn msgs_out(&self) -> u64 {
        self.pos_sent + self.rel_sent + self.unrel_sent
    }
    pub(super) fn msgs_in(&self) -> u64 {
        self.rel_recv + self.unrel_recv + self.pos_recv + self.state_recv + self.other_recv
    }
    pub(super) fn errors(&self) -> u64 {
        self.failed + self.disconnected + self.send_errors + self.client_errors + self.rel_missing
    }
}

pub(super) fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Everything a worker reports once a second.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Snapshot {
    pub(super) c: Counters,
    /// Reliable echo round trips, µs.
    pub(super) rel: Hist,
    /// Unreliable echo round trips, µs.
    pub(super) unrel: Hist,
    /// Position echo round trips, µs (only for plugins that echo positions).
    pub(super) pos: Hist,
    /// Login to joined, ms.
    pub(super) join: Hist,
    /// One-way latency of the state updates delivered, µs.
    pub(super) state: Hist,
}

impl Snapshot {
    pub(super) fn add(&mut self, o: &Snapshot) {
        self.c.add(&o.c);
        self.rel.add(&o.rel);
        self.unrel.add(&o.unrel);
        self.pos.add(&o.pos);
        self.join.add(&o.join);
        self.state.add(&o.state);
    }
    pub(super) fn minus(&self, o: &Snapshot) -> Snapshot {
        Snapshot {
            c: self.c.minus(&o.c),
            rel: self.rel.minus(&o.rel),
            unrel: self.unrel.minus(&o.unrel),
            pos: self.pos.minus(&o.pos),
            join: self.join.minus(&o.join),
            state: self.state.minus(&o.state),
        }
    }
}

/// Errors of one kind: how many, and the first few messages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ErrorGroup {
    pub(super) kind: String,
    pub(super) count: u64,
    pub(super) examples: Vec<String>,
}

#[derive(Debug, Default)]
pub(super) struct ErrorBook(Mutex<BTreeMap<String, ErrorGroup>>);

impl ErrorBook {
    pub(super) fn record(&self, kind: &str, message: String) {
        let mut book = self.0.lock().unwrap_or_else(|e| e.into_inner());
        add_error(&mut book, kind, 1, std::iter::once(message));
    }
    pub(super) fn groups(&self) -> Vec<ErrorGroup> {
        let book = self.0.lock().unwrap_or_else(|e| e.into_inner());
        book.values().cloned().collect()
    }
}

pub(super) fn add_error(
    book: &mut BTreeMap<String, ErrorGroup>,
    kind: &str,
    count: u64,
    examples: impl IntoIterator<Item = String>,
) {
    let g = book.entry(kind.to_owned()).or_insert_with(|| ErrorGroup {
        kind: kind.to_owned(),
        count: 0,
        examples: Vec::new(),
    });
    g.count += count;
    for m in examples {
        if g.examples.len() < EXAMPLES && !g.examples.contains(&m) {
            g.examples.push(m);
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) c: AtomicCounters,
    pub(super) rel: AtomicHist,
    pub(super) unrel: AtomicHist,
    pub(super) pos: AtomicHist,
    pub(super) join: AtomicHist,
    pub(super) state: AtomicHist,
    pub(super) errors: ErrorBook,
}

impl Stats {
    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            c: self.c.load(),
            rel: self.rel.snapshot(),
            unrel: self.unrel.snapshot(),
            pos: self.pos.snapshot(),
            join: self.join.snapshot(),
            state: self.state.snapshot(),
        }
    }
}

/// One line of a worker's stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum WorkerLine {
    /// Cumulative state at `epoch + tick` seconds.
    Tick { tick: u64, snap: Snapshot },
    /// Everything, once every client is done.
    Final {
        snap: Snapshot,
        errors: Vec<ErrorGroup>,
    },
}
