//! Tests of the configuration file: parsing, defaults and the checks.

use super::*;

const ORIGINAL: &str = r#"
[all]
server_name = "Default Cluster Server"

max_connections = 0
port = 0

[cluster]
key_name = "cluster_key"
master_ip = "127.0.0.1"
master_port = 0

domain_pub_key = "https://site-cdn.playreia.com/game/pubkey.pub" # Remove this if you want to use the server's bandwidth to send a key to a user directly. | Currently does nothing.
"#;

#[test]
fn the_original_example_parses_and_means_the_same() {
    let c = ConfigFile::parse(ORIGINAL, Path::new("Config.toml")).unwrap();
    assert_eq!(c.all.server_name, "Default Cluster Server");
    assert_eq!(c.all.max_connections, 0);
    assert_eq!(c.cluster_port(), 6257);
    assert_eq!(c.master_port(), 6256);
    assert_eq!(c.cluster_udp_port(), 6257);
    assert_eq!(c.master_address(), "127.0.0.1:6256");
    assert_eq!(c.cluster.key_name, "cluster_key");
    assert_eq!(c.master_public_key(), None);
}

#[test]
fn unknown_keys_are_named_with_the_file() {
    let e = ConfigFile::parse("[all]\nserver_nme = \"x\"\n", Path::new("/tmp/Config.toml"))
        .unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("/tmp/Config.toml") && m.contains("server_nme"),
        "{m}"
    );
    let e = ConfigFile::parse("[clusterz]\n", Path::new("C.toml")).unwrap_err();
    assert!(e.to_string().contains("clusterz"), "{e}");
}

#[test]
fn bad_values_are_named() {
    let e = ConfigFile::parse("[all]\nport = 70000\n", Path::new("C.toml")).unwrap_err();
    assert!(e.to_string().contains("port"), "{e}");
    let e = ConfigFile::parse("[limits]\nmax_frame = 10\n", Path::new("C.toml")).unwrap_err();
    assert!(e.to_string().contains("limits.max_frame"), "{e}");
    let e = ConfigFile::parse(
        "[cluster]\nkey_name = \"../etc/passwd\"\n",
        Path::new("C.toml"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("cluster.key_name"), "{e}");
    let e =
        ConfigFile::parse("[master]\nmax_clusters_per_key = 0\n", Path::new("C.toml")).unwrap_err();
    assert!(e.to_string().contains("master.max_clusters_per_key"), "{e}");
    // A public key's name: never loaded as a key by the master.
    let e =
        ConfigFile::parse("[cluster]\nkey_name = \"c.pub\"\n", Path::new("C.toml")).unwrap_err();
    assert!(e.to_string().contains(".pub"), "{e}");
    let e =
        ConfigFile::parse("[cluster]\nresume_buffer = 4096\n", Path::new("C.toml")).unwrap_err();
    assert!(e.to_string().contains("cluster.resume_buffer"), "{e}");
    let e =
        ConfigFile::parse("[cluster]\nstate_window_ms = 1001\n", Path::new("C.toml")).unwrap_err();
    assert!(e.to_string().contains("cluster.state_window_ms"), "{e}");
    let c = ConfigFile::parse("[cluster]\nstate_window_ms = 0\n", Path::new("C.toml")).unwrap();
    assert_eq!(c.cluster.state_window_ms, 0);
}

#[test]
fn the_cluster_checks_its_thread_counts_when_it_starts() {
    use crate::cluster::ClusterConfig;
    for n in [0, 1, 64] {
        assert!(ClusterConfig::check_seal_threads(n).is_ok(), "{n}");
    }
    // 65 is also what a SUSTENET_SEAL_THREADS that is not a number counts as.
    let e = ClusterConfig::check_seal_threads(65)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cluster.seal_threads")
            && e.contains("SUSTENET_SEAL_THREADS")
            && e.contains("from 0 to 64")
            && e.contains("not 65"),
        "{e}"
    );
    let e = ClusterConfig::check_receive_threads(0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cluster.receive_threads") && e.contains("SUSTENET_RECEIVE_THREADS"),
        "{e}"
    );
}

#[test]
fn seal_threads_and_their_queue_are_bounded() {
    let c = ConfigFile::parse("[cluster]\n", Path::new("C.toml")).unwrap();
    assert_eq!(c.cluster.seal_threads, None, "unset: the machine's default");
    let c = ConfigFile::parse("[cluster]\nseal_threads = 4\n", Path::new("C.toml")).unwrap();
    assert_eq!(c.cluster.seal_threads, Some(4));
    let e = ConfigFile::parse("[cluster]\nseal_threads = 65\n", Path::new("C.toml")).unwrap_err();
    assert!(e.to_string().contains("cluster.seal_threads"), "{e}");
    let c = ConfigFile::parse("[cluster]\nreceive_threads = 64\n", Path::new("C.toml")).unwrap();
    assert_eq!(c.cluster.receive_threads, Some(64));
    for n in ["0", "65"] {
        let text = format!("[cluster]\nreceive_threads = {n}\n");
        let e = ConfigFile::parse(&text, Path::new("C.toml")).unwrap_err();
        assert!(e.to_string().contains("cluster.receive_threads"), "{e}");
        assert!(e.to_string().contains("from 1 to 64"), "{e}");
    }
    let e =
        ConfigFile::parse("[cluster]\nseal_queue_bytes = 1000\n", Path::new("C.toml")).unwrap_err();
    assert!(e.to_string().contains("cluster.seal_queue_bytes"), "{e}");
    // With reconnects off the buffer is not used, so it is not checked.
    let c = ConfigFile::parse(
        "[cluster]\nresume_buffer = 4096\nresume_grace_ms = 0\n",
        Path::new("C.toml"),
    )
    .unwrap();
    assert_eq!(c.cluster.resume_grace_ms, 0);
}

#[test]
fn metrics_are_off_by_default_and_a_public_dashboard_needs_a_token() {
    let c = ConfigFile::parse("", Path::new("C.toml")).unwrap();
    assert_eq!(c.metrics.address(Path::new("C.toml")).unwrap(), None);
    let c = ConfigFile::parse(
        "[metrics]\nbind = \"127.0.0.1:9100\"\ndashboard = true\n",
        Path::new("C.toml"),
    )
    .unwrap();
    assert_eq!(
        c.metrics.address(Path::new("C.toml")).unwrap(),
        Some("127.0.0.1:9100".parse().unwrap())
    );
    let e = ConfigFile::parse(
        "[metrics]\nbind = \"0.0.0.0:9100\"\ndashboard = true\n",
        Path::new("C.toml"),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("metrics.bind") && e.to_string().contains("token"),
        "{e}"
    );
    // Metrics alone may be scraped from other hosts; the dashboard with a token too.
    ConfigFile::parse("[metrics]\nbind = \"0.0.0.0:9100\"\n", Path::new("C.toml")).unwrap();
    ConfigFile::parse(
        "[metrics]\nbind = \"0.0.0.0:9100\"\ndashboard = true\ntoken = \"t\"\n",
        Path::new("C.toml"),
    )
    .unwrap();
    let e =
        ConfigFile::parse("[metrics]\nbind = \"localhost\"\n", Path::new("C.toml")).unwrap_err();
    assert!(e.to_string().contains("metrics.bind"), "{e}");
}

#[test]
fn bad_websocket_values_are_refused_naming_the_key_and_the_file() {
    for (text, key) in [
        ("max_message_bytes = 1023", "websocket.max_message_bytes"),
        (
            "max_message_bytes = 16777217",
            "websocket.max_message_bytes",
        ),
        (
            "max_handshake_bytes = 65537",
            "websocket.max_handshake_bytes",
        ),
        ("unreliable_queue = 0", "websocket.unreliable_queue"),
        ("unreliable_queue = 4097", "websocket.unreliable_queue"),
        ("cert_file = \"a.pem\"", "websocket.cert_file"),
        ("key_file = \"a.pem\"", "websocket.cert_file"),
    ] {
        // Refused with or without a listener turned on.
        for port in ["", "[master]\nwebsocket_port = 7256\n"] {
            let e = ConfigFile::parse(&format!("{port}[websocket]\n{text}\n"), Path::new("W.toml"))
                .unwrap_err();
            let e = e.to_string();
            assert!(e.starts_with("W.toml: ") && e.contains(key), "{text}: {e}");
        }
    }
    let c = ConfigFile::parse(
        "[websocket]\nmax_message_bytes = 1024\nmax_handshake_bytes = 65536\nunreliable_queue = 4096\n",
        Path::new("W.toml"),
    )
    .unwrap();
    assert_eq!(c.websocket.max_message_bytes, 1024);
    let e = ConfigFile::parse(
        "[all]\nbind = \"localhost\"\n[cluster]\nwebsocket_port = 7257\n",
        Path::new("W.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("W.toml: ") && e.contains("all.bind"), "{e}");
    // Without a listener the address is only for TCP and UDP.
    ConfigFile::parse("[all]\nbind = \"localhost\"\n", Path::new("W.toml")).unwrap();
}
