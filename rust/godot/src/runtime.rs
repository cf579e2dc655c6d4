//! The one tokio runtime of the process, and the log lines it sends to Godot.
//!
//! The runtime is created on first use (api-4-3 has no main-loop hook) and
//! shut down when the extension unloads. Network tasks run there; nodes talk
//! to them through channels only, so no Godot object ever enters a task.

use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::runtime::{Handle, Runtime};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

static RUNTIME: Mutex<Option<Runtime>> = Mutex::new(None);

/// Most log lines waiting for a node to print them; more are dropped.
const LOG_QUEUE: usize = 4096;

/// Severity of a log line, mapped to Godot's print, push_warning and push_error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warn,
    Error,
}

type LogChannel = (
    flume::Sender<(Severity, String)>,
    flume::Receiver<(Severity, String)>,
);

fn logs() -> &'static LogChannel {
    static LOGS: OnceLock<LogChannel> = OnceLock::new();
    LOGS.get_or_init(|| flume::bounded(LOG_QUEUE))
}

/// The runtime's handle, creating the runtime on first use.
pub fn handle() -> Result<Handle, String> {
    let mut guard = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(rt) = guard.as_ref() {
        return Ok(rt.handle().clone());
    }
    init_logging();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sustenet-net")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the network runtime: {e}"))?;
    let h = rt.handle().clone();
    *guard = Some(rt);
    Ok(h)
}

/// Runs `fut` on the runtime of `handle` and waits for it, from a thread
/// outside the runtime (Godot's); called from inside it, an error.
pub fn block_on<F: std::future::Future>(handle: &Handle, fut: F) -> Result<F::Output, String> {
    if Handle::try_current().is_ok() {
        return Err("called from inside the network runtime".into());
    }
    Ok(handle.block_on(fut))
}

/// Longest [`wait_for_last_run`] waits: a stopped master or cluster says
/// goodbye to its connections for up to 2 s before it lets go of its ports.
const LAST_RUN_WAIT: Duration = Duration::from_secs(5);

/// Waits (at most [`LAST_RUN_WAIT`]) until the run a node's `stop()` ended
/// has let go of its ports (`finished` closes then), so that `stop()` then
/// `start()` on the same ports binds them instead of finding them in use.
pub fn wait_for_last_run(handle: &Handle, finished: Option<tokio::sync::oneshot::Receiver<()>>) {
    if let Some(finished) = finished {
        // The timer is made inside the runtime (it needs its clock).
        let wait = async move { tokio::time::timeout(LAST_RUN_WAIT, finished).await };
        let _ = block_on(handle, wait);
    }
}

/// Tasks that [`shutdown`] lets finish first (an Agones cluster's `Shutdown()`).
static FINISH_FIRST: Mutex<Vec<tokio::task::JoinHandle<()>>> = Mutex::new(Vec::new());

/// Longest [`shutdown`] waits for the tasks of [`finish_before_shutdown`].
const FINISH_WAIT: Duration = Duration::from_secs(5);

/// Lets `task` finish (at most [`FINISH_WAIT`] for all of them) before the
/// runtime stops when the extension unloads.
pub fn finish_before_shutdown(task: tokio::task::JoinHandle<()>) {
    let mut tasks = FINISH_FIRST.lock().unwrap_or_else(|p| p.into_inner());
    tasks.retain(|t| !t.is_finished());
    tasks.push(task);
}

/// Stops the runtime; called when the extension unloads.
pub fn shutdown() {
    let rt = RUNTIME.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(rt) = rt {
        let tasks = std::mem::take(&mut *FINISH_FIRST.lock().unwrap_or_else(|p| p.into_inner()));
        if !tasks.is_empty() {
            rt.block_on(async {
                let all = async {
                    for t in tasks {
                        let _ = t.await;
                    }
                };
                let _ = tokio::time::timeout(FINISH_WAIT, all).await;
            });
        }
        rt.shutdown_timeout(Duration::from_secs(1));
    }
}

/// Takes up to `max` waiting log lines.
pub fn take_logs(max: usize) -> Vec<(Severity, String)> {
    logs().1.try_iter().take(max).collect()
}

struct GodotLayer;

#[derive(Default)]
struct Line(String, String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.1, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.1, " {}={value}", field.name());
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for GodotLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let sev = match *event.metadata().level() {
            tracing::Level::ERROR => Severity::Error,
            tracing::Level::WARN => Severity::Warn,
            _ => Severity::Info,
        };
        let mut line = Line::default();
        event.record(&mut line);
        let text = format!("[sustenet] {}{}", line.0, line.1);
        // A full queue means nobody drains it (no node in the tree): drop.
        let _ = logs().0.try_send((sev, text));
    }
}

fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(GodotLayer.with_filter(filter))
        .try_init();
}
