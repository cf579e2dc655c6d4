//! The `sustenet` binary as real processes: help, config errors, master and
//! cluster from config files with `probe` against them, and zero-config `up`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{Proc, free_port, run};

/// Runs probe until it succeeds (servers need a moment to start and register).
fn probe_until_ok(dir: &Path, args: &[&str]) -> Output {
    probe_until(dir, args, |_| true)
}

/// Runs probe until it succeeds with an output `ready` accepts.
fn probe_until(dir: &Path, args: &[&str], ready: impl Fn(&str) -> bool) -> Output {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = run(dir, args);
        if out.status.success() && ready(&String::from_utf8_lossy(&out.stdout)) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "probe kept failing:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn help_lists_every_command() {
    let out = run(Path::new("."), &["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["up", "master", "cluster", "keygen", "probe"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(cmd)),
            "--help lacks {cmd}:\n{text}"
        );
    }
}

#[test]
fn bad_config_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Config.toml"),
        "[all]\nserver_nam = \"x\"\n",
    )
    .unwrap();
    let out = run(dir.path(), &["master"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Config.toml") && err.contains("server_nam"),
        "{err}"
    );

    std::fs::write(
        dir.path().join("Config.toml"),
        "[limits]\ntimeout_ms = 10\n",
    )
    .unwrap();
    let out = run(dir.path(), &["master"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limits.timeout_ms"), "{err}");

    let out = run(dir.path(), &["cluster", "--config", "missing.toml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[test]
fn keygen_writes_private_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["keygen", "--master"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("master public key"));
    assert!(
        run(dir.path(), &["keygen", "--name", "alpha"])
            .status
            .success()
    );
    // A second run refuses to overwrite without --force.
    assert!(
        !run(dir.path(), &["keygen", "--name", "alpha"])
            .status
            .success()
    );
    assert!(
        run(dir.path(), &["keygen", "--name", "alpha", "--force"])
            .status
            .success()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for f in ["keys/alpha", "keys/master.key"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }
}

#[test]
fn master_and_cluster_from_config_files_serve_probe() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run(d, &["keygen", "--master"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let public = stdout
        .lines()
        .find_map(|l| l.strip_prefix("master public key (give this to clients): "))
        .unwrap()
        .trim()
        .to_owned();
    assert!(run(d, &["keygen", "--name", "alpha"]).status.success());
    let (mp, cp) = (free_port(), free_port());
    std::fs::write(
        d.join("master.toml"),
        format!("[all]\nserver_name = \"Test Master\"\nport = {mp}\nbind = \"127.0.0.1\"\n"),
    )
    .unwrap();
    // The original Sustenet example, with ports filled in.
    std::fs::write(
        d.join("cluster.toml"),
        format!(
            "[all]\nserver_name = \"Default Cluster Server\"\n\nmax_connections = 0\nport = {cp}\nbind = \"127.0.0.1\"\n\n\
             [cluster]\nkey_name = \"alpha\"\nmaster_ip = \"127.0.0.1\"\nmaster_port = {mp}\n\n\
             domain_pub_key = \"https://example.invalid/pubkey.pub\" # not fetched\n"
        ),
    )
    .unwrap();
    let master = Proc::start(d, &["master", "--config", "master.toml"]);
    let cluster = Proc::start(d, &["cluster", "--config", "cluster.toml"]);
    let out = probe_until_ok(
        d,
        &[
            "probe",
            "--master",
            &format!("127.0.0.1:{mp}"),
            "--key",
            &public,
            "--count",
            "20",
            "--json",
        ],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["cluster_name"], "Default Cluster Server");
    assert_eq!(report["reliable"]["received"], 20);

    // A probe with the wrong master key fails with a clear message.
    let wrong = {
        let d2 = tempfile::tempdir().unwrap();
        let o = run(d2.path(), &["keygen", "--master"]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find_map(|l| l.strip_prefix("master public key (give this to clients): "))
            .unwrap()
            .trim()
            .to_owned()
    };
    let out = run(
        d,
        &[
            "probe",
            "--master",
            &format!("127.0.0.1:{mp}"),
            "--key",
            &wrong,
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("master public key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert!(cluster.terminate().success());
    assert!(master.terminate().success());
}

#[test]
fn zero_config_up_then_probe() {
    let dir = tempfile::tempdir().unwrap();
    let up = Proc::start(dir.path(), &["up"]);
    // Both clusters register within moments of each other; wait for both.
    let out = probe_until(dir.path(), &["probe"], |o| o.contains("2 cluster(s)"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("probe OK"), "{text}");
    assert!(text.contains("2 cluster(s)"), "{text}");
    // up runs an agent too: a room instance on demand, with up's admin key.
    let out = run(
        dir.path(),
        &["instances", "--key-dir", ".sustenet/keys", "spawn", "room"],
    );
    let spawned = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && spawned.contains("ready on agent up"),
        "{spawned}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = probe_until(dir.path(), &["probe"], |o| o.contains("3 cluster(s)"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("room-1"));
    assert!(up.terminate().success());
}

#[test]
fn receive_threads_out_of_bounds_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Config.toml"),
        "[cluster]\nreceive_threads = 0\n",
    )
    .unwrap();
    let out = run(dir.path(), &["cluster"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Config.toml") && err.contains("cluster.receive_threads"),
        "{err}"
    );
    // From the environment (`up` has no configuration file).
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sustenet"))
        .args(["up", "--clusters", "1"])
        .current_dir(empty.path())
        .env("SUSTENET_RECEIVE_THREADS", "65")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cluster.receive_threads")
            && err.contains("must be from 1 to 64")
            && err.contains("not 65"),
        "{err}"
    );
}

#[test]
fn up_takes_a_state_window_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["up", "--state-window-ms", "1001"]);
    // A bad flag value: status 2 (docs/operations.md), nothing started.
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--state-window-ms") && err.contains("1001"),
        "{err}"
    );

    // 0: each input's states leave at its end; the clusters still serve.
    // Its own ports: zero_config_up_then_probe runs `up` on the default ones.
    let up = Proc::start(
        dir.path(),
        &[
            "up",
            "--clusters",
            "1",
            "--port",
            "47611",
            "--websocket-port",
            "48611",
            "--state-window-ms",
            "0",
        ],
    );
    let out = probe_until_ok(dir.path(), &["probe"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("probe OK"));
    assert!(up.terminate().success());
}

#[test]
fn up_exits_non_zero_when_a_server_inside_it_stops_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_ports(1);
    let metrics = format!("127.0.0.1:{}", common::free_tcp_port());
    // The agent makes its run folder (.sustenet/agent) when it starts, after
    // `up` has bound every port: a file there stops the agent with an error
    // while the master and the cluster run.
    std::fs::create_dir_all(dir.path().join(".sustenet")).unwrap();
    std::fs::write(dir.path().join(".sustenet/agent"), "not a folder").unwrap();
    let out = run(
        dir.path(),
        &[
            "up",
            "--metrics-bind",
            &metrics,
            "--clusters",
            "1",
            "--port",
            &port.to_string(),
            "--no-websocket",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    // It names the server that stopped and says why, once.
    let stopped = "error: a server stopped: agent up: ";
    assert!(
        err.matches(stopped).count() == 1
            && err.contains(&format!(
                "{stopped}run folder .sustenet/agent: cannot create it: "
            )),
        "{err}"
    );
    said_once(&err, "(os error ");
}

#[test]
fn up_exits_non_zero_naming_a_cluster_port_taken_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_ports(1);
    let web = common::free_ports(1);
    let metrics = format!("127.0.0.1:{}", common::free_tcp_port());
    // `up` binds every port (TCP, UDP and WebSocket, the master's and the
    // clusters') before it starts any server: one taken stops it there,
    // with that error alone (no server, no agent has run to say more).
    let cases = [
        (
            port + 1,
            "--no-websocket",
            format!("TCP 127.0.0.1:{}", port + 1),
        ),
        (
            web + 1,
            "--plain-websocket",
            format!("WebSocket 127.0.0.1:{}", web + 1),
        ),
        (
            web,
            "--plain-websocket",
            format!("WebSocket 127.0.0.1:{web}"),
        ),
    ];
    for (taken, websocket, what) in cases {
        let out = up_with_a_port_taken(dir.path(), port, web, &metrics, taken, websocket);
        assert_eq!(out.status.code(), Some(1), "{what}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with(&format!("error: cannot listen on {what}: "))
                && err.ends_with("(is another server using that port?)\n"),
            "{what}: {err}"
        );
        said_once(&err, "(os error ");
        // Nothing else: not "Sustenet is up", not the agent failing to
        // register with a master that never ran.
        assert!(!err.contains("cannot register with the master"), "{err}");
        assert_eq!(err.lines().count(), 1, "{what}: {err}");
        assert!(out.stdout.is_empty(), "{what}: {out:?}");
    }
}

/// Runs `up` in `dir` (one cluster, the master on `port`, WebSocket
/// listeners from `web` unless `websocket` is `--no-websocket`, metrics on
/// `metrics`) while another program holds TCP port `taken`.
fn up_with_a_port_taken(
    dir: &Path,
    port: u16,
    web: u16,
    metrics: &str,
    taken: u16,
    websocket: &str,
) -> Output {
    let holder = std::net::TcpListener::bind(("127.0.0.1", taken)).unwrap();
    let out = run(
        dir,
        &[
            "up",
            "--metrics-bind",
            metrics,
            "--clusters",
            "1",
            "--port",
            &port.to_string(),
            "--websocket-port",
            &web.to_string(),
            websocket,
        ],
    );
    drop(holder);
    out
}

/// `what` is in the `error: ` line of `stderr` exactly once (an error chain
/// that says its cause twice fails).
fn said_once(stderr: &str, what: &str) {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert_eq!(lines[0].matches(what).count(), 1, "{stderr}");
}

#[test]
fn master_and_cluster_say_why_they_cannot_start_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(run(d, &["keygen", "--master"]).status.success());
    assert!(
        run(d, &["keygen", "--name", "cluster_key"])
            .status
            .success()
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    for command in ["master", "cluster"] {
        let out = run(
            d,
            &[
                command,
                "--no-config",
                "--bind",
                "127.0.0.1",
                "--port",
                &port,
            ],
        );
        assert_eq!(out.status.code(), Some(1), "{command}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("error: cannot listen on TCP 127.0.0.1:{port}: ")),
            "{command}: {err}"
        );
        said_once(&err, "(os error ");
    }
    drop(taken);
    // A configuration "file" that is a folder cannot be read.
    let out = run(d, &["master", "--config", "keys"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: cannot read keys: "), "{err}");
    said_once(&err, "(os error ");
}

#[test]
fn thread_counts_from_the_environment_must_be_whole_numbers_within_bounds() {
    for (var, key, value) in [
        ("SUSTENET_SEAL_THREADS", "cluster.seal_threads", "four"),
        (
            "SUSTENET_RECEIVE_THREADS",
            "cluster.receive_threads",
            "four",
        ),
        // Over the bound: refused alike, not cut to 64.
        ("SUSTENET_SEAL_THREADS", "cluster.seal_threads", "65"),
        ("SUSTENET_RECEIVE_THREADS", "cluster.receive_threads", "65"),
    ] {
        // `cluster` (its configuration leaves both unset) and `up` refuse
        // it by name before they bind anything.
        // The port is taken: were the variable let through, they would
        // fail on that (or on the missing cluster key) instead.
        let dir = tempfile::tempdir().unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port().to_string();
        std::fs::write(dir.path().join("Config.toml"), "[cluster]\n").unwrap();
        let cluster = ["cluster", "--port", &port];
        let up = ["up", "--clusters", "1", "--port", &port];
        for args in [&cluster[..], &up[..]] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_sustenet"))
                .args(args)
                .current_dir(dir.path())
                .env(var, value)
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1), "{args:?} {out:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(key) && err.contains(var) && err.contains(value),
                "{args:?}: {err}"
            );
        }
    }
}
