//! A stand-in for the Agones SDK sidecar, for tests that run the cluster in
//! another process (the Godot `SustenetCluster` test of scripts/godot-tests.sh):
//! the recording SDK server of `tests/agones.rs` on 127.0.0.1.
//!
//! `agones_sdk_recorder <game_port>` serves the SDK's gRPC services on a free
//! port and prints `PORT <port>`, then one line `CALL <call>` for each call
//! it answers (`Ready`, `Health`, `PlayerConnect(<id>)`, `Shutdown`, ...), in
//! order. Its GameServer record gives the address `127.0.0.1`, the port
//! `<game_port>` and the state `Ready`. It runs until it is killed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/agones_sdk/mod.rs"]
mod agones_sdk;

use std::io::Write as _;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let game_port: u16 = match std::env::args().nth(1).map(|a| a.parse()) {
        Some(Ok(p)) => p,
        _ => {
            eprintln!("usage: agones_sdk_recorder <game_port>");
            std::process::exit(2);
        }
    };
    let (_stop, stop_rx) = tokio::sync::oneshot::channel();
    let port =
        agones_sdk::sdk_server(agones_sdk::Calls::printing(game_port, "127.0.0.1"), stop_rx).await;
    println!("PORT {port}");
    let _ = std::io::stdout().flush();
    std::future::pending::<()>().await;
}
