//! Instances on Agones (docs/instances.md §7): the placement target
//! [`AGONES_TARGET`] stands where an agent would, for the templates of
//! `[instances.agones] fleets`. A spawn becomes a `GameServerAllocation`
//! from the template's Fleet (instance id, template and parameters as its
//! metadata), then the instance key sealed to the allocated GameServer's
//! public key is written on it (a merge patch of its annotations); a stop
//! deletes the GameServer. Allocation and API failures fail the instance at
//! once with the reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};
use sustenet_proto::instance::{AgentRegister, InstanceState, Params, TemplateOffer};
use sustenet_proto::{DisconnectReason, Goodbye, Key};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Shared;
use super::instance_hub::dispatch;
use super::instances::{Exit, InstanceTable, SpawnOrder};
use super::kube_api::KubeApi;
use crate::error::ServerError;
use crate::instance_seal as seal;
use crate::instances_config::AgonesBackendSection;
use crate::time::now_ms;

/// The placement target's name: instances on Agones are listed on agent `agones`.
pub const AGONES_TARGET: &str = "agones";
/// The connection id the table knows the Agones target by (never a real connection's).
pub(crate) const AGONES_CONN: u64 = u64::MAX;
/// Jobs waiting for the backend.
const QUEUE: usize = 1024;

/// What the instance table asks of Agones.
#[derive(Debug)]
pub(crate) enum AgonesJob {
    Spawn(SpawnOrder),
    Stop {
        instance_id: u64,
    },
    /// An instance's cluster link ended: is its GameServer still there?
    Check {
        instance_id: u64,
    },
}

/// The backend: the API client, the Fleets, and the GameServer of each instance.
#[derive(Debug)]
pub(crate) struct AgonesBackend {
    api: KubeApi,
    namespace: String,
    fleets: std::collections::BTreeMap<String, String>,
    game_servers: Mutex<HashMap<u64, String>>,
}

/// An allocated GameServer.
struct Allocated {
    name: String,
    address: String,
    port: u16,
    public_key: Option<String>,
}

fn failure(reason: DisconnectReason, message: String) -> Goodbye {
    Goodbye { reason, message }
}

impl AgonesBackend {
    /// The backend for `[instances.agones]`; reads the CA file now.
    pub(crate) fn new(section: &AgonesBackendSection) -> Result<Self, ServerError> {
        let api = KubeApi::new(
            &section.api_server,
            &section.ca_path,
            &section.token_path,
            Duration::from_millis(section.request_timeout_ms),
        )?;
        Ok(Self {
            api,
            namespace: section.namespace.clone(),
            fleets: section.fleets.clone(),
            game_servers: Mutex::new(HashMap::new()),
        })
    }

    /// The templates it offers.
    pub(crate) fn templates(&self) -> Vec<String> {
        self.fleets.keys().cloned().collect()
    }

    fn names(&self) -> std::sync::MutexGuard<'_, HashMap<u64, String>> {
        self.game_servers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn game_server_path(&self, name: &str) -> String {
        format!(
            "/apis/agones.dev/v1/namespaces/{}/gameservers/{name}",
            self.namespace
        )
    }

    async fn allocate(
        &self,
        fleet: &str,
        instance_id: u64,
        template: &str,
        params: &Params,
    ) -> Result<Allocated, Goodbye> {
        let params: serde_json::Map<String, Value> = params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let body = json!({
            "apiVersion": "allocation.agones.dev/v1",
            "kind": "GameServerAllocation",
            "spec": {
                "selectors": [{"matchLabels": {"agones.dev/fleet": fleet}}],
                "metadata": {
                    "labels": {seal::INSTANCE_LABEL: instance_id.to_string()},
                    "annotations": {
                        seal::INSTANCE_ID_ANNOTATION: instance_id.to_string(),
                        seal::TEMPLATE_ANNOTATION: template,
                        seal::PARAMS_ANNOTATION: Value::Object(params).to_string(),
                    }
                }
            }
        });
        let path = format!(
            "/apis/allocation.agones.dev/v1/namespaces/{}/gameserverallocations",
            self.namespace
        );
        let answer = self
            .call(Method::POST, &path, "application/json", body)
            .await?;
        let status = &answer["status"];
        let state = status["state"].as_str().unwrap_or("");
        if state != "Allocated" {
            let why = match state {
                "UnAllocated" => "UnAllocated: the Fleet has no Ready GameServer",
                "Contention" => "Contention: too many allocations at once; try again",
                "" => "the answer has no status.state",
                other => other,
            };
            return Err(failure(
                DisconnectReason::ServerFull,
                format!("the Agones allocation from Fleet '{fleet}' failed: {why}"),
            ));
        }
        let name = status["gameServerName"].as_str().unwrap_or("").to_owned();
        let port = status["ports"][0]["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0);
        let public_key = status["metadata"]["annotations"][seal::PUBLIC_KEY_ANNOTATION]
            .as_str()
            .map(str::to_owned);
        if name.is_empty() {
            return Err(failure(
                DisconnectReason::ProtocolViolation,
                "the Agones allocation answer names no GameServer".into(),
            ));
        }
        Ok(Allocated {
            name,
            address: status["address"].as_str().unwrap_or("").to_owned(),
            port,
            public_key,
        })
    }

    /// One API request with a JSON body; the answer's JSON on 2xx.
    async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Value,
    ) -> Result<Value, Goodbye> {
        let lost = |m: String| failure(DisconnectReason::ConnectionLost, m);
        let what = format!("{method} {path}");
        let answer = self
            .api
            .request(
                method,
                path,
                content_type,
                Some(body.to_string().into_bytes()),
            )
            .await
            .map_err(lost)?;
        if !(200..300).contains(&answer.status) {
            let message = serde_json::from_slice::<Value>(&answer.body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(lost(format!(
                "the Kubernetes API answered {} to {what}: {message}",
                answer.status
            )));
        }
        serde_json::from_slice(&answer.body).map_err(|e| {
            lost(format!(
                "the Kubernetes API's answer to {what} is not JSON: {e}"
            ))
        })
    }

    /// The GameServer's public key from its record, when the allocation answer had none.
    async fn public_key(&self, name: &str) -> Result<Option<String>, Goodbye> {
        let path = self.game_server_path(name);
        let answer = self
            .api
            .request(Method::GET, &path, "application/json", None)
            .await
            .map_err(|m| failure(DisconnectReason::ConnectionLost, m))?;
        if answer.status != 200 {
            return Err(failure(
                DisconnectReason::ConnectionLost,
                format!(
                    "the Kubernetes API answered {} to GET {path}",
                    answer.status
                ),
            ));
        }
        let gs: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        Ok(gs["metadata"]["annotations"][seal::PUBLIC_KEY_ANNOTATION]
            .as_str()
            .map(str::to_owned))
    }

    /// Seals the key to the GameServer and writes it on it.
    async fn hand_key(&self, gs: &Allocated, key_name: &str, key: &Key) -> Result<(), Goodbye> {
        let public = match &gs.public_key {
            Some(k) => Some(k.clone()),
            None => self.public_key(&gs.name).await?,
        };
        let Some(public) = public else {
            return Err(failure(
                DisconnectReason::ProtocolViolation,
                format!(
                    "the GameServer '{}' has no annotation {} (is it a sustenet cluster with [agones] instance = true?)",
                    gs.name,
                    seal::PUBLIC_KEY_ANNOTATION
                ),
            ));
        };
        let sealed = seal::seal(key, key_name, &public, &mut rand::rng()).map_err(|m| {
            failure(
                DisconnectReason::ProtocolViolation,
                format!("GameServer '{}': {m}", gs.name),
            )
        })?;
        let patch = json!({"metadata": {"annotations": {seal::KEY_ANNOTATION: sealed}}});
        self.call(
            Method::PATCH,
            &self.game_server_path(&gs.name),
            "application/merge-patch+json",
            patch,
        )
        .await
        .map(|_| ())
    }

    /// Deletes a GameServer; `true` once it is gone (deleted now or already).
    async fn delete(&self, name: &str) -> bool {
        let path = self.game_server_path(name);
        match self
            .api
            .request(Method::DELETE, &path, "application/json", None)
            .await
        {
            Ok(a) if (200..300).contains(&a.status) || a.status == 404 => true,
            Ok(a) => {
                warn!(
                    game_server = name,
                    status = a.status,
                    "Agones: deleting the GameServer failed"
                );
                false
            }
            Err(e) => {
                warn!(
                    game_server = name,
                    "Agones: deleting the GameServer failed: {e}"
                );
                false
            }
        }
    }
}

/// Sends the table's jobs to Agones until shutdown; each job runs on its own task.
pub(crate) async fn drive(
    shared: Arc<Shared>,
    backend: Arc<AgonesBackend>,
    mut jobs: mpsc::Receiver<AgonesJob>,
) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let job = tokio::select! {
            j = jobs.recv() => match j { Some(j) => j, None => return },
            _ = crate::time::stopped(&mut shutdown) => return,
        };
        let (shared, backend) = (shared.clone(), backend.clone());
        tokio::spawn(async move {
            match job {
                AgonesJob::Spawn(order) => spawn(&shared, &backend, &order).await,
                AgonesJob::Stop { instance_id } => stop(&shared, &backend, instance_id).await,
                AgonesJob::Check { instance_id } => check(&shared, &backend, instance_id).await,
            }
        });
    }
}

/// The backend, its job queue and the queue's receiving end.
pub(crate) type Attached = (
    Arc<AgonesBackend>,
    mpsc::Sender<AgonesJob>,
    mpsc::Receiver<AgonesJob>,
);

/// With `[instances.agones]`: the backend, registered in `table` as the
/// placement target [`AGONES_TARGET`] offering the Fleets' templates (no
/// capacity of its own: the master's `max_instances` and `template_limits`
/// and the Fleets' sizes bound it).
pub(crate) fn attach(
    section: Option<&AgonesBackendSection>,
    table: &mut InstanceTable,
) -> Result<Option<Attached>, ServerError> {
    let Some(section) = section else {
        return Ok(None);
    };
    let backend = AgonesBackend::new(section)?;
    let reg = AgentRegister {
        name: AGONES_TARGET.into(),
        capacity: u32::MAX,
        port_first: 1,
        port_last: u16::MAX,
        templates: backend
            .templates()
            .into_iter()
            .map(|name| TemplateOffer {
                name,
                max: u32::MAX,
            })
            .collect(),
    };
    table
        .agent_registered(&reg, AGONES_CONN)
        .map_err(|g| ServerError::Tls(format!("[instances.agones]: {}", g.message)))?;
    info!(
        api_server = section.api_server,
        namespace = section.namespace,
        templates = backend.templates().join(","),
        "instances on Agones"
    );
    let (tx, rx) = mpsc::channel(QUEUE);
    Ok(Some((Arc::new(backend), tx, rx)))
}

async fn spawn(shared: &Shared, backend: &AgonesBackend, order: &SpawnOrder) {
    let id = order.instance_id;
    let Some(fleet) = backend.fleets.get(&order.template) else {
        return;
    };
    let gs = match backend
        .allocate(fleet, id, &order.template, &order.params)
        .await
    {
        Ok(gs) => gs,
        Err(why) => return fail(shared, id, why),
    };
    info!(
        instance_id = id,
        fleet,
        game_server = gs.name,
        address = gs.address,
        port = gs.port,
        "Agones: GameServer allocated"
    );
    backend.names().insert(id, gs.name.clone());
    if let Err(why) = backend.hand_key(&gs, &order.key_name, &order.key).await {
        backend.delete(&gs.name).await;
        backend.names().remove(&id);
        return fail(shared, id, why);
    }
    let still_wanted = {
        let mut hub = shared.instances();
        hub.table.started(AGONES_TARGET, AGONES_CONN, id, gs.port);
        matches!(
            hub.table.state(id),
            Some(InstanceState::Starting | InstanceState::Ready)
        )
    };
    if !still_wanted {
        // Stopped (or timed out) while the allocation was under way.
        stop(shared, backend, id).await;
    }
}

fn fail(shared: &Shared, id: u64, why: Goodbye) {
    warn!(instance_id = id, "Agones: {}", why.message);
    shared.instances().table.start_failed(id, why);
    dispatch(shared);
}

async fn stop(shared: &Shared, backend: &AgonesBackend, id: u64) {
    let Some(name) = backend.names().get(&id).cloned() else {
        // Not allocated yet: `spawn` stops it once the allocation answers.
        return;
    };
    let deleted = backend.delete(&name).await;
    backend.names().remove(&id);
    if deleted {
        info!(
            instance_id = id,
            game_server = name,
            "Agones: GameServer deleted"
        );
        exited(shared, id);
    }
}

/// The instance's GameServer is gone: the instance is gone (a waiting requester hears why).
fn exited(shared: &Shared, id: u64) {
    let exit = Exit {
        instance_id: id,
        code: 0,
        restarting: false,
        stderr_tail: "its GameServer is gone".into(),
    };
    shared
        .instances()
        .table
        .exited(now_ms(), AGONES_TARGET, AGONES_CONN, &exit);
    dispatch(shared);
}

/// After an instance's cluster link ended: if its GameServer is gone (deleted
/// or shut down by someone else), so is the instance.
async fn check(shared: &Shared, backend: &AgonesBackend, id: u64) {
    let Some(name) = backend.names().get(&id).cloned() else {
        return;
    };
    let path = backend.game_server_path(&name);
    let answer = backend
        .api
        .request(Method::GET, &path, "application/json", None)
        .await;
    let gone = match answer {
        Ok(a) if a.status == 404 => true,
        Ok(a) if a.status == 200 => {
            let gs: Value = serde_json::from_slice(&a.body).unwrap_or(Value::Null);
            matches!(
                gs["status"]["state"].as_str(),
                Some("Shutdown" | "Error" | "Unhealthy")
            )
        }
        _ => false,
    };
    if gone {
        info!(
            instance_id = id,
            game_server = name,
            "Agones: the instance's GameServer is gone"
        );
        backend.names().remove(&id);
        exited(shared, id);
    }
}
