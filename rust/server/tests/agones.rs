//! The cluster as an Agones GameServer (feature `agones`): the official SDK
//! client talks gRPC to an SDK server in this test (the sidecar cannot run
//! here), which records every call. The cluster starts before its master:
//! it sends health pings from its core ticks but is not Ready until it has
//! registered; then a player joins and leaves, and the cluster stops.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sustenet_proto::JoinTarget;
use sustenet_server::agones::Agones;
use sustenet_server::cluster;
use sustenet_server::{EchoChat, Limits};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status, Streaming};

mod pb {
    pub mod sdk {
        tonic::include_proto!("agones.dev.sdk");
        pub mod alpha {
            tonic::include_proto!("agones.dev.sdk.alpha");
        }
    }
}
use pb::sdk::alpha::sdk_server::{Sdk as AlphaSdk, SdkServer as AlphaServer};
use pb::sdk::sdk_server::{Sdk, SdkServer};

/// Every call the SDK server got, in order; and the port its GameServer
/// record gives (address `localhost`).
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<String>>>, u16);

impl Calls {
    fn push(&self, c: String) {
        self.0.lock().unwrap().push(c);
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn count(&self, c: &str) -> usize {
        self.all().iter().filter(|x| *x == c).count()
    }
}

#[tonic::async_trait]
impl Sdk for Calls {
    async fn ready(&self, _: Request<pb::sdk::Empty>) -> Result<Response<pb::sdk::Empty>, Status> {
        self.push("Ready".into());
        Ok(Response::new(pb::sdk::Empty {}))
    }
    async fn allocate(
        &self,
        _: Request<pb::sdk::Empty>,
    ) -> Result<Response<pb::sdk::Empty>, Status> {
        self.push("Allocate".into());
        Ok(Response::new(pb::sdk::Empty {}))
    }
    async fn shutdown(
        &self,
        _: Request<pb::sdk::Empty>,
    ) -> Result<Response<pb::sdk::Empty>, Status> {
        self.push("Shutdown".into());
        Ok(Response::new(pb::sdk::Empty {}))
    }
    async fn get_game_server(
        &self,
        _: Request<pb::sdk::Empty>,
    ) -> Result<Response<pb::sdk::GameServer>, Status> {
        use pb::sdk::game_server::{Status, status::Port};
        let port = Port {
            name: "game".into(),
            port: i32::from(self.1),
        };
        Ok(Response::new(pb::sdk::GameServer {
            status: Some(Status {
                state: "Scheduled".into(),
                address: "localhost".into(),
                ports: vec![port],
            }),
        }))
    }
    async fn health(
        &self,
        request: Request<Streaming<pb::sdk::Empty>>,
    ) -> Result<Response<pb::sdk::Empty>, Status> {
        let mut pings = request.into_inner();
        while let Some(_ping) = pings.message().await? {
            self.push("Health".into());
        }
        Ok(Response::new(pb::sdk::Empty {}))
    }
}

#[tonic::async_trait]
impl AlphaSdk for Calls {
    async fn player_connect(
        &self,
        r: Request<pb::sdk::alpha::PlayerId>,
    ) -> Result<Response<pb::sdk::alpha::Bool>, Status> {
        self.push(format!("PlayerConnect({})", r.into_inner().player_id));
        Ok(Response::new(pb::sdk::alpha::Bool { bool: true }))
    }
    async fn player_disconnect(
        &self,
        r: Request<pb::sdk::alpha::PlayerId>,
    ) -> Result<Response<pb::sdk::alpha::Bool>, Status> {
        self.push(format!("PlayerDisconnect({})", r.into_inner().player_id));
        Ok(Response::new(pb::sdk::alpha::Bool { bool: true }))
    }
    async fn set_player_capacity(
        &self,
        r: Request<pb::sdk::alpha::Count>,
    ) -> Result<Response<pb::sdk::alpha::Empty>, Status> {
        self.push(format!("SetPlayerCapacity({})", r.into_inner().count));
        Ok(Response::new(pb::sdk::alpha::Empty {}))
    }
}

/// Serves the SDK on loopback until `stop`; returns its port.
async fn sdk_server(calls: Calls, stop: oneshot::Receiver<()>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let incoming =
        tonic::transport::server::TcpIncoming::from_listener(listener, true, None).unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SdkServer::new(calls.clone()))
            .add_service(AlphaServer::new(calls))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop.await;
            }),
    );
    port
}

async fn until(what: &str, calls: &Calls, cond: impl Fn(&[String]) -> bool) {
    let deadline = tokio::time::Instant::now() + GUARD;
    while !cond(&calls.all()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {:?}",
            calls.all()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

type Run = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_sees_capacity_health_ready_after_registration_players_and_shutdown() {
    // Long: one scenario that follows the SDK's view through a cluster's
    // whole life (registration, players, shutdown), in order.
    init_tracing();
    // The cluster's TCP and UDP sockets on one port number, as `protocol: TCPUDP` gives.
    let (tcp, udp) = loop {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)).await {
            break (tcp, udp);
        }
    };
    let game_port = tcp.local_addr().unwrap().port();
    let calls = Calls(Arc::default(), game_port);
    let (sdk_stop, sdk_stop_rx) = oneshot::channel();
    let sdk_port = sdk_server(calls.clone(), sdk_stop_rx).await;

    // The master's address is chosen now; the master starts later.
    let master_addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let keys = keys(&["agones"]);
    let agones = Agones::connect(Some(sdk_port)).await.unwrap();
    let mut config = cluster_config(master_addr, "agones-cluster", "agones", 4);
    config.limits = Limits {
        heartbeat_ms: 50,
        timeout_ms: 2_000,
        ..fast_limits()
    };
    assert_eq!(agones.public_endpoint(), Some(("localhost", game_port)));
    agones.apply_endpoint(&mut config);
    let plugin = agones.wrap(EchoChat, config.max_connections);
    let (stop, stop_rx) = oneshot::channel::<()>();
    let key = keys["agones"].clone();
    let run: Run = Box::pin(async move {
        cluster::run(tcp, udp, config, key, plugin, async {
            let _ = stop_rx.await;
        })
        .await
        .unwrap();
    });
    let cluster_task = tokio::spawn(run);

    // No master yet: the core ticks (health pings), but the cluster is not Ready.
    until("health pings before the master is up", &calls, |c| {
        c.iter().filter(|x| *x == "Health").count() >= 3
    })
    .await;
    assert!(
        !calls.all().contains(&"Ready".to_owned()),
        "{:?}",
        calls.all()
    );

    let master = start_master_on(
        &master_addr.to_string(),
        sustenet_proto::MasterKeypair::generate().unwrap(),
        keys.clone(),
        master_config(),
    )
    .await;
    until("Ready after registration", &calls, |c| {
        c.contains(&"Ready".to_owned())
    })
    .await;
    let healthy = calls.count("Health");
    until("health pings go on", &calls, |c| {
        c.iter().filter(|x| *x == "Health").count() > healthy + 2
    })
    .await;

    // The master lists the cluster where Agones says players reach it.
    let listed = wait_for_list(&master, "the cluster listed", |l| l.len() == 1).await;
    assert_eq!(
        (listed[0].address.as_str(), listed[0].tcp_port),
        ("localhost", game_port)
    );
    assert_eq!(listed[0].udp_port, game_port);
    let player = join(&master, "agones-player", JoinTarget::Auto).await;
    player.echo(b"hi").await;
    let pid = player.id;
    until("PlayerConnect", &calls, |c| {
        c.contains(&format!("PlayerConnect({pid})"))
    })
    .await;
    player.client.disconnect().unwrap();
    until("PlayerDisconnect", &calls, |c| {
        c.contains(&format!("PlayerDisconnect({pid})"))
    })
    .await;

    let _ = stop.send(());
    cluster_task.await.unwrap();
    agones.shutdown().await;
    master.stop().await;
    let _ = sdk_stop.send(());

    let all = calls.all();
    let sequence: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|c| *c != "Health")
        .collect();
    assert_eq!(
        sequence,
        [
            "SetPlayerCapacity(4)",
            "Ready",
            &format!("PlayerConnect({pid})"),
            "Allocate",
            &format!("PlayerDisconnect({pid})"),
            "Ready",
            "Shutdown",
        ],
        "{all:?}"
    );
    let ready = all.iter().position(|c| c == "Ready").unwrap();
    assert!(
        all[..ready].iter().any(|c| c == "Health"),
        "health before Ready: {all:?}"
    );
    assert!(
        all[ready..].iter().any(|c| c == "Health"),
        "health after Ready: {all:?}"
    );
    assert_eq!(all.last().map(String::as_str), Some("Shutdown"), "{all:?}");
}
