//! The servers `sustenet up` runs in one process (master, clusters, agent,
//! admin endpoint), each under its name: they run until Ctrl-C / SIGTERM,
//! or until one of them stops on its own, with or without an error; then
//! all of them are stopped, each given [`STOP_DEADLINE`] to end. A server
//! that stopped on its own, or that did not stop in time, is `up`'s error
//! (exit status 1).

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{Id, JoinError, JoinSet};

/// How long servers told to stop have to end (after Ctrl-C / SIGTERM, or
/// after one stopped on its own); those still running then are named in
/// the error and left behind as the process exits.
pub const STOP_DEADLINE: Duration = Duration::from_secs(10);

/// Servers running side by side, each with the name `up` reports it by
/// (`master (port 6256)`, `cluster-2 (port 6258)`, ...).
pub struct Servers<E> {
    tasks: JoinSet<Result<(), E>>,
    names: HashMap<Id, String>,
}

impl<E: Display + Send + 'static> Servers<E> {
    /// No servers yet.
    pub fn new() -> Self {
        Self {
            tasks: JoinSet::new(),
            names: HashMap::new(),
        }
    }

    /// Runs `server` as `name`. It must end only when told to stop (by the
    /// stop signal handed to [`Servers::run_until`]); ending sooner, with
    /// `Ok` or with an error, counts as stopping on its own.
    pub fn spawn(
        &mut self,
        name: impl Into<String>,
        server: impl Future<Output = Result<(), E>> + Send + 'static,
    ) {
        let id = self.tasks.spawn(server).id();
        self.names.insert(id, name.into());
    }

    /// Runs until `shutdown` completes (`Ok`) or a server stops on its own
    /// (an error naming it and saying why); either way then sends `true` on
    /// `stop` and waits up to [`STOP_DEADLINE`] for every server to end.
    /// Servers still running then are named in the error (and aborted).
    /// Errors of servers while they stop are logged, not returned.
    pub async fn run_until(
        mut self,
        shutdown: impl Future<Output = ()>,
        stop: watch::Sender<bool>,
    ) -> anyhow::Result<()> {
        let stopped_alone = tokio::select! {
            _ = shutdown => None,
            Some(ended) = self.tasks.join_next_with_id() => Some(self.why(ended)),
        };
        let _ = stop.send(true);
        let all_ended = async {
            while let Some(ended) = self.tasks.join_next_with_id().await {
                let why = self.why(ended);
                if why.failed {
                    tracing::warn!("while stopping: {}", why.text);
                }
            }
        };
        let in_time = tokio::time::timeout(STOP_DEADLINE, all_ended).await.is_ok();
        let late = if in_time {
            None
        } else {
            let mut names: Vec<&str> = self.names.values().map(String::as_str).collect();
            names.sort_unstable();
            Some(format!(
                "{} did not stop within {} s of being told to",
                names.join(", "),
                STOP_DEADLINE.as_secs()
            ))
        };
        match (stopped_alone, late) {
            (None, None) => Ok(()),
            (None, Some(late)) => Err(anyhow::anyhow!("{late}")),
            (Some(why), None) => Err(anyhow::anyhow!("a server stopped: {}", why.text)),
            (Some(why), Some(late)) => Err(anyhow::anyhow!(
                "a server stopped: {}; then {late}",
                why.text
            )),
        }
    }

    /// Which server ended and how; it is no longer among the running.
    fn why(&mut self, ended: Result<(Id, Result<(), E>), JoinError>) -> Ended {
        let mut name = |id: Id| {
            self.names
                .remove(&id)
                .unwrap_or_else(|| format!("server task {id}"))
        };
        let (text, failed) = match ended {
            Ok((id, Ok(()))) => (
                format!("{}: it ended on its own, without an error", name(id)),
                false,
            ),
            Ok((id, Err(e))) => (format!("{}: {e}", name(id)), true),
            Err(e) if e.is_panic() => (format!("{}: it panicked", name(e.id())), true),
            Err(e) => (format!("{}: {e}", name(e.id())), true),
        };
        Ended { text, failed }
    }
}

/// How a server ended: its name and why, and whether it failed (an error,
/// a panic) rather than ended without an error.
struct Ended {
    text: String,
    failed: bool,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A server that runs until `stop` says so, then counts itself in `done`.
    async fn until_stopped(
        mut stop: watch::Receiver<bool>,
        done: Arc<AtomicUsize>,
    ) -> Result<(), String> {
        let _ = stop.wait_for(|s| *s).await;
        done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Two servers that run until stopped, plus `odd` as `cluster-2 (port
    /// 7002)`; run with no shutdown request. Returns the result and how
    /// many of the two others were stopped before it came back.
    async fn run_with(
        odd: impl Future<Output = Result<(), String>> + Send + 'static,
    ) -> (anyhow::Result<()>, usize) {
        let (stop, stop_rx) = watch::channel(false);
        let done = Arc::new(AtomicUsize::new(0));
        let mut servers = Servers::new();
        servers.spawn(
            "master (port 7000)",
            until_stopped(stop_rx.clone(), done.clone()),
        );
        servers.spawn(
            "cluster-1 (port 7001)",
            until_stopped(stop_rx, done.clone()),
        );
        servers.spawn("cluster-2 (port 7002)", odd);
        let result = servers.run_until(std::future::pending(), stop).await;
        (result, done.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_server_that_ends_without_an_error_is_named_and_the_others_stop() {
        let (result, stopped) = run_with(async { Ok(()) }).await;
        let err = format!("{:#}", result.unwrap_err());
        assert_eq!(
            err,
            "a server stopped: cluster-2 (port 7002): it ended on its own, without an error"
        );
        assert_eq!(stopped, 2);
    }

    #[tokio::test]
    async fn a_server_that_fails_is_named_with_its_error_and_the_others_stop() {
        let (result, stopped) = run_with(async { Err("cannot bind".to_owned()) }).await;
        let err = format!("{:#}", result.unwrap_err());
        assert_eq!(err, "a server stopped: cluster-2 (port 7002): cannot bind");
        assert_eq!(stopped, 2);
    }

    #[tokio::test]
    async fn a_server_that_panics_is_named_and_the_others_stop() {
        fn a_bug() -> Result<(), String> {
            panic!("a bug")
        }
        let (result, stopped) = run_with(async { a_bug() }).await;
        let err = format!("{:#}", result.unwrap_err());
        assert_eq!(err, "a server stopped: cluster-2 (port 7002): it panicked");
        assert_eq!(stopped, 2);
    }

    #[tokio::test]
    async fn a_shutdown_request_stops_every_server_and_is_no_error() {
        let (stop, stop_rx) = watch::channel(false);
        let done = Arc::new(AtomicUsize::new(0));
        let mut servers: Servers<String> = Servers::new();
        for i in 0..3 {
            servers.spawn(
                format!("cluster-{i}"),
                until_stopped(stop_rx.clone(), done.clone()),
            );
        }
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        shutdown_tx.send(()).unwrap();
        let shutdown = async {
            let _ = shutdown_rx.await;
        };
        servers.run_until(shutdown, stop).await.unwrap();
        assert_eq!(done.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_error_while_stopping_after_a_shutdown_request_is_no_error() {
        let (stop, mut stop_rx) = watch::channel(false);
        let mut servers: Servers<String> = Servers::new();
        servers.spawn("agent up", async move {
            let _ = stop_rx.wait_for(|s| *s).await;
            Err("the master is gone".to_owned())
        });
        servers
            .run_until(std::future::ready(()), stop)
            .await
            .unwrap();
    }

    /// A server that, told to stop, never ends.
    async fn never_stops(mut stop: watch::Receiver<bool>) -> Result<(), String> {
        let _ = stop.wait_for(|s| *s).await;
        std::future::pending::<()>().await;
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_does_not_stop_in_time_is_named_after_a_shutdown_request() {
        let (stop, stop_rx) = watch::channel(false);
        let done = Arc::new(AtomicUsize::new(0));
        let mut servers: Servers<String> = Servers::new();
        servers.spawn(
            "master (port 7000)",
            until_stopped(stop_rx.clone(), done.clone()),
        );
        servers.spawn("cluster-1 (port 7001)", never_stops(stop_rx.clone()));
        servers.spawn("agent up", never_stops(stop_rx));
        let started = tokio::time::Instant::now();
        let result = servers.run_until(std::future::ready(()), stop).await;
        let err = format!("{:#}", result.unwrap_err());
        assert_eq!(
            err,
            "agent up, cluster-1 (port 7001) did not stop within 10 s of being told to"
        );
        assert_eq!(done.load(Ordering::SeqCst), 1);
        // The paused clock moved by the deadline, not more.
        assert_eq!(started.elapsed(), STOP_DEADLINE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_does_not_stop_in_time_after_another_stopped_is_named_too() {
        let (stop, stop_rx) = watch::channel(false);
        let mut servers: Servers<String> = Servers::new();
        servers.spawn("cluster-1 (port 7001)", never_stops(stop_rx));
        servers.spawn("cluster-2 (port 7002)", async {
            Err("cannot bind".to_owned())
        });
        let result = servers.run_until(std::future::pending(), stop).await;
        let err = format!("{:#}", result.unwrap_err());
        assert_eq!(
            err,
            "a server stopped: cluster-2 (port 7002): cannot bind; \
             then cluster-1 (port 7001) did not stop within 10 s of being told to"
        );
    }
}
