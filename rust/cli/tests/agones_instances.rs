// Long file: the in-test Kubernetes API server and Agones SDK sidecar that the scenarios share, and the scenarios.
//! Instances on Agones with real processes (docs/instances.md §7): a real
//! `sustenet master` with `[instances.agones]`, and GameServers that are real
//! `sustenet cluster --agones-instance` processes. A Kubernetes API server and
//! the Agones SDK sidecar cannot run here, so this test serves both itself,
//! speaking their real protocols: the Kubernetes REST calls the master makes
//! (HTTPS with a CA file and a bearer token: `GameServerAllocation` create,
//! GameServer get, merge patch, delete) over a Fleet of GameServer records,
//! and the Agones SDK's gRPC service that each cluster's official SDK client
//! talks to (SetAnnotation, Ready, WatchGameServer, ...). Deleting a
//! GameServer sends its process SIGTERM, as Kubernetes would.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::result_large_err
)]

use std::collections::BTreeMap;
use std::pin::Pin;
use std::process::Command;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, Streaming};

mod common;

use common::free_port;
use common::instance_master::InstanceMaster;
use common::marked::{LoggedProc as Proc, eventually, joined, login_player};

mod pb {
    tonic::include_proto!("agones.dev.sdk");
}
use pb::sdk_server::{Sdk, SdkServer};

const TOKEN: &str = "test-service-account-token";
const NAMESPACE: &str = "games";

/// One GameServer record: what the SDK server and the API server both see.
struct GameServer {
    fleet: String,
    state: String,
    port: u16,
    annotations: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    pid: u32,
    watchers: tokio::sync::watch::Sender<u64>,
}

/// The cluster of Kubernetes objects the two servers share, and every API call made.
#[derive(Default)]
struct World {
    game_servers: BTreeMap<String, GameServer>,
    calls: Vec<String>,
}

type Shared = Arc<Mutex<World>>;

fn record(gs: &GameServer, name: &str) -> pb::GameServer {
    use pb::game_server::{ObjectMeta, Status as GsStatus, status::Port};
    pb::GameServer {
        object_meta: Some(ObjectMeta {
            name: name.into(),
            annotations: gs.annotations.clone().into_iter().collect(),
            labels: gs.labels.clone().into_iter().collect(),
        }),
        status: Some(GsStatus {
            state: gs.state.clone(),
            address: "127.0.0.1".into(),
            ports: vec![Port {
                name: "default".into(),
                port: i32::from(gs.port),
            }],
        }),
    }
}

/// The Agones SDK sidecar of one GameServer.
#[derive(Clone)]
struct Sidecar {
    world: Shared,
    name: String,
}

impl Sidecar {
    fn update(&self, f: impl FnOnce(&mut GameServer)) -> Result<pb::Empty, Status> {
        let mut w = self.world.lock().unwrap();
        let gs = w
            .game_servers
            .get_mut(&self.name)
            .ok_or_else(|| Status::not_found("no such GameServer"))?;
        f(gs);
        gs.watchers.send_modify(|v| *v += 1);
        Ok(pb::Empty {})
    }
    fn current(&self) -> Result<pb::GameServer, Status> {
        let w = self.world.lock().unwrap();
        let gs = w
            .game_servers
            .get(&self.name)
            .ok_or_else(|| Status::not_found("no such GameServer"))?;
        Ok(record(gs, &self.name))
    }
}

type GsStream = Pin<Box<dyn futures_util::Stream<Item = Result<pb::GameServer, Status>> + Send>>;

#[tonic::async_trait]
impl Sdk for Sidecar {
    async fn ready(&self, _: Request<pb::Empty>) -> Result<Response<pb::Empty>, Status> {
        self.update(|gs| gs.state = "Ready".into())
            .map(Response::new)
    }
    async fn allocate(&self, _: Request<pb::Empty>) -> Result<Response<pb::Empty>, Status> {
        self.update(|gs| gs.state = "Allocated".into())
            .map(Response::new)
    }
    async fn shutdown(&self, _: Request<pb::Empty>) -> Result<Response<pb::Empty>, Status> {
        self.update(|gs| gs.state = "Shutdown".into())
            .map(Response::new)
    }
    async fn health(
        &self,
        request: Request<Streaming<pb::Empty>>,
    ) -> Result<Response<pb::Empty>, Status> {
        let mut pings = request.into_inner();
        while pings.message().await?.is_some() {}
        Ok(Response::new(pb::Empty {}))
    }
    async fn get_game_server(
        &self,
        _: Request<pb::Empty>,
    ) -> Result<Response<pb::GameServer>, Status> {
        self.current().map(Response::new)
    }
    async fn set_annotation(
        &self,
        r: Request<pb::KeyValue>,
    ) -> Result<Response<pb::Empty>, Status> {
        let kv = r.into_inner();
        self.update(|gs| {
            gs.annotations
                .insert(format!("agones.dev/sdk-{}", kv.key), kv.value);
        })
        .map(Response::new)
    }
    type WatchGameServerStream = GsStream;
    async fn watch_game_server(&self, _: Request<pb::Empty>) -> Result<Response<GsStream>, Status> {
        let rx = {
            let w = self.world.lock().unwrap();
            let gs = w
                .game_servers
                .get(&self.name)
                .ok_or_else(|| Status::not_found("no such GameServer"))?;
            gs.watchers.subscribe()
        };
        let me = self.clone();
        let stream = futures_util::stream::unfold((rx, me), |(mut rx, me)| async move {
            rx.changed().await.ok()?;
            let gs = me.current().ok()?;
            Some((Ok(gs), (rx, me)))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// One HTTP/1.1 request as the API server reads it.
struct HttpRequest {
    method: String,
    path: String,
    authorization: String,
    body: Vec<u8>,
}

async fn read_request(s: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<HttpRequest> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let mut length = 0usize;
    let mut authorization = String::new();
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().ok()?,
                "authorization" => authorization = v.trim().to_owned(),
                _ => {}
            }
        }
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(HttpRequest {
        method,
        path,
        authorization,
        body,
    })
}

fn merge(into: &mut BTreeMap<String, String>, from: &Value) {
    if let Some(m) = from.as_object() {
        for (k, v) in m {
            into.insert(k.clone(), v.as_str().unwrap_or_default().to_owned());
        }
    }
}

/// The Kubernetes API: answers one request on the shared objects.
fn answer(world: &Shared, req: &HttpRequest) -> (u16, Value) {
    let mut w = world.lock().unwrap();
    w.calls.push(format!("{} {}", req.method, req.path));
    if req.authorization != format!("Bearer {TOKEN}") {
        return (401, json!({"kind": "Status", "message": "Unauthorized"}));
    }
    let alloc =
        format!("/apis/allocation.agones.dev/v1/namespaces/{NAMESPACE}/gameserverallocations");
    let gs_prefix = format!("/apis/agones.dev/v1/namespaces/{NAMESPACE}/gameservers/");
    if req.method == "POST" && req.path == alloc {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let fleet = body["spec"]["selectors"][0]["matchLabels"]["agones.dev/fleet"]
            .as_str()
            .unwrap()
            .to_owned();
        let Some((name, gs)) = w
            .game_servers
            .iter_mut()
            .find(|(_, gs)| gs.fleet == fleet && gs.state == "Ready")
        else {
            return (201, json!({"status": {"state": "UnAllocated"}}));
        };
        gs.state = "Allocated".into();
        merge(
            &mut gs.annotations,
            &body["spec"]["metadata"]["annotations"],
        );
        merge(&mut gs.labels, &body["spec"]["metadata"]["labels"]);
        gs.watchers.send_modify(|v| *v += 1);
        return (
            201,
            json!({"status": {
                "state": "Allocated",
                "gameServerName": name,
                "address": "127.0.0.1",
                "ports": [{"name": "default", "port": gs.port}],
                "metadata": {"annotations": gs.annotations, "labels": gs.labels},
            }}),
        );
    }
    let Some(name) = req.path.strip_prefix(&gs_prefix).map(str::to_owned) else {
        return (404, json!({"message": "not found"}));
    };
    let Some(gs) = w.game_servers.get_mut(&name) else {
        return (
            404,
            json!({"message": format!("gameservers \"{name}\" not found")}),
        );
    };
    match req.method.as_str() {
        "GET" => (
            200,
            json!({"metadata": {"name": name, "annotations": gs.annotations},
                   "status": {"state": gs.state}}),
        ),
        "PATCH" => {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            merge(&mut gs.annotations, &body["metadata"]["annotations"]);
            gs.watchers.send_modify(|v| *v += 1);
            (200, json!({"metadata": {"name": name}}))
        }
        "DELETE" => {
            let _ = Command::new("kill")
                .args(["-TERM", &gs.pid.to_string()])
                .status();
            w.game_servers.remove(&name);
            (200, json!({"status": "Success"}))
        }
        _ => (405, json!({"message": "method not allowed"})),
    }
}

/// Serves the Kubernetes API over TLS on loopback; returns its port and the CA (PEM).
async fn api_server(world: Shared) -> (u16, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let pem = cert.cert.pem();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(rustls_pki_types::PrivatePkcs8KeyDer::from(
        cert.signing_key.serialize_der(),
    ));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, world) = (acceptor.clone(), world.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Some(req) = read_request(&mut tls).await else {
                    return;
                };
                let (status, body) = answer(&world, &req);
                let body = body.to_string();
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(body.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, pem)
}

/// The master, the API server, the GameServers' sidecars and processes.
struct Fixture {
    base: InstanceMaster,
    world: Shared,
    rt: tokio::runtime::Runtime,
    game_servers: Vec<Proc>,
}

impl std::ops::Deref for Fixture {
    type Target = InstanceMaster;

    fn deref(&self) -> &InstanceMaster {
        &self.base
    }
}

impl Fixture {
    fn new() -> Fixture {
        let mut base = InstanceMaster::new();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let world = Shared::default();
        let (api_port, ca) = rt.block_on(api_server(world.clone()));
        std::fs::write(base.path("ca.pem"), ca).unwrap();
        std::fs::write(base.path("token"), TOKEN).unwrap();
        base.start_master(&format!(
            r#"[instances]
register_timeout_secs = 30
[instances.agones]
api_server = "https://127.0.0.1:{api_port}"
namespace = "{NAMESPACE}"
token_path = "token"
ca_path = "ca.pem"
fleets = {{ dungeon = "dungeon-fleet", arena = "arena-fleet" }}
"#
        ));
        assert!(
            base.master_log().contains("instances on Agones"),
            "{}",
            base.master_log()
        );
        Fixture {
            base,
            world,
            rt,
            game_servers: Vec::new(),
        }
    }

    /// A GameServer of `fleet`: its sidecar, then its `sustenet cluster
    /// --agones-instance` process; returns once it is Ready with its public key.
    fn game_server(&mut self, fleet: &str, name: &str) {
        let port = free_port();
        let (watchers, _) = tokio::sync::watch::channel(0u64);
        self.world.lock().unwrap().game_servers.insert(
            name.to_owned(),
            GameServer {
                fleet: fleet.into(),
                state: "Scheduled".into(),
                port,
                annotations: BTreeMap::new(),
                labels: BTreeMap::new(),
                pid: 0,
                watchers,
            },
        );
        let sidecar = Sidecar {
            world: self.world.clone(),
            name: name.to_owned(),
        };
        let sdk_port = self.rt.block_on(async {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            let incoming =
                tonic::transport::server::TcpIncoming::from_listener(l, true, None).unwrap();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(SdkServer::new(sidecar))
                    .serve_with_incoming(incoming),
            );
            port
        });
        let p = self.start_env(
            name,
            &[
                "cluster",
                "--no-config",
                "--agones-instance",
                "--name",
                name,
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--master-port",
                &self.master_port.to_string(),
            ],
            &[("AGONES_SDK_GRPC_PORT", sdk_port.to_string())],
        );
        self.world
            .lock()
            .unwrap()
            .game_servers
            .get_mut(name)
            .unwrap()
            .pid = p.child.id();
        self.game_servers.push(p);
        eventually("the GameServer is Ready with its public key", || {
            let w = self.world.lock().unwrap();
            let gs = &w.game_servers[name];
            gs.state == "Ready"
                && gs
                    .annotations
                    .contains_key("agones.dev/sdk-sustenet-instance-public-key")
        });
    }

    fn game_server_annotations(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let w = self.world.lock().unwrap();
        w.game_servers.get(name).map(|gs| gs.annotations.clone())
    }

    fn calls(&self) -> Vec<String> {
        self.world.lock().unwrap().calls.clone()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Then the base stops the master and checks that no process is left.
        self.game_servers.clear();
    }
}

/// A client logged in to the fixture's master.
fn client(
    f: &Fixture,
) -> (
    sustenet_client::Client,
    flume::Receiver<sustenet_client::ClientEvent>,
) {
    login_player(f.rt.handle(), f.master_addr(), &f.path("keys/master.pub"))
}

#[test]
fn spawn_allocates_a_game_server_that_registers_and_a_stop_deletes_it() {
    let mut f = Fixture::new();
    f.game_server("dungeon-fleet", "dungeon-fleet-a");
    f.game_server("dungeon-fleet", "dungeon-fleet-b");
    let hub_port = free_port();
    let hub = f.start(
        "hub",
        &[
            "cluster",
            "--no-config",
            "--key-name",
            "hub",
            "--name",
            "hub",
            "--port",
            &hub_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--master-port",
            &f.master_port.to_string(),
        ],
    );
    eventually("the hub registers", || {
        hub.log().contains("registered with the master")
    });

    // A cluster's game code asks (the hub's portal): the player is moved into the
    // GameServer allocated for it once that registered.
    let (client, events) = client(&f);
    client.join(sustenet_proto::JoinTarget::Auto).unwrap();
    let (hub_id, name) = joined(&events);
    assert_eq!(name, "hub");
    let mut enter = 0u32.to_le_bytes().to_vec();
    enter.extend_from_slice(b"dungeon");
    client
        .send(sustenet_server::Portal::<()>::ENTER, enter)
        .unwrap();
    let (in_instance, first_gs) = joined(&events);
    assert_ne!(in_instance, hub_id);
    assert!(first_gs.starts_with("dungeon-fleet-"), "{first_gs}");

    // The operator asks: the other GameServer, with the parameters on it.
    let (id, agent, cluster_id) = f.spawn(&["dungeon", "-p", "scene=crypt"]).unwrap();
    assert_eq!(agent, "agones");
    assert_ne!(cluster_id, in_instance);
    let gs_name = if first_gs == "dungeon-fleet-a" {
        "dungeon-fleet-b"
    } else {
        "dungeon-fleet-a"
    };
    let annotations = f.game_server_annotations(gs_name).unwrap();
    assert_eq!(annotations["sustenet.dev/instance-id"], id.to_string());
    assert_eq!(annotations["sustenet.dev/template"], "dungeon");
    let params: Value = serde_json::from_str(&annotations["sustenet.dev/params"]).unwrap();
    assert_eq!(params, json!({"scene": "crypt"}));
    assert!(annotations.contains_key("sustenet.dev/instance-key"));
    let master_log = f.master_log();
    assert!(
        master_log
            .lines()
            .any(|l| l.contains("cluster registered") && l.contains(&format!("instance-{id}"))),
        "the cluster registered as instance-{id}:\n{master_log}"
    );
    let states: Vec<(String, String)> = f.list().into_iter().map(|r| (r.2, r.3)).collect();
    assert_eq!(
        states,
        vec![
            ("agones".into(), "ready".into()),
            ("agones".into(), "ready".into())
        ]
    );

    // Stop: the GameServers are deleted, their processes end, the instances are gone.
    for (id, ..) in f.list() {
        assert!(f.instances(&["stop", &id.to_string()]).status.success());
    }
    eventually("both instances are gone", || f.list().is_empty());
    let deletes = f
        .calls()
        .iter()
        .filter(|c| c.starts_with("DELETE "))
        .count();
    assert_eq!(deletes, 2, "{:?}", f.calls());
    eventually("the GameServer processes exited", || {
        f.game_servers
            .iter_mut()
            .all(|p| p.child.try_wait().unwrap().is_some())
    });
    for p in &mut f.game_servers {
        let status = p.child.try_wait().unwrap().unwrap();
        assert!(status.success(), "{status}: {}", p.log());
    }
    drop(client);
    drop(hub);
}

#[test]
fn a_fleet_without_a_ready_game_server_and_a_refused_allocation_fail_the_spawn() {
    let mut f = Fixture::new();
    // No GameServer in the arena Fleet: UnAllocated.
    let err = f.spawn(&["arena"]).unwrap_err();
    assert!(err.contains("UnAllocated"), "{err}");
    assert!(err.contains("arena-fleet"), "{err}");
    // The only dungeon GameServer is allocated: the next spawn finds none Ready.
    f.game_server("dungeon-fleet", "dungeon-fleet-a");
    let (id, ..) = f.spawn(&["dungeon"]).unwrap();
    let err = f.spawn(&["dungeon"]).unwrap_err();
    assert!(err.contains("UnAllocated"), "{err}");
    // The API server refuses the master's token (revoked): the spawn fails with the answer.
    std::fs::write(f.path("token"), "revoked").unwrap();
    let err = f.spawn(&["dungeon"]).unwrap_err();
    assert!(err.contains("401"), "{err}");
    assert_eq!(f.list().len(), 1, "only the first instance runs");
    std::fs::write(f.path("token"), TOKEN).unwrap();
    // Its GameServer is deleted by someone else (an operator, a node drained): its cluster's
    // link ends, the master finds the GameServer gone, and so is the instance.
    assert_eq!(f.list()[0].0, id);
    let pid = {
        let mut w = f.world.lock().unwrap();
        w.game_servers.remove("dungeon-fleet-a").unwrap().pid
    };
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    eventually("the instance is gone", || f.list().is_empty());
    let gets =
        format!("GET /apis/agones.dev/v1/namespaces/{NAMESPACE}/gameservers/dungeon-fleet-a");
    assert!(f.calls().contains(&gets), "{:?}", f.calls());
}
